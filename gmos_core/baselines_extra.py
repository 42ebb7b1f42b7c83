"""More non-learned baselines, and the instance linking both baselines need for MOS-I.

`FrameDifferencingBaseline` is the simplest motion detector: whatever changes between the centre
frame and its window neighbours is "moving", with no camera-motion compensation at all. Under a
moving camera every textured edge changes, so it marks most of the image: the floor of what a
motion segmenter must beat. `EgoMotionResidualBaseline` (`gmos_core.baselines`) compensates the
camera with one homography and fails only on parallax.

Both produce per-frame instance maps (connected components). MOS-I scores objects by identity
over the sequence, so `link_instances` turns per-frame components into tracks (Hungarian on mask
IoU with the previous frame, scipy `linear_sum_assignment`); a component present at frame t is
"moving at t" (that is what a motion detector asserts), so the per-frame motion state of a track
is simply whether it has pixels in that frame.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from gmos_core.models.preprocess import window_indices

__all__ = [
    "FrameDifferencingBaseline",
    "components_to_labels",
    "InstanceLinker",
    "iter_window_baseline",
    "link_instances",
    "run_window_baseline",
]


def components_to_labels(
    fg: np.ndarray, min_area_fraction: float = 0.002, max_objects: int = 20
) -> np.ndarray:
    """Binary mask -> instance label map of its largest connected components.

    Args:
        fg: (H, W) bool / uint8 foreground.
        min_area_fraction: components smaller than this share of the image are dropped.
        max_objects: keep at most this many (largest first).

    Returns:
        (H, W) uint8 labels 0 (background), 1..K by decreasing area.
    """
    fg = (fg > 0).astype(np.uint8)
    n, comp, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    min_area = min_area_fraction * fg.size
    order = [
        i
        for i in np.argsort(-stats[1:, cv2.CC_STAT_AREA]) + 1
        if stats[i, cv2.CC_STAT_AREA] >= min_area
    ][:max_objects]
    labels = np.zeros(fg.shape, np.uint8)
    for k, i in enumerate(order, start=1):
        labels[comp == i] = k
    return labels


@dataclass(frozen=True)
class FrameDifferencingBaseline:
    """Plain frame differencing over the Gmos window (no ego-motion compensation).

    Args:
        diff_threshold: mean absolute grey-level difference (0..255) over the neighbours above
            which a pixel is moving.
        blur: Gaussian kernel side applied before differencing (suppresses JPEG / texture noise).
        min_area_fraction: components smaller than this share of the image are noise.
        max_objects: at most this many instances per frame.
    """

    diff_threshold: float = 12.0
    blur: int = 5
    min_area_fraction: float = 0.002
    max_objects: int = 20

    def residual(self, window: np.ndarray, center: int) -> np.ndarray:
        """(N, H, W, 3) uint8 window -> (H, W) float32 mean |neighbour − centre| grey difference."""
        grey = [
            cv2.GaussianBlur(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (self.blur, self.blur), 0).astype(
                np.float32
            )
            for f in window
        ]
        ref = grey[center]
        diffs = [np.abs(g - ref) for i, g in enumerate(grey) if i != center]
        if not diffs:
            return np.zeros_like(ref)
        return np.mean(diffs, axis=0).astype(np.float32)

    def segment(self, window: np.ndarray, center: int) -> np.ndarray:
        """Instance label map (H, W) uint8 of the centre frame (0 = background, 1..K)."""
        fg = (self.residual(window, center) > self.diff_threshold).astype(np.uint8)
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
        return components_to_labels(fg, self.min_area_fraction, self.max_objects)


class InstanceLinker:
    """Link per-frame instance maps into tracks with consistent ids, one frame at a time.

    Each frame's components are matched to the previous frame's tracks by Hungarian assignment
    on mask IoU (pairs below `min_iou` stay unmatched); an unmatched component starts a new
    track. Ids beyond `max_tracks` (the MOS-I evaluator's 20 channels) are dropped. Causal: it
    holds only the previous frame's track masks, so a clip of any length streams through it.

    Args:
        min_iou: minimum IoU to continue a track.
        max_tracks: maximum number of track ids.
    """

    def __init__(self, min_iou: float = 0.1, max_tracks: int = 20) -> None:
        self.min_iou = min_iou
        self.max_tracks = max_tracks
        self._prev: dict[int, np.ndarray] = {}  # track id -> mask in the previous frame
        self._next_id = 1

    def step(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H, W) integer instance map (ids independent across frames) -> (tracks (H, W) uint8
        with ids 1..max_tracks, motion (max_tracks,) float32: 1 where the track has pixels)."""
        out = np.zeros(labels.shape, np.uint8)
        motion = np.zeros(self.max_tracks, np.float32)
        ids = [int(v) for v in np.unique(labels) if v > 0]
        masks = [labels == v for v in ids]
        assigned: dict[int, int] = {}
        prev = self._prev
        if ids and prev:
            tids = list(prev)
            iou = np.zeros((len(ids), len(tids)))
            for i, m in enumerate(masks):
                for j, tid in enumerate(tids):
                    inter = np.logical_and(m, prev[tid]).sum()
                    union = np.logical_or(m, prev[tid]).sum()
                    iou[i, j] = inter / union if union else 0.0
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols):
                if iou[r, c] >= self.min_iou:
                    assigned[r] = tids[c]
        cur: dict[int, np.ndarray] = {}
        for i, m in enumerate(masks):
            tid = assigned.get(i)
            if tid is None:
                if self._next_id > self.max_tracks:
                    continue
                tid, self._next_id = self._next_id, self._next_id + 1
            out[m] = tid
            motion[tid - 1] = 1.0
            cur[tid] = m
        self._prev = cur
        return out, motion


def link_instances(
    labels: np.ndarray, min_iou: float = 0.1, max_tracks: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """Link a clip of per-frame instance maps into tracks (`InstanceLinker` over its frames).

    Args:
        labels: (T, H, W) integer per-frame instance maps (ids independent across frames).
        min_iou: minimum IoU to continue a track.
        max_tracks: maximum number of track ids.

    Returns:
        (tracks (T, H, W) uint8 with ids 1..max_tracks, motion (T, max_tracks) float32: 1 where
        the track has pixels in the frame).
    """
    linker = InstanceLinker(min_iou, max_tracks)
    out = np.zeros(labels.shape, np.uint8)
    motion = np.zeros((labels.shape[0], max_tracks), np.float32)
    for t in range(labels.shape[0]):
        out[t], motion[t] = linker.step(labels[t])
    return out, motion


def iter_window_baseline(
    frames: Iterable[np.ndarray],
    segment: Callable[[np.ndarray, int], np.ndarray],
    stride: int,
    num_frames: int = 5,
) -> Iterator[np.ndarray]:
    """Streaming form of `run_window_baseline`: frame t's labels as soon as its window is in.

    The window of frame t reaches t + (num_frames // 2)·stride (clamped to the last frame), so
    t is segmented once that frame has arrived, or at the end of the stream; only the frames
    some pending window still needs are kept (at most num_frames // 2 · stride · 2 + 1), so the
    memory does not grow with the clip.

    Args:
        frames: (H, W, 3) uint8 RGB frames, in order.
        segment: `baseline.segment(window (N, H, W, 3), center) -> (H, W) labels`.
        stride: window stride in frames (`stride_from_fps`).
        num_frames: window length.

    Yields:
        (H, W) uint8 instance map of frame 0, 1, ... (ids independent across frames).
    """
    reach = (num_frames // 2) * stride
    buf: dict[int, np.ndarray] = {}
    received = 0
    t = 0

    def run(total: int) -> np.ndarray:
        # Every index is < total: clamping at the end only bites at the end of the stream.
        idx = window_indices(t, total, stride, num_frames)
        return segment(np.stack([buf[i] for i in idx]), len(idx) // 2).astype(np.uint8)

    for frame in frames:
        buf[received] = frame
        received += 1
        while t + reach < received:
            yield run(received)
            t += 1
            buf.pop(t - reach - 1, None)
    while t < received:
        yield run(received)
        t += 1


def run_window_baseline(
    frames: np.ndarray,
    segment: Callable[[np.ndarray, int], np.ndarray],
    stride: int,
    num_frames: int = 5,
) -> np.ndarray:
    """Run a per-window segmenter on every frame of a video (the Gmos window rule).

    Args:
        frames: (T, H, W, 3) uint8 RGB.
        segment: `baseline.segment(window (N, H, W, 3), center) -> (H, W) labels`.
        stride: window stride in frames (`stride_from_fps`).
        num_frames: window length.

    Returns:
        (T, H, W) uint8 per-frame instance maps (ids independent across frames).
    """
    out = np.zeros(frames.shape[:3], np.uint8)
    for t, labels in enumerate(iter_window_baseline(frames, segment, stride, num_frames)):
        out[t] = labels
    return out
