"""Non-learned moving-object baselines (no weights): what a learned model must beat.

`EgoMotionResidualBaseline` is the classic pipeline that predates learned MOS: explain the
camera motion between the centre frame and its window neighbours with one homography
(sparse KLT tracks + RANSAC), warp the neighbours onto the centre frame, and call whatever
the warp does not explain "moving". A single homography is exact for a rotating camera or a
planar scene only, so translation over a scene with depth leaves parallax residuals on near
static objects: exactly the failure Gmos is built to avoid, which is why it is a baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class EgoMotionResidualBaseline:
    """Homography-compensated frame differencing.

    Args:
        residual_threshold: absolute grey-level difference (0..255) after warping above which
            a pixel counts as unexplained motion.
        min_area_fraction: connected components smaller than this fraction of the image are
            discarded as noise.
        max_objects: at most this many components (largest first) become instances.
        max_corners: KLT corners tracked to estimate the homography.
    """

    residual_threshold: float = 8.0
    min_area_fraction: float = 0.002
    max_objects: int = 20
    max_corners: int = 400

    def _homography(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
        """Homography (3, 3) mapping pixels of grey image `src` onto `dst`, or None."""
        pts = cv2.goodFeaturesToTrack(src, self.max_corners, 0.01, 4)
        if pts is None or len(pts) < 8:
            return None
        nxt, status, _ = cv2.calcOpticalFlowPyrLK(src, dst, pts, None)
        ok = status.ravel() == 1
        if ok.sum() < 8:
            return None
        h, _ = cv2.findHomography(pts[ok], nxt[ok], cv2.RANSAC, 2.0)
        return h

    def residual(self, window: np.ndarray, center: int) -> np.ndarray:
        """Per-pixel unexplained motion of the centre frame.

        Args:
            window: (N, H, W, 3) uint8 RGB frames.
            center: index of the frame to segment inside `window`.

        Returns:
            (H, W) float32: the mean over neighbours of the absolute difference between the
            lightly blurred centre frame and each homography-warped neighbour. (A minimum would
            suppress disocclusions but also most object motion, which is only a few pixels
            per frame at robot speeds; measured on the synthetic scenes.)
        """
        grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in window]
        ref = grey[center]
        ref_blur = cv2.GaussianBlur(ref, (5, 5), 0).astype(np.float32)
        hgt, wid = ref.shape
        diffs: list[np.ndarray] = []
        for i, g in enumerate(grey):
            if i == center:
                continue
            hom = self._homography(g, ref)
            if hom is None:
                continue
            warped = cv2.warpPerspective(g, hom, (wid, hgt), borderMode=cv2.BORDER_REPLICATE)
            valid = cv2.warpPerspective(np.full_like(g, 255), hom, (wid, hgt)) > 0
            diff = np.abs(cv2.GaussianBlur(warped, (5, 5), 0).astype(np.float32) - ref_blur)
            diff[~valid] = np.nan  # outside the neighbour's view: no evidence either way
            diffs.append(diff)
        if not diffs:
            return np.zeros((hgt, wid), np.float32)
        stack = np.stack(diffs)
        counts = np.isfinite(stack).sum(0)
        total = np.nansum(stack, axis=0)
        return np.where(counts > 0, total / np.maximum(counts, 1), 0.0).astype(np.float32)

    def segment(self, window: np.ndarray, center: int) -> np.ndarray:
        """Instance label map (H, W) uint8 of the centre frame (0 = background, 1..K)."""
        res = self.residual(window, center)
        fg = (res > self.residual_threshold).astype(np.uint8)
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
        n, comp, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        min_area = self.min_area_fraction * fg.size
        order = [
            i
            for i in np.argsort(-stats[1:, cv2.CC_STAT_AREA]) + 1
            if stats[i, cv2.CC_STAT_AREA] >= min_area
        ][: self.max_objects]
        labels = np.zeros(fg.shape, np.uint8)
        for k, i in enumerate(order, start=1):
            labels[comp == i] = k
        return labels
