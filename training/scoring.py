"""Scores of segmenter results on the in-memory evaluation clips (`training.splits`), as the
held-out benchmark computes them from `gmos-infer`'s files: shared by `gmos-calibrate`, the
stride curve of `gmos-bench` and `gmos-gpu-check`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gmos_core.metrics.base import DavisEvaluator, MosIEvaluator
from training.infer import IdCompactor
from training.splits import ValidationSequence


def run_clip(segmenter: Any, clip: ValidationSequence) -> list[Any]:
    """The one loop that runs a streaming segmenter over a clip: every frame stamped at the
    clip's rate (t = i / fps), then `flush()`.

    Returns:
        One `FrameResult` per frame, in order.

    Raises:
        RuntimeError: the segmenter returned a different number of results than frames.
    """
    results = []
    for i, frame in enumerate(clip.frames):
        results.extend(segmenter.step(frame, int(round(i * 1e9 / clip.fps))))
    results.extend(segmenter.flush())
    if len(results) != len(clip.frames):
        raise RuntimeError(f"{clip.name}: {len(results)} results for {len(clip.frames)} frames")
    return results


def score_gmos_s(
    probs: Sequence[np.ndarray], seqs: Sequence[ValidationSequence], threshold: float
) -> dict[str, float]:
    """Binary MOS J / F means (x1) of foreground probabilities thresholded at `threshold`
    (`DavisEvaluator("mos")`)."""
    ev = DavisEvaluator("mos")
    for p, s in zip(probs, seqs):
        ev.process(s.name, gt_labels=s.labels, res_labels=(p > threshold).astype(np.uint8))
    g = ev.evaluate()
    return {"J": float(g["J-Mean"]), "F": float(g["F-Mean"]), "JF": float(g["J&F-Mean"])}


def score_gmos(
    results: Sequence[Sequence[Any]], seqs: Sequence[ValidationSequence]
) -> dict[str, float]:
    """MOS-I (sequence-level matching, `MosIEvaluator`) of online results, as `gmos-infer`
    writes them (dynamic objects only, ids compacted)."""
    ev = MosIEvaluator()
    for res, s in zip(results, seqs):
        compact = IdCompactor()
        pred = np.stack([compact(np.where(r.dynamic_mask, r.instance_ids, 0)) for r in res])
        ev.process(s.name, gt_labels=s.labels, res_labels=pred, intervals=s.intervals)
    agg = ev.evaluate()
    return {"mtIoU": agg["mtIoU"], "J_mov": agg["J_mov"], "FP": agg["FP"]}
