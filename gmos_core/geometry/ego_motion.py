"""The camera's own motion between two frames, and scale alignment of scale-free geometry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.spatial.transform import Rotation

from gmos_core.geometry.camera import invert_transform, relative_pose

__all__ = ["EgoMotion", "EgoSource", "ego_motion_from_poses", "median_scale_ratio"]

# Where an ego-motion came from: the π³ camera head, the robot's TF/odometry, or the renderer's truth.
EgoSource = Literal["pi3", "odometry", "truth"]


@dataclass(frozen=True)
class EgoMotion:
    """Rigid camera motion from the previous frame to the current one.

    Attributes:
        curr_from_prev: (4, 4) float64 transform taking a point expressed in the previous camera
            frame to the current camera frame (a static point p satisfies p_curr = T · p_prev).
        dt_s: time between the two frames, s (> 0).
        metric: translations in metres (True) or in π³ units (False).
        source: see :data:`EgoSource`.
    """

    curr_from_prev: np.ndarray
    dt_s: float
    metric: bool
    source: EgoSource

    def __post_init__(self) -> None:
        t = np.asarray(self.curr_from_prev, dtype=np.float64)
        if t.shape != (4, 4) or not np.isfinite(t).all():
            raise ValueError(f"EgoMotion: curr_from_prev must be a finite 4x4, got {t.shape}")
        if not self.dt_s > 0:
            raise ValueError(f"EgoMotion: dt_s must be > 0, got {self.dt_s}")
        object.__setattr__(self, "curr_from_prev", t)

    @property
    def prev_from_curr(self) -> np.ndarray:
        """(4, 4) pose of the current camera in the previous camera frame (what odometry reports)."""
        return invert_transform(self.curr_from_prev)

    def camera_linear_velocity(self) -> np.ndarray:
        """(3,) camera velocity expressed in the current camera frame, units/s."""
        # The previous camera centre sits at curr_from_prev[:3, 3] in the current frame.
        return -self.curr_from_prev[:3, 3] / self.dt_s

    def camera_angular_velocity(self) -> np.ndarray:
        """(3,) camera angular velocity (rotation vector per second), rad/s.

        The rotation axis is invariant under the rotation, so the vector is the same in the previous
        and the current camera frame.
        """
        rotvec = Rotation.from_matrix(self.prev_from_curr[:3, :3]).as_rotvec()
        return rotvec / self.dt_s


def ego_motion_from_poses(
    cam_to_world_prev: np.ndarray,
    cam_to_world_curr: np.ndarray,
    dt_s: float,
    metric: bool,
    source: EgoSource,
) -> EgoMotion:
    """Ego-motion from two camera-to-world poses in one world frame (π³ window, odometry, truth)."""
    t = relative_pose(cam_to_world_prev, cam_to_world_curr)
    return EgoMotion(t, float(dt_s), metric, source)


def median_scale_ratio(reference: np.ndarray, estimate: np.ndarray, min_pixels: int = 50) -> float:
    """Median of ``reference / estimate`` over pixels where both are finite and > 0.

    Aligns scale-free depth (π³) to metric depth, or one window's π³ scale to the previous one's
    on a frame both windows contain.

    Args:
        reference, estimate: same-shape depth arrays (any units).
        min_pixels: fewer common valid pixels → NaN (no reliable ratio).

    Returns:
        the ratio (float), or NaN.
    """
    if reference.shape != estimate.shape:
        raise ValueError(f"median_scale_ratio: shapes differ {reference.shape} vs {estimate.shape}")
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = np.isfinite(reference) & np.isfinite(estimate) & (reference > 0) & (estimate > 0)
        if int(ok.sum()) < min_pixels:
            return float("nan")
        return float(np.median(reference[ok] / estimate[ok]))
