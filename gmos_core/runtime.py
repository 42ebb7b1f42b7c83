"""Build a ready-to-run `StreamingSegmenter` from plain settings (node, CLIs, benchmarks).

One model can serve several streams (cameras): `load_frame_model` once, then
`build_segmenter(settings, model=shared)` per stream; each stream gets its own buffer and
its own propagator state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from gmos_core.errors import ModelSetupError
from gmos_core.streaming.segmenter import (
    FrameModel,
    ProposalPrediction,
    StreamingSegmenter,
)

if TYPE_CHECKING:
    from gmos_core.propagation import PropagationFrame

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_BUNDLES = {
    "gmos_s": ASSETS / "micro_gmos_s.safetensors",
    "gmos_online": ASSETS / "micro_gmos.safetensors",
}

Variant = Literal["gmos_s", "gmos_online", "ego_residual", "frame_diff"]

# Frames a live track may stay empty before its id and tracker slot are released.
LIVE_RELEASE_LOST_AFTER = 30


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
    from gmos_core.baseline_model import BASELINE_VARIANTS, BaselineFrameModel
    from gmos_core.compute import DeviceUnavailableError, check_device
    from gmos_core.deploy import BackendRefused, load_backend_frame_model, plan_backend

    try:
        check_device(settings.device)
    except DeviceUnavailableError as exc:
        raise ModelSetupError(str(exc)) from None
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
            return load_backend_frame_model(plan, threads=torch.get_num_threads())
    except BackendRefused as exc:
        raise ModelSetupError(str(exc)) from exc
    modules = _load_torch_model(settings)
    try:
        return modules.frame_model(
            device=settings.device,
            precision=settings.precision,
            keep_sam2_backbone=settings.tracker == "sam2",
        )
    except ValueError as exc:
        raise ModelSetupError(str(exc)) from exc


def _load_torch_model(settings: RuntimeSettings) -> Any:
    """The `GmosTorchModel` (torch modules) the settings name."""
    from gmos_core.pipeline import build_frame_model, build_frame_model_from_bundle

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


class PropagatorTracking:
    """Adapts `gmos_core.propagation.OnlinePropagator` to the runtime's `OnlineTracking`.

    The weight-free `MaskIoUTracker` consumes the frame's proposals as its per-frame input.
    For a live stream (`offline=False`) nothing grows with the stream; with `offline=True`
    (offline inference) every frame's proposals and online result are kept so that
    `offline_results()` can run the anchored bidirectional second pass (MOS output). They
    are kept on disk (`gmos_core.propagation.spill`, a private temporary folder under
    `spill_dir`), so memory does not grow with the video; `second_pass=False` keeps nothing
    (online output only, the same online pass as with it).
    """

    def __init__(
        self,
        settings: RuntimeSettings,
        offline: bool = False,
        sam_model: Any = None,
        second_pass: bool = True,
        spill_dir: str | None = None,
    ) -> None:
        from gmos_core.propagation import PropagatorConfig

        if settings.tracker not in ("mask_iou", "sam2"):
            raise ModelSetupError(f"tracker must be 'mask_iou' or 'sam2', got {settings.tracker!r}")
        if settings.tracker == "sam2" and sam_model is None:
            raise ModelSetupError(
                "tracker 'sam2' needs the SAM2 model of the loaded frame model (torch backend)"
            )
        overrides = dict(settings.propagator)
        if not offline:
            # A live stream never ends: without releasing lost tracks the registry fills up
            # with objects that left the view and, at max_objects, nothing new is ever tracked
            # again (measured: after ~400 frames of a scripted stream). The paper and the
            # official code never release (clips are short); offline inference keeps that.
            overrides.setdefault("release_lost_after", LIVE_RELEASE_LOST_AFTER)
        self.config = PropagatorConfig.from_dict(overrides) if overrides else PropagatorConfig()
        self.offline = offline
        self.tracker_kind = settings.tracker
        self.sam_model = sam_model
        self._propagator: Any = None
        self.second_pass = offline and second_pass
        self._spill_dir = spill_dir
        self._spill: Any = None
        self._proposals: Any = None
        self._history: Any = None

    def _make_tracker(self, out_hw: tuple[int, int]) -> Any:
        from gmos_core.propagation import MaskIoUTracker, Sam2Tracker

        if self.tracker_kind == "sam2":
            # SAM2's memory modules of the same model whose image features the proposer
            # uses: the tracker consumes the cached `backbone_out`, never re-encodes a frame.
            return Sam2Tracker(self.sam_model, video_size=out_hw)
        return MaskIoUTracker()

    def _get(self, out_hw: tuple[int, int]) -> Any:
        """The propagator, built on the first frame (SAM2 needs the video size)."""
        from gmos_core.propagation import OnlinePropagator

        if self._propagator is None:
            # The propagator never keeps its history in RAM: the offline pass reads the
            # spilled copy (`_keep`).
            self._propagator = OnlinePropagator(
                self._make_tracker(out_hw), self.config, keep_history=False
            )
        return self._propagator

    def _stores(self) -> tuple[Any, Any]:
        """The on-disk proposal and online-frame stores of the second pass."""
        from gmos_core.propagation.spill import SpilledHistory, SpilledProposals, SpillFolder

        if self._spill is None:
            self._spill = SpillFolder(self._spill_dir)
            self._proposals = SpilledProposals(self._spill.path / "proposals")
            self._history = SpilledHistory(self._spill.path / "online")
        return self._proposals, self._history

    def close(self) -> None:
        """Delete the second pass's files (also done by `reset` and at garbage collection)."""
        if self._spill is not None:
            self._spill.close()
        self._spill = self._proposals = self._history = None

    @property
    def propagator(self) -> Any:
        """The current `OnlinePropagator` (None before the first frame)."""
        return self._propagator

    def _tracker_input(self, props: Any, tracker_input: Any) -> Any:
        if self.tracker_kind == "sam2":
            return getattr(tracker_input, "backbone_out", tracker_input)
        return props  # MaskIoUTracker snaps to the frame's proposals

    def reset(self) -> None:
        # Rebuilt on the next frame: the video size may have changed (SAM2 needs it).
        self._propagator = None
        self.close()

    def step(
        self,
        frame_index: int,
        proposals: ProposalPrediction | None,
        tracker_input: Any,
        out_hw: tuple[int, int],
    ) -> PropagationFrame:
        """One propagator step (`OnlinePropagator.step`); `proposals=None` on a frame without
        proposals (proposer stride): the tracker carries the masks and every object keeps
        its last motion state.

        Returns the propagator's own frame: `full_instance_map` is the published id map and
        `visible_states()` the per-object records (no conversion in between).
        """
        from gmos_core.propagation import FrameProposals

        shape = (int(out_hw[0]), int(out_hw[1]))
        props = (
            None
            if proposals is None
            else FrameProposals(proposals.masks, proposals.motion_prob, proposals.iou)
        )
        p = self._get(props.shape if props is not None else shape)
        frame = p.step(frame_index, props, self._tracker_input(props, tracker_input), out_hw=shape)
        if self.second_pass:
            # The offline pass sees a carried frame's masks as prompt candidates and its
            # (empty) proposals as no motion evidence.
            store, history = self._stores()
            store.append(props if props is not None else FrameProposals.empty(*shape))
            history.append(frame)
        return frame

    def iter_offline_results(self) -> Iterator[np.ndarray]:
        """Second pass over the whole clip, frame by frame: (H, W) uint16 full id maps (MOS).

        Reads the spilled proposals and online frames from disk; memory stays flat in the
        clip length. The files are deleted when the iteration ends.
        """
        from gmos_core.propagation import MaskIoUTracker, iter_offline_propagate

        if not self.second_pass:
            raise ModelSetupError(
                "offline_results needs PropagatorTracking(offline=True, second_pass=True)"
            )
        if self._propagator is None or self._spill is None:
            return
        if self.tracker_kind != "mask_iou":
            raise ModelSetupError("the offline pass is wired for the 'mask_iou' tracker only")
        try:
            for f in iter_offline_propagate(
                self._proposals,
                MaskIoUTracker,
                self.config,
                self._history,
                map_folder=self._spill.path / "offline_maps",
            ):
                yield f.full_instance_map
        finally:
            self.close()

    def offline_results(self) -> list[np.ndarray]:
        """`iter_offline_results` as a list (every frame's map in RAM: short clips only)."""
        return list(self.iter_offline_results())


def build_segmenter(
    settings: RuntimeSettings,
    model: FrameModel | None = None,
    offline: bool = False,
    second_pass: bool = True,
    spill_dir: str | None = None,
) -> StreamingSegmenter:
    """A stream's segmenter; pass `model` to share one loaded model between streams.

    `offline=True` keeps the per-frame proposals (on disk, under `spill_dir` or `$TMPDIR`)
    so that the anchored second pass can run at the end of a clip
    (`segmenter.tracking.iter_offline_results()`); never for live streams.
    `second_pass=False` runs the same online pass as `offline=True` but keeps nothing.
    """
    from gmos_core.operating_point import OperatingPoint

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
    )
