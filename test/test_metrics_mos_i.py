"""MOS-I metric against the official benchmark_mos_i.py fixture, plus targeted behaviour."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gmos_core.metrics import (
    MOS_I_THRESHOLDS,
    Evaluator,
    MetricInputError,
    MosIEvaluator,
    aggregate_mos_i,
    evaluate_mos_i_sequence,
    motion_matrix,
)

TOL = 1e-6
MODES = {"slhm": False, "flhm": True}


@pytest.fixture(scope="module")
def mos(fixtures_dir):
    path = fixtures_dir / "mos_i_parity.npz"
    if not path.exists():
        pytest.fail(f"missing fixture {path}")
    return np.load(path)


def _intervals(mos, s):
    raw = json.loads(str(mos["seq_time_anno_json"][s]))
    return {int(k): [(int(a), int(b)) for a, b in v] for k, v in raw.items()}


def _pred_motion(mos, seq):
    key = f"pred_motion__{seq}"
    return mos[key] if key in mos.files else None


@pytest.fixture(scope="module")
def mos_results(mos):
    out = {}
    for mode, flm in MODES.items():
        ev = MosIEvaluator(frame_level_match=flm)
        for s, seq in enumerate(mos["seq_names"]):
            ev.process(
                str(seq),
                gt_labels=mos[f"gt__{seq}"],
                res_labels=mos[f"pred__{seq}"],
                intervals=_intervals(mos, s),
                pred_motion=_pred_motion(mos, seq),
            )
        out[mode] = ev
    return out


@pytest.mark.parametrize("mode", list(MODES))
def test_every_sequence_matches_official(mos, mos_results, mode):
    results = mos_results[mode].results
    assert len(results) == 13
    np.testing.assert_allclose(MOS_I_THRESHOLDS, mos["thresholds"], atol=0)
    for s, (res, seq) in enumerate(zip(results, mos["seq_names"])):
        seq = str(seq)
        assert res.seq == seq
        assert res.num_frames == mos["n_frames_evaluated"][s]
        assert res.num_objs == mos["num_objs"][s]
        np.testing.assert_array_equal(
            res.motion_channels, mos[f"motion_channels__{seq}"], err_msg=seq
        )
        np.testing.assert_array_equal(res.assignment, mos[f"{mode}_assign__{seq}"], err_msg=seq)
        np.testing.assert_allclose(
            res.j_mov, mos[f"{mode}_j_mov__{seq}"], atol=TOL, rtol=0, err_msg=seq
        )
        assert res.fp_count == pytest.approx(mos[f"{mode}_fp_count"][s], abs=TOL), seq
        np.testing.assert_allclose(
            res.mtiou_per_thres, mos[f"{mode}_mtiou_per_thres"][s], atol=TOL, rtol=0, err_msg=seq
        )
        assert res.j_mov_mean == pytest.approx(mos[f"{mode}_j_mov_seq_mean"][s], abs=TOL), seq
        assert res.mtiou_mean == pytest.approx(mos[f"{mode}_mtiou_seq_mean"][s], abs=TOL), seq


@pytest.mark.parametrize("mode", list(MODES))
def test_overall_matches_official(mos, mos_results, mode):
    ev = mos_results[mode]
    assert isinstance(ev, Evaluator)
    overall = ev.evaluate()
    assert overall == aggregate_mos_i(ev.results)
    assert overall["mtIoU"] == pytest.approx(float(mos[f"overall_{mode}_mtiou"]), abs=TOL)
    assert overall["J_mov"] == pytest.approx(float(mos[f"overall_{mode}_j_mov"]), abs=TOL)
    assert overall["FP"] == pytest.approx(float(mos[f"overall_{mode}_fp_count"]), abs=TOL)
    per_thres = [overall[f"mtIoU@{t:.2f}"] for t in mos["thresholds"]]
    np.testing.assert_allclose(per_thres, mos[f"overall_{mode}_mtiou_per_thres"], atol=TOL, rtol=0)


def test_matching_modes_differ_where_documented(mos_results):
    names = [r.seq for r in mos_results["slhm"].results]
    fp = {m: dict(zip(names, (r.fp_count for r in mos_results[m].results))) for m in MODES}
    # Frame-level matching can hide an FP blob on a moving-but-missed GT channel (s04).
    assert fp["slhm"]["s04_fewer_preds"] == pytest.approx(0.2)
    assert fp["flhm"]["s04_fewer_preds"] == 0.0
    swap = {m: next(r for r in mos_results[m].results if r.seq == "s09_id_swap") for m in MODES}
    assert swap["flhm"].j_mov[:2].min() > 0.9 > 0.5 > swap["slhm"].j_mov[:2].max()


def test_motion_matrix_clips_and_validates():
    m = motion_matrix({1: [(0, 2)], "3": [[4, 99]]}, num_frames=6)
    assert m.shape == (6, 20) and m.dtype == np.float32
    np.testing.assert_array_equal(m[:, 0], [1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(m[:, 2], [0, 0, 0, 0, 1, 1])
    assert m[:, [1] + list(range(3, 20))].sum() == 0
    with pytest.raises(MetricInputError, match="outside 1..20"):
        motion_matrix({21: [(0, 1)]}, 5)
    with pytest.raises(MetricInputError, match="start <= end"):
        motion_matrix({1: [(3, 1)]}, 5)
    with pytest.raises(MetricInputError, match="not an integer"):
        motion_matrix({"a": [(0, 1)]}, 5)


def _square_clip(t=4, h=16, w=16):
    gt = np.zeros((t, h, w), dtype=np.uint8)
    gt[:, 4:10, 4:10] = 1
    return gt


def test_static_frames_make_predictions_false_positives():
    gt = _square_clip()
    res = evaluate_mos_i_sequence(gt, gt.copy(), {1: [(0, 1)]}, seq="static")
    # Frames 2-3 are static: GT channel is emptied there, the prediction is an FP.
    assert res.fp_count == pytest.approx(0.5)
    np.testing.assert_allclose(res.j_mov, [1.0], atol=1e-6)
    assert res.n_gt == 2 and res.n_pred == 4
    # TP = 2 at every threshold -> 2 / (4 + 2 - 2).
    np.testing.assert_allclose(res.mtiou_per_thres, 0.5, atol=1e-6)


def test_moving_but_absent_object_with_empty_prediction_is_a_hit():
    gt = _square_clip()
    gt[2:] = 0
    pred = gt.copy()
    res = evaluate_mos_i_sequence(gt, pred, {1: [(0, 3)]})
    np.testing.assert_allclose(res.j_mov, [1.0], atol=1e-6)
    np.testing.assert_array_equal(res.tp_counts, 4)


def test_resize_threshold_is_strict():
    # A 2x larger prediction whose object edges fall between GT pixels: bilinear x0.5 gives
    # exactly 0.5 on the GT pixel straddling the edge, which must stay background.
    gt = np.zeros((1, 8, 8), dtype=np.uint8)
    gt[0, 2:5, 2:5] = 1
    pred = np.zeros((1, 16, 16), dtype=np.uint8)
    pred[0, 4:11, 4:11] = 1  # covers half of GT pixel 5 in each direction
    res = evaluate_mos_i_sequence(gt, pred, {1: [(0, 0)]})
    np.testing.assert_allclose(res.j_mov, [1.0], atol=1e-6)


def test_motion_gating_and_truncation():
    gt = _square_clip(t=5)
    pred = np.concatenate([gt, gt[:2]])  # 7 predicted frames, only 5 evaluated
    gate = np.ones((7, 20, 1), dtype=np.float32)
    gate[1, 0, 0] = 0.5  # not > 0.5: channel 0 dropped at frame 1
    res = evaluate_mos_i_sequence(gt, pred, {1: [(0, 4)]}, pred_motion=gate)
    assert res.num_frames == 5
    np.testing.assert_allclose(res.j_mov, [4 / 5], atol=1e-6)
    with pytest.raises(MetricInputError, match="pred_motion"):
        evaluate_mos_i_sequence(gt, pred, {1: [(0, 4)]}, pred_motion=np.ones((3, 20, 1)))


def test_ids_above_20_are_ignored_and_bad_input():
    gt = _square_clip()
    pred = gt.copy()
    pred[:, 12:15, 12:15] = 23
    res = evaluate_mos_i_sequence(gt, pred, {1: [(0, 3)]}, seq="ids")
    assert res.fp_count == 0.0
    with pytest.raises(MetricInputError, match="bad.*label maps"):
        evaluate_mos_i_sequence(gt[0], pred, {1: [(0, 3)]}, seq="bad")
    with pytest.raises(MetricInputError, match="bad2.*integer"):
        evaluate_mos_i_sequence(gt.astype(float), pred, {1: [(0, 3)]}, seq="bad2")
    with pytest.raises(MetricInputError, match="no MOS-I"):
        aggregate_mos_i([])


def _brute_counts(pred_masks, gt, moving):
    ids = np.arange(1, 21)[:, None, None]
    g = ((gt[None] == ids) & moving[:, None, None]).reshape(20, -1).astype(np.int64)
    p = pred_masks.reshape(20, -1).astype(np.int64)
    return p @ g.T, p.sum(1), g.sum(1)


def test_frame_counts_equal_one_hot_products(monkeypatch):
    from gmos_core.metrics import mos_i

    rng = np.random.default_rng(3)
    gt = rng.integers(0, 25, size=(12, 14))
    pred = rng.integers(0, 25, size=(12, 14))
    moving = rng.random(20) > 0.3
    keep = rng.random(20) > 0.3
    ids = np.arange(1, 21)[:, None, None]
    expected = _brute_counts((pred[None] == ids) & keep[:, None, None], gt, moving)
    for got, exp in zip(mos_i._frame_counts(pred, gt, moving, keep), expected):
        np.testing.assert_array_equal(got, exp)

    # Resized path: same counts as resizing every channel on its own.
    small = rng.integers(0, 4, size=(6, 7))
    present, masks = mos_i._resized_channels(small, gt.shape, np.ones(20, bool))
    full = np.zeros((20, gt.size), dtype=bool)
    full[present] = masks
    expected = _brute_counts(full, gt, moving)
    for got, exp in zip(mos_i._frame_counts(small, gt, moving, np.ones(20, bool)), expected):
        np.testing.assert_array_equal(got, exp)

    # Overlapping resized channels (only possible through float rounding) take the one-hot path.
    overlap = np.zeros((2, gt.size), dtype=bool)
    overlap[:, :30] = True
    monkeypatch.setattr(mos_i, "_resized_channels", lambda *a: (np.array([0, 4]), overlap))
    full = np.zeros((20, gt.size), dtype=bool)
    full[[0, 4]] = overlap
    expected = _brute_counts(full, gt, moving)
    for got, exp in zip(mos_i._frame_counts(small, gt, moving, np.ones(20, bool)), expected):
        np.testing.assert_array_equal(got, exp)
