"""MOS-I: moving-object segmentation with per-instance motion intervals (Gmos' benchmark).

Re-implements the numbers of the official ``metrics/benchmark_mos_i.py`` (checked against
``shared/fixtures/mos_i_parity.npz``, see ``PARITY.md`` 4.6 and 6.3). The official code works
in float32 torch tensors; so does this module where it matters (IoU, frame means, the
Hungarian cost and the thresholds), because the Hungarian matching has many exactly tied
costs and the solver's tie-breaking must see the same numbers.

Conventions (T = min(#GT frames, #predicted frames), C = 20 channels):

* motion M (T, C): M[t, k] = 1 if frame t lies in an inclusive interval of object id k+1;
* GT channel k = (gt == k+1) AND M[t, k] (GT is empty on static frames and for ids without
  intervals); prediction channel k = (pred == k+1), ids 0 and > C ignored;
* a prediction of another size is resized per channel as float, bilinear,
  ``align_corners=False``, no antialias, then kept where strictly > 0.5;
* an optional (T, C, 1) per-channel motion score zeroes channel k at frame t unless > 0.5;
* IoU = |p & g| / (|p | g| + 1e-6), 1.0 when both are empty;
* matching: Hungarian on 1 - IoU averaged over frames (sequence level) or per frame; the
  predicted channel i is moved to GT channel ``assignment[i]``;
* J_mov per channel with >= 1 moving frame, FP per frame, mtIoU at 10 thresholds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from gmos_core.metrics.davis import MetricInputError

__all__ = [
    "MOS_I_THRESHOLDS",
    "MosISequenceResult",
    "MotionIntervals",
    "aggregate_mos_i",
    "evaluate_mos_i_sequence",
    "motion_matrix",
]

#: object id -> inclusive [start, end] frame intervals in which that object moves.
MotionIntervals = dict[int, list[tuple[int, int]]]

#: The 10 tIoU thresholds 0.50, 0.55, ..., 0.95 (``arange(10) * 0.05 + 0.5``).
MOS_I_THRESHOLDS: np.ndarray = np.arange(10) * 0.05 + 0.5

NUM_CHANNELS = 20
_IOU_EPS = np.float32(1e-6)
_RATIO_EPS = np.float32(1e-8)


def _interval_items(
    intervals: Mapping[int | str, Sequence[Sequence[int]]],
) -> list[tuple[int, int, int]]:
    """Validate ``intervals`` and flatten them to (object id, start, end) triples."""
    if not isinstance(intervals, Mapping):
        raise MetricInputError(
            f"intervals must be a dict {{object_id: [[start, end], ...]}}, got {type(intervals)}"
        )
    out: list[tuple[int, int, int]] = []
    for key, spans in intervals.items():
        try:
            obj = int(key)  # JSON / literal_eval dicts have string keys such as "1"
        except (TypeError, ValueError):
            raise MetricInputError(f"object id {key!r} in intervals is not an integer") from None
        for span in spans:
            if len(span) != 2:
                raise MetricInputError(f"object {obj}: interval {span!r} is not [start, end]")
            start, end = int(span[0]), int(span[1])
            if start < 0 or end < start:
                raise MetricInputError(
                    f"object {obj}: interval [{start}, {end}] must satisfy 0 <= start <= end"
                )
            out.append((obj, start, end))
    return out


def motion_matrix(
    intervals: MotionIntervals, num_frames: int, num_channels: int = NUM_CHANNELS
) -> np.ndarray:
    """Per-frame, per-channel motion labels.

    Args:
        intervals: object id (1-based; int or numeric string) -> inclusive [start, end]
            intervals. Intervals reaching past ``num_frames`` are clipped.
        num_frames: T.
        num_channels: number of channels C (object ids 1..C), 20 in the benchmark.

    Returns:
        (T, C) float32 array of 0/1; column k is object id k+1.
    """
    if num_frames < 0 or num_channels < 1:
        raise MetricInputError(
            f"num_frames must be >= 0 and num_channels >= 1, got {num_frames}, {num_channels}"
        )
    m = np.zeros((num_frames, num_channels), dtype=np.float32)
    for obj, start, end in _interval_items(intervals):
        if not 1 <= obj <= num_channels:
            raise MetricInputError(
                f"object id {obj} in intervals is outside 1..{num_channels} (the official "
                "evaluator has only that many channels)"
            )
        m[start : end + 1, obj - 1] = 1.0
    return m


@dataclass
class MosISequenceResult:
    """MOS-I numbers of one sequence.

    Attributes:
        seq: sequence name.
        num_frames: T, the number of evaluated frames (min of GT and prediction lengths).
        motion_channels: (n,) int64 channels (object id - 1) with >= 1 moving frame.
        j_mov: (n,) float64 J_mov per moving channel, in ``motion_channels`` order.
        fp_count: mean over frames of the number of non-empty predicted channels whose
            matched GT channel is not moving.
        mtiou_per_thres: (10,) float64 tIoU at :data:`MOS_I_THRESHOLDS`.
        tp_counts: (10,) int64 true positives (t, k) with IoU * M > threshold.
        n_pred: number of (t, k) with a non-empty prediction.
        n_gt: sum of M (moving labels, counted even where the GT mask is empty).
        num_objs: number of moving GT objects (informational, unused by the metrics).
        assignment: (C,) int64 (sequence level) or (T, C) int64 (frame level): predicted
            channel i was moved to GT channel ``assignment[..., i]``.
        frame_level_match: which matching produced ``assignment``.
    """

    seq: str
    num_frames: int
    motion_channels: np.ndarray
    j_mov: np.ndarray
    fp_count: float
    mtiou_per_thres: np.ndarray
    tp_counts: np.ndarray
    n_pred: int
    n_gt: int
    num_objs: int
    assignment: np.ndarray
    frame_level_match: bool

    @property
    def j_mov_mean(self) -> float:
        """The ``--verbose`` per-sequence J_mov (mean over moving objects; NaN if none)."""
        if self.j_mov.size == 0:
            return float("nan")
        return float(np.mean(self.j_mov))

    @property
    def mtiou_mean(self) -> float:
        """The ``--verbose`` per-sequence mtIoU (mean over the 10 thresholds)."""
        return float(np.mean(self.mtiou_per_thres))


def _check_labels(name: str, labels: np.ndarray) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 3:
        raise MetricInputError(f"{name} must be (T, H, W) label maps, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise MetricInputError(f"{name} must hold integer labels, got dtype {arr.dtype}")
    return arr


def _index_map(frame: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """(H, W) label map -> (H*W,) int64 channel index (0 = none, k+1 = channel k).

    Labels outside 1..C and channels with ``keep[k]`` False map to 0.
    """
    num_channels = keep.size
    lut = np.arange(num_channels + 1, dtype=np.int64)
    lut[1:][~keep] = 0
    flat = frame.reshape(-1).astype(np.int64)
    flat = np.where((flat >= 1) & (flat <= num_channels), flat, 0)
    return lut[flat]


def _resized_channels(
    frame: np.ndarray, out_hw: tuple[int, int], keep: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(h, w) predicted labels -> (present channel ids, (n, H*W) bool masks at GT size).

    Each channel is resized as a float 0/1 image (bilinear, ``align_corners=False``, no
    antialias) and kept where strictly > 0.5, so a value of exactly 0.5 stays background.
    """
    import torch  # deferred: importing gmos_core.metrics should not pull in torch
    import torch.nn.functional as torch_f

    ids = np.arange(1, keep.size + 1)
    present = ids[keep & np.isin(ids, frame)] - 1
    if present.size == 0:
        return present, np.zeros((0, out_hw[0] * out_hw[1]), dtype=bool)
    # An absent channel resizes to all zeros, so only present ones go through torch.
    onehot = frame[None] == (present + 1)[:, None, None]
    x = torch.from_numpy(onehot.astype(np.float32))[None]
    y = torch_f.interpolate(x, size=out_hw, mode="bilinear", align_corners=False)
    return present, (y[0] > 0.5).reshape(present.size, -1).numpy()


def _frame_counts(
    pred: np.ndarray,
    gt: np.ndarray,
    moving: np.ndarray,
    keep_pred: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel counts of one frame.

    Args:
        pred: (h, w) predicted label map (resized to the GT size when it differs).
        gt: (H, W) GT label map.
        moving: (C,) bool, GT channel k exists only where object k+1 moves at this frame.
        keep_pred: (C,) bool, predicted channels that survive the motion gate.

    Returns:
        (C, C) float64 intersections |pred_i & gt_j|, (C,) |pred_i|, (C,) |gt_j|.
    """
    num_channels = moving.size
    gidx = _index_map(gt, moving)  # GT channels never overlap: one label per pixel
    if pred.shape == gt.shape:
        pidx = _index_map(pred, keep_pred)
    else:
        present, masks = _resized_channels(pred, gt.shape, keep_pred)
        if masks.sum(axis=0, dtype=np.int64).max(initial=0) > 1:
            # Bilinear weights sum to 1, so two resized channels > 0.5 on one pixel would need
            # float rounding; count such overlaps exactly with one-hot products instead.
            pch = np.zeros((num_channels, masks.shape[1]), dtype=np.float64)
            pch[present] = masks
            gch = (gidx[None, :] == np.arange(1, num_channels + 1)[:, None]).astype(np.float64)
            return pch @ gch.T, pch.sum(axis=1), gch.sum(axis=1)
        pidx = np.zeros(masks.shape[1], dtype=np.int64)
        for ch, m in zip(present, masks):
            pidx[m] = ch + 1
    n = num_channels + 1
    joint = np.bincount(pidx * n + gidx, minlength=n * n).reshape(n, n).astype(np.float64)
    return joint[1:, 1:], joint[1:, :].sum(axis=1), joint[:, 1:].sum(axis=0)


def _iou_from_counts(inter: np.ndarray, p_sum: np.ndarray, g_sum: np.ndarray) -> np.ndarray:
    """(C, C) float32 IoU = |p & g| / (|p | g| + 1e-6), 1.0 where both are empty.

    The counts are exact integers; the division is done in float32 like the official code.
    """
    union = p_sum[:, None] + g_sum[None, :] - inter
    iou = inter.astype(np.float32) / (union.astype(np.float32) + _IOU_EPS)
    iou[(p_sum[:, None] == 0) & (g_sum[None, :] == 0)] = 1.0  # both empty counts as a hit
    return iou


def evaluate_mos_i_sequence(
    gt_labels: np.ndarray,
    pred_labels: np.ndarray,
    intervals: MotionIntervals,
    pred_motion: np.ndarray | None = None,
    frame_level_match: bool = False,
    *,
    seq: str = "<sequence>",
    num_channels: int = NUM_CHANNELS,
) -> MosISequenceResult:
    """MOS-I metrics of one sequence.

    Args:
        gt_labels: (T_gt, H, W) integer GT label maps (0 = background, k = object k).
        pred_labels: (T_pred, h, w) integer predicted label maps (ids 1..20 are channels).
        intervals: object id -> inclusive [start, end] motion intervals (the ``time_anno``).
        pred_motion: optional (T', C, 1) or (T', C) float per-channel motion scores with
            T' >= T (the official ``<seq>___motion.npy``); channel k at frame t is dropped
            unless its score is > 0.5.
        frame_level_match: Hungarian per frame instead of once per sequence.
        seq: name used in the result and in error messages.
        num_channels: C (20 in the benchmark).

    Returns:
        :class:`MosISequenceResult`.
    """
    try:
        gt = _check_labels("gt_labels", gt_labels)
        pred = _check_labels("pred_labels", pred_labels)
    except MetricInputError as err:
        raise MetricInputError(f"{seq}: {err}") from None
    t = min(gt.shape[0], pred.shape[0])
    if t == 0:
        raise MetricInputError(f"{seq}: no frames to evaluate")
    try:
        motion = motion_matrix(intervals, t, num_channels)
    except MetricInputError as err:
        raise MetricInputError(f"{seq}: {err}") from None
    gate = None
    if pred_motion is not None:
        pm = np.asarray(pred_motion, dtype=np.float32)
        if pm.ndim == 3 and pm.shape[2] == 1:
            pm = pm[:, :, 0]
        if pm.ndim != 2 or pm.shape[1] != num_channels or pm.shape[0] < t:
            raise MetricInputError(
                f"{seq}: pred_motion must be (T, {num_channels}, 1) with T >= {t}, "
                f"got shape {np.shape(pred_motion)}"
            )
        gate = pm[:t] > 0.5

    ious = np.empty((t, num_channels, num_channels), dtype=np.float32)
    pred_nonempty = np.empty((t, num_channels), dtype=bool)
    all_on = np.ones(num_channels, dtype=bool)
    for i in range(t):
        keep = all_on if gate is None else gate[i]
        inter, p_sum, g_sum = _frame_counts(pred[i], gt[i], motion[i] > 0, keep)
        ious[i] = _iou_from_counts(inter, p_sum, g_sum)
        pred_nonempty[i] = p_sum > 0

    import torch  # deferred, see _resized_channels

    if frame_level_match:
        assignment = np.empty((t, num_channels), dtype=np.int64)
        for i in range(t):
            rows, cols = linear_sum_assignment(1.0 - ious[i])
            assignment[i, rows] = cols
        per_frame_assign = assignment
    else:
        # Mean over frames in float32 with torch, as the official evaluator does, so the
        # (many exactly tied) costs reach the solver as the same numbers.
        mean_iou = torch.from_numpy(ious).mean(dim=0).numpy()
        rows, cols = linear_sum_assignment(1.0 - mean_iou)
        assignment = np.empty(num_channels, dtype=np.int64)
        assignment[rows] = cols
        per_frame_assign = np.broadcast_to(assignment, (t, num_channels))

    # After matching, GT channel k is compared with the predicted channel moved onto it.
    frame_idx = np.arange(t)[:, None]
    src = np.argsort(per_frame_assign, axis=1)  # src[t, k] = predicted channel now at k
    matched_iou = ious[frame_idx, src, np.arange(num_channels)[None, :]]  # (T, C) float32
    matched_nonempty = pred_nonempty[frame_idx, src]

    masked_iou = matched_iou * motion  # float32
    n_pred = int(pred_nonempty.sum())
    n_gt = int(motion.sum())
    thresholds32 = MOS_I_THRESHOLDS.astype(np.float32)  # torch compares in float32
    tp = np.array([int((masked_iou > th).sum()) for th in thresholds32], dtype=np.int64)
    # The official counts are integers, so this ratio is float64 (unlike the IoUs).
    mtiou = tp / (n_pred + n_gt - tp + 1e-8)

    moving = motion.sum(axis=0)  # float32 (C,)
    channels = np.flatnonzero(moving > 0).astype(np.int64)
    j_sum = torch.from_numpy(masked_iou).sum(dim=0).numpy()
    j_mov = j_sum[channels] / (moving[channels] + _RATIO_EPS)

    fp_per_frame = (matched_nonempty & (motion == 0)).sum(axis=1).astype(np.float32)
    fp = float(np.mean(fp_per_frame))

    return MosISequenceResult(
        seq=seq,
        num_frames=t,
        motion_channels=channels,
        j_mov=j_mov.astype(np.float64),
        fp_count=fp,
        mtiou_per_thres=mtiou.astype(np.float64),
        tp_counts=tp,
        n_pred=n_pred,
        n_gt=n_gt,
        num_objs=int(channels.size),
        assignment=assignment,
        frame_level_match=frame_level_match,
    )


def aggregate_mos_i(results: list[MosISequenceResult]) -> dict[str, float]:
    """Overall MOS-I numbers, pooled like the official evaluator.

    * ``mtIoU`` = mean over thresholds of (mean over sequences); ``mtIoU@0.50`` ... are the
      per-threshold means over sequences;
    * ``J_mov`` = mean over all moving objects pooled across sequences (object-weighted);
    * ``FP`` = mean over sequences.

    Args:
        results: per-sequence results (at least one).

    Returns:
        dict with ``mtIoU``, ``J_mov``, ``FP`` and ``mtIoU@0.50`` ... ``mtIoU@0.95``.
    """
    if not results:
        raise MetricInputError("no MOS-I sequence results to aggregate")
    per_thres = np.stack([r.mtiou_per_thres for r in results]).mean(axis=0)
    j_all = np.concatenate([r.j_mov for r in results])
    out = {
        "mtIoU": float(per_thres.mean()),
        "J_mov": float(j_all.mean()) if j_all.size else float("nan"),
        "FP": float(np.mean([r.fp_count for r in results])),
    }
    for th, v in zip(MOS_I_THRESHOLDS, per_thres):
        out[f"mtIoU@{th:.2f}"] = float(v)
    return out
