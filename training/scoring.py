"""Scores of segmenter results on the in-memory evaluation clips (`training.splits`), as the
held-out benchmark computes them from `gmos-infer`'s files: shared by `gmos-calibrate`, the
stride curve of `gmos-bench` and `gmos-gpu-check`. `run_clip` is the loop of a segmenter over
a clip's frames; the scores go through the evaluator loop (`gmos_core.metrics.loop`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gmos_core.metrics.base import DavisEvaluator, MosIEvaluator
from gmos_core.metrics.loop import SequenceInputs, run_evaluator
from training.infer import IdCompactor
from training.splits import ValidationSequence


def run_clip(segmenter: Any, clip: ValidationSequence) -> list[Any]:
    """The one loop that runs a streaming segmenter over a clip: every frame stamped at the
    clip's rate (t = i / fps), with its `SensorFrame` when the clip has them, then `flush()`.

    Returns:
        One `FrameResult` per frame, in order.

    Raises:
        RuntimeError: the segmenter returned a different number of results than frames.
    """
    results = []
    sensors = clip.sensors or [None] * len(clip.frames)
    for i, (frame, sensor) in enumerate(zip(clip.frames, sensors)):
        results.extend(segmenter.step(frame, int(round(i * 1e9 / clip.fps)), sensor))
    results.extend(segmenter.flush())
    if len(results) != len(clip.frames):
        raise RuntimeError(f"{clip.name}: {len(results)} results for {len(clip.frames)} frames")
    return results


def score_gmos_s(
    probs: Sequence[np.ndarray], seqs: Sequence[ValidationSequence], threshold: float
) -> dict[str, float]:
    """Binary MOS J / F means (x1) of foreground probabilities thresholded at `threshold`
    (`DavisEvaluator("mos")`)."""
    g = run_evaluator(
        DavisEvaluator("mos"),
        (
            SequenceInputs(
                s.name, {"gt_labels": s.labels, "res_labels": (p > threshold).astype(np.uint8)}
            )
            for p, s in zip(probs, seqs)
        ),
    ).summary
    return {"J": float(g["J-Mean"]), "F": float(g["F-Mean"]), "JF": float(g["J&F-Mean"])}


def score_gmos(
    results: Sequence[Sequence[Any]], seqs: Sequence[ValidationSequence]
) -> dict[str, float]:
    """MOS-I (sequence-level matching, `MosIEvaluator`) of online results, as `gmos-infer`
    writes them (dynamic objects only, ids compacted)."""

    def inputs(res: Sequence[Any], s: ValidationSequence) -> SequenceInputs:
        compact = IdCompactor()
        pred = np.stack([compact(np.where(r.dynamic_mask, r.instance_ids, 0)) for r in res])
        return SequenceInputs(
            s.name, {"gt_labels": s.labels, "res_labels": pred, "intervals": s.intervals}
        )

    agg = run_evaluator(MosIEvaluator(), (inputs(r, s) for r, s in zip(results, seqs))).summary
    return {"mtIoU": agg["mtIoU"], "J_mov": agg["J_mov"], "FP": agg["FP"]}
