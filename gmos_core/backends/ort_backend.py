"""onnxruntime backend: the exported ONNX parts on the CPU, CUDA or TensorRT execution provider.

The provider is chosen by argument ("cpu", "cuda", "tensorrt"), never silently: onnxruntime
itself falls back to the CPU with only a warning when a requested provider is missing, which
would make a GPU benchmark quietly measure the CPU. Here a missing provider is an error that
says which providers this onnxruntime build has and what to install.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from gmos_core.backends.base import (
    PARTS,
    BackendError,
    BackendUnavailable,
    ModelShapes,
    PartSpec,
)

__all__ = ["ORT_PROVIDERS", "OrtBackend", "ort_providers"]

# onnxruntime is optional (extra "onnx"): it is imported inside the functions that use it, so
# this module, and gmos_core.backends with it, imports without onnxruntime installed.

# Short name -> onnxruntime provider names, in priority order (the later ones take the nodes the
# first cannot run: TensorRT EP hands unsupported subgraphs to CUDA, CUDA to the CPU).
ORT_PROVIDERS: dict[str, tuple[str, ...]] = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}


def ort_providers(provider: str) -> tuple[str, ...]:
    """onnxruntime provider list for "cpu" | "cuda" | "tensorrt"; raises if the first is missing."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailable(
            "onnxruntime backend: onnxruntime is not installed (pip install onnxruntime, or "
            "onnxruntime-gpu for the CUDA / TensorRT providers)"
        ) from exc
    if provider not in ORT_PROVIDERS:
        raise ValueError(
            f"onnxruntime provider must be one of {sorted(ORT_PROVIDERS)}, got {provider!r}"
        )
    wanted = ORT_PROVIDERS[provider]
    available = ort.get_available_providers()
    if wanted[0] not in available:
        hint = (
            "install onnxruntime-gpu (with a matching CUDA / cuDNN)"
            if provider == "cuda"
            else "install onnxruntime-gpu built with TensorRT and TensorRT itself"
        )
        raise BackendUnavailable(
            f"onnxruntime backend: provider {provider!r} ({wanted[0]}) is not available in this "
            f"onnxruntime {ort.__version__} build (available: {available}); {hint}"
        )
    return tuple(p for p in wanted if p in available)


class OrtBackend:
    """Runs ``<onnx_dir>/<part>.onnx`` files (as written by ``gmos-export``) with onnxruntime.

    Args:
        onnx_dir: export directory; each ``<part>.onnx`` must have its ``<part>.json`` metadata.
        provider: "cpu", "cuda" or "tensorrt" (TensorRT EP: fp16 by default, engine cache in
            ``<onnx_dir>/ort_trt_cache``).
        parts: load only these parts (default: every part found in the directory).
        threads: intra-op threads (CPU provider); None = onnxruntime's default (all cores).
        trt_fp16: TensorRT EP precision.
    """

    name = "onnxruntime"

    def __init__(
        self,
        onnx_dir: str | Path,
        provider: str = "cpu",
        parts: tuple[str, ...] | list[str] | None = None,
        threads: int | None = None,
        trt_fp16: bool = True,
    ) -> None:
        import onnxruntime as ort

        self.onnx_dir = Path(onnx_dir)
        self.provider = provider
        providers = ort_providers(provider)
        found = [p for p in PARTS if (self.onnx_dir / f"{p}.onnx").is_file()]
        wanted = list(parts) if parts is not None else found
        missing = [p for p in wanted if p not in found]
        if missing or not wanted:
            raise BackendError(
                f"onnxruntime backend: no ONNX file for {missing or list(PARTS)} in {self.onnx_dir} "
                "(export them with gmos-export)"
            )
        self.meta: dict[str, dict[str, Any]] = {}
        for p in wanted:
            meta_path = self.onnx_dir / f"{p}.json"
            if not meta_path.is_file():
                raise BackendError(f"onnxruntime backend: {meta_path} (export metadata) is missing")
            self.meta[p] = json.loads(meta_path.read_text())
        shapes = {json.dumps(m["shapes"], sort_keys=True) for m in self.meta.values()}
        if len(shapes) != 1:
            raise BackendError(
                f"onnxruntime backend: the parts in {self.onnx_dir} were exported for different "
                "shapes; export them together"
            )
        self.shapes = ModelShapes.from_dict(next(iter(self.meta.values()))["shapes"])
        self._specs: dict[str, PartSpec] = self.shapes.specs()
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
        provider_args: list[Any] = []
        for name in providers:
            if name == "TensorrtExecutionProvider":
                cache = self.onnx_dir / "ort_trt_cache"
                cache.mkdir(exist_ok=True)
                provider_args.append(
                    (
                        name,
                        {
                            "trt_fp16_enable": bool(trt_fp16),
                            "trt_engine_cache_enable": True,
                            "trt_engine_cache_path": str(cache),
                            "trt_timing_cache_enable": True,
                        },
                    )
                )
            else:
                provider_args.append(name)
        self.sessions = {
            p: ort.InferenceSession(str(self.onnx_dir / f"{p}.onnx"), opts, providers=provider_args)
            for p in wanted
        }
        self.providers = providers

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.sessions)

    def run(self, part: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if part not in self.sessions:
            raise BackendError(
                f"onnxruntime backend has no part {part!r} (has {list(self.sessions)})"
            )
        spec = self._specs[part]
        spec.check_inputs(inputs)
        feeds = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()}
        outs = self.sessions[part].run(list(spec.output_names), feeds)
        return dict(zip(spec.output_names, outs))

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {
            "backend": self.name,
            "provider": self.provider,
            "providers": list(self.providers),
            "onnxruntime": ort.__version__,
            "onnx_dir": str(self.onnx_dir),
            "parts": list(self.parts),
        }
