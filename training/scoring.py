"""Scores of segmenter results on the in-memory evaluation clips (`training.splits`), as the
held-out benchmark computes them from `gmos-infer`'s files: shared by `gmos-calibrate`, the
stride curve of `gmos-bench` and `gmos-gpu-check`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gmos_core.metrics.davis import evaluate_mos_binary, global_table
from gmos_core.metrics.mos_i import aggregate_mos_i, evaluate_mos_i_sequence
from training.infer import IdCompactor
from training.splits import ValidationSequence


def score_gmos_s(
    probs: Sequence[np.ndarray], seqs: Sequence[ValidationSequence], threshold: float
) -> dict[str, float]:
    """Binary MOS J / F means (x1) of foreground probabilities thresholded at `threshold`."""
    res = [
        evaluate_mos_binary(s.name, s.labels, (p > threshold).astype(np.uint8))
        for p, s in zip(probs, seqs)
    ]
    g = global_table(res)
    return {"J": float(g["J-Mean"]), "F": float(g["F-Mean"]), "JF": float(g["J&F-Mean"])}


def score_gmos(
    results: Sequence[Sequence[Any]], seqs: Sequence[ValidationSequence]
) -> dict[str, float]:
    """MOS-I (sequence-level matching) of online results, as `gmos-infer` writes them."""
    per = []
    for res, s in zip(results, seqs):
        compact = IdCompactor()
        pred = np.stack([compact(np.where(r.dynamic_mask, r.instance_ids, 0)) for r in res])
        per.append(evaluate_mos_i_sequence(s.labels, pred, s.intervals, seq=s.name))
    agg = aggregate_mos_i(per)
    return {"mtIoU": agg["mtIoU"], "J_mov": agg["J_mov"], "FP": agg["FP"]}
