"""MOS-I of a bag's predictions against its ground truth."""

from __future__ import annotations

from typing import Any

import numpy as np

from gmos_ros.bag.ground_truth import GroundTruth


def score_mos_i(
    gt: GroundTruth,
    predictions: dict[int, tuple[np.ndarray, set[int]]],
    seq: str = "bag",
    num_channels: int = 20,
) -> dict[str, Any]:
    """MOS-I of predictions keyed by frame stamp: (instance ids (H, W), ids moving now).

    Frames without a prediction count as empty predictions (and are reported). The per-frame
    moving flags become the official per-channel motion scores (`___motion.npy`): an object
    that is tracked but not moving at a frame is not a moving-object prediction there.
    """
    from gmos_core.metrics.mos_i import aggregate_mos_i, evaluate_mos_i_sequence

    t, h, w = gt.labels.shape
    pred = np.zeros((t, h, w), np.uint16)
    motion = np.zeros((t, num_channels), np.float32)
    missing = 0
    for i, stamp in enumerate(gt.stamps_ns):
        item = predictions.get(stamp)
        if item is None:
            missing += 1
            continue
        ids, moving = item
        pred[i] = ids
        for k in moving:
            if 1 <= k <= num_channels:
                motion[i, k - 1] = 1.0
    from gmos_core.metrics.ranges import check_metric_ranges

    res = evaluate_mos_i_sequence(gt.labels, pred, gt.intervals, pred_motion=motion, seq=seq)
    out = {"frames": t, "missing_predictions": missing, **aggregate_mos_i([res])}
    check_metric_ranges(out, f"{seq} MOS-I")  # never report an impossible score
    return out
