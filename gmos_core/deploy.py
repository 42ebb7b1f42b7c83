"""Which backend runs the frame model: checked before anything heavy is loaded.

`plan_backend(settings)` is what the node calls at configure and the CLIs call first: it
checks the backend name, the ONNX folder, the onnxruntime provider, the precision and (for
TensorRT) every engine's manifest against this machine and the ONNX it comes from, and
returns a `BackendPlan` that says what will run. Anything wrong is a `BackendRefused` whose
message names the command that builds what is missing. Nothing is rebuilt and nothing falls
back to another backend: a robot must run what its operator configured or not start.

`load_backend_frame_model(plan)` then builds the `BackendFrameModel` of an onnxruntime or
TensorRT plan (the torch backend is built by `gmos_core.streaming.build` from the torch modules).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gmos_core.backends import make_backend, trt_backend
from gmos_core.backends.base import (
    BackendError,
    BackendFrameModel,
    BackendUnavailable,
    ModelShapes,
    head_part,
)
from gmos_core.backends.ort_backend import ORT_PROVIDERS, ort_providers
from gmos_core.backends.trt_backend import EngineMismatch, check_engines, rebuild_hint
from gmos_core.bundle import bundle_sha256, read_bundle_info
from gmos_core.operating_point import OperatingPoint
from gmos_core.precision import check_precision
from gmos_core.streaming import build as streaming_build
from gmos_core.streaming.build import RuntimeSettings

__all__ = [
    "BACKEND_NAMES",
    "ORT_PROVIDER_NAMES",
    "BackendPlan",
    "BackendRefused",
    "add_backend_arguments",
    "load_backend_frame_model",
    "plan_backend",
]

BACKEND_NAMES: tuple[str, ...] = ("torch", "onnxruntime", "tensorrt")
ORT_PROVIDER_NAMES: tuple[str, ...] = ("cpu", "cuda", "tensorrt")
TORCH_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
ENGINE_PRECISIONS: tuple[str, ...] = ("fp16", "fp32")


class BackendRefused(ValueError):
    """The configured backend cannot run here as configured (the message says why and which
    command builds what is missing)."""


@dataclass(frozen=True)
class BackendPlan:
    """What will run, decided and checked before loading.

    Attributes:
        backend: "torch", "onnxruntime" or "tensorrt".
        precision: torch: autocast precision; onnxruntime: the exported graph's precision;
            tensorrt: the engines' precision.
        device: torch device / CUDA device of the engines.
        head_variant: "gmos_s" or "gmos".
        provider: onnxruntime execution provider ("cpu", "cuda", "tensorrt"), else "".
        onnx_dir / engine_dir: the export folder / engine cache (None for torch).
        shapes: fixed shapes of the ONNX graphs / engines (None for torch: it follows the camera).
        pixel_limit / top_k: of the exported configuration (non-torch).
        operating_point: the bundle's decision thresholds (non-torch; torch reads its bundle).
        parts: the parts that will run.
        manifests: part -> engine manifest (tensorrt): TensorRT version, GPU, shapes, hashes.
    """

    backend: str
    precision: str
    device: str
    head_variant: str
    provider: str = ""
    onnx_dir: Path | None = None
    engine_dir: Path | None = None
    shapes: ModelShapes | None = None
    pixel_limit: int = 0
    top_k: int = 20
    operating_point: OperatingPoint | None = None
    parts: tuple[str, ...] = ()
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self) -> str:
        """One log line: backend, precision, device/provider, folders."""
        where = f"provider {self.provider}" if self.provider else f"device {self.device}"
        line = f"backend {self.backend}, precision {self.precision}, {where}"
        if self.onnx_dir is not None:
            line += f", onnx {self.onnx_dir}"
        if self.engine_dir is not None:
            line += f", engines {self.engine_dir}"
        if self.shapes is not None:
            line += f", pi3 input {self.shapes.pi3_hw[1]}x{self.shapes.pi3_hw[0]}"
        return line

    def manifest_lines(self) -> list[str]:
        """One line per engine: TensorRT version, GPU, precision, input shapes, ONNX hash."""
        return [
            f"engine {part}: TensorRT {m['tensorrt_version']} on {m.get('gpu_name') or '?'} "
            f"(sm {m['compute_capability']}), {m['precision']}, inputs {m['input_shapes']}, "
            f"onnx sha256 {m['onnx_sha256'][:12]}, engine sha256 {m.get('engine_sha256', '')[:12]}"
            for part, m in self.manifests.items()
        ]


def _export_hint(settings: RuntimeSettings, onnx_dir: Any) -> str:
    src = f"--bundle {settings.bundle} " if settings.bundle else ""
    return f"gmos-export {src}--config {settings.model_config} --out {onnx_dir}"


def _read_export(onnx_dir: Path, parts: list[str], hint: str) -> dict[str, dict[str, Any]]:
    if not onnx_dir.is_dir():
        raise BackendRefused(f"ONNX folder {onnx_dir} does not exist; export it: {hint}")
    metas = {}
    for part in parts:
        onnx_path, meta_path = onnx_dir / f"{part}.onnx", onnx_dir / f"{part}.json"
        if not onnx_path.is_file() or not meta_path.is_file():
            raise BackendRefused(
                f"ONNX folder {onnx_dir} lacks {onnx_path.name} / {meta_path.name} (needed for "
                f"this variant); export it: {hint}"
            )
        metas[part] = json.loads(meta_path.read_text())
    shapes = {json.dumps(m["shapes"], sort_keys=True) for m in metas.values()}
    if len(shapes) != 1:
        raise BackendRefused(
            f"the parts in {onnx_dir} were exported for different shapes; re-export: {hint}"
        )
    return metas


def _weights_source(settings: RuntimeSettings, head_variant: str) -> tuple[Path | None, Any]:
    """The bundle whose operating point (and, recorded in the export, weights) the run uses."""
    if any((settings.pi3_checkpoint, settings.sam2_checkpoint, settings.head_checkpoint)):
        raise BackendRefused(
            f"backend {settings.backend} runs exported graphs: official checkpoints are not "
            "read; export them into a bundle and ONNX first, or use backend torch"
        )
    # Looked up on the module at call time, as before (tests point the defaults elsewhere).
    default = streaming_build.DEFAULT_BUNDLES[settings.variant]
    path = Path(settings.bundle) if settings.bundle else default
    if not path.is_file():
        return None, None
    info = read_bundle_info(path)
    if info.variant != head_variant:
        raise BackendRefused(
            f"bundle {path} holds a {info.variant} model but variant is {settings.variant}"
        )
    return path, info


def plan_backend(settings: RuntimeSettings) -> BackendPlan:
    """Check the settings' backend against the files and this machine (see module docstring).

    Raises:
        BackendRefused: unknown backend / provider / precision, missing or mismatched ONNX
            folder or engine, TensorRT or a provider not installed; one clear message each.
    """
    head_variant = "gmos_s" if settings.variant == "gmos_s" else "gmos"
    name = settings.backend
    if name not in BACKEND_NAMES:
        raise BackendRefused(f"backend {name!r}: must be one of {', '.join(BACKEND_NAMES)}")
    if name == "torch":
        if settings.precision not in TORCH_PRECISIONS:
            raise BackendRefused(
                f"precision {settings.precision!r}: torch runs {', '.join(TORCH_PRECISIONS)}"
            )
        try:
            check_precision(settings.precision, settings.device)
        except ValueError as exc:
            raise BackendRefused(str(exc)) from exc
        if settings.device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise BackendRefused(
                    f"device {settings.device!r}: torch.cuda.is_available() is False here"
                )
        return BackendPlan("torch", settings.precision, settings.device, head_variant)

    if settings.tracker == "sam2":
        raise BackendRefused(
            f"tracker 'sam2' needs SAM2's raw features, which only the torch backend keeps "
            f"(backend {name}); use tracker mask_iou"
        )
    if not settings.onnx_dir:
        raise BackendRefused(
            f"backend {name} needs onnx_dir (the gmos-export folder); export it: "
            f"{_export_hint(settings, 'out/onnx/<name>')}"
        )
    onnx_dir = Path(settings.onnx_dir)
    hint = _export_hint(settings, onnx_dir)
    parts = ["pi3_encoder", "pi3_decoder", "sam2_encoder", head_part(head_variant)]
    metas = _read_export(onnx_dir, parts, hint)
    first = metas[parts[0]]
    shapes = ModelShapes.from_dict(first["shapes"])
    config = first.get("config") or {}
    pixel_limit = int(config.get("pi3", {}).get("pixel_limit", 0))
    if pixel_limit <= 0:
        raise BackendRefused(f"{onnx_dir}: export metadata lacks the configuration; {hint}")
    bundle, info = _weights_source(settings, head_variant)
    recorded = {m.get("bundle_sha256") for m in metas.values()}
    if recorded == {None}:
        if not settings.allow_random_weights:
            raise BackendRefused(
                f"{onnx_dir} was exported without a bundle (random weights); export the trained "
                f"model: {hint} (or allow_random_weights for timing only)"
            )
    else:
        if bundle is None or recorded != {bundle_sha256(bundle)}:
            raise BackendRefused(
                f"{onnx_dir} holds other weights than bundle {bundle} (sha256 recorded at "
                f"export differs); re-export: {hint}"
            )
    op = info.operating_point if info is not None else OperatingPoint()
    export_precisions = {str(m.get("precision", "fp32")) for m in metas.values()}

    if name == "onnxruntime":
        provider = settings.provider or "cpu"
        if provider not in ORT_PROVIDERS:
            raise BackendRefused(
                f"onnxruntime provider {provider!r}: must be one of {', '.join(ORT_PROVIDERS)}"
            )
        try:
            ort_providers(provider)
        except BackendUnavailable as exc:
            raise BackendRefused(str(exc)) from exc
        if export_precisions != {settings.precision}:
            raise BackendRefused(
                f"precision {settings.precision!r} but {onnx_dir} holds "
                f"{'/'.join(sorted(export_precisions))} graphs; export that precision: "
                f"{hint}{' --precision fp16' if settings.precision == 'fp16' else ''}"
            )
        return BackendPlan(
            "onnxruntime",
            settings.precision,
            settings.device,
            head_variant,
            provider=provider,
            onnx_dir=onnx_dir,
            shapes=shapes,
            pixel_limit=pixel_limit,
            top_k=int(config.get("top_k", 20)),
            operating_point=op,
            parts=tuple(parts),
        )

    # tensorrt
    if settings.precision not in ENGINE_PRECISIONS:
        raise BackendRefused(
            f"precision {settings.precision!r}: TensorRT engines are {', '.join(ENGINE_PRECISIONS)}"
        )
    if not settings.engine_dir:
        raise BackendRefused(
            "backend tensorrt needs engine_dir (the engine cache); build the engines ahead of "
            f"time: {rebuild_hint(onnx_dir, 'out/engines', settings.precision)}"
        )
    index = int(settings.device.split(":")[1]) if ":" in settings.device else 0
    try:
        machine = trt_backend.tensorrt_runtime_info(index)
        manifests = check_engines(
            settings.engine_dir, shapes, machine, onnx_dir, parts, settings.precision
        )
    except (BackendUnavailable, EngineMismatch) as exc:
        raise BackendRefused(str(exc)) from exc
    return BackendPlan(
        "tensorrt",
        settings.precision,
        f"cuda:{index}",
        head_variant,
        onnx_dir=onnx_dir,
        engine_dir=Path(settings.engine_dir),
        shapes=shapes,
        pixel_limit=pixel_limit,
        top_k=int(config.get("top_k", 20)),
        operating_point=op,
        parts=tuple(parts),
        manifests={p: m.__dict__.copy() for p, m in manifests.items()},
    )


def load_backend_frame_model(plan: BackendPlan, threads: int | None = None) -> BackendFrameModel:
    """The frame model of an onnxruntime or TensorRT plan (sessions / engines loaded here).

    Raises:
        BackendRefused: the files changed since the plan was made (refused, not rebuilt).
    """
    if plan.backend not in ("onnxruntime", "tensorrt") or plan.shapes is None:
        raise ValueError(f"load_backend_frame_model: not an exported-graph plan ({plan.backend})")
    try:
        backend = make_backend(
            plan.backend,
            shapes=plan.shapes,
            onnx_dir=plan.onnx_dir,
            engine_dir=plan.engine_dir,
            device=plan.device,
            provider=plan.provider or None,
            precision=plan.precision,
            parts=list(plan.parts),
            threads=threads,
        )
    except BackendError as exc:
        raise BackendRefused(str(exc)) from exc
    return BackendFrameModel(
        backend,
        plan.head_variant,
        plan.pixel_limit,
        plan.top_k,
        operating_point=plan.operating_point,
    )


def add_backend_arguments(parser: Any, defaults: bool = True) -> None:
    """The backend options every CLI shares (gmos-infer, gmos-bag eval): --backend,
    --onnx-dir, --engine-dir, --ort-provider. `defaults=False` leaves them None when not
    given (gmos-bag eval: then the params file decides)."""
    parser.add_argument(
        "--backend",
        choices=BACKEND_NAMES,
        default="torch" if defaults else None,
        help="what runs the network (checked before loading; never a fallback)",
    )
    parser.add_argument(
        "--onnx-dir", default=None, help="gmos-export folder (onnxruntime, tensorrt)"
    )
    parser.add_argument(
        "--engine-dir", default=None, help="engine cache built by gmos-build-engines (tensorrt)"
    )
    parser.add_argument(
        "--ort-provider",
        choices=ORT_PROVIDER_NAMES,
        default="cpu" if defaults else None,
        help="onnxruntime execution provider",
    )
