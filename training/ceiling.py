"""The ceiling of an instantaneous predictor on the binary MOS protocol.

The binary MOS protocol (`DavisEvaluator("mos")`, the "MOS J / F" columns of the held-out
benchmark) takes as ground truth every object that moves at SOME point of the clip, at every
frame it is visible. Gmos-S (and the dynamic mask of Gmos online) says what moves NOW (paper
Sec. 2.1 and App. A.1: "instantaneous (per-frame) motion segmentation"), so on a frame where a
moving object rests, a perfect Gmos-S is empty and the protocol counts the object as missed.
On clips where objects rest (the synthetic splits draw rest segments for 70 % of the dynamic
objects' schedules) the best score an instantaneous predictor can reach is well below 100.

This tool scores that perfect instantaneous predictor: at every frame the union of the objects
whose moving interval contains the frame (the MOS-I intervals, inclusive), on the validation
clips (seeds 800 000.., made exactly like the held-out ones), overall and per scene kind.

    python -m training.ceiling --num-seqs 30 --out out/ceiling
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.calibrate import VALIDATION_SEED, validation_split
from training.scoring import score_gmos_s
from training.splits import ValidationSequence

__all__ = ["instantaneous_ceiling", "moving_now_masks"]


def moving_now_masks(seq: ValidationSequence) -> np.ndarray:
    """(T, H, W) uint8 {0, 1}: the pixels of the objects moving at each frame.

    `seq.intervals` maps a label id to its moving intervals [start, end] (inclusive frame
    indices, as `SceneSample.mos_i_labels` writes them and the MOS-I evaluator reads them).
    """
    out = np.zeros(seq.labels.shape, bool)
    for obj_id, intervals in seq.intervals.items():
        for start, end in intervals:
            if not 0 <= start <= end:
                raise ValueError(f"{seq.name}: object {obj_id} has a bad interval {(start, end)}")
            out[start : end + 1] |= seq.labels[start : end + 1] == obj_id
    return out.astype(np.uint8)


def instantaneous_ceiling(seqs: Sequence[ValidationSequence]) -> dict[str, dict[str, float]]:
    """Binary MOS J / F / J&F (fractions in [0, 1]) of the perfect instantaneous predictor,
    over all `seqs` ("all") and per scene kind (the last ``_`` field of a validation name)."""
    if not seqs:
        raise ValueError("instantaneous_ceiling: no sequences")
    groups: dict[str, list[ValidationSequence]] = {"all": list(seqs)}
    for s in seqs:
        groups.setdefault(s.name.rsplit("_", 1)[-1], []).append(s)
    # Thresholding a {0, 1} mask at 0.5 is the mask itself.
    return {
        kind: {**score_gmos_s([moving_now_masks(s) for s in ss], ss, 0.5), "clips": float(len(ss))}
        for kind, ss in groups.items()
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--num-seqs", type=int, default=30, help="validation clips (default 30)")
    ap.add_argument("--seed", type=int, default=VALIDATION_SEED, help="first validation seed")
    ap.add_argument("--out", type=Path, default=None, help="folder for ceiling.json")
    args = ap.parse_args(argv)
    if args.num_seqs < 1:
        ap.error(f"--num-seqs must be >= 1, got {args.num_seqs}")
    try:
        seqs = validation_split(args.num_seqs, args.seed)
    except ValueError as exc:  # CalibrationError: seeds that reach the held-out split
        ap.error(str(exc))
    report = {
        "what": "binary MOS J/F of the perfect instantaneous (moving-now) predictor",
        "num_seqs": args.num_seqs,
        "seed": args.seed,
        "scores": instantaneous_ceiling(seqs),
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "ceiling.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
