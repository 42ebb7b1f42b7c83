"""TensorRT backend: serialized engines from ``gmos-build-engines``, executed on CUDA streams.

Written against the TensorRT 10 Python API (named I/O tensors: ``set_tensor_address`` +
``execute_async_v3``); device buffers are torch CUDA tensors, so no pycuda / cuda-python is
needed. **Untested on this project's CPU-only machines**: here construction stops with a clear
`BackendUnavailable` ("TensorRT is not installed" / "no CUDA device").

This module also owns the engine-cache layout and the manifest (`EngineManifest`) because both
the builder (``training.export.engines``) and this loader must agree on them; the loader refuses
an engine whose manifest does not match the running TensorRT version and GPU (a "foreign"
engine) or the ONNX it claims to come from (a "stale" engine), and says how to rebuild.

Cache layout::

    <cache>/<model_name>/<precision>/engine.plan
    <cache>/<model_name>/<precision>/manifest.json
    <cache>/timing-trt<version>-sm<cc>.cache
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gmos_core.backends.base import (
    PARTS,
    BackendError,
    BackendUnavailable,
    ModelShapes,
    PartSpec,
    onnx_sha256,
)

__all__ = [
    "ENGINE_FILE",
    "MANIFEST_FILE",
    "EngineManifest",
    "EngineMismatch",
    "TrtBackend",
    "check_engines",
    "engine_dir",
    "rebuild_hint",
    "tensorrt_runtime_info",
]

ENGINE_FILE = "engine.plan"
MANIFEST_FILE = "manifest.json"
PRECISIONS = ("fp16", "fp32")
# Fields that make up the cache key: an engine is reused only if all of them match.
KEY_FIELDS = (
    "model_name",
    "onnx_sha256",
    "tensorrt_version",
    "compute_capability",
    "precision",
    "input_shapes",
)


class EngineMismatch(BackendError):
    """A cached engine was built for something else (stale ONNX, other TensorRT / GPU / shape)."""


def engine_dir(cache_dir: str | Path, model_name: str, precision: str) -> Path:
    """Directory of one engine in the cache."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return Path(cache_dir) / model_name / precision


def rebuild_hint(onnx_dir: str | Path | None, cache_dir: str | Path, precision: str) -> str:
    """The command that rebuilds engines, for error messages."""
    src = str(onnx_dir) if onnx_dir is not None else "<onnx dir>"
    return f"gmos-build-engines --onnx {src} --cache {cache_dir} --precision {precision} --rebuild"


@dataclass
class EngineManifest:
    """What one cached engine was built from and for (``manifest.json`` beside the engine).

    Key fields (`KEY_FIELDS`): model_name, onnx_sha256, tensorrt_version, compute_capability
    (e.g. "8.9"), precision ("fp16" | "fp32"), input_shapes ({input: shape}). The rest is
    information: the ONNX path at build time, the engine's own sha256, the GPU name, build time.
    """

    model_name: str
    onnx_sha256: str
    tensorrt_version: str
    compute_capability: str
    precision: str
    input_shapes: dict[str, list[int]]
    onnx_path: str = ""
    engine_sha256: str = ""
    gpu_name: str = ""
    build_s: float = 0.0
    built_utc: str = ""
    fp32_layers: int = 0
    fp16_layers: int = 0
    shapes: dict[str, Any] = field(default_factory=dict)

    def key(self) -> dict[str, Any]:
        """The cache-key fields only."""
        d = asdict(self)
        return {k: d[k] for k in KEY_FIELDS}

    def mismatches(self, expected: dict[str, Any]) -> list[str]:
        """Key fields that differ from `expected` (a `key()` dict; missing fields are skipped),
        as "field: cached X, wanted Y" strings."""
        mine = self.key()
        out = []
        for k in KEY_FIELDS:
            if k in expected and expected[k] is not None and _norm(mine[k]) != _norm(expected[k]):
                out.append(f"{k}: cached {mine[k]!r}, wanted {expected[k]!r}")
        return out

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, path: str | Path) -> EngineManifest:
        p = Path(path)
        if not p.is_file():
            raise EngineMismatch(
                f"{p}: engine manifest missing (an engine without a manifest is refused)"
            )
        try:
            raw = json.loads(p.read_text())
            return cls(**raw)
        except (json.JSONDecodeError, TypeError) as exc:
            raise EngineMismatch(f"{p}: unreadable engine manifest ({exc})") from exc


def _norm(v: Any) -> Any:
    # JSON turns tuples into lists: compare shapes structurally.
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    return v


def tensorrt_runtime_info(device: int = 0) -> dict[str, str]:
    """TensorRT version, GPU compute capability ("8.9") and GPU name of this machine.

    Raises:
        BackendUnavailable: TensorRT is not installed, or there is no CUDA device.
    """
    try:
        import tensorrt as trt  # optional (extra "tensorrt"): absent is a BackendUnavailable
    except ImportError as exc:
        raise BackendUnavailable(
            "TensorRT is not installed (pip install tensorrt, on a machine with an NVIDIA GPU and "
            "driver); use the torch or onnxruntime backend instead"
        ) from exc
    if not torch.cuda.is_available():
        raise BackendUnavailable(
            f"TensorRT {trt.__version__} is installed but no CUDA device is visible to torch "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda}): engines need a GPU"
        )
    major, minor = torch.cuda.get_device_capability(device)
    return {
        "tensorrt_version": str(trt.__version__),
        "compute_capability": f"{major}.{minor}",
        "gpu_name": torch.cuda.get_device_name(device),
    }


def check_engines(
    cache_dir: str | Path,
    shapes: ModelShapes,
    info: dict[str, str],
    onnx_dir: str | Path | None = None,
    parts: tuple[str, ...] | list[str] | None = None,
    precision: str = "fp16",
) -> dict[str, EngineManifest]:
    """Check the cached engines of `parts` against this machine and the ONNX they come from,
    without loading them (no GPU work: the node calls it at configure).

    Args:
        cache_dir: the ``gmos-build-engines`` cache.
        shapes: the shapes the engines must have (the ONNX export's).
        info: this machine's `tensorrt_runtime_info()` (TensorRT version, compute capability,
            GPU name).
        onnx_dir: the export directory; each engine's ``onnx_sha256`` must equal its ONNX
            file's (a stale engine is refused).
        parts: parts that must be there (default: every part found in the cache).
        precision: "fp16" or "fp32".

    Returns:
        part -> its manifest (what the engine was built from and for).

    Raises:
        EngineMismatch: an engine is missing, stale or foreign; the message names the field
            and the command that builds it. Nothing is ever rebuilt here.
    """
    specs = shapes.specs()
    hint = rebuild_hint(onnx_dir, cache_dir, precision)
    found = [
        p
        for p in PARTS
        if (engine_dir(cache_dir, f"{shapes.config_name}.{p}", precision) / ENGINE_FILE).is_file()
    ]
    wanted = list(parts) if parts is not None else found
    missing = [p for p in wanted if p not in found]
    if missing or not wanted:
        raise EngineMismatch(
            f"no {precision} engine for {missing or 'any part'} of {shapes.config_name} in "
            f"{cache_dir}; build them ahead of time: {hint}"
        )
    out: dict[str, EngineManifest] = {}
    for part in wanted:
        model_name = f"{shapes.config_name}.{part}"
        d = engine_dir(cache_dir, model_name, precision)
        try:
            manifest = EngineManifest.read(d / MANIFEST_FILE)
        except EngineMismatch as exc:
            raise EngineMismatch(f"{exc}; rebuild: {hint}") from exc
        expected: dict[str, Any] = {
            "model_name": model_name,
            "tensorrt_version": info["tensorrt_version"],
            "compute_capability": info["compute_capability"],
            "precision": precision,
            "input_shapes": specs[part].input_shapes(),
        }
        if onnx_dir is not None:
            onnx_path = Path(onnx_dir) / f"{part}.onnx"
            if not onnx_path.is_file():
                raise EngineMismatch(
                    f"{onnx_path} (the ONNX the {part} engine must come from) does not exist: "
                    f"export it (gmos-export --out {onnx_dir}), then {hint}"
                )
            expected["onnx_sha256"] = onnx_sha256(onnx_path)
        bad = manifest.mismatches(expected)
        if bad:
            raise EngineMismatch(f"{d}: engine refused ({'; '.join(bad)}); rebuild: {hint}")
        out[part] = manifest
    return out


_TORCH_DTYPES: dict[str, str] = {
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
    "INT8": "int8",
    "UINT8": "uint8",
}


class _Engine:
    """One deserialized engine with its context and preallocated device buffers."""

    def __init__(self, trt: Any, runtime: Any, plan: bytes, spec: PartSpec, device: Any) -> None:
        self.engine = runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise EngineMismatch(f"{spec.name}: TensorRT could not deserialize the engine")
        self.context = self.engine.create_execution_context()
        self.spec = spec
        self.buffers: dict[str, torch.Tensor] = {}
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        expected = set(spec.input_names) | set(spec.output_names)
        if set(names) != expected:
            raise EngineMismatch(
                f"{spec.name}: engine I/O {sorted(names)} != expected {sorted(expected)}"
            )
        for name in names:
            shape = tuple(self.engine.get_tensor_shape(name))
            dtype_name = _TORCH_DTYPES[str(self.engine.get_tensor_dtype(name)).split(".")[-1]]
            buf = torch.empty(shape, dtype=getattr(torch, dtype_name), device=device)
            self.buffers[name] = buf
            # Addresses are fixed for the engine's life: set once, not per call.
            self.context.set_tensor_address(name, buf.data_ptr())

    def run(self, inputs: dict[str, Any], stream: Any) -> dict[str, Any]:
        for name in self.spec.input_names:
            self.buffers[name].copy_(inputs[name], non_blocking=True)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise BackendError(f"{self.spec.name}: TensorRT execute_async_v3 failed")
        return {n: self.buffers[n] for n in self.spec.output_names}


class TrtBackend:
    """Runs TensorRT engines from the ``gmos-build-engines`` cache.

    Args:
        cache_dir: engine cache directory.
        shapes: the shapes the engines must have been built for (also gives the model names).
        onnx_dir: optional export directory: when given, each engine's ``onnx_sha256`` must equal
            the current ONNX file's (a stale engine is refused).
        parts: parts to load (default: all five found in the cache).
        precision: "fp16" or "fp32".
        device: CUDA device index.

    Raises:
        BackendUnavailable: no TensorRT / no CUDA.
        EngineMismatch: an engine is missing, stale or foreign (message names the field and the
            rebuild command).
    """

    name = "tensorrt"

    def __init__(
        self,
        cache_dir: str | Path,
        shapes: ModelShapes,
        onnx_dir: str | Path | None = None,
        parts: tuple[str, ...] | list[str] | None = None,
        precision: str = "fp16",
        device: int = 0,
    ) -> None:
        info = tensorrt_runtime_info(device)  # raises BackendUnavailable first
        import tensorrt as trt  # optional: see tensorrt_runtime_info

        self.shapes = shapes
        self.precision = precision
        self.cache_dir = Path(cache_dir)
        self.device = torch.device("cuda", device)
        self.stream = torch.cuda.Stream(device=self.device)
        self.info = info
        specs = shapes.specs()
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        manifests = check_engines(cache_dir, shapes, info, onnx_dir, parts, precision)
        self.manifests = manifests
        self.engines: dict[str, _Engine] = {}
        for part, manifest in manifests.items():
            d = engine_dir(cache_dir, manifest.model_name, precision)
            plan = (d / ENGINE_FILE).read_bytes()
            self.engines[part] = _Engine(trt, self._runtime, plan, specs[part], self.device)

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.engines)

    def run_tensors(self, part: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """Run on torch tensors (host or device); returns device tensors owned by the engine
        (valid until the next call of this part: clone them to keep them)."""
        if part not in self.engines:
            raise BackendError(f"tensorrt backend has no part {part!r} (has {list(self.engines)})")
        with torch.cuda.stream(self.stream):
            out = self.engines[part].run(inputs, self.stream)
        self.stream.synchronize()
        return out

    def run(self, part: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if part not in self.engines:
            raise BackendError(f"tensorrt backend has no part {part!r} (has {list(self.engines)})")
        self.engines[part].spec.check_inputs(inputs)
        tensors = {
            k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)).pin_memory()
            for k, v in inputs.items()
        }
        out = self.run_tensors(part, tensors)
        return {k: v.float().cpu().numpy() for k, v in out.items()}

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "precision": self.precision,
            **self.info,
            "parts": list(self.parts),
        }
