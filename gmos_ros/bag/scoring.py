"""MOS-I of a bag's predictions against its ground truth, and the node's 3-D state messages as
`gmos_core.metrics.object_states` estimates (scored against a synthetic bag's scene)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from gmos_core.geometry import EgoMotion, invert_transform
from gmos_core.metrics.base import MosIEvaluator
from gmos_core.metrics.loop import SequenceInputs, run_evaluator
from gmos_core.metrics.object_states import EstimatedObject, FrameEstimate
from gmos_ros.bag.ground_truth import GroundTruth
from gmos_ros.messages import stamp_to_ns


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


def ego_from_msg(msg: Any) -> EgoMotion | None:
    """gmos_msgs/EgoMotion → `EgoMotion` (None for a zero time step)."""
    tr, rot = msg.prev_from_curr.translation, msg.prev_from_curr.rotation
    prev_from_curr = np.eye(4)
    prev_from_curr[:3, :3] = Rotation.from_quat([rot.x, rot.y, rot.z, rot.w]).as_matrix()
    prev_from_curr[:3, 3] = (tr.x, tr.y, tr.z)
    prev_ns = int(msg.previous_stamp.sec) * 1_000_000_000 + int(msg.previous_stamp.nanosec)
    dt = (stamp_to_ns(msg.header) - prev_ns) * 1e-9
    if dt <= 0:
        return None
    source = msg.source if msg.source in ("pi3", "odometry", "truth") else "odometry"
    return EgoMotion(invert_transform(prev_from_curr), dt, bool(msg.metric), source)


def frame_estimate(
    stamp_ns: int, instance_ids: np.ndarray, objects: Any, ego: Any = None
) -> FrameEstimate:
    """One frame's metric 3-D states from the node's messages: the instance map, its
    gmos_msgs/MovingObjectArray and the gmos_msgs/EgoMotion of that stamp (or None).
    Objects without a metric position are left out (nothing in metres to score)."""
    est = []
    for o in objects.objects:
        if not (o.has_position and o.metric):
            continue
        vel = np.array([o.velocity.x, o.velocity.y, o.velocity.z]) if o.has_velocity else None
        est.append(
            EstimatedObject(int(o.id), np.array([o.position.x, o.position.y, o.position.z]), vel)
        )
    return FrameEstimate(
        int(stamp_ns), instance_ids, est, ego_from_msg(ego) if ego is not None else None
    )
