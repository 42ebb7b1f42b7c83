"""Up-to-scale 3-D object states from the π³ heads of each window (no depth image needed).

π³ gives every window a point map per frame and a camera pose per frame, in **one unknown
scale per window** (:class:`~gmos_core.models.prediction.WindowGeometry`). Per camera, result
after result, :class:`Pi3ObjectStates`:

1. chains the scales: the velocity tracks hold positions in the previous window's units; they
   are carried into this window's units by the median ratio of the two windows' depths on a
   frame both windows contain (this result's frame when the previous window holds it). With no
   shared frame, or too few confident pixels, the tracks restart (no velocity this frame);
2. takes the ego-motion between the previous result's frame and this one from this window's
   camera poses (both frames are in the window at the usual frame rates; else no ego-motion and
   the tracks restart);
3. measures each object under its mask on this frame's confident point map, resized (nearest)
   to the mask size (:func:`~gmos_core.geometry.objects.measure_object`, ``metric=False``).

So positions, extents and velocities are in the units of the **current** window's point map
(velocities: those units per second). They can be compared within a stream, never with metres:
the scale of π³ drifts from window to window and is chained only approximately.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from gmos_core.geometry.ego_motion import EgoMotion, median_scale_ratio
from gmos_core.geometry.objects import ObjectState, ObjectStateEstimator, measure_object
from gmos_core.geometry.pi3_adapter import confident_points, pi3_ego_motion
from gmos_core.models.prediction import WindowGeometry

__all__ = ["Pi3ObjectStates", "Pi3StatesUpdate"]


@dataclass(frozen=True)
class Pi3StatesUpdate:
    """What one result gave.

    Attributes:
        states: one :class:`ObjectState` per object with enough confident points (``metric``
            False), in id order.
        ego: camera motion from the previous result's frame, in this window's units; None when
            the window does not hold that frame (or on the first result).
        scale_ratio: this window's units per previous window's unit (NaN when not chained: the
            first result, no shared frame, too few confident pixels).
    """

    states: list[ObjectState]
    ego: EgoMotion | None
    scale_ratio: float


class Pi3ObjectStates:
    """One camera's up-to-scale object states from successive π³ windows (module docstring).

    Args:
        min_points: fewest confident points under a mask for a position.
        velocity_window_s: time span of the velocity fit (:class:`ObjectStateEstimator`).
        max_gap_s: longest gap between two measurements of an object that keeps its track.
        min_conf: pixels with ``sigmoid(conf) < min_conf`` are not used.
        min_scale_pixels: fewest pixels confident in both windows for a scale ratio.
    """

    def __init__(
        self,
        min_points: int = 20,
        velocity_window_s: float = 0.5,
        max_gap_s: float = 1.0,
        min_conf: float = 0.1,
        min_scale_pixels: int = 50,
    ) -> None:
        self.min_points = min_points
        self.min_conf = min_conf
        self.min_scale_pixels = min_scale_pixels
        self.estimator = ObjectStateEstimator(max_gap_s=max_gap_s, window_s=velocity_window_s)
        self._last_stamp_ns: int | None = None
        # The previous window's confident depth (z) per frame stamp, for the scale ratio.
        self._prev_depth: dict[int, np.ndarray] = {}

    def reset(self) -> None:
        """Forget the tracks and the previous window (stream reset)."""
        self.estimator.reset()
        self._last_stamp_ns = None
        self._prev_depth = {}

    def update(
        self,
        stamp_ns: int,
        geometry: WindowGeometry,
        instance_ids: np.ndarray,
        object_ids: Iterable[int],
    ) -> Pi3StatesUpdate:
        """Add one result.

        Args:
            stamp_ns: the result's frame stamp (must be the window's centre frame).
            geometry: its window's π³ outputs, with stamps.
            instance_ids: (H, W) integer instance map of the result (any size; the point map is
                resized to it).
            object_ids: ids to measure (those published).

        Raises:
            ValueError: the geometry's centre frame is not ``stamp_ns``, or shapes disagree.
        """
        g = geometry
        n = g.num_frames
        if g.conf.shape != g.local_points.shape[:3] or g.camera_poses.shape != (n, 4, 4):
            raise ValueError(
                f"window geometry shapes disagree: points {g.local_points.shape}, conf "
                f"{g.conf.shape}, poses {g.camera_poses.shape}"
            )
        if len(g.stamps_ns) != n or not 0 <= g.center < n or g.stamps_ns[g.center] != stamp_ns:
            raise ValueError(
                f"window geometry (stamps {g.stamps_ns}, centre {g.center}) is not that of the "
                f"frame {stamp_ns}"
            )
        if self._last_stamp_ns is not None and stamp_ns <= self._last_stamp_ns:
            self.reset()
        depth = {}
        for i, s in enumerate(g.stamps_ns):
            if s not in depth:
                depth[s] = confident_points(g.local_points[i], g.conf[i], self.min_conf)[..., 2]
        ratio = self._scale_ratio(stamp_ns, depth)
        if np.isfinite(ratio):
            self.estimator.rescale(ratio)
        else:
            self.estimator.reset()  # the tracks' units cannot be carried over
        ego = None
        prev = self._last_stamp_ns
        if prev is not None:
            i_prev = g.index_of(prev)
            if i_prev is not None:
                ego = pi3_ego_motion(g.camera_poses, i_prev, g.center, (stamp_ns - prev) * 1e-9)
        points = confident_points(g.local_points[g.center], g.conf[g.center], self.min_conf)
        hw = instance_ids.shape[:2]
        if points.shape[:2] != hw:
            points = cv2.resize(points, (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST)
        meas = {}
        for oid in object_ids:
            m = measure_object(instance_ids == oid, points, False, min_points=self.min_points)
            if m is not None:
                meas[int(oid)] = m
        states = self.estimator.update(stamp_ns, meas, ego)
        self._last_stamp_ns = stamp_ns
        self._prev_depth = depth
        return Pi3StatesUpdate(states, ego, ratio)

    def _scale_ratio(self, stamp_ns: int, depth: dict[int, np.ndarray]) -> float:
        """Median current/previous depth on the shared frame nearest this one (NaN: none)."""
        shared = sorted(set(depth) & set(self._prev_depth), key=lambda s: abs(s - stamp_ns))
        for s in shared:
            ratio = median_scale_ratio(depth[s], self._prev_depth[s], self.min_scale_pixels)
            if np.isfinite(ratio):
                return ratio
        return float("nan")
