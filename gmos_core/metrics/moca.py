"""MoCA box detection success rate, following motiongrouping's ``tools/MoCA_eval.py``.

MoCA only annotates one box per frame, so a predicted mask is turned into a box and scored
by box IoU. The conventions of the reference script are kept, including its quirks:

* a mask with more than 50 % of its border pixels above 127.5 is inverted (the
  foreground/background heuristic), then binarized at > 0.1 * 255;
* among the external contours (``cv2.findContours`` with ``RETR_EXTERNAL``,
  ``CHAIN_APPROX_SIMPLE``) the one whose **bounding rectangle** has the largest area wins
  (the script compares w * h, not the contour area; the first one wins a tie), and the box
  is ``(x, y, x + w, y + h)``; an empty mask scores IoU 0;
* boxes are rescaled from mask to image resolution when the image size is given;
* only annotated frames that have a mask are scored (frames past the last mask are not);
* success at tau counts ``iou > tau`` (strict) for tau in 0.5 ... 0.9 and is pooled over all
  scored frames of all videos, while the reported mean IoU is video-weighted (the mean over
  videos of each video's mean IoU).

Boxes are (x1, y1, x2, y2) floats in pixels, x2/y2 exclusive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from gmos_core.metrics.davis import MetricInputError

__all__ = [
    "MOCA_MOTION_NAMES",
    "MOCA_THRESHOLDS",
    "Box",
    "MocaEvaluator",
    "MocaVideoResult",
    "box_iou",
    "gt_box_from_xywh",
    "mask_to_box",
]

#: (x1, y1, x2, y2), x2 / y2 exclusive.
Box = tuple[float, float, float, float]

#: Success-rate thresholds (strict ``iou > tau``).
MOCA_THRESHOLDS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)

#: MoCA motion labels of the annotation CSV.
MOCA_MOTION_NAMES: dict[int, str] = {0: "locomotion", 1: "deformation", 2: "static"}

_BINARY_THRESHOLD = 0.1 * 255
_BORDER_THRESHOLD = 127.5


def _border_fraction(mask: np.ndarray) -> float:
    """Fraction of the 2H + 2W - 4 border pixels brighter than 127.5."""
    h, w = mask.shape
    border = np.concatenate([mask[0, :], mask[-1, :], mask[1:-1, 0], mask[1:-1, -1]])
    return float(np.count_nonzero(border > _BORDER_THRESHOLD)) / (2 * h + 2 * w - 4)


def mask_to_box(mask_u8: np.ndarray) -> tuple[int, int, int, int] | None:
    """Box of a predicted mask with the MoCA evaluation heuristics.

    Args:
        mask_u8: (H, W) or (H, W, 3) uint8 mask image (0..255), H, W >= 2. A colour image
            is averaged over its channels first, as the script does after ``cv2.imread``.

    Returns:
        (x, y, x + w, y + h) ints of the bounding rectangle of the external contour with the
        largest bounding-rectangle area, or None if the binarized mask is empty.
    """
    arr = np.asarray(mask_u8)
    if arr.ndim == 3:
        arr = arr.mean(axis=2)  # float64, like the script's mask.mean(2)
    if arr.ndim != 2:
        raise MetricInputError(f"mask must be (H, W) or (H, W, 3), got shape {np.shape(mask_u8)}")
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise MetricInputError(f"mask must be at least 2 x 2 pixels, got {arr.shape}")
    if arr.dtype == bool:
        raise MetricInputError("mask must hold 0..255 values, not bool (use mask * 255)")
    values = arr.astype(np.float64)
    if values.min() < 0 or values.max() > 255:
        raise MetricInputError("mask values must lie in 0..255")
    if _border_fraction(values) > 0.5:
        # Mostly-bright border: the prediction is taken to be the background. The script casts
        # the inverted image back to uint8, truncating fractional channel means.
        values = (255 - values).astype(np.uint8).astype(np.float64)
    binary = np.where(values > _BINARY_THRESHOLD, 255, 0).astype(np.uint8)
    contours = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]
    best: tuple[int, int, int, int] | None = None
    best_area = 0
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        if w * h > best_area:  # strict: the first of equal rectangles is kept
            best, best_area = (x, y, x + w, y + h), w * h
    return best


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two (x1, y1, x2, y2) boxes, without the +1 pixel convention.

    A zero-area intersection gives 0.0 (also for two identical degenerate boxes).
    """
    if len(a) != 4 or len(b) != 4:
        raise MetricInputError(f"boxes must be (x1, y1, x2, y2), got {a!r} and {b!r}")
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    inter = abs(max(min(ax2, bx2) - max(ax1, bx1), 0.0) * max(min(ay2, by2) - max(ay1, by1), 0.0))
    if inter == 0:
        return 0.0
    area_a = abs((ax2 - ax1) * (ay2 - ay1))
    area_b = abs((bx2 - bx1) * (by2 - by1))
    return inter / (area_a + area_b - inter)


def gt_box_from_xywh(xmin: float, ymin: float, width: float, height: float) -> Box:
    """GT box from a MoCA CSV ``[_, xmin, ymin, width, height]`` entry.

    As in the script, xmin / ymin are clipped at 0 *before* the width and height are added,
    so a box starting left of the image is shifted, not cropped.
    """
    x1 = max(float(xmin), 0.0)
    y1 = max(float(ymin), 0.0)
    return (x1, y1, x1 + float(width), y1 + float(height))


@dataclass
class MocaVideoResult:
    """Scores of one video.

    Attributes:
        seq: video name.
        frames: (N,) int64 indices of the scored frames.
        ious: (N,) float64 box IoU per scored frame.
        motion: (N,) int64 motion label per scored frame (-1 when not given).
    """

    seq: str
    frames: np.ndarray
    ious: np.ndarray
    motion: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def mean_iou(self) -> float:
        """Mean box IoU over the video's scored frames."""
        return float(np.mean(self.ious)) if self.ious.size else float("nan")


class MocaEvaluator:
    """Accumulates MoCA videos and reports the pooled success rates.

    ``process(seq, masks=..., gt_boxes=...)`` per video, then ``evaluate()``;
    :meth:`sequence_rows` gives each video's numbers (MoCA scores one box per frame, so there
    are no per-object rows).
    """

    def __init__(self, thresholds: Sequence[float] = MOCA_THRESHOLDS) -> None:
        self.thresholds = tuple(float(t) for t in thresholds)
        self.videos: list[MocaVideoResult] = []

    def reset(self) -> None:
        """Forget every processed video."""
        self.videos = []

    def process(
        self,
        seq: str,
        *,
        masks: np.ndarray | Sequence[np.ndarray],
        gt_boxes: Mapping[int, Sequence[float]],
        motion: Mapping[int, int] | None = None,
        image_size: tuple[int, int] | None = None,
    ) -> None:
        """Score one video.

        Args:
            seq: video name (must be new since the last reset).
            masks: (T, H, W) uint8 array or a sequence of (H, W) / (H, W, 3) uint8 masks; mask
                t is frame t (write one mask per frame, starting at frame 0).
            gt_boxes: frame index -> GT (x1, y1, x2, y2) box (see :func:`gt_box_from_xywh`);
                frames without a box are not scored, frames >= T are skipped like the script.
            motion: optional frame index -> motion label (0 locomotion, 1 deformation,
                2 static) for per-category success rates.
            image_size: optional (H, W) of the annotated images; boxes are rescaled from the
                mask size to it (the script's ``--resize``).
        """
        if any(v.seq == seq for v in self.videos):
            raise MetricInputError(f"{seq}: video already processed (call reset() first)")
        if isinstance(masks, np.ndarray) and masks.ndim not in (3, 4):
            raise MetricInputError(f"{seq}: masks must be (T, H, W), got shape {masks.shape}")
        frames, ious, labels = [], [], []
        for ff in sorted(int(k) for k in gt_boxes):
            if ff < 0:
                raise MetricInputError(f"{seq}: negative frame index {ff} in gt_boxes")
            if ff >= len(masks):
                continue
            gt = gt_boxes[ff]
            mask = np.asarray(masks[ff])
            try:
                box = mask_to_box(mask)
            except MetricInputError as err:
                raise MetricInputError(f"{seq} frame {ff}: {err}") from None
            if box is None:
                iou = 0.0
            else:
                pb = np.array(box, dtype=np.float64)
                if image_size is not None:
                    sx = image_size[1] / mask.shape[1]
                    sy = image_size[0] / mask.shape[0]
                    pb[[0, 2]] *= sx
                    pb[[1, 3]] *= sy
                iou = box_iou(gt, pb)
            frames.append(ff)
            ious.append(iou)
            labels.append(-1 if motion is None else self._motion_label(seq, ff, motion))
        self.videos.append(
            MocaVideoResult(
                seq=seq,
                frames=np.array(frames, dtype=np.int64),
                ious=np.array(ious, dtype=np.float64),
                motion=np.array(labels, dtype=np.int64),
            )
        )

    @staticmethod
    def _motion_label(seq: str, frame: int, motion: Mapping[int, int]) -> int:
        # The script carries the previous label into frames labelled {}; that belongs to the
        # CSV reader, so here every scored frame needs an explicit label.
        if frame not in motion:
            raise MetricInputError(f"{seq}: no motion label for scored frame {frame}")
        label = int(motion[frame])
        if label not in MOCA_MOTION_NAMES:
            raise MetricInputError(
                f"{seq}: motion label {label} of frame {frame} is not one of {sorted(MOCA_MOTION_NAMES)}"
            )
        return label

    def sequence_rows(self) -> list[dict[str, Any]]:
        """Per video: ``frames_scored``, ``mean_iou`` and the video's own ``SR@tau`` (NaN
        where no frame was scored)."""
        return [
            {
                "sequence": v.seq,
                "frames_scored": int(v.ious.size),
                "mean_iou": v.mean_iou,
                **{
                    f"SR@{th:g}": (float(np.mean(v.ious > th)) if v.ious.size else float("nan"))
                    for th in self.thresholds
                },
            }
            for v in self.videos
        ]

    def object_rows(self) -> list[dict[str, Any]]:
        """None: MoCA annotates one box per frame, not objects."""
        return []

    def evaluate(self) -> dict[str, float]:
        """Overall numbers.

        Returns:
            ``mean_IoU`` (video-weighted; videos without a scored frame are left out, where
            the script would report NaN), ``SR@0.5`` ... ``SR@0.9`` (pooled over frames),
            ``num_frames``, ``num_videos``, and ``SR@tau/<category>`` for every motion
            category that occurs.
        """
        scored = [v for v in self.videos if v.ious.size]
        if not scored:
            raise MetricInputError("no annotated frames were scored")
        ious = np.concatenate([v.ious for v in scored])
        motion = np.concatenate([v.motion for v in scored])
        out: dict[str, float] = {
            "mean_IoU": float(np.mean([v.mean_iou for v in scored])),
            "num_frames": float(ious.size),
            "num_videos": float(len(scored)),
        }
        for th in self.thresholds:
            out[f"SR@{th:g}"] = float(np.count_nonzero(ious > th)) / ious.size
        for label, name in MOCA_MOTION_NAMES.items():
            sel = motion == label
            if sel.any():
                for th in self.thresholds:
                    out[f"SR@{th:g}/{name}"] = float(np.count_nonzero(ious[sel] > th)) / sel.sum()
        return out
