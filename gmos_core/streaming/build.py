"""Build a ready-to-run `StreamingSegmenter` from plain settings (node, CLIs, benchmarks).

One model can serve several streams (cameras): `load_frame_model` once, then
`build_segmenter(settings, model=shared)` per stream; each stream gets its own buffer and
its own propagator state.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gmos_core.baseline_model import BASELINE_VARIANTS, BaselineFrameModel
from gmos_core.compute import DeviceUnavailableError, check_device
from gmos_core.errors import ModelSetupError
from gmos_core.geometry.warp_decision import WarpMotionDecision
from gmos_core.motion_decision import AUTO, MOTION_DECISIONS, MotionDecision
from gmos_core.operating_point import OperatingPoint
from gmos_core.streaming.segmenter import FrameModel, StreamingSegmenter
from gmos_core.streaming.tracking import PropagatorTracking

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_BUNDLES = {
    "gmos_s": ASSETS / "micro_gmos_s.safetensors",
    "gmos_online": ASSETS / "micro_gmos.safetensors",
}

Variant = Literal["gmos_s", "gmos_online", "ego_residual", "frame_diff"]

log = logging.getLogger(__name__)


@dataclass
class RuntimeSettings:
    """Everything needed to build a stream's segmenter.

    Attributes:
        variant: "gmos_s" (one foreground mask per frame) or "gmos_online" (proposer + online
            propagator, tracked instances with per-frame motion states); "ego_residual" or
            "frame_diff": a weight-free baseline in place of the proposer
            (`gmos_core.baseline_model`), same propagator and outputs as gmos_online.
        model_config: named model configuration ("micro", "paper") or a YAML path; ignored
            when a bundle is given (the bundle names its configuration).
        bundle: one-file trained model (`gmos_core.bundle`); None and no official checkpoints
            → the shipped micro bundle of the variant (`gmos_core/assets/`), if present.
        pi3_checkpoint / sam2_checkpoint / head_checkpoint: official checkpoint files
            (π³ safetensors, SAM2 .pt, Gmos .pth) for the paper configuration.
        device: torch device ("cpu", "cuda"); the GPU of the engines ("cuda:1").
        precision: torch: "fp32", or "bf16" / "fp16" autocast for π³, SAM2 and the head (fp16
            needs CUDA; reduced precision is refused with the SAM2 tracker, whose memories
            expect fp32 features); onnxruntime: the exported graphs' precision; tensorrt: the
            engines' ("fp16" / "fp32").
        backend: "torch", "onnxruntime" or "tensorrt" (`gmos_core.deploy`).
        onnx_dir: onnxruntime / tensorrt: the ``gmos-export`` folder (written from `bundle`).
        engine_dir: tensorrt: the ``gmos-build-engines`` cache.
        provider: onnxruntime execution provider: "cpu", "cuda" or "tensorrt".
        span_s: window span in seconds (official ≈ 0.5).
        proposer_stride: run π³ + proposer on every k-th frame only.
        tracker: "mask_iou" (weight-free, CPU) or "sam2".
        propagator: overrides of `gmos_core.propagation.PropagatorConfig` fields (they win over
            the model's operating point).
        fg_threshold: Gmos-S foreground probability threshold; None = the model's operating
            point (a calibrated bundle's, else the paper's 0.5).
        allow_random_weights: build without any weights (timing and plumbing only).
        motion_decision: gmos_online: "head" (the model's motion head decides which objects
            move, the paper's) or "depth_warp" (the warp residual of an RGB-D camera with
            odometry decides, `gmos_core.geometry.warp_decision`; every frame then comes with
            its `SensorFrame`, and the model runs at the bundle's depth_warp operating point)
            or "flow_motion" (the flow motion net on the window's optical flow, RGB only,
            `gmos_core.models.flow_decision`; the bundle's flow_motion operating point), or
            "auto" (`resolve_motion_decision`: flow_motion for the shipped micro Gmos, whose
            own motion head is at chance; head for every other model).
        flow_motion_weights: the flow motion net's weights ("": the shipped
            `gmos_core/assets/flow_motion.safetensors`).
    """

    variant: Variant = "gmos_online"
    model_config: str = "micro"
    bundle: str | None = None
    pi3_checkpoint: str | None = None
    sam2_checkpoint: str | None = None
    head_checkpoint: str | None = None
    device: str = "cpu"
    precision: str = "fp32"
    span_s: float = 0.5
    proposer_stride: int = 1
    tracker: Literal["mask_iou", "sam2"] = "mask_iou"
    propagator: dict[str, Any] = field(default_factory=dict)
    fg_threshold: float | None = None
    allow_random_weights: bool = False
    backend: str = "torch"
    onnx_dir: str | None = None
    engine_dir: str | None = None
    provider: str = "cpu"
    motion_decision: str = "head"
    flow_motion_weights: str = ""


def load_frame_model(settings: RuntimeSettings) -> FrameModel:
    """Build and load the model the settings describe, on the settings' backend.

    Every network variant gives a `gmos_core.backends.BackendFrameModel`; the backend is
    checked first (`gmos_core.deploy.plan_backend`) and never swapped for another. The
    weight-free baseline variants (`gmos_core.baseline_model`) run no network.

    Raises:
        ModelSetupError: no weights, wrong variant, a device this torch cannot use (checked
            first, so the message says so instead of a CUDA assertion), or the backend
            refused (message says why).
    """
    # deploy, torch and models.build load torch: imported here so that gmos_core.streaming
    # (and the weight-free baseline variants) import without it. deploy also imports this
    # module, so at the top it would be an import cycle.
    from gmos_core.deploy import BackendRefused, load_backend_frame_model, plan_backend

    try:
        check_device(settings.device)
    except DeviceUnavailableError as exc:
        raise ModelSetupError(str(exc)) from None
    settings = resolve_motion_decision(settings)
    _check_decision(settings)
    if settings.variant in BASELINE_VARIANTS:
        if settings.tracker != "mask_iou":
            raise ModelSetupError(
                f"variant {settings.variant} has no SAM2 features: use tracker mask_iou"
            )
        if settings.backend != "torch":
            raise ModelSetupError(
                f"variant {settings.variant} runs no network (numpy/OpenCV): backend "
                f"{settings.backend!r} does not apply, leave backend at 'torch'"
            )
        model = BaselineFrameModel(settings.variant)
        try:
            model.set_precision(settings.precision)
        except ValueError as exc:
            raise ModelSetupError(str(exc)) from exc
        return model  # type: ignore[return-value]
    if settings.variant not in ("gmos_s", "gmos_online"):
        raise ModelSetupError(
            "variant must be gmos_s, gmos_online, ego_residual or frame_diff, got "
            f"{settings.variant!r}"
        )
    if settings.precision != "fp32" and settings.tracker == "sam2":
        raise ModelSetupError(
            f"precision {settings.precision!r} with tracker 'sam2': the SAM2 tracker needs "
            "fp32 features; use tracker mask_iou or precision fp32"
        )
    try:
        plan = plan_backend(settings)
        if plan.backend != "torch":
            import torch

            # onnxruntime's CPU threads follow torch's (the node's torch_threads sets both).
            model = load_backend_frame_model(plan, threads=torch.get_num_threads())
            return _with_decision_point(model, settings)
    except BackendRefused as exc:
        raise ModelSetupError(str(exc)) from exc
    modules = _load_torch_model(settings)
    try:
        model = modules.frame_model(
            device=settings.device,
            precision=settings.precision,
            keep_sam2_backbone=settings.tracker == "sam2",
        )
    except ValueError as exc:
        raise ModelSetupError(str(exc)) from exc
    return _with_decision_point(model, settings)


def resolve_motion_decision(settings: RuntimeSettings) -> RuntimeSettings:
    """`settings` with ``motion_decision: auto`` replaced by a decision (others unchanged).

    ``auto`` is ``flow_motion`` for the shipped micro Gmos online (`DEFAULT_BUNDLES`): its
    motion head tells moving from static objects at chance, and with the flow motion net it
    beats both baselines on the held-out split (README; docs/training.md, session 14). Every
    other model (official checkpoints, a bundle of one's own, Gmos-S, the baselines) gets
    ``head``, the paper's decision: a bundle trained elsewhere says nothing about its head.
    """
    if settings.motion_decision != AUTO:
        return settings
    shipped = DEFAULT_BUNDLES["gmos_online"]
    path = _bundle_path(settings) if settings.variant == "gmos_online" else None
    own = path is not None and path.resolve() == shipped.resolve()
    return dataclasses.replace(settings, motion_decision="flow_motion" if own else "head")


def _check_decision(settings: RuntimeSettings) -> None:
    if settings.motion_decision not in MOTION_DECISIONS:
        raise ModelSetupError(
            f"motion_decision must be one of {MOTION_DECISIONS}, got {settings.motion_decision!r}"
        )
    if settings.motion_decision != "head" and settings.variant != "gmos_online":
        raise ModelSetupError(
            f"motion_decision {settings.motion_decision!r} decides which proposals move: "
            f"variant gmos_online only (got {settings.variant})"
        )


def _bundle_path(settings: RuntimeSettings) -> Path | None:
    """The bundle the settings load (given, or the shipped default when no official
    checkpoint is named), None for official checkpoints or random weights."""
    if settings.bundle:
        return Path(settings.bundle)
    official = (settings.pi3_checkpoint, settings.sam2_checkpoint, settings.head_checkpoint)
    default = DEFAULT_BUNDLES.get(settings.variant)
    return default if not any(official) and default is not None and default.is_file() else None


def _with_decision_point(model: FrameModel, settings: RuntimeSettings) -> FrameModel:
    """`model` at the operating point of the settings' motion decision (the head's: as loaded).

    A bundle never calibrated with the decision keeps its head's mask and IoU thresholds with
    the decision's neutral motion threshold (0.5, `RESIDUAL_AT_HALF` grey levels), logged."""
    if settings.motion_decision == "head":
        return model
    from gmos_core.bundle import read_bundle_info  # loads torch, as the model did

    path = _bundle_path(settings)
    point = read_bundle_info(path).point_for(settings.motion_decision) if path else None
    if point is None:
        head = getattr(model, "operating_point", None) or OperatingPoint()
        point = dataclasses.replace(
            head,
            motion_threshold=0.5,
            source=f"{head.source}; motion_threshold 0.5 ({settings.motion_decision} not calibrated)",
        )
        log.warning(
            "%s has no calibrated %s operating point (gmos-calibrate --decision %s): the "
            "head's thresholds with motion_threshold 0.5",
            path or "the model",
            settings.motion_decision,
            settings.motion_decision,
        )
    model.operating_point = point  # type: ignore[attr-defined]
    return model


def _load_torch_model(settings: RuntimeSettings) -> Any:
    """The `GmosTorchModel` (torch modules) the settings name."""
    # Loads torch: imported here for the reason given in load_frame_model.
    from gmos_core.models.build import build_frame_model, build_frame_model_from_bundle

    head_variant = "gmos_s" if settings.variant == "gmos_s" else "gmos"
    official = (settings.pi3_checkpoint, settings.sam2_checkpoint, settings.head_checkpoint)
    if settings.bundle:
        model = build_frame_model_from_bundle(settings.bundle, device=settings.device)
        if model.mode != head_variant:
            raise ModelSetupError(
                f"bundle {settings.bundle} holds a {model.mode} model but variant is "
                f"{settings.variant}"
            )
        return model
    if any(official):
        return build_frame_model(
            settings.model_config,
            head_variant,
            device=settings.device,
            pi3_checkpoint=settings.pi3_checkpoint,
            sam2_checkpoint=settings.sam2_checkpoint,
            head_checkpoint=settings.head_checkpoint,
        )
    default = DEFAULT_BUNDLES[settings.variant]
    if default.is_file():
        return build_frame_model_from_bundle(default, device=settings.device)
    if settings.allow_random_weights:
        return build_frame_model(settings.model_config, head_variant, device=settings.device)
    raise ModelSetupError(
        f"no weights for {settings.variant}: give a bundle or official checkpoints "
        f"(the shipped default {default} is missing); allow_random_weights=True builds an "
        "untrained model for timing only"
    )


def build_segmenter(
    settings: RuntimeSettings,
    model: FrameModel | None = None,
    offline: bool = False,
    second_pass: bool = True,
    spill_dir: str | None = None,
    motion_decision: MotionDecision | None = None,
) -> StreamingSegmenter:
    """A stream's segmenter; pass `model` to share one loaded model between streams, and
    `motion_decision` to share one decision object (else the settings' is built: for
    "flow_motion" that loads its net).

    `offline=True` keeps the per-frame proposals (on disk, under `spill_dir` or `$TMPDIR`)
    so that the anchored second pass can run at the end of a clip
    (`segmenter.tracking.iter_offline_results()`); never for live streams.
    `second_pass=False` runs the same online pass as `offline=True` but keeps nothing.
    """
    settings = resolve_motion_decision(settings)
    _check_decision(settings)
    if motion_decision is not None and settings.motion_decision == "head":
        raise ValueError("a motion_decision object was given, but the settings' decision is 'head'")
    model = model if model is not None else load_frame_model(settings)
    # The model's operating point (calibrated on a validation split and stored in its bundle,
    # else the paper's thresholds); explicit settings win.
    op = getattr(model, "operating_point", None) or OperatingPoint()
    if settings.variant == "gmos_s":
        return StreamingSegmenter(
            model,
            "gmos_s",
            span_s=settings.span_s,
            proposer_stride=settings.proposer_stride,
            fg_threshold=op.fg_threshold
            if settings.fg_threshold is None
            else settings.fg_threshold,
        )
    settings = dataclasses.replace(
        settings, propagator={**op.propagator_overrides(), **settings.propagator}
    )
    return StreamingSegmenter(
        model,
        "gmos",
        tracking=PropagatorTracking(
            settings,
            offline=offline,
            sam_model=getattr(model, "sam_model", None),
            second_pass=second_pass,
            spill_dir=spill_dir,
        ),
        span_s=settings.span_s,
        proposer_stride=settings.proposer_stride,
        motion_decision=motion_decision
        if motion_decision is not None
        else build_motion_decision(settings),
    )


def build_motion_decision(settings: RuntimeSettings) -> MotionDecision | None:
    """The settings' motion decision object (None: the model's head decides).

    Raises:
        ModelSetupError: the flow motion net's weights are missing or not a flow motion net.
    """
    settings = resolve_motion_decision(settings)
    if settings.motion_decision == "depth_warp":
        return WarpMotionDecision()
    if settings.motion_decision == "flow_motion":
        import torch

        from gmos_core.models.flow_decision import (  # loads torch, as the model did
            DEFAULT_FLOW_MOTION_WEIGHTS,
            FlowMotionDecision,
        )

        try:
            # torch's CPU thread budget (the node's torch_threads, --threads): the evidence is
            # computed before the model runs, never beside it.
            return FlowMotionDecision(
                weights=settings.flow_motion_weights or DEFAULT_FLOW_MOTION_WEIGHTS,
                threads=torch.get_num_threads(),
            )
        except (FileNotFoundError, ValueError) as exc:
            raise ModelSetupError(str(exc)) from exc
    return None
