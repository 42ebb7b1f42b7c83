"""Frame-by-frame runtime: `StreamingSegmenter.step(frame, stamp_ns) -> list[FrameResult]`.

A frame's window spans ~`span_s` seconds centred on it (5 frames, chosen by timestamp so
variable frame rates work), so its result can only be computed once a frame at least
`span_s / 2` later has arrived: the latency is that half-window look-ahead plus compute.
`step` therefore returns the results that became ready (none, one, or several), each stamped
with the frame it describes; `flush()` finishes the stream (windows clamped at the end, as the
official offline pipeline clamps at both ends).

Per-frame features (π³'s per-frame DINOv2 tokens and the SAM2 features) are computed at most
once per frame and cached with the frame in the ring buffer, so each frame is encoded once
although it belongs to five windows. The buffer holds only the frames a pending window can
still use, so memory stays flat over arbitrarily long streams.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from gmos_core.errors import GmosError
from gmos_core.models.prediction import (
    ForegroundPrediction,
    ProposalPrediction,
    WindowGeometry,
)
from gmos_core.streaming.types import FrameResult, objects_from_ids

if TYPE_CHECKING:
    from gmos_core.geometry.warp_decision import SensorFrame
    from gmos_core.motion_decision import MotionDecision
    from gmos_core.propagation.types import PropagationFrame

log = logging.getLogger(__name__)


class FrameModel(Protocol):
    """What the runtime needs from a model bundle (torch, onnxruntime or TensorRT backed)."""

    def geometry_features(self, frame_rgb: np.ndarray) -> Any:
        """Per-frame, cacheable part of the geometric encoder for an (H, W, 3) uint8 frame."""
        ...

    def segmentation_features(self, frame_rgb: np.ndarray) -> Any:
        """Per-frame SAM2 image features (also what a SAM2 tracker reuses)."""
        ...

    def predict(
        self, geometry: Sequence[Any], segmentation: Any, out_hw: tuple[int, int]
    ) -> ForegroundPrediction | ProposalPrediction:
        """Run the window decoder and the head for the middle frame of `geometry`."""
        ...


# Optional on a FrameModel (`BackendFrameModel` has both): ``window_geometry`` (bool, whether
# the model runs the π³ heads) and ``predict_with_geometry(geometry, segmentation, out_hw) ->
# (prediction, WindowGeometry)``, the same prediction plus the heads' outputs from ONE decoder
# pass. A model without them (baselines, stand-ins, exported graphs) gives results without
# geometry, at the cost it always had.


class OnlineTracking(Protocol):
    """The causal propagator as the runtime drives it (`gmos_core.streaming.tracking.PropagatorTracking`
    over `gmos_core.propagation.OnlinePropagator`)."""

    def reset(self) -> None: ...

    def step(
        self,
        frame_index: int,
        proposals: ProposalPrediction | None,
        tracker_input: Any,
        out_hw: tuple[int, int],
    ) -> PropagationFrame:
        """One propagator step; `proposals=None` (proposer stride): the tracker alone carries
        the objects, which keep their last motion states. The frame's `full_instance_map`
        and `visible_states()` become the `FrameResult`."""
        ...


class StreamError(GmosError, ValueError):
    """A frame the stream cannot take; the stream state is unchanged.

    `kind`: "duplicate_stamp" (a stamp already in the buffer), "bad_frame" (not an
    (H, W, 3) uint8 array) or "bad_sensor" (a `SensorFrame` of another size than its frame);
    callers count by kind, not by the message.
    """

    default_kind = "bad_frame"


@dataclass
class _Entry:
    stamp_ns: int
    index: int
    frame: np.ndarray
    geometry: Any = None
    segmentation: Any = None
    sensor: SensorFrame | None = None
    decision_grey: np.ndarray | None = None  # the motion decision's image, once per frame


@dataclass
class StreamStats:
    """Counters a node reports in its diagnostics."""

    frames_in: int = 0
    results_out: int = 0
    resets: int = 0
    rejected: int = 0
    geometry_encodes: int = 0
    segmentation_encodes: int = 0
    proposer_runs: int = 0
    # Frames where the motion decision had no sensor data (centre or every neighbour without
    # a `SensorFrame`): the tracker alone carried the objects, as on a proposer-stride frame.
    decisions_without_sensor: int = 0


class StreamingSegmenter:
    """Online Gmos / Gmos-S over a live stream of frames.

    Args:
        model: the model bundle (see `FrameModel`).
        mode: "gmos_s" (one foreground mask per frame, no propagator) or "gmos" (proposer +
            online propagator).
        tracking: the online propagator (required for mode "gmos").
        span_s: time span of the 5-frame window in seconds (official: ~0.5 s).
        num_frames: frames per window (odd; official 5).
        proposer_stride: run the window decoder + proposer on every k-th frame only; the
            tracker alone carries the objects and their last motion state in between (mode
            "gmos"). For "gmos_s", frames in between reuse the last foreground mask.
        fg_threshold: Gmos-S foreground probability threshold (official 0.5).
        max_buffer: hard cap on buffered frames (guards absurd frame rates); beyond it the
            oldest pending frame is processed early with the frames at hand.
        motion_decision: mode "gmos": None (the motion head decides which proposals move) or
            a `MotionDecision` (`gmos_core.motion_decision`: the warp residual of the window's
            `SensorFrame`s, given with each frame to `step`, or the flow motion net) decides
            from its evidence map; the head's masks are kept. A frame whose window gives no
            evidence is carried by the tracker.
    """

    def __init__(
        self,
        model: FrameModel,
        mode: Literal["gmos_s", "gmos"],
        tracking: OnlineTracking | None = None,
        span_s: float = 0.5,
        num_frames: int = 5,
        proposer_stride: int = 1,
        fg_threshold: float = 0.5,
        max_buffer: int = 256,
        motion_decision: MotionDecision | None = None,
    ) -> None:
        if mode not in ("gmos_s", "gmos"):
            raise ValueError(f"mode must be 'gmos_s' or 'gmos', got {mode!r}")
        if motion_decision is not None and mode != "gmos":
            raise ValueError("a motion decision replaces proposals' motion: mode 'gmos' only")
        if mode == "gmos" and tracking is None:
            raise ValueError("mode 'gmos' needs an online propagator (tracking=...)")
        if num_frames < 1 or num_frames % 2 == 0:
            raise ValueError(f"num_frames must be odd and >= 1, got {num_frames}")
        if span_s < 0:
            raise ValueError(f"span_s must be >= 0, got {span_s}")
        if proposer_stride < 1:
            raise ValueError(f"proposer_stride must be >= 1, got {proposer_stride}")
        self.model = model
        self.mode = mode
        self.tracking = tracking
        self.span_ns = int(round(span_s * 1e9))
        self.num_frames = num_frames
        self.proposer_stride = proposer_stride
        self.fg_threshold = fg_threshold
        self.max_buffer = max_buffer
        self.motion_decision = motion_decision
        self.stats = StreamStats()
        self._window_geometry = bool(getattr(model, "window_geometry", False))
        self._buf: deque[_Entry] = deque()
        self._pending: deque[_Entry] = deque()
        self._next_index = 0
        self._shape: tuple[int, int] | None = None
        self._last_stamp: int | None = None
        self._last_fg: ForegroundPrediction | None = None

    # ------------------------------------------------------------------ public API
    @property
    def window_geometry(self) -> bool:
        """Whether results carry the π³ heads' `WindowGeometry` (frames where the window
        decoder ran). On by default when the model runs the heads; a caller that does not use
        it (a camera with a depth image) turns it off and pays nothing for the heads."""
        return self._window_geometry

    @window_geometry.setter
    def window_geometry(self, on: bool) -> None:
        if on and not getattr(self.model, "window_geometry", False):
            raise ValueError("the model does not run the π³ heads (window_geometry is False)")
        self._window_geometry = bool(on)

    @property
    def latency_ns(self) -> int:
        """Look-ahead a result waits for (half the window span), compute not included."""
        return self.span_ns // 2

    @property
    def buffered(self) -> int:
        """Frames currently held (bounded: about span x fps + 1)."""
        return len(self._buf)

    def step(
        self, frame_rgb: np.ndarray, stamp_ns: int, sensor: SensorFrame | None = None
    ) -> list[FrameResult]:
        """Add one frame; return the results that became ready, in stamp order.

        Args:
            frame_rgb: (H, W, 3) uint8 RGB frame.
            stamp_ns: its capture stamp in nanoseconds.
            sensor: the frame's depth and camera pose (`SensorFrame`, same size as the frame)
                for a `motion_decision`; ignored without one.

        A stamp that goes backwards (bag loop, clock reset) or a change of resolution first
        finishes the frames already received (each result keeps its own stamp), then
        restarts the stream state. A repeated stamp is rejected (`StreamError`).
        """
        frame = self._check_frame(frame_rgb)
        if sensor is not None and sensor.size != frame.shape[:2]:
            self.stats.rejected += 1
            raise StreamError(
                f"sensor data is {sensor.size[1]}x{sensor.size[0]}, the frame "
                f"{frame.shape[1]}x{frame.shape[0]}: frame ignored (align the depth first)",
                kind="bad_sensor",
            )
        stamp_ns = int(stamp_ns)
        out: list[FrameResult] = []
        if self._last_stamp is not None:
            if stamp_ns == self._last_stamp:
                self.stats.rejected += 1
                raise StreamError(
                    f"duplicate stamp {stamp_ns} ns: frame ignored", kind="duplicate_stamp"
                )
            if stamp_ns < self._last_stamp or frame.shape[:2] != self._shape:
                why = "stamp went backwards" if stamp_ns < self._last_stamp else "resolution"
                log.info("stream reset (%s)", why)
                out.extend(self.flush())
                self.reset()
                self.stats.resets += 1
        self._shape = frame.shape[:2]
        self._last_stamp = stamp_ns
        entry = _Entry(stamp_ns=stamp_ns, index=self._next_index, frame=frame, sensor=sensor)
        self._next_index += 1
        self._buf.append(entry)
        self._pending.append(entry)
        self.stats.frames_in += 1
        while self._pending and (self._ready(self._pending[0]) or len(self._buf) > self.max_buffer):
            out.append(self._process(self._pending.popleft()))
            self._evict()
        return out

    def flush(self) -> list[FrameResult]:
        """Finish every pending frame with the frames at hand (end of stream)."""
        out = []
        while self._pending:
            out.append(self._process(self._pending.popleft()))
            self._evict()
        return out

    def reset(self) -> None:
        """Forget all frames and tracks (pending frames are dropped: call flush() first)."""
        self._buf.clear()
        self._pending.clear()
        self._next_index = 0
        self._shape = None
        self._last_stamp = None
        self._last_fg = None
        if self.tracking is not None:
            self.tracking.reset()

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _check_frame(frame: np.ndarray) -> np.ndarray:
        if not isinstance(frame, np.ndarray):
            raise StreamError(f"frame must be a numpy array, got {type(frame).__name__}")
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise StreamError(f"frame must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}")
        if frame.shape[0] == 0 or frame.shape[1] == 0:
            raise StreamError(f"frame has zero size {frame.shape}")
        return frame

    def _targets(self, center: _Entry) -> list[int]:
        half = self.num_frames // 2
        step = self.span_ns / max(1, self.num_frames - 1)
        return [center.stamp_ns + int(round((k - half) * step)) for k in range(self.num_frames)]

    def _ready(self, center: _Entry) -> bool:
        # Once a frame at or after the last target has arrived, the nearest frame to every
        # target is decided: any later frame would be farther away.
        return self._buf[-1].stamp_ns >= self._targets(center)[-1]

    def _nearest(self, target: int, center_ns: int) -> _Entry:
        # Buffers are short (span x fps), a linear scan is cheaper than bisect bookkeeping.
        # Ties go to the frame nearer the centre (as `preprocess.window_by_time`); targets
        # outside the buffer clamp to its ends, the replicate padding of the official window.
        return min(self._buf, key=lambda e: (abs(e.stamp_ns - target), abs(e.stamp_ns - center_ns)))

    def _window(self, center: _Entry) -> list[_Entry]:
        return [self._nearest(t, center.stamp_ns) for t in self._targets(center)]

    def window(self, center_stamp_ns: int) -> list[int]:
        """Stamps of the frames the window of a buffered frame would use (for tests/tools)."""
        entry = next(e for e in self._buf if e.stamp_ns == center_stamp_ns)
        return [e.stamp_ns for e in self._window(entry)]

    def _geometry(self, e: _Entry) -> Any:
        if e.geometry is None:
            e.geometry = self.model.geometry_features(e.frame)
            self.stats.geometry_encodes += 1
        return e.geometry

    def _segmentation(self, e: _Entry) -> Any:
        if e.segmentation is None:
            e.segmentation = self.model.segmentation_features(e.frame)
            self.stats.segmentation_encodes += 1
        return e.segmentation

    def _predict(
        self, center: _Entry, segmentation: Any, hw: tuple[int, int]
    ) -> tuple[Any, WindowGeometry | None]:
        """The model on the centre's window; with `window_geometry`, the heads' outputs too."""
        window = self._window(center)
        feats = [self._geometry(e) for e in window]
        if not self._window_geometry:
            return self.model.predict(feats, segmentation, hw), None
        pred, geom = self.model.predict_with_geometry(feats, segmentation, hw)  # type: ignore[attr-defined]
        stamps = tuple(e.stamp_ns for e in window)
        return pred, replace(geom, stamps_ns=stamps, center=len(window) // 2)

    def _process(self, center: _Entry) -> FrameResult:
        hw = center.frame.shape[:2]
        run_head = center.index % self.proposer_stride == 0
        geom: WindowGeometry | None = None
        if self.mode == "gmos_s":
            if run_head or self._last_fg is None:
                pred, geom = self._predict(center, self._segmentation(center), hw)
                if not isinstance(pred, ForegroundPrediction):
                    raise TypeError("mode 'gmos_s' needs a model that returns foreground")
                self.stats.proposer_runs += 1
                self._last_fg = pred
            pred = self._last_fg
            fg = pred.fg_prob > self.fg_threshold
            ids = fg.astype(np.uint16)
            prob = float(pred.fg_prob[fg].mean()) if fg.any() else 0.0
            objects = objects_from_ids(ids, {1: True}, {1: prob}, {1: pred.iou})
            result = FrameResult(center.stamp_ns, center.index, ids, objects, pred.fg_prob, geom)
        else:
            assert self.tracking is not None
            seg = self._segmentation(center)
            evidence = self._decision_evidence(center) if run_head else None
            if run_head and (self.motion_decision is None or evidence is not None):
                pred, geom = self._predict(center, seg, hw)
                if not isinstance(pred, ProposalPrediction):
                    raise TypeError("mode 'gmos' needs a model that returns proposals")
                self.stats.proposer_runs += 1
                if self.motion_decision is not None and evidence is not None:
                    pred = self.motion_decision.decide(pred, evidence)
            else:
                pred = None  # the tracker alone carries the objects this frame
                if run_head:
                    self.stats.decisions_without_sensor += 1
            frame = self.tracking.step(center.index, pred, seg, hw)
            result = FrameResult(
                center.stamp_ns,
                center.index,
                frame.full_instance_map,
                frame.visible_states(),
                None,
                geom,
            )
        self.stats.results_out += 1
        return result

    def _decision_evidence(self, center: _Entry) -> np.ndarray | None:
        """The motion decision's evidence map for `center` (None: no decision, or no data)."""
        if self.motion_decision is None:
            return None
        window = self._window(center)
        for e in window:
            if e.decision_grey is None:
                e.decision_grey = self.motion_decision.grey(e.frame)
        return self.motion_decision.evidence(
            [e.decision_grey for e in window], [e.sensor for e in window], len(window) // 2
        )

    def _evict(self) -> None:
        """Drop frames no pending window can select any more."""
        if not self._pending:
            # Keep the last frame: it can still be the nearest neighbour of the next target.
            while len(self._buf) > 1:
                self._buf.popleft()
            return
        first_target = self._targets(self._pending[0])[0]
        # Keep the last frame at or before the first target (it may be the nearest one).
        while len(self._buf) >= 2 and self._buf[1].stamp_ns <= first_target:
            self._buf.popleft()
