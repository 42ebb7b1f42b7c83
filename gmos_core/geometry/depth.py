"""Depth images as ROS cameras publish them: ``16UC1`` (millimetres) and ``32FC1`` (metres).

Invalid depth is NaN after decoding: 0 in either encoding (the ROS depth convention for "no
return"), NaN and ±inf in ``32FC1``, negative values, and anything beyond ``max_depth_m``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DEPTH_ENCODINGS", "DepthError", "decode_depth"]

# ROS sensor_msgs/Image encodings accepted for depth, and the factor to metres.
DEPTH_ENCODINGS: dict[str, float] = {"16UC1": 1e-3, "mono16": 1e-3, "32FC1": 1.0}


class DepthError(ValueError):
    """A depth image that cannot be used (message names the problem)."""


def decode_depth(
    data: np.ndarray,
    encoding: str,
    expected_hw: tuple[int, int] | None = None,
    max_depth_m: float = 100.0,
) -> np.ndarray:
    """Depth image → float32 metres with NaN where invalid.

    Args:
        data: (H, W) uint16 (``16UC1``/``mono16``, mm) or float32 (``32FC1``, m).
        encoding: the ROS image encoding.
        expected_hw: (H, W) the depth must have (the colour image it is aligned to); None: any.
        max_depth_m: larger values are treated as invalid (sensor saturation), m.

    Returns:
        (H, W) float32 depth in metres; NaN = no valid depth.

    Raises:
        DepthError: unknown encoding, wrong dtype or rank, or a size other than ``expected_hw``.
    """
    if encoding not in DEPTH_ENCODINGS:
        raise DepthError(
            f"depth encoding {encoding!r} is not supported (use one of {sorted(DEPTH_ENCODINGS)})"
        )
    arr = np.asarray(data)
    if arr.ndim != 2:
        raise DepthError(f"depth must be a single-channel (H, W) image, got shape {arr.shape}")
    want = np.uint16 if DEPTH_ENCODINGS[encoding] != 1.0 else np.float32
    if arr.dtype != want:
        raise DepthError(f"depth encoding {encoding} needs dtype {np.dtype(want)}, got {arr.dtype}")
    if expected_hw is not None and tuple(arr.shape) != tuple(expected_hw):
        raise DepthError(
            f"depth is {arr.shape[1]}x{arr.shape[0]} but the image is "
            f"{expected_hw[1]}x{expected_hw[0]} (W x H): the depth must be aligned to the image"
        )
    metres = arr.astype(np.float32) * np.float32(DEPTH_ENCODINGS[encoding])
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(metres) | (metres <= 0.0) | (metres > max_depth_m)
    metres[bad] = np.nan
    return metres
