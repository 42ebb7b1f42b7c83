"""The proposer-stride speed / accuracy curve of the trained micro model on held-out scenes."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from gmos_core.models.build import build_frame_model_from_bundle
from gmos_core.streaming.build import DEFAULT_BUNDLES, RuntimeSettings, build_segmenter
from training.bench.standins import propagation_available
from training.scoring import run_clip, score_gmos
from training.splits import SplitSpec, as_sequence, held_out_scenes

STRIDES = (1, 2, 3, 5)
MICRO_BUNDLE = DEFAULT_BUNDLES["gmos_online"]  # the shipped micro Gmos (one list of paths)


def stride_curve(num_scenes: int, device: str, bundle: Path = MICRO_BUNDLE) -> dict[str, Any]:
    """fps and MOS-I accuracy of a trained proposer bundle for proposer strides 1, 2, 3, 5.

    The clips are the first `num_scenes` of the held-out benchmark split
    (`training.benchmark_synthetic`, seeds 900000.., stored as JPEG like its files) and each
    stride runs through the same runtime as `gmos-infer` (`build_segmenter`, the bundle's
    operating point), so stride 1 on the full split reproduces the benchmark's MOS-I row.
    fps counts the whole stream step (features, head, propagator), not the file I/O.
    """
    reasons = []
    if not bundle.is_file():
        reasons.append(f"trained micro model {bundle} does not exist yet")
    if propagation_available() is not None:
        reasons.append(str(propagation_available()))
    if reasons:
        return {"ran": False, "reason": "; ".join(reasons)}

    model = build_frame_model_from_bundle(bundle, device=device).frame_model()
    if model.mode != "gmos":
        return {
            "ran": False,
            "reason": f"{bundle} is a {model.mode} model, the curve needs the proposer",
        }
    scenes, seeds = held_out_scenes(SplitSpec(num_seqs=num_scenes))
    seqs = [as_sequence(f"heldout_{sd}", s) for sd, s in zip(seeds, scenes)]
    points = []
    for k in STRIDES:
        results, frames_total, wall = [], 0, 0.0
        for seq in seqs:
            settings = RuntimeSettings(
                variant="gmos_online", span_s=4 / seq.fps, proposer_stride=k, device=device
            )
            seg = build_segmenter(settings, model=model)
            t0 = time.perf_counter()
            out = run_clip(seg, seq)
            wall += time.perf_counter() - t0
            frames_total += len(seq.frames)
            results.append(out)
        agg = score_gmos(results, seqs)
        points.append(
            {
                "stride": k,
                "fps": round(frames_total / wall, 2),
                "mtIoU": round(float(agg["mtIoU"]), 4),
                "J_mov": round(float(agg["J_mov"]), 4),
                "FP": round(float(agg["FP"]), 4),
            }
        )
    return {
        "ran": True,
        "scenes": num_scenes,
        "bundle": str(bundle),
        "operating_point": dataclasses.asdict(model.operating_point),
        "points": points,
    }
