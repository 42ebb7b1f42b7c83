"""The one evaluator loop (`gmos_core.metrics.loop`) and the rows every evaluator reports."""

from __future__ import annotations

import numpy as np
import pytest

from gmos_core.metrics import davis as dm
from gmos_core.metrics.base import DavisEvaluator, Evaluator, MosIEvaluator
from gmos_core.metrics.loop import SequenceInputs, run_evaluator, run_evaluators
from gmos_core.metrics.moca import MocaEvaluator
from gmos_core.metrics.mos_i import aggregate_mos_i, evaluate_mos_i_sequence

H, W = 20, 24


def _labels(t: int, n_obj: int, seed: int) -> np.ndarray:
    """(T, H, W) uint8 label maps: `n_obj` boxes drifting right, one pixel a frame."""
    rng = np.random.default_rng(seed)
    lab = np.zeros((t, H, W), np.uint8)
    for k in range(1, n_obj + 1):
        y, x = int(rng.integers(0, H - 6)), int(rng.integers(0, W - 12))
        for i in range(t):
            lab[i, y : y + 5, x + i : x + i + 6] = k
    return lab


def _shifted(lab: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.roll(lab, 1, axis=1)
    out[rng.random(out.shape) < 0.05] = 0
    return out


@pytest.fixture()
def clips() -> dict[str, tuple[np.ndarray, np.ndarray, dict[int, list[tuple[int, int]]]]]:
    """Three clips: (gt (T,H,W), prediction (T,H,W), motion intervals)."""
    out = {}
    for i, (name, t, n) in enumerate((("a", 6, 2), ("b", 8, 1), ("c", 5, 3))):
        gt = _labels(t, n, i)
        out[name] = (gt, _shifted(gt, 10 + i), {k: [(0, t - 1 - k)] for k in range(1, n + 1)})
    return out


def test_one_read_feeds_every_evaluator_and_runs_are_repeatable(clips):
    reads: list[str] = []

    def sequences():
        for name, (gt, pred, iv) in clips.items():
            reads.append(name)
            yield SequenceInputs(
                name,
                {"gt_labels": gt, "res_labels": pred, "intervals": iv},
                {"frames": len(gt)},
            )

    evs = {"sl": MosIEvaluator(), "fl": MosIEvaluator(frame_level_match=True)}
    first = run_evaluators(evs, sequences())
    assert reads == ["a", "b", "c"]  # each sequence read once for both evaluators
    for key, flm in (("sl", False), ("fl", True)):
        direct = [
            evaluate_mos_i_sequence(g, p, iv, None, flm, seq=n) for n, (g, p, iv) in clips.items()
        ]
        assert first[key].summary == aggregate_mos_i(direct)
        assert first[key].facts == {n: {"frames": len(c[0])} for n, c in clips.items()}
    # The loop resets the evaluators: a second run neither refuses the names nor doubles up.
    second = run_evaluators(evs, sequences())
    assert second == first


def test_mos_i_rows(clips):
    res = run_evaluator(
        MosIEvaluator(),
        (
            SequenceInputs(n, {"gt_labels": g, "res_labels": p, "intervals": iv})
            for n, (g, p, iv) in clips.items()
        ),
    )
    direct = {n: evaluate_mos_i_sequence(g, p, iv, seq=n) for n, (g, p, iv) in clips.items()}
    assert [r["sequence"] for r in res.sequences] == list(clips)
    for row in res.sequences:
        d = direct[row["sequence"]]
        assert row["mtIoU"] == d.mtiou_mean and row["J_mov"] == d.j_mov_mean
        assert row["FP"] == d.fp_count and row["num_moving_objects"] == d.j_mov.size
    want = [
        (n, int(ch) + 1, float(j))
        for n, d in direct.items()
        for ch, j in zip(d.motion_channels, d.j_mov)
    ]
    assert [(o["sequence"], o["object_id"], o["J_mov"]) for o in res.objects] == want
    assert len(res.objects) == 6  # every object of the three clips moves


def test_davis_rows(clips):
    ev = DavisEvaluator("semi-supervised")
    assert isinstance(ev, Evaluator)
    res = run_evaluator(
        ev, (SequenceInputs(n, {"gt_labels": g, "res_labels": p}) for n, (g, p, _) in clips.items())
    )
    direct = [dm.evaluate_semisupervised(n, g, p) for n, (g, p, _) in clips.items()]
    assert res.summary == dm.global_table(direct)
    per_obj = dm.per_object_table(direct)
    assert [r["Sequence"] for r in res.objects] == [r["Sequence"] for r in per_obj]
    for r, d in zip(res.objects, per_obj):
        assert r["J&F-Mean"] == (d["J-Mean"] + d["F-Mean"]) / 2.0
    for row in res.sequences:
        mine = [(d["J-Mean"] + d["F-Mean"]) / 2.0 for d in per_obj if d["seq"] == row["sequence"]]
        assert row["num_objects"] == len(mine) and row["J&F-Mean"] == pytest.approx(np.mean(mine))
    assert [r["num_objects"] for r in res.sequences] == [2, 1, 3]


def test_moca_rows():
    m = np.zeros((3, 40, 40), np.uint8)
    m[0, 10:20, 10:20] = 255  # IoU 1 with the box
    m[1, 10:20, 10:15] = 255  # IoU 0.5: not a success at 0.5 (strict)
    res = run_evaluator(
        MocaEvaluator(),
        [
            SequenceInputs(
                "v", {"masks": m, "gt_boxes": {0: (10, 10, 20, 20), 1: (10, 10, 20, 20)}}
            ),
            SequenceInputs("w", {"masks": m[:1], "gt_boxes": {2: (0, 0, 4, 4)}}),
        ],
    )
    v, w = res.sequences
    assert v["sequence"] == "v" and v["frames_scored"] == 2 and v["mean_iou"] == 0.75
    assert v["SR@0.5"] == 0.5 and v["SR@0.9"] == 0.5
    # Frame 2 is past w's masks: nothing scored, the row says so rather than inventing a score.
    assert w["frames_scored"] == 0 and np.isnan(w["mean_iou"]) and np.isnan(w["SR@0.5"])
    assert res.objects == [] and res.summary["num_videos"] == 1.0
