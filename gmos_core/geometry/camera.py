"""Pinhole intrinsics, back-projection of a depth image, rigid transforms (4×4)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "PinholeIntrinsics",
    "apply_transform",
    "backproject_depth",
    "invert_transform",
    "relative_pose",
]


@dataclass(frozen=True)
class PinholeIntrinsics:
    """Pinhole camera without distortion, for an image of ``width`` × ``height`` px.

    Attributes:
        fx, fy: focal lengths, px.
        cx, cy: principal point, px, in the pixel-centre convention (pixel (u, v) is the centre of
            column u, row v; ROS ``camera_info`` and OpenCV use it too).
        width, height: image size the values refer to, px.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        if not (self.fx > 0 and self.fy > 0 and np.isfinite([self.fx, self.fy]).all()):
            raise ValueError(
                f"intrinsics: focal lengths must be > 0, got fx={self.fx} fy={self.fy}"
            )
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"intrinsics: image size {self.width}x{self.height} is not positive")

    @classmethod
    def from_matrix(cls, k: np.ndarray, width: int, height: int) -> PinholeIntrinsics:
        """From a 3×3 K (or the 9 row-major values of ``sensor_msgs/CameraInfo.k``)."""
        k = np.asarray(k, dtype=np.float64).reshape(3, 3)
        return cls(float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]), width, height)

    def matrix(self) -> np.ndarray:
        """(3, 3) float64 K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def resized(self, width: int, height: int) -> PinholeIntrinsics:
        """The same camera for an image resized (no crop) to ``width`` × ``height``.

        With pixel centres at integer coordinates, ``u' + 0.5 = s·(u + 0.5)``.
        """
        sx, sy = width / self.width, height / self.height
        return PinholeIntrinsics(
            self.fx * sx,
            self.fy * sy,
            (self.cx + 0.5) * sx - 0.5,
            (self.cy + 0.5) * sy - 0.5,
            width,
            height,
        )


def backproject_depth(depth: np.ndarray, intrinsics: PinholeIntrinsics) -> np.ndarray:
    """Camera-frame points of every pixel of a z-depth image.

    Args:
        depth: (H, W) float z-depth (along the optical axis); NaN where invalid.
        intrinsics: for an image of exactly H × W.

    Returns:
        (H, W, 3) float32 points (x right, y down, z forward), in the depth's unit; NaN where the
        depth is NaN.

    Raises:
        ValueError: the depth is not 2-D or its size differs from the intrinsics'.
    """
    if depth.ndim != 2:
        raise ValueError(f"backproject_depth: expected (H, W) depth, got shape {depth.shape}")
    h, w = depth.shape
    if (w, h) != (intrinsics.width, intrinsics.height):
        raise ValueError(
            f"backproject_depth: depth is {w}x{h} but the intrinsics are for "
            f"{intrinsics.width}x{intrinsics.height}"
        )
    z = depth.astype(np.float32, copy=False)
    u = (np.arange(w, dtype=np.float32) - intrinsics.cx) / intrinsics.fx
    v = (np.arange(h, dtype=np.float32) - intrinsics.cy) / intrinsics.fy
    return np.stack((u[None, :] * z, v[:, None] * z, z), axis=-1)


def invert_transform(t: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4×4 transform (R, p) → (Rᵀ, −Rᵀp); (..., 4, 4) float64."""
    t = np.asarray(t, dtype=np.float64)
    r = np.swapaxes(t[..., :3, :3], -1, -2)
    out = np.zeros_like(t)
    out[..., :3, :3] = r
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", r, t[..., :3, 3])
    out[..., 3, 3] = 1.0
    return out


def relative_pose(cam_to_world_from: np.ndarray, cam_to_world_to: np.ndarray) -> np.ndarray:
    """(4, 4) float64 transform taking points of camera `from` into camera `to`, from both
    cameras' camera-to-world poses in one world frame: ``inv(to) · from``."""
    return invert_transform(cam_to_world_to) @ np.asarray(cam_to_world_from, dtype=np.float64)


def apply_transform(t: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4×4 transform to (..., 3) points: ``R·p + t``."""
    t = np.asarray(t, dtype=np.float64)
    return np.asarray(points, dtype=np.float64) @ t[:3, :3].T + t[:3, 3]
