"""Motion evidence from 3-D geometry: what a depth-and-pose warp leaves unexplained.

A static surface seen from two camera poses is where its depth and the relative pose put it; a
pixel of frame t back-projected with its depth, carried into a neighbour camera and sampled there
shows the same grey value, whatever its depth (no parallax residual, unlike the single homography
of :class:`~gmos_core.baselines.EgoMotionResidualBaseline`). An object that moves in the world is
not where the camera's motion puts it, so its pixels keep a residual. How well this separates
moving from static objects depends only on the geometry's quality: exact with the renderer's
depth and poses, and as good as π³'s heads otherwise (``training.probe_motion_cues`` measures
both).

Pure numpy/OpenCV. Grey values are 0..255 floats; lengths in any one unit (π³ units are fine:
the residual does not depend on the scale as long as depth and poses share it).
"""

from __future__ import annotations

import cv2
import numpy as np

from gmos_core.geometry.camera import PinholeIntrinsics

__all__ = ["fit_pinhole", "mask_means", "warp_grey", "warp_residual", "window_warp_residual"]


def fit_pinhole(points: np.ndarray, min_depth: float = 1e-6) -> PinholeIntrinsics:
    """The pinhole camera that projects a per-pixel point map onto its own pixel grid.

    π³ predicts camera-frame points but no intrinsics; each point lies on the ray of its pixel, so
    ``u = fx·x/z + cx`` and ``v = fy·y/z + cy`` are fitted by least squares (pixel centres at
    integer coordinates, as :class:`PinholeIntrinsics`).

    Args:
        points: (H, W, 3) camera-frame points (x right, y down, z forward); NaN where unknown.
        min_depth: points with z at or below this (behind or at the camera) are left out.

    Returns:
        intrinsics for an image of W × H.

    Raises:
        ValueError: not (H, W, 3), fewer than 3 usable points in a direction, or a fit whose focal
            length is not positive (the points do not look like a camera's).
    """
    if points.ndim != 3 or points.shape[2] != 3:
        raise ValueError(f"fit_pinhole: expected an (H, W, 3) point map, got {points.shape}")
    h, w = points.shape[:2]
    p = points.astype(np.float64)
    ok = np.isfinite(p).all(axis=2) & (p[..., 2] > min_depth)
    if ok.sum() < 3:
        raise ValueError(f"fit_pinhole: {int(ok.sum())} usable points; at least 3 are needed")
    v, u = np.nonzero(ok)
    a = p[..., 0][ok] / p[..., 2][ok]
    b = p[..., 1][ok] / p[..., 2][ok]

    def line(x: np.ndarray, y: np.ndarray, axis: str) -> tuple[float, float]:
        if np.ptp(x) <= 0:
            raise ValueError(f"fit_pinhole: the points span no angle along {axis}")
        slope, offset = np.polyfit(x, y.astype(np.float64), 1)
        return float(slope), float(offset)

    fx, cx = line(a, u, "x")
    fy, cy = line(b, v, "y")
    if not (fx > 0 and fy > 0):
        raise ValueError(f"fit_pinhole: fitted focal lengths fx={fx:.3g} fy={fy:.3g} are not > 0")
    return PinholeIntrinsics(fx, fy, cx, cy, w, h)


def warp_residual(
    points: np.ndarray,
    grey: np.ndarray,
    neighbour_grey: np.ndarray,
    neighbour_from_frame: np.ndarray,
    intrinsics: PinholeIntrinsics,
    min_depth: float = 1e-6,
    neighbour_depth: np.ndarray | None = None,
    occlusion_tolerance: float = 0.05,
) -> np.ndarray:
    """Per-pixel grey difference between a frame and its neighbour warped by depth and pose.

    Args:
        points: (H, W, 3) camera-frame points of the frame (depth back-projected, or π³'s local
            points); NaN where unknown.
        grey: (H, W) the frame's grey image, 0..255.
        neighbour_grey: (H, W) the neighbour's grey image, same camera.
        neighbour_from_frame: (4, 4) rigid transform from the frame's camera to the neighbour's
            (:func:`~gmos_core.geometry.camera.relative_pose`), in the points' unit.
        intrinsics: the camera, for W × H.
        min_depth: points that land at or behind this depth in the neighbour are not compared.
        neighbour_depth: (H, W) the neighbour's own depth (same unit), NaN where unknown, or
            None. Given, a point that the neighbour sees something nearer in front of (its
            depth there below ``(1 − occlusion_tolerance)`` × the warped point's) is hidden in
            the neighbour and not compared: a static surface occluded there would otherwise
            read as moving (the near object's grey value is sampled instead of its own).
        occlusion_tolerance: relative depth margin of that test.

    Returns:
        (H, W) float32 ``|neighbour(warp(p)) − frame(p)|``; NaN where the point is unknown,
        behind the neighbour camera, outside its image or hidden there (no evidence either
        way).

    Raises:
        ValueError: shapes disagree with each other or with the intrinsics.
    """
    h, w = grey.shape[:2]
    if grey.ndim != 2 or neighbour_grey.shape != grey.shape:
        raise ValueError(
            f"warp_residual: grey images must be two (H, W) arrays of one size, got "
            f"{grey.shape} and {neighbour_grey.shape}"
        )
    if points.shape != (h, w, 3):
        raise ValueError(f"warp_residual: points {points.shape} do not match the image {(h, w)}")
    if (intrinsics.width, intrinsics.height) != (w, h):
        raise ValueError(
            f"warp_residual: intrinsics are for {intrinsics.width}x{intrinsics.height}, "
            f"the image is {w}x{h}"
        )
    if neighbour_depth is not None and neighbour_depth.shape != grey.shape:
        raise ValueError(
            f"warp_residual: neighbour depth {neighbour_depth.shape} is not {grey.shape}"
        )
    t = np.asarray(neighbour_from_frame, dtype=np.float64)
    if t.shape != (4, 4):
        raise ValueError(f"warp_residual: neighbour_from_frame must be (4, 4), got {t.shape}")
    q = points.astype(np.float64) @ t[:3, :3].T + t[:3, 3]
    z = q[..., 2]
    front = np.isfinite(q).all(axis=2) & (z > min_depth)
    zs = np.where(front, z, 1.0)
    u = np.where(front, intrinsics.fx * q[..., 0] / zs + intrinsics.cx, -1e6)
    v = np.where(front, intrinsics.fy * q[..., 1] / zs + intrinsics.cy, -1e6)
    mu, mv = u.astype(np.float32), v.astype(np.float32)

    def sample(image: np.ndarray, interpolation: int) -> np.ndarray:
        # Replicate, not NaN: a sample exactly on the last row / column would read a NaN
        # neighbour at weight 0 (NaN · 0 = NaN); what is outside is masked below.
        return cv2.remap(
            image.astype(np.float32), mu, mv, interpolation, borderMode=cv2.BORDER_REPLICATE
        )

    inside = front & (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
    out = np.abs(sample(neighbour_grey, cv2.INTER_LINEAR) - grey.astype(np.float32))
    out[~inside] = np.nan
    if neighbour_depth is not None:
        seen = sample(neighbour_depth, cv2.INTER_NEAREST)  # nearest: depths never mixed
        hidden = np.isfinite(seen) & (seen < (1.0 - occlusion_tolerance) * zs)
        out[hidden] = np.nan
    return out.astype(np.float32)


def warp_grey(frame_rgb: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB → (H', W') float32 grey 0..255, 5×5 Gaussian blur (the baselines'
    input smoothing: a one-pixel warp error on a sharp edge would otherwise read as motion).

    `size`: (W', H') to resize to first (area interpolation); None keeps the frame's size.
    """
    if size is not None and frame_rgb.shape[1::-1] != tuple(size):
        frame_rgb = cv2.resize(frame_rgb, size, interpolation=cv2.INTER_AREA)
    g = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2GRAY)
    return cv2.GaussianBlur(g, (5, 5), 0).astype(np.float32)


def window_warp_residual(
    points: np.ndarray,
    grey: np.ndarray,
    neighbours: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
    intrinsics: PinholeIntrinsics,
) -> np.ndarray:
    """Mean :func:`warp_residual` of a frame against several neighbours.

    Args:
        points: (H, W, 3) camera-frame points of the frame; NaN where unknown.
        grey: (H, W) the frame's grey image (:func:`warp_grey`).
        neighbours: (neighbour grey (H, W), (4, 4) transform from the frame's camera to the
            neighbour's, the neighbour's depth (H, W) for the occlusion test or None) per
            neighbour; at least one.
        intrinsics: the camera, for W × H.

    Returns:
        (H, W) float32 mean over the neighbours that see each pixel; NaN where none does.
    """
    if not neighbours:
        raise ValueError("window_warp_residual: no neighbour frame to compare with")
    stack = np.stack(
        [warp_residual(points, grey, g, t, intrinsics, neighbour_depth=d) for g, t, d in neighbours]
    )
    counts = np.isfinite(stack).sum(0)
    total = np.nansum(stack, axis=0)
    return np.where(counts > 0, total / np.maximum(counts, 1), np.nan).astype(np.float32)


def mask_means(residual: np.ndarray, masks: np.ndarray, min_pixels: int = 1) -> np.ndarray:
    """(K,) mean finite residual under each of the (K, H, W) boolean masks; NaN where a mask
    has fewer than `min_pixels` finite pixels."""
    out = np.full(len(masks), np.nan)
    finite = np.isfinite(residual)
    for k, m in enumerate(masks):
        vals = residual[m & finite]
        if vals.size >= min_pixels:
            out[k] = float(vals.mean())
    return out
