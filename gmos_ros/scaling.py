"""`max_input_pixels`: big frames go to the model downscaled, results come back at input size.

A 4000x3000 frame costs seconds and gigabytes through the model and the propagator at full
resolution, for no gain (the encoders work at about 0.5 MP). `model_size` picks the largest
size with at most `max_pixels` pixels and the input's aspect ratio; `downscale` resizes with
pixel-area averaging (OpenCV INTER_AREA, no aliasing); `upscale_result` maps a result back
to the input resolution by nearest-neighbour on the id map. The objects' boxes and areas stay
exact on the map that is published without measuring the objects again: every output
row/column maps to one model row/column (a contiguous, nondecreasing run), so a box follows
from the model-resolution box, and an area is a weighted count of the model pixels.
"""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np

from gmos_core.streaming import FrameResult, ObjectState

__all__ = ["downscale", "model_size", "upscale_result"]


def model_size(height: int, width: int, max_pixels: int) -> tuple[int, int]:
    """(h, w) the model sees: the input size if within `max_pixels` (0 = no limit), else
    the largest size of the same aspect ratio with h * w <= max_pixels."""
    if max_pixels <= 0 or height * width <= max_pixels:
        return height, width
    s = math.sqrt(max_pixels / (height * width))
    h, w = max(1, int(height * s)), max(1, int(width * s))
    while h * w > max_pixels:  # float rounding at the boundary
        h, w = (h - 1, w) if h >= w else (h, w - 1)
    return h, w


def downscale(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> (h, w, 3) uint8 by area averaging; the frame itself if same size."""
    if frame.shape[:2] == size:
        return frame
    return cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def _source_index(n_out: int, n_in: int) -> np.ndarray:
    """Nearest source index of every output index (pixel centres), nondecreasing."""
    idx = ((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64)
    return np.minimum(idx, n_in - 1)


def upscale_result(result: FrameResult, size: tuple[int, int]) -> FrameResult:
    """The result at (H, W) = `size` (>= the result's size): instance ids by nearest
    neighbour, fg_prob bilinear, the objects' boxes and areas those of the upscaled map.

    The boxes are mapped from the objects' own boxes, which describe `instance_ids` exactly
    (`FrameResult.objects`). An area cannot be scaled from the model-resolution area alone
    (at a scale s, a model pixel becomes floor(s) or ceil(s) output rows times as many
    columns, depending on where it lies), so every object's area comes from one weighted count
    over the model-resolution map: each model pixel weighs the output pixels it becomes.
    """
    ids = result.instance_ids
    h, w = ids.shape
    big_h, big_w = size
    if (h, w) == (big_h, big_w):
        return result
    if big_h < h or big_w < w:
        raise ValueError(f"upscale_result: target {size} smaller than the result {(h, w)}")
    rows, cols = _source_index(big_h, h), _source_index(big_w, w)
    big_ids = ids[np.ix_(rows, cols)]
    # Output rows/columns per model row/column (>= 1 each: the target is not smaller).
    row_n = np.bincount(rows, minlength=h).astype(np.float64)
    col_n = np.bincount(cols, minlength=w).astype(np.float64)
    # Exact in float64: at most big_h * big_w, far below 2**53.
    areas = np.bincount(ids.ravel(), weights=np.outer(row_n, col_n).ravel())
    objects = []
    for o in result.objects:
        area = int(areas[o.obj_id]) if o.obj_id < len(areas) else 0
        if area == 0:
            continue  # not in the map (`FrameResult.objects` lists none such)
        x, y, bw, bh = o.bbox
        top = int(np.searchsorted(rows, y, side="left"))
        bottom = int(np.searchsorted(rows, y + bh - 1, side="right"))
        left = int(np.searchsorted(cols, x, side="left"))
        right = int(np.searchsorted(cols, x + bw - 1, side="right"))
        objects.append(
            ObjectState(
                obj_id=o.obj_id,
                moving=o.moving,
                motion_prob=o.motion_prob,
                iou=o.iou,
                bbox=(left, top, right - left, bottom - top),
                area=area,
            )
        )
    fg = result.fg_prob
    if fg is not None:
        fg = cv2.resize(fg, (big_w, big_h), interpolation=cv2.INTER_LINEAR)
    return replace(result, instance_ids=big_ids, objects=tuple(objects), fg_prob=fg)
