"""π³ head outputs → the inputs of :mod:`gmos_core.geometry` (up-to-scale point maps, ego-motion).

π³ predicts, for each frame of a window, a camera-frame point map and a camera-to-world pose in one
scale-free window frame (:class:`gmos_core.models.pi3_heads.Pi3Geometry`, converted to numpy).
Everything here keeps that unknown scale (``metric=False``); :func:`align_to_depth` gives it
metres when a depth image exists, and :meth:`ObjectStateEstimator.rescale` carries tracks from one
window's scale to the next (the ratio of their depths on a frame both windows contain,
:func:`~gmos_core.geometry.ego_motion.median_scale_ratio`).
"""

from __future__ import annotations

import numpy as np

from gmos_core.geometry.ego_motion import EgoMotion, ego_motion_from_poses, median_scale_ratio

__all__ = ["align_to_depth", "confident_points", "pi3_ego_motion"]


def confident_points(
    local_points: np.ndarray, conf_logits: np.ndarray, min_conf: float = 0.1
) -> np.ndarray:
    """A frame's π³ point map with low-confidence pixels set to NaN.

    Args:
        local_points: (H, W, 3) camera-frame points (π³ units).
        conf_logits: (H, W) confidence logits of the same frame.
        min_conf: pixels with ``sigmoid(conf) < min_conf`` are dropped (sky, reflections, edges).

    Returns:
        (H, W, 3) float32 points, NaN where not confident.
    """
    if local_points.shape[:2] != conf_logits.shape or local_points.shape[-1] != 3:
        raise ValueError(
            f"confident_points: points {local_points.shape} and conf {conf_logits.shape} differ"
        )
    with np.errstate(over="ignore"):
        conf = 1.0 / (1.0 + np.exp(-conf_logits.astype(np.float64)))
    out = local_points.astype(np.float32, copy=True)
    out[conf < min_conf] = np.nan
    return out


def pi3_ego_motion(camera_poses: np.ndarray, prev: int, curr: int, dt_s: float) -> EgoMotion:
    """Ego-motion between two frames of one π³ window (up to the window's scale).

    Args:
        camera_poses: (N, 4, 4) camera-to-world poses of the window.
        prev, curr: frame indices in the window.
        dt_s: time between them, s.
    """
    return ego_motion_from_poses(camera_poses[prev], camera_poses[curr], dt_s, False, "pi3")


def align_to_depth(
    local_points: np.ndarray, depth_m: np.ndarray, min_pixels: int = 50
) -> tuple[np.ndarray, float]:
    """Scale a π³ point map to metres with a depth image of the same frame.

    Returns:
        ``(points in metres, scale)``; scale is NaN (and the points unchanged) when fewer than
        ``min_pixels`` pixels have both a π³ depth and a valid metric depth.
    """
    scale = median_scale_ratio(depth_m, local_points[..., 2], min_pixels)
    if not np.isfinite(scale):
        return local_points, scale
    return (local_points * scale).astype(np.float32), scale
