"""``gmos-build-engines``: TensorRT engines from the exported ONNX parts, in a keyed cache.

    gmos-build-engines --onnx out/onnx/paper --cache out/engines --precision fp16

Each engine lives in ``<cache>/<model_name>/<precision>/`` with a ``manifest.json`` holding its
key: model name, ONNX sha256 (graph + external weights), TensorRT version, GPU compute
capability, precision and input shapes (layout: `gmos_core.backends.trt_backend`). A cached
engine whose key matches is reused; one whose key differs (the ONNX was re-exported, another
TensorRT or GPU, other shapes) or that has no manifest is **refused**, never rebuilt silently:
the error names the differing fields and the ``--rebuild`` command. A timing cache per TensorRT
version and GPU (``timing-trt<version>-sm<cc>.cache``) makes rebuilds fast.

FP16 engines are built from an fp16 ONNX export (``gmos-export --precision fp16``) through a
strongly typed network (TensorRT 10.x: the STRONGLY_TYPED flag; 11.x: every network): the
normalisations, reductions, Pow/Sqrt, softmax and RoPE stay in FP32 by explicit casts in the
graph. LayerNorm's variance overflows FP16 on ViT activations (NVIDIA/TensorRT#2564), and π³
has 64-d qk-norm LayerNorms in every decoder block. The manifest records the layer counts per
precision of the parsed network.

The builder is an object (`EngineBuilder` protocol), so the cache logic is tested with a fake
builder on machines without a GPU; `TensorRTBuilder` is the real one (TensorRT 10.x / 11.x API,
names checked against the real bindings in test_tensorrt_api.py; untested on a GPU here). Without TensorRT or CUDA the command stops with a message
and exit code 2.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gmos_core.backends.base import PARTS, BackendUnavailable, onnx_sha256
from gmos_core.backends.trt_backend import (
    ENGINE_FILE,
    MANIFEST_FILE,
    PRECISIONS,
    EngineManifest,
    EngineMismatch,
    engine_dir,
    rebuild_hint,
    tensorrt_runtime_info,
)

__all__ = [
    "BuildStats",
    "EngineBuilder",
    "EngineCacheError",
    "EngineRecord",
    "TensorRTBuilder",
    "build_engines",
    "layer_precisions",
    "main",
    "network_flags",
    "tensorrt_major",
    "timing_cache_path",
]

EXIT_NO_TENSORRT = 2
EXIT_REFUSED = 3
EXIT_BAD_INPUT = 4


class EngineCacheError(EngineMismatch):
    """A cached engine does not match what would be built now; rebuild explicitly."""


@dataclass
class BuildStats:
    """What a builder reports about one build."""

    fp32_layers: int = 0
    num_layers: int = 0
    fp16_layers: int = 0


class EngineBuilder(Protocol):
    """Builds one serialized engine; injectable so the cache logic runs without TensorRT."""

    def runtime_info(self) -> dict[str, str]:
        """{"tensorrt_version", "compute_capability", "gpu_name"} of this machine."""
        ...

    def build(
        self,
        onnx_path: Path,
        engine_path: Path,
        precision: str,
        timing_cache: Path,
        input_shapes: dict[str, list[int]],
    ) -> BuildStats:
        """Parse `onnx_path`, build, and write the serialized engine to `engine_path`."""
        ...


@dataclass
class EngineRecord:
    """Outcome for one part: action is "built", "reused" or "rebuilt"."""

    part: str
    model_name: str
    engine_path: Path
    manifest_path: Path
    action: str
    build_s: float = 0.0


def timing_cache_path(cache_dir: Path, info: dict[str, str]) -> Path:
    """Timing caches are only valid for one TensorRT version and GPU architecture."""
    return cache_dir / f"timing-trt{info['tensorrt_version']}-sm{info['compute_capability']}.cache"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_cached(d: Path, key: dict[str, Any], hint: str) -> bool:
    """True if a valid matching engine is cached in `d`; False if there is none.

    Raises:
        EngineCacheError: something is there but does not match (stale / foreign / tampered).
    """
    engine, manifest_path = d / ENGINE_FILE, d / MANIFEST_FILE
    if not engine.exists() and not manifest_path.exists():
        return False
    if not engine.exists():
        raise EngineCacheError(
            f"{d}: manifest without engine; refusing to overwrite. Rebuild: {hint}"
        )
    try:
        manifest = EngineManifest.read(manifest_path)
    except EngineMismatch as exc:
        raise EngineCacheError(
            f"{exc}; refusing to overwrite a foreign engine. Rebuild: {hint}"
        ) from exc
    bad = manifest.mismatches(key)
    if bad:
        raise EngineCacheError(
            f"{d}: cached engine is stale or foreign ({'; '.join(bad)}); it is not rebuilt "
            f"silently. Rebuild: {hint}"
        )
    if manifest.engine_sha256 and _file_sha256(engine) != manifest.engine_sha256:
        raise EngineCacheError(
            f"{engine}: file does not match the sha256 in its manifest (replaced or corrupted). "
            f"Rebuild: {hint}"
        )
    return True


def build_engines(
    onnx_dir: str | Path,
    cache_dir: str | Path,
    builder: EngineBuilder,
    precision: str = "fp16",
    parts: Sequence[str] | None = None,
    rebuild: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[EngineRecord]:
    """Build (or reuse) one engine per exported part.

    Args:
        onnx_dir: a ``gmos-export`` directory (``<part>.onnx`` + ``<part>.json``).
        cache_dir: the engine cache.
        builder: `TensorRTBuilder` or a stand-in.
        precision: "fp16" (normalisations in FP32) or "fp32".
        parts: subset of parts (default: every exported part).
        rebuild: replace mismatching cached engines instead of refusing them.

    Raises:
        EngineCacheError: a cached engine is stale or foreign and `rebuild` is False.
        FileNotFoundError / ValueError: missing export files, or an ONNX file that changed
            after its metadata was written.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    onnx_dir, cache_dir = Path(onnx_dir), Path(cache_dir)
    found = [p for p in PARTS if (onnx_dir / f"{p}.onnx").is_file()]
    wanted = list(parts) if parts is not None else found
    missing = [p for p in wanted if p not in found]
    if missing or not wanted:
        raise FileNotFoundError(
            f"no ONNX export for {missing or 'any part'} in {onnx_dir} (run gmos-export first)"
        )
    info = builder.runtime_info()
    cache_dir.mkdir(parents=True, exist_ok=True)
    timing = timing_cache_path(cache_dir, info)
    hint = rebuild_hint(onnx_dir, cache_dir, precision)
    records = []
    for part in wanted:
        onnx_path = onnx_dir / f"{part}.onnx"
        meta_path = onnx_dir / f"{part}.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path}: export metadata missing (re-run gmos-export)")
        meta = json.loads(meta_path.read_text())
        graph_precision = str(meta.get("precision", "fp32"))
        if graph_precision != precision:
            raise ValueError(
                f"{onnx_path} is an {graph_precision} graph but {precision} engines were asked "
                f"for: TensorRT builds the graph's precision (strongly typed); export it: "
                f"gmos-export --precision {precision} --out {onnx_dir}"
            )
        sha = onnx_sha256(onnx_path)
        if sha != meta.get("sha256"):
            raise ValueError(
                f"{onnx_path}: sha256 {sha[:12]}... differs from its metadata "
                f"({str(meta.get('sha256'))[:12]}...): the file changed after export; re-export"
            )
        model_name = str(meta["model_name"])
        key = {
            "model_name": model_name,
            "onnx_sha256": sha,
            "tensorrt_version": info["tensorrt_version"],
            "compute_capability": info["compute_capability"],
            "precision": precision,
            "input_shapes": meta["input_shapes"],
        }
        d = engine_dir(cache_dir, model_name, precision)
        try:
            if _check_cached(d, key, hint):
                records.append(
                    EngineRecord(part, model_name, d / ENGINE_FILE, d / MANIFEST_FILE, "reused")
                )
                if log:
                    log(f"{part}: cached engine matches ({d})")
                continue
            action = "built"
        except EngineCacheError:
            if not rebuild:
                raise
            action = "rebuilt"
        d.mkdir(parents=True, exist_ok=True)
        # Write to a temporary name and rename: a crash mid-build never leaves a half engine
        # next to a valid-looking manifest. The old manifest goes first for the same reason.
        (d / MANIFEST_FILE).unlink(missing_ok=True)
        tmp = d / (ENGINE_FILE + ".tmp")
        t0 = time.perf_counter()
        stats = builder.build(onnx_path, tmp, precision, timing, meta["input_shapes"])
        build_s = time.perf_counter() - t0
        os.replace(tmp, d / ENGINE_FILE)
        EngineManifest(
            **key,
            onnx_path=str(onnx_path.resolve()),
            engine_sha256=_file_sha256(d / ENGINE_FILE),
            gpu_name=info.get("gpu_name", ""),
            build_s=round(build_s, 3),
            built_utc=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            fp32_layers=stats.fp32_layers,
            fp16_layers=stats.fp16_layers,
            shapes=meta.get("shapes", {}),
        ).write(d / MANIFEST_FILE)
        records.append(
            EngineRecord(part, model_name, d / ENGINE_FILE, d / MANIFEST_FILE, action, build_s)
        )
        if log:
            log(
                f"{part}: {action} {d / ENGINE_FILE} in {build_s:.1f} s ({stats.fp16_layers} fp16 / "
                f"{stats.fp32_layers} fp32 layers)"
            )
    return records


# The TensorRT lines the builder and the backend are written for (setup.py's `tensorrt`
# extra pins the same range; test_tensorrt_api.py checks every name used against the real
# bindings of 10.3, a late 10.x and 11.4).
SUPPORTED_TENSORRT_MAJORS = (10, 11)


def tensorrt_major(trt: Any) -> int:
    """Major version of an imported `tensorrt` module (10 or 11 are supported)."""
    return int(str(trt.__version__).split(".")[0])


def network_flags(trt: Any, precision: str) -> int:
    """`Builder.create_network` flags, by TensorRT line (explicit branches, no getattr guess).

    - 11.x: every network is strongly typed (11.0 removed `BuilderFlag.FP16`,
      `OBEY_PRECISION_CONSTRAINTS`, `ILayer.precision` and `ILayer.set_output_type`): 0.
    - 10.x, fp16: `STRONGLY_TYPED`, so that the precision is the ONNX graph's (an fp16 export
      whose LayerNorm, softmax, reductions, pow/sqrt and RoPE run in fp32 by explicit casts)
      exactly as on 11.x; 10.3 (JetPack 6) and 11.x build the same precision.
    - 10.x, fp32: 0 (weakly typed, as before: fp32 engines are unchanged).
    """
    major = tensorrt_major(trt)
    if major >= 11:
        return 0
    if major == 10:
        if precision == "fp16":
            return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        return 0
    raise BackendUnavailable(
        f"TensorRT {trt.__version__}: gmos builds engines with TensorRT "
        f"{' / '.join(f'{m}.x' for m in SUPPORTED_TENSORRT_MAJORS)}"
    )


def layer_precisions(trt: Any, network: Any) -> dict[str, int]:
    """How many layers of a parsed network produce float32 / float16 / other outputs (what the
    engine's precision really is: recorded in the manifest)."""
    counts = {"float32": 0, "float16": 0, "other": 0}
    names = {trt.DataType.FLOAT: "float32", trt.DataType.HALF: "float16"}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        kinds = {names.get(layer.get_output(j).dtype, "other") for j in range(layer.num_outputs)}
        kind = "float16" if "float16" in kinds else "float32" if "float32" in kinds else "other"
        counts[kind] += 1
    return counts


class TensorRTBuilder:
    """The real builder (TensorRT 10.x / 11.x Python API). Untested here on a GPU: the names
    it uses are checked against the real bindings without one (test_tensorrt_api.py).

    fp16 engines come from an fp16 ONNX export (``gmos-export --precision fp16``) through a
    strongly typed network: the fp32 islands are explicit casts in the graph, not builder
    hints, so TensorRT cannot drop them and every supported version builds the same thing.

    Args:
        workspace_gb: builder workspace memory pool.
        device: CUDA device index.

    Raises:
        BackendUnavailable: TensorRT not installed, an unsupported TensorRT, or no CUDA device.
    """

    def __init__(self, workspace_gb: float = 4.0, device: int = 0) -> None:
        self._info = tensorrt_runtime_info(device)
        import tensorrt as trt  # optional (extra "tensorrt"): checked just above

        network_flags(trt, "fp32")  # refuses an unsupported TensorRT line before any build
        self.trt = trt
        self.workspace = int(workspace_gb * (1 << 30))
        self.logger = trt.Logger(trt.Logger.WARNING)

    def runtime_info(self) -> dict[str, str]:
        return dict(self._info)

    def build(
        self,
        onnx_path: Path,
        engine_path: Path,
        precision: str,
        timing_cache: Path,
        input_shapes: dict[str, list[int]],
    ) -> BuildStats:
        trt = self.trt
        builder = trt.Builder(self.logger)
        network = builder.create_network(network_flags(trt, precision))
        parser = trt.OnnxParser(network, self.logger)
        # parse_from_file resolves external-data files relative to the model's directory.
        if not parser.parse_from_file(str(onnx_path)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise RuntimeError(f"{onnx_path}: TensorRT ONNX parser failed: " + " | ".join(errors))
        for i in range(network.num_inputs):
            t = network.get_input(i)
            if list(t.shape) != list(input_shapes[t.name]):
                raise RuntimeError(
                    f"{onnx_path}: input {t.name} has shape {list(t.shape)}, metadata says {input_shapes[t.name]}"
                )
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace)
        cache_bytes = timing_cache.read_bytes() if timing_cache.is_file() else b""
        cache = config.create_timing_cache(cache_bytes)
        config.set_timing_cache(cache, ignore_mismatch=False)
        counts = layer_precisions(trt, network)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise RuntimeError(f"{onnx_path}: TensorRT engine build failed (see the log above)")
        engine_path.write_bytes(bytes(plan))
        timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
        return BuildStats(
            fp32_layers=counts["float32"],
            num_layers=network.num_layers,
            fp16_layers=counts["float16"],
        )


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gmos-build-engines", description=__doc__.split("\n\n")[0])
    ap.add_argument("--onnx", type=Path, required=True, help="gmos-export output directory")
    ap.add_argument(
        "--cache", type=Path, default=Path("out/engines"), help="engine cache directory"
    )
    ap.add_argument("--precision", choices=PRECISIONS, default="fp16")
    ap.add_argument("--parts", nargs="+", choices=PARTS, help="subset of parts")
    ap.add_argument("--rebuild", action="store_true", help="replace stale / foreign cached engines")
    ap.add_argument("--workspace-gb", type=float, default=4.0)
    ap.add_argument("--device", type=int, default=0, help="CUDA device index")
    return ap


def main(argv: list[str] | None = None, builder: EngineBuilder | None = None) -> int:
    """Entry point of ``gmos-build-engines``; `builder` is injectable (tests). Exit codes:
    0 ok, 2 no TensorRT / CUDA, 3 stale or foreign engine refused, 4 bad input."""
    args = build_parser().parse_args(argv)
    if builder is None:
        try:
            builder = TensorRTBuilder(args.workspace_gb, args.device)
        except BackendUnavailable as exc:
            print(f"gmos-build-engines: cannot build engines here: {exc}", file=sys.stderr)
            return EXIT_NO_TENSORRT
    try:
        records = build_engines(
            args.onnx, args.cache, builder, args.precision, args.parts, args.rebuild, log=print
        )
    except EngineCacheError as exc:
        print(f"gmos-build-engines: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except (FileNotFoundError, ValueError) as exc:
        print(f"gmos-build-engines: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    summary = {r.part: {"action": r.action, "engine": str(r.engine_path)} for r in records}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
