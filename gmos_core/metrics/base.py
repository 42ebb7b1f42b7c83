"""One evaluator protocol (``reset / process / evaluate``) and one class per named protocol.

* :class:`DavisEvaluator` - DAVIS J&F: ``"semi-supervised"`` and ``"unsupervised"`` (DAVIS-2017
  toolkit, object-weighted), ``"davis16"`` (binary, first/last frame skipped,
  sequence-weighted) and ``"mos"`` (SegAnyMo binary, all frames, truncated);
* :class:`MosIEvaluator` - Gmos' MOS-I (J_mov, FP, mtIoU);
* :class:`~gmos_core.metrics.moca.MocaEvaluator` - MoCA box success rate.

Object-weighted and sequence-weighted averages are never mixed: each protocol uses the one
its official evaluator uses.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from gmos_core.metrics.davis import (
    MetricInputError,
    SequenceResult,
    evaluate_davis16,
    evaluate_mos_binary,
    evaluate_semisupervised,
    evaluate_unsupervised,
    global_table,
    global_table_davis16,
    per_object_table,
)
from gmos_core.metrics.moca import MocaEvaluator
from gmos_core.metrics.mos_i import (
    MosISequenceResult,
    MotionIntervals,
    aggregate_mos_i,
    evaluate_mos_i_sequence,
)
from gmos_core.metrics.ranges import check_metric_ranges

__all__ = [
    "DavisEvaluator",
    "DavisTask",
    "Evaluator",
    "MetricInputError",
    "MocaEvaluator",
    "MosIEvaluator",
]

DavisTask = Literal["semi-supervised", "unsupervised", "davis16", "mos"]


@runtime_checkable
class Evaluator(Protocol):
    """Accumulate sequences with ``process`` and report ``evaluate()`` as plain floats."""

    def reset(self) -> None:
        """Forget everything processed so far."""
        ...

    def process(self, seq: str, **inputs: Any) -> None:
        """Score one sequence; the keyword inputs depend on the protocol."""
        ...

    def evaluate(self) -> dict[str, float]:
        """Aggregate every processed sequence into named numbers."""
        ...

    def sequence_rows(self) -> list[dict[str, Any]]:
        """One row of numbers per processed sequence, ``"sequence"`` first, in process order."""
        ...

    def object_rows(self) -> list[dict[str, Any]]:
        """One row of numbers per object (empty where the protocol scores no objects)."""
        ...


class DavisEvaluator:
    """DAVIS J&F for one task.

    ``process(seq, gt_labels=(T,H,W) uint8, res_labels=(T,H,W) int)`` per sequence, then
    ``evaluate()`` -> the global table (J&F-Mean, J-Mean, J-Recall, J-Decay, F-Mean,
    F-Recall, F-Decay). :meth:`per_object` gives the toolkit's per-object rows,
    :meth:`object_rows` the same with their J&F-Mean and :meth:`sequence_rows` the mean J&F
    of each sequence's objects.
    """

    _TASKS: tuple[str, ...] = ("semi-supervised", "unsupervised", "davis16", "mos")

    def __init__(
        self, task: DavisTask, *, max_proposals: int = 20, compat_uint8: bool = False
    ) -> None:
        if task not in self._TASKS:
            raise MetricInputError(f"unknown DAVIS task {task!r}; expected one of {self._TASKS}")
        self.task = task
        self.max_proposals = max_proposals
        self.compat_uint8 = compat_uint8
        self.results: list[SequenceResult] = []

    def reset(self) -> None:
        """Forget every processed sequence."""
        self.results = []

    def process(self, seq: str, *, gt_labels: np.ndarray, res_labels: np.ndarray) -> None:
        """Evaluate one sequence (see the ``evaluate_*`` functions of
        :mod:`gmos_core.metrics.davis` for the per-task rules)."""
        if any(r.seq == seq for r in self.results):
            raise MetricInputError(f"{seq}: sequence already processed (call reset() first)")
        if self.task == "semi-supervised":
            res = evaluate_semisupervised(seq, gt_labels, res_labels)
        elif self.task == "unsupervised":
            res = evaluate_unsupervised(seq, gt_labels, res_labels, self.max_proposals)
        elif self.task == "davis16":
            res = evaluate_davis16(seq, gt_labels, res_labels)
        else:
            res = evaluate_mos_binary(seq, gt_labels, res_labels)
        self.results.append(res)

    def evaluate(self) -> dict[str, float]:
        """Global table: object-weighted, except sequence-weighted for ``davis16``.

        Raises:
            MetricRangeError: a number outside its range (never reported).
        """
        if self.task == "davis16":
            out = global_table_davis16(self.results, compat_uint8=self.compat_uint8)
        else:
            out = global_table(self.results, compat_uint8=self.compat_uint8)
        check_metric_ranges(out, f"DAVIS {self.task}")
        return out

    def per_object(self) -> list[dict[str, float | str]]:
        """Per-object rows (see :func:`~gmos_core.metrics.davis.per_object_table`)."""
        return per_object_table(self.results, compat_uint8=self.compat_uint8)

    def object_rows(self) -> list[dict[str, Any]]:
        """:meth:`per_object` rows, each with ``J&F-Mean`` = (J-Mean + F-Mean) / 2 added last
        (the rows of ``gmos-eval``'s results.csv)."""
        rows: list[dict[str, Any]] = list(self.per_object())
        for r in rows:
            r["J&F-Mean"] = (float(r["J-Mean"]) + float(r["F-Mean"])) / 2.0
        return rows

    def sequence_rows(self) -> list[dict[str, Any]]:
        """``{"sequence", "num_objects", "J&F-Mean"}`` per sequence that has objects: the plain
        mean of its objects' J&F-Mean (a sequence without objects has no DAVIS score)."""
        objects = self.object_rows()
        rows: list[dict[str, Any]] = []
        for res in self.results:
            mine = [float(r["J&F-Mean"]) for r in objects if r["seq"] == res.seq]
            if mine:
                rows.append(
                    {
                        "sequence": res.seq,
                        "num_objects": len(mine),
                        "J&F-Mean": float(np.mean(mine)),
                    }
                )
        return rows


class MosIEvaluator:
    """Gmos MOS-I benchmark.

    ``process(seq, gt_labels=(T,H,W), res_labels=(T',h,w), intervals={id: [(s, e), ...]},
    pred_motion=None)`` per sequence in CSV order, then ``evaluate()`` -> mtIoU, J_mov, FP
    and mtIoU@tau; :meth:`sequence_rows` gives the official ``--verbose`` numbers per
    sequence and :meth:`object_rows` the J_mov of each moving object (what J_mov pools).
    """

    def __init__(self, frame_level_match: bool = False) -> None:
        self.frame_level_match = frame_level_match
        self.results: list[MosISequenceResult] = []

    def reset(self) -> None:
        """Forget every processed sequence."""
        self.results = []

    def process(
        self,
        seq: str,
        *,
        gt_labels: np.ndarray,
        res_labels: np.ndarray,
        intervals: MotionIntervals,
        pred_motion: np.ndarray | None = None,
    ) -> None:
        """Evaluate one sequence (see :func:`~gmos_core.metrics.mos_i.evaluate_mos_i_sequence`)."""
        if any(r.seq == seq for r in self.results):
            raise MetricInputError(f"{seq}: sequence already processed (call reset() first)")
        self.results.append(
            evaluate_mos_i_sequence(
                gt_labels,
                res_labels,
                intervals,
                pred_motion,
                self.frame_level_match,
                seq=seq,
            )
        )

    def evaluate(self) -> dict[str, float]:
        """Overall numbers (see :func:`~gmos_core.metrics.mos_i.aggregate_mos_i`).

        Raises:
            MetricRangeError: mtIoU or J_mov above 1 (ground truth whose motion intervals do
                not match its masks), never reported.
        """
        out = aggregate_mos_i(self.results)
        matching = "frame-level" if self.frame_level_match else "sequence-level"
        check_metric_ranges(out, f"MOS-I ({matching} matching)")
        return out

    def sequence_rows(self) -> list[dict[str, Any]]:
        """Per sequence: mtIoU (mean over the thresholds), J_mov (mean over its moving
        objects, NaN if none), FP (mean false-positive objects per frame) and the number of
        moving objects."""
        return [
            {
                "sequence": r.seq,
                "mtIoU": r.mtiou_mean,
                "J_mov": r.j_mov_mean,
                "FP": float(r.fp_count),
                "num_moving_objects": int(np.asarray(r.j_mov).size),
            }
            for r in self.results
        ]

    def object_rows(self) -> list[dict[str, Any]]:
        """Per moving object: ``{"sequence", "object_id" (label id, 1-based), "J_mov"}``."""
        return [
            {"sequence": r.seq, "object_id": int(ch) + 1, "J_mov": float(jm)}
            for r in self.results
            for ch, jm in zip(np.asarray(r.motion_channels), np.asarray(r.j_mov))
        ]
