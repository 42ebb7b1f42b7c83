"""The one loop that feeds sequences to evaluators, and the one result container it returns.

Every scorer goes through it (detectron2's ``inference_on_dataset`` without the model: the
predictions are already made, by a segmenter run over a clip or read from a results folder):
``gmos-eval`` for each protocol, the calibration, stride-curve and GPU-check scores
(``training.scoring``) and ``gmos-bag eval``. The loop resets each evaluator, calls
``process(seq, **inputs)`` per sequence and ``evaluate()`` once, and gathers the evaluator's
per-sequence and per-object rows beside the global numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gmos_core.metrics.base import Evaluator

__all__ = ["EvaluationResult", "SequenceInputs", "run_evaluator", "run_evaluators"]


@dataclass(frozen=True)
class SequenceInputs:
    """One sequence as the loop feeds it.

    Attributes:
        seq: sequence name (unique within one run).
        inputs: the keyword inputs of the evaluators' ``process`` (e.g. ``gt_labels`` (T, H, W)
            and ``res_labels`` (T, H, W) for DAVIS and MOS-I, ``masks`` and ``gt_boxes`` for
            MoCA).
        facts: what reading the sequence found (frame counts, flags), reported beside its
            scores; not metrics, so no evaluator sees them.
    """

    seq: str
    inputs: Mapping[str, Any]
    facts: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvaluationResult:
    """What one evaluator reported after the loop.

    Attributes:
        summary: ``evaluate()``: the global numbers, unscaled (fractions, counts).
        sequences: ``sequence_rows()``: one row per scored sequence, in process order, each
            with a ``"sequence"`` key first.
        objects: ``object_rows()``: one row per object (empty where the protocol has none).
        facts: sequence -> its :attr:`SequenceInputs.facts`, in process order.
    """

    summary: dict[str, float]
    sequences: list[dict[str, Any]]
    objects: list[dict[str, Any]]
    facts: dict[str, dict[str, Any]]


def run_evaluators(
    evaluators: Mapping[str, Evaluator], sequences: Iterable[SequenceInputs]
) -> dict[str, EvaluationResult]:
    """Feed every sequence to every evaluator (each sequence is read once), then evaluate.

    Args:
        evaluators: name -> evaluator (e.g. two MOS-I matchings scored from one read).
        sequences: the sequences, read lazily (an iterator is consumed once).

    Returns:
        name -> :class:`EvaluationResult`, in the order of `evaluators`.

    Raises:
        MetricInputError: bad inputs or an empty run (from the evaluators).
        MetricRangeError: a global number outside its range (from ``evaluate()``).
    """
    for ev in evaluators.values():
        ev.reset()
    facts: dict[str, dict[str, Any]] = {}
    for item in sequences:
        facts[item.seq] = dict(item.facts)
        for ev in evaluators.values():
            ev.process(item.seq, **item.inputs)
    out: dict[str, EvaluationResult] = {}
    for name, ev in evaluators.items():
        summary = ev.evaluate()
        out[name] = EvaluationResult(
            summary=summary,
            sequences=ev.sequence_rows(),
            objects=ev.object_rows(),
            facts=facts,
        )
    return out


def run_evaluator(evaluator: Evaluator, sequences: Iterable[SequenceInputs]) -> EvaluationResult:
    """:func:`run_evaluators` with a single evaluator."""
    return run_evaluators({"": evaluator}, sequences)[""]
