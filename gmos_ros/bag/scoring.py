"""MOS-I of a bag's predictions against its ground truth."""

from __future__ import annotations

from typing import Any

import numpy as np

from gmos_core.metrics.base import MosIEvaluator
from gmos_core.metrics.loop import SequenceInputs, run_evaluator
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
    inputs = {
        "gt_labels": gt.labels,
        "res_labels": pred,
        "intervals": gt.intervals,
        "pred_motion": motion,
    }
    # The evaluator loop every scorer uses; MosIEvaluator.evaluate() refuses an impossible score.
    scored = run_evaluator(MosIEvaluator(), [SequenceInputs(seq, inputs)])
    return {"frames": t, "missing_predictions": missing, **scored.summary}
