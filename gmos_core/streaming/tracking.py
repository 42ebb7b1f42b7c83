"""The online propagator behind the streaming runtime's `OnlineTracking` interface.

`PropagatorTracking` is the adapter between `gmos_core.streaming` (one frame in, one
`FrameResult` out) and `gmos_core.propagation` (proposals -> tracked objects); the propagator
itself knows nothing of streams.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from gmos_core.errors import ModelSetupError
from gmos_core.models.prediction import ProposalPrediction
from gmos_core.propagation import (
    FrameProposals,
    MaskIoUTracker,
    OnlinePropagator,
    PropagationFrame,
    PropagatorConfig,
    Sam2Tracker,
    iter_offline_propagate,
)
from gmos_core.propagation.spill import SpilledHistory, SpilledProposals, SpillFolder

if TYPE_CHECKING:
    from gmos_core.streaming.build import RuntimeSettings

# Frames a live track may stay empty before its id and tracker slot are released.
LIVE_RELEASE_LOST_AFTER = 30


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

        if self.tracker_kind == "sam2":
            # SAM2's memory modules of the same model whose image features the proposer
            # uses: the tracker consumes the cached `backbone_out`, never re-encodes a frame.
            return Sam2Tracker(self.sam_model, video_size=out_hw)
        return self._mask_iou_tracker()

    def _mask_iou_tracker(self) -> MaskIoUTracker:
        """The weight-free tracker at this stream's settings (also the offline pass's factory)."""
        return MaskIoUTracker(snap_iou=self.config.snap_iou, use_velocity=self.config.use_velocity)

    def _get(self, out_hw: tuple[int, int]) -> Any:
        """The propagator, built on the first frame (SAM2 needs the video size)."""

        if self._propagator is None:
            # The propagator never keeps its history in RAM: the offline pass reads the
            # spilled copy (`_keep`).
            self._propagator = OnlinePropagator(
                self._make_tracker(out_hw), self.config, keep_history=False
            )
        return self._propagator

    def _stores(self) -> tuple[Any, Any]:
        """The on-disk proposal and online-frame stores of the second pass."""

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
                self._mask_iou_tracker,
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
