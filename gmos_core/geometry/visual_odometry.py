"""Non-learned metric ego-motion from consecutive frames and the previous frame's depth.

Corners on pixels that are *not* dynamic are tracked into the current frame (pyramidal
Lucas-Kanade), lifted to 3-D with the previous frame's depth, and the camera motion is the
RANSAC PnP solution (OpenCV). The moving-object masks keep independently moving points out of the
estimate, which is what makes the segmenter useful to odometry in the first place.

Used by the node when an aligned depth topic is given and no odometry is, and as the non-learned
baseline of the geometry benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from gmos_core.geometry.camera import PinholeIntrinsics
from gmos_core.geometry.ego_motion import EgoMotion

__all__ = ["DepthVisualOdometry", "VoSettings"]


@dataclass(frozen=True)
class VoSettings:
    """Parameters of :class:`DepthVisualOdometry`.

    Attributes:
        max_corners: corners detected per frame.
        min_inliers: fewer PnP inliers → no estimate.
        reprojection_px: RANSAC inlier threshold, px.
        exclude_dilation_px: dynamic masks are grown by this much before corners are picked.
    """

    max_corners: int = 400
    min_inliers: int = 12
    reprojection_px: float = 1.0
    exclude_dilation_px: int = 3


class DepthVisualOdometry:
    """Frame-to-frame camera motion (metric) from RGB + aligned depth.

    Call :meth:`step` once per frame; it returns the ego-motion from the previous call's frame to
    this one, or None (first frame, too few tracked static points, no valid depth).
    """

    def __init__(self, intrinsics: PinholeIntrinsics, settings: VoSettings | None = None) -> None:
        self.intrinsics = intrinsics
        self.settings = settings or VoSettings()
        self._prev: tuple[np.ndarray, np.ndarray, np.ndarray, int] | None = None

    def reset(self) -> None:
        self._prev = None

    def step(
        self,
        rgb: np.ndarray,
        depth_m: np.ndarray,
        dynamic: np.ndarray | None,
        stamp_ns: int,
    ) -> EgoMotion | None:
        """Add a frame.

        Args:
            rgb: (H, W, 3) uint8 image.
            depth_m: (H, W) float32 depth in metres, NaN where invalid (aligned to ``rgb``).
            dynamic: (H, W) bool moving-object mask of this frame, or None.
            stamp_ns: frame time, ns (increasing).

        Returns:
            :class:`EgoMotion` (metric, source "odometry") from the previous frame, or None.
        """
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        h, w = gray.shape
        s = self.settings
        allow = np.full((h, w), 255, np.uint8)
        if dynamic is not None:
            k = 2 * s.exclude_dilation_px + 1
            dyn = cv2.dilate(dynamic.astype(np.uint8), np.ones((k, k), np.uint8))
            allow[dyn > 0] = 0
        allow[~np.isfinite(depth_m)] = 0
        # Corners sit on edges, often depth edges, where a one-pixel error picks the wrong
        # surface: keep only pixels whose 5x5 neighbourhood has one depth (within 2 %).
        d = np.nan_to_num(depth_m, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
        kernel = np.ones((5, 5), np.uint8)
        dmax, dmin = cv2.dilate(d, kernel), cv2.erode(d, kernel)
        allow[(dmin <= 0) | (dmax > 1.02 * dmin)] = 0
        prev = self._prev
        self._prev = (gray, depth_m, allow, stamp_ns)
        if prev is None or stamp_ns <= prev[3]:
            return None
        pgray, pdepth, pallow, pstamp = prev
        corners = cv2.goodFeaturesToTrack(pgray, s.max_corners, 0.01, 5, mask=pallow)
        if corners is None or len(corners) < s.min_inliers:
            return None
        nxt, status, _err = cv2.calcOpticalFlowPyrLK(
            pgray, gray, corners, None, winSize=(15, 15), maxLevel=2
        )
        ok = status.ravel() == 1
        p0 = corners.reshape(-1, 2)[ok]
        p1 = nxt.reshape(-1, 2)[ok]
        inside = (p1[:, 0] >= 0) & (p1[:, 0] < w) & (p1[:, 1] >= 0) & (p1[:, 1] < h)
        p0, p1 = p0[inside], p1[inside]
        ui = np.clip(np.round(p0[:, 0]).astype(int), 0, w - 1)
        vi = np.clip(np.round(p0[:, 1]).astype(int), 0, h - 1)
        z = pdepth[vi, ui]
        valid = np.isfinite(z) & (z > 0)
        if int(valid.sum()) < s.min_inliers:
            return None
        intr = self.intrinsics
        z, p0, p1 = z[valid], p0[valid], p1[valid]
        obj = np.stack(
            ((p0[:, 0] - intr.cx) / intr.fx * z, (p0[:, 1] - intr.cy) / intr.fy * z, z), 1
        )
        found, rvec, tvec, inliers = cv2.solvePnPRansac(
            obj.astype(np.float64),
            p1.astype(np.float64),
            intr.matrix(),
            None,
            reprojectionError=s.reprojection_px,
            iterationsCount=200,
            flags=cv2.SOLVEPNP_ITERATIVE,
        )
        if not found or inliers is None or len(inliers) < s.min_inliers:
            return None
        t = np.eye(4)
        t[:3, :3] = cv2.Rodrigues(rvec)[0]
        t[:3, 3] = tvec.ravel()
        # PnP gives the transform from the object (previous camera) frame to the current camera.
        return EgoMotion(t, (stamp_ns - pstamp) * 1e-9, True, "odometry")
