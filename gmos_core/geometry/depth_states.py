"""Metric 3-D object states from an aligned depth image (one camera, result after result).

What the node runs for a camera with a depth topic, and what ``gmos-bag eval`` runs on a bag with
one, so both give the same states: the depth is back-projected with the intrinsics, each object is
measured under its mask (:func:`~gmos_core.geometry.objects.measure_object`, metres), the camera's
motion comes from :class:`~gmos_core.geometry.visual_odometry.DepthVisualOdometry` on the pixels
that are not moving objects (when the RGB frame is given; or a motion known elsewhere:
odometry, a renderer's truth), and :class:`~gmos_core.geometry.objects.ObjectStateEstimator`
turns positions into velocities with that motion removed. ``training.bench_geometry`` runs it
too, with the true motion or the depth odometry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from gmos_core.geometry.camera import PinholeIntrinsics, backproject_depth
from gmos_core.geometry.ego_motion import EgoMotion
from gmos_core.geometry.objects import (
    ObjectMeasurement,
    ObjectState,
    ObjectStateEstimator,
    measure_object,
)
from gmos_core.geometry.visual_odometry import DepthVisualOdometry

__all__ = ["DepthObjectStates", "DepthStatesUpdate"]


@dataclass(frozen=True)
class DepthStatesUpdate:
    """What one result gave: states (metric, id order) and the ego-motion (None: unknown)."""

    states: list[ObjectState]
    ego: EgoMotion | None


class DepthObjectStates:
    """One camera's metric object states and depth odometry.

    Args:
        min_points: fewest valid depth points under a mask for a position.
        velocity_window_s: time span of the velocity fit.
        max_gap_s: longest gap between two measurements of an object that keeps its track.
    """

    def __init__(
        self, min_points: int = 20, velocity_window_s: float = 0.5, max_gap_s: float = 1.0
    ) -> None:
        self.min_points = min_points
        self.estimator = ObjectStateEstimator(max_gap_s=max_gap_s, window_s=velocity_window_s)
        self.vo: DepthVisualOdometry | None = None

    def reset(self) -> None:
        """Forget the tracks and the odometry's previous frame."""
        self.estimator.reset()
        self.vo = None

    def update(
        self,
        stamp_ns: int,
        depth_m: np.ndarray,
        intrinsics: PinholeIntrinsics,
        instance_ids: np.ndarray,
        object_ids: Iterable[int],
        dynamic: np.ndarray,
        frame_rgb: np.ndarray | None,
        known_ego: EgoMotion | None = None,
    ) -> DepthStatesUpdate:
        """Add one result.

        Args:
            stamp_ns: the result's frame stamp.
            depth_m: (H, W) float32 metres, NaN = no depth (`decode_depth`), aligned with the masks.
            intrinsics: pinhole intrinsics of that (H, W) image.
            instance_ids: (H, W) integer instance map.
            object_ids: ids to measure.
            dynamic: (H, W) bool, pixels of moving objects (kept out of the odometry).
            frame_rgb: (H, W, 3) uint8 frame for the odometry, or None (no ego-motion: velocities
                need one, so they are not given).
            known_ego: the camera's motion from the previous update when it is known elsewhere
                (metric odometry, a renderer's truth): used as is, and the depth odometry is
                not run (give ``frame_rgb`` None).
        """
        points = backproject_depth(depth_m, intrinsics)
        meas: dict[int, ObjectMeasurement] = {}
        for oid in object_ids:
            m = measure_object(instance_ids == oid, points, True, min_points=self.min_points)
            if m is not None:
                meas[int(oid)] = m
        ego = known_ego
        if ego is None and frame_rgb is not None and frame_rgb.shape[:2] == instance_ids.shape:
            if self.vo is None or self.vo.intrinsics != intrinsics:
                self.vo = DepthVisualOdometry(intrinsics)
            ego = self.vo.step(frame_rgb, depth_m, dynamic, stamp_ns)
        return DepthStatesUpdate(self.estimator.update(stamp_ns, meas, ego), ego)
