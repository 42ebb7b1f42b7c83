"""Mask encodings that SLAM / mapping stacks consume.

- nvblox: a ``mono8`` dynamic mask (255 = dynamic) with its own ``camera_info``.
- DynaSLAM-style pipelines dilate the dynamic mask (DynaSLAM uses 15 px) so that feature points on
  object borders, where segmentation is least certain, are dropped too: :func:`dilate_mask`.
- DynOSAM-style pipelines want an instance mask with one id per object, consistent over time
  (``CV_32SC1``; ``mono16`` for image-transport friendliness): :func:`encode_instance_mask`.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["INSTANCE_ENCODINGS", "dilate_mask", "encode_instance_mask"]

# ROS encoding → numpy dtype of the instance-id image.
INSTANCE_ENCODINGS: dict[str, type[np.integer]] = {"mono16": np.uint16, "32SC1": np.int32}


def dilate_mask(mask: np.ndarray, radius_px: int) -> np.ndarray:
    """Grow a binary mask by ``radius_px`` pixels (elliptical structuring element).

    Args:
        mask: (H, W) bool or uint8 (non-zero = set).
        radius_px: 0 returns a copy; negative is an error.

    Returns:
        (H, W) uint8 mask with values 0 / 255.
    """
    if radius_px < 0:
        raise ValueError(f"dilate_mask: radius must be >= 0 px, got {radius_px}")
    m = (np.asarray(mask) != 0).astype(np.uint8) * 255
    if radius_px == 0:
        return m
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius_px + 1, 2 * radius_px + 1))
    return cv2.dilate(m, kernel)


def encode_instance_mask(labels: np.ndarray, encoding: str) -> np.ndarray:
    """Instance-id image in a ROS encoding (0 = background, k > 0 = object id k).

    Raises:
        ValueError: unknown encoding, negative ids, or ids that do not fit ``mono16``.
    """
    if encoding not in INSTANCE_ENCODINGS:
        raise ValueError(
            f"instance mask encoding {encoding!r} is not supported "
            f"(use one of {sorted(INSTANCE_ENCODINGS)})"
        )
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(f"instance mask must be (H, W), got shape {arr.shape}")
    if arr.size and int(arr.min()) < 0:
        raise ValueError("instance mask: negative object id")
    dtype = INSTANCE_ENCODINGS[encoding]
    if arr.size and int(arr.max()) > np.iinfo(dtype).max:
        raise ValueError(f"instance mask: id {int(arr.max())} does not fit {encoding}")
    return arr.astype(dtype)
