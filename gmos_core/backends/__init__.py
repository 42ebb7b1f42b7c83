"""Inference backends for the five Gmos parts: torch, onnxruntime and TensorRT behind one protocol.

    backend = make_backend("onnxruntime", onnx_dir="out/onnx/micro", provider="cpu")
    model = BackendFrameModel(backend, "gmos_s", pixel_limit=cfg.pi3.pixel_limit, top_k=cfg.top_k)
    segmenter = StreamingSegmenter(model, "gmos_s")

`Backend.run(part, inputs)` takes and returns named float32 numpy arrays with the fixed shapes of
`ModelShapes.specs()`; `BackendFrameModel` turns any backend into the streaming runtime's
`FrameModel`. Backends import their runtime lazily, so this package imports without onnxruntime
or TensorRT installed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gmos_core.backends import trt_backend
from gmos_core.backends.base import (
    HEAD_PARTS,
    PARTS,
    Backend,
    BackendError,
    BackendFrameModel,
    BackendUnavailable,
    GeometryArrays,
    ModelShapes,
    PartSpec,
    SegmentationArrays,
    TensorSpec,
    head_part,
    onnx_sha256,
)
from gmos_core.backends.ort_backend import OrtBackend
from gmos_core.backends.torch_backend import TorchBackend
from gmos_core.backends.trt_backend import TrtBackend

__all__ = [
    "BACKENDS",
    "HEAD_PARTS",
    "PARTS",
    "Backend",
    "BackendError",
    "BackendFrameModel",
    "BackendUnavailable",
    "GeometryArrays",
    "ModelShapes",
    "PartSpec",
    "SegmentationArrays",
    "TensorSpec",
    "available_backends",
    "head_part",
    "make_backend",
    "onnx_sha256",
]

BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "tensorrt")


def make_backend(
    name: str,
    *,
    shapes: ModelShapes | None = None,
    model: Any = None,
    onnx_dir: str | Path | None = None,
    engine_dir: str | Path | None = None,
    device: str = "cpu",
    provider: str | None = None,
    precision: str | None = None,
    parts: list[str] | tuple[str, ...] | None = None,
    threads: int | None = None,
) -> Backend:
    """Build a backend by name.

    Args:
        name: "torch", "onnxruntime" or "tensorrt".
        shapes: fixed shapes (torch: required; tensorrt: read from `onnx_dir` metadata if absent).
        model: torch: the `GmosTorchModel` whose modules to run.
        onnx_dir: onnxruntime: the export directory; tensorrt: optional, to refuse stale engines.
        engine_dir: tensorrt: the engine cache of ``gmos-build-engines``.
        device: torch device ("cpu" / "cuda"); picks the onnxruntime provider when `provider`
            is None ("cuda" -> CUDA EP) and the TensorRT GPU index ("cuda:1" -> 1).
        provider: onnxruntime: "cpu", "cuda" or "tensorrt".
        precision: torch: "fp32" (default), "bf16" or "fp16" (autocast); tensorrt: engine
            precision "fp16" (default) / "fp32".
        parts: restrict to these parts.
        threads: onnxruntime CPU intra-op threads.

    Raises:
        ValueError: unknown name or missing argument; BackendUnavailable: runtime or device
            missing (the message says what to install).
    """
    if name == "torch":
        if model is None or shapes is None:
            raise ValueError("make_backend('torch') needs model= (a GmosTorchModel) and shapes=")
        return TorchBackend.from_model(model, shapes, device=device, precision=precision or "fp32")
    if name == "onnxruntime":
        if onnx_dir is None:
            raise ValueError(
                "make_backend('onnxruntime') needs onnx_dir= (a gmos-export directory)"
            )
        prov = provider or ("cuda" if device.startswith("cuda") else "cpu")
        return OrtBackend(onnx_dir, provider=prov, parts=parts, threads=threads)
    if name == "tensorrt":
        if engine_dir is None:
            raise ValueError(
                "make_backend('tensorrt') needs engine_dir= (the gmos-build-engines cache)"
            )
        index = int(device.split(":")[1]) if ":" in device else 0
        trt_backend.tensorrt_runtime_info(index)  # clear BackendUnavailable before anything else
        if shapes is None:
            if onnx_dir is None:
                raise ValueError("make_backend('tensorrt') needs shapes= or onnx_dir=")
            metas = sorted(Path(onnx_dir).glob("*.json"))
            if not metas:
                raise ValueError(f"no export metadata in {onnx_dir}")
            shapes = ModelShapes.from_dict(json.loads(metas[0].read_text())["shapes"])
        return TrtBackend(
            engine_dir,
            shapes,
            onnx_dir=onnx_dir,
            parts=parts,
            precision=precision or "fp16",
            device=index,
        )
    raise ValueError(f"unknown backend {name!r}; choose one of {list(BACKENDS)}")


def available_backends() -> dict[str, str]:
    """Backend name -> "ok" or the reason it cannot run here (for reports and test skips)."""
    out: dict[str, str] = {"torch": "ok"}
    try:
        import onnxruntime as ort  # optional (extra "onnx"): absent is a reported state here

        out["onnxruntime"] = f"ok ({', '.join(ort.get_available_providers())})"
    except ImportError:
        out["onnxruntime"] = "onnxruntime is not installed"
    try:
        info = trt_backend.tensorrt_runtime_info()
        out["tensorrt"] = (
            f"ok (TensorRT {info['tensorrt_version']}, sm {info['compute_capability']})"
        )
    except BackendUnavailable as exc:
        out["tensorrt"] = str(exc)
    return out
