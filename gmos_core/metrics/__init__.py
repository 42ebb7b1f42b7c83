"""Evaluation metrics that reproduce the official evaluators.

* :mod:`.davis` - DAVIS J / F, ``db_statistics`` and the semi-supervised, unsupervised,
  DAVIS-2016 and SegAnyMo ``mos`` sequence protocols;
* :mod:`.mos_i` - Gmos' MOS-I benchmark (J_mov, FP, mtIoU);
* :mod:`.moca` - MoCA box detection success rate;
* :mod:`.base` - the ``Evaluator`` protocol and one evaluator class per protocol.
"""

from gmos_core.metrics.base import DavisEvaluator, DavisTask, Evaluator, MosIEvaluator
from gmos_core.metrics.davis import (
    GLOBAL_KEYS,
    MetricInputError,
    SequenceResult,
    boundary_precision_recall,
    db_statistics,
    evaluate_davis16,
    evaluate_mos_binary,
    evaluate_semisupervised,
    evaluate_unsupervised,
    f_measure,
    global_table,
    global_table_davis16,
    jaccard,
    per_object_table,
    seg2bmap,
)
from gmos_core.metrics.moca import (
    MOCA_THRESHOLDS,
    MocaEvaluator,
    box_iou,
    gt_box_from_xywh,
    mask_to_box,
)
from gmos_core.metrics.mos_i import (
    MOS_I_THRESHOLDS,
    MosISequenceResult,
    MotionIntervals,
    aggregate_mos_i,
    evaluate_mos_i_sequence,
    motion_matrix,
)

__all__ = [
    "GLOBAL_KEYS",
    "MOCA_THRESHOLDS",
    "MOS_I_THRESHOLDS",
    "DavisEvaluator",
    "DavisTask",
    "Evaluator",
    "MetricInputError",
    "MocaEvaluator",
    "MosIEvaluator",
    "MosISequenceResult",
    "MotionIntervals",
    "SequenceResult",
    "aggregate_mos_i",
    "boundary_precision_recall",
    "box_iou",
    "db_statistics",
    "evaluate_davis16",
    "evaluate_mos_binary",
    "evaluate_mos_i_sequence",
    "evaluate_semisupervised",
    "evaluate_unsupervised",
    "f_measure",
    "global_table",
    "global_table_davis16",
    "gt_box_from_xywh",
    "jaccard",
    "mask_to_box",
    "motion_matrix",
    "per_object_table",
    "seg2bmap",
]
