"""DAVIS J / F / statistics / sequence protocols against the official toolkit's fixture."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from gmos_core.metrics import (
    GLOBAL_KEYS,
    DavisEvaluator,
    Evaluator,
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
from gmos_core.metrics.davis import boundary_radius, disk_kernel

TOL = 1e-6


@pytest.fixture(scope="module")
def davis(fixtures_dir):
    path = fixtures_dir / "davis2017_metric_parity.npz"
    if not path.exists():
        pytest.fail(f"missing fixture {path}")
    return np.load(path)


@pytest.fixture(scope="module")
def frame_cases(davis):
    """Yield (name, gt, pred, void, gt_bmap, pred_bmap, index) for every single-frame case."""
    n = int(davis["total_pixels"])
    keys = ("gt_bits", "pred_bits", "void_bits", "gt_bmap_bits", "pred_bmap_bits")
    bits = {k: np.unpackbits(davis[k], count=n).astype(bool) for k in keys}
    cases = []
    for i, name in enumerate(davis["case_name"]):
        h, w = (int(v) for v in davis["case_shape"][i])
        o = int(davis["case_offset"][i])

        def get(key, o=o, h=h, w=w):
            return bits[key][o : o + h * w].reshape(h, w)

        void = get("void_bits") if davis["case_has_void"][i] else None
        cases.append(
            (
                str(name),
                get("gt_bits"),
                get("pred_bits"),
                void,
                get("gt_bmap_bits"),
                get("pred_bmap_bits"),
                i,
            )
        )
    return cases


def test_every_frame_case_matches_toolkit(davis, frame_cases):
    assert len(frame_cases) == 91
    worst = 0.0
    failures = []
    for name, gt, pred, void, _, _, i in frame_cases:
        j = jaccard(gt, pred, void)
        f = f_measure(gt, pred, void)
        p, r = boundary_precision_recall(gt, pred, void)
        devs = (
            abs(j - davis["expected_J"][i]),
            abs(f - davis["expected_F"][i]),
            abs(p - davis["expected_P"][i]),
            abs(r - davis["expected_R"][i]),
        )
        worst = max(worst, *devs)
        if max(devs) > TOL:
            failures.append((name, devs))
        assert boundary_radius(gt.shape) == davis["bound_pix"][i], name
    assert not failures, failures
    assert worst <= TOL


def test_every_boundary_map_matches_toolkit(frame_cases):
    for name, gt, pred, void, gt_bmap, pred_bmap, _ in frame_cases:
        keep = np.ones_like(gt) if void is None else ~void
        np.testing.assert_array_equal(seg2bmap(gt & keep), gt_bmap, err_msg=name)
        np.testing.assert_array_equal(seg2bmap(pred & keep), pred_bmap, err_msg=name)


def test_uint8_masks_equal_bool_masks(frame_cases):
    for name, gt, pred, void, _, _, _ in frame_cases[:20]:
        assert jaccard(gt.astype(np.uint8), pred.astype(np.uint8), void) == jaccard(gt, pred, void)
        assert f_measure(gt.astype(np.uint8), pred.astype(np.uint8), void) == f_measure(
            gt, pred, void
        ), name


def test_every_stats_case_matches_toolkit(davis):
    assert len(davis["stats_name"]) == 26
    for i, name in enumerate(davis["stats_name"]):
        o, n = int(davis["stats_offset"][i]), int(davis["stats_length"][i])
        values = davis["stats_values"][o : o + n]
        got = np.array(db_statistics(values))
        np.testing.assert_allclose(got, davis["stats_expected"][i], atol=TOL, rtol=0, err_msg=name)
        # N <= 255: the uint8 compatibility mode must not change anything.
        np.testing.assert_array_equal(db_statistics(values, compat_uint8=True), got)


@pytest.fixture(scope="module")
def sequences(davis):
    out = {}
    for key, fn in (("semi", evaluate_semisupervised), ("unsup", evaluate_unsupervised)):
        names = davis[f"{key}_seq_names"]
        out[key] = [
            fn(str(seq), davis[f"{key}_seq{s}_gt_labels"], davis[f"{key}_seq{s}_res_labels"])
            for s, seq in enumerate(names)
        ]
    return out


@pytest.mark.parametrize("key", ["semi", "unsup"])
def test_sequence_rows_match_toolkit(davis, sequences, key):
    results = sequences[key]
    assert len(results) == len(davis[f"{key}_seq_names"])
    for s, res in enumerate(results):
        np.testing.assert_allclose(
            res.J, davis[f"{key}_seq{s}_J"], atol=TOL, rtol=0, err_msg=res.seq
        )
        np.testing.assert_allclose(
            res.F, davis[f"{key}_seq{s}_F"], atol=TOL, rtol=0, err_msg=res.seq
        )
        if key == "unsup":
            np.testing.assert_array_equal(res.assignment, davis[f"unsup_seq{s}_assignment"])
            np.testing.assert_array_equal(res.frame_indices, np.arange(res.J.shape[1]))
        else:
            assert res.assignment is None
            t = davis[f"semi_seq{s}_gt_labels"].shape[0]
            np.testing.assert_array_equal(res.frame_indices, np.arange(1, t - 1))


def test_sequence_pair_count(sequences):
    # The md's total of evaluated (object, frame) pairs over both tasks.
    assert sum(r.J.size for r in sequences["semi"] + sequences["unsup"]) == 328


@pytest.mark.parametrize("key", ["semi", "unsup"])
def test_object_names_stats_and_global_match_toolkit(davis, sequences, key):
    results = sequences[key]
    names = [n for r in results for n in r.object_names]
    assert names == [str(n) for n in davis[f"{key}_object_names"]]
    stats = np.concatenate([r.object_stats() for r in results])
    np.testing.assert_allclose(stats, davis[f"{key}_object_stats"], atol=TOL, rtol=0)
    table = global_table(results)
    assert list(table) == list(GLOBAL_KEYS)
    np.testing.assert_allclose(
        [table[k] for k in GLOBAL_KEYS], davis[f"{key}_global"], atol=TOL, rtol=0
    )
    rows = per_object_table(results)
    assert [r["Sequence"] for r in rows] == names
    cols = ["J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]
    np.testing.assert_allclose(
        [[r[c] for c in cols] for r in rows], davis[f"{key}_object_stats"], atol=TOL
    )


def test_unsup_rows_follow_proposal_order(davis, sequences):
    # unsup-a: proposal 0 -> GT 1, proposal 2 -> GT 0, so row 0 ("unsup-a_1") is GT object 2.
    res = sequences["unsup"][0]
    assert res.assignment[:, 0].tolist() == sorted(res.assignment[:, 0].tolist())
    gt = davis["unsup_seq0_gt_labels"]
    pred = davis["unsup_seq0_res_labels"]
    p, g = res.assignment[0]
    void = gt[3] == 255
    assert res.J[0, 3] == jaccard(np.where(void, 0, gt[3]) == g + 1, pred[3] == p + 1, void)


def test_evaluator_reproduces_global_rows(davis):
    ev = DavisEvaluator("unsupervised")
    assert isinstance(ev, Evaluator)
    for s, seq in enumerate(davis["unsup_seq_names"][:2]):
        ev.process(
            str(seq),
            gt_labels=davis[f"unsup_seq{s}_gt_labels"],
            res_labels=davis[f"unsup_seq{s}_res_labels"],
        )
    expected = global_table(
        [
            evaluate_unsupervised(
                str(seq), davis[f"unsup_seq{s}_gt_labels"], davis[f"unsup_seq{s}_res_labels"]
            )
            for s, seq in enumerate(davis["unsup_seq_names"][:2])
        ]
    )
    assert ev.evaluate() == expected
    assert len(ev.per_object()) == 5
    with pytest.raises(MetricInputError, match="already processed"):
        ev.process(
            "unsup-a",
            gt_labels=davis["unsup_seq0_gt_labels"],
            res_labels=davis["unsup_seq0_res_labels"],
        )
    ev.reset()
    with pytest.raises(MetricInputError, match="no sequence results"):
        ev.evaluate()


# ------------------------------------------------------------------------------------------
# targeted behaviour
# ------------------------------------------------------------------------------------------


def test_empty_empty_is_perfect():
    z = np.zeros((40, 60), dtype=bool)
    assert jaccard(z, z) == 1.0
    assert f_measure(z, z) == 1.0
    assert boundary_precision_recall(z, z) == (1.0, 1.0)
    # Everything void also empties the union.
    one = np.ones_like(z)
    assert jaccard(one, z, void=one) == 1.0


def test_empty_prediction_against_object():
    gt = np.zeros((40, 60), dtype=bool)
    gt[10:20, 10:30] = True
    pred = np.zeros_like(gt)
    assert jaccard(gt, pred) == 0.0
    assert boundary_precision_recall(gt, pred) == (1.0, 0.0)  # no predicted boundary
    assert boundary_precision_recall(pred, gt) == (0.0, 1.0)  # no GT boundary
    assert f_measure(gt, pred) == 0.0


def test_disk_kernel_not_square():
    k = disk_kernel(2)
    assert k.shape == (5, 5)
    assert k[0, 0] == 0 and k[0, 2] == 1 and k[1, 1] == 1 and k.sum() == 13


def _f_with_kernel(gt, pred, kernel):
    bg, bp = seg2bmap(gt), seg2bmap(pred)
    dg = ndimage.binary_dilation(bg, structure=kernel)
    dp = ndimage.binary_dilation(bp, structure=kernel)
    p = (bp & dg).sum() / bp.sum()
    r = (bg & dp).sum() / bg.sum()
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def test_disk_vs_square_tolerance():
    # 100 x 100 -> radius 2. Two single pixels offset by (3, 3): the closest boundary
    # pixels are (2, 2) apart, distance 2.83 > 2, inside a square but outside the disk.
    gt = np.zeros((100, 100), dtype=bool)
    pred = np.zeros_like(gt)
    gt[50, 50] = True
    pred[53, 53] = True
    assert boundary_radius(gt.shape) == 2
    assert _f_with_kernel(gt, pred, np.ones((5, 5), bool)) == pytest.approx(0.25)
    assert _f_with_kernel(gt, pred, disk_kernel(2).astype(bool)) == 0.0
    assert f_measure(gt, pred) == 0.0
    # Offset (2, 0): boundary pixels 1 apart -> matched.
    pred2 = np.zeros_like(gt)
    pred2[52, 50] = True
    assert f_measure(gt, pred2) == pytest.approx(
        _f_with_kernel(gt, pred2, disk_kernel(2).astype(bool))
    )
    assert f_measure(gt, pred2) > 0


def test_precision_recall_argument_order():
    # A big GT box and a small predicted box sharing its top-left corner: most of the
    # prediction's boundary is near the GT boundary, little of the GT boundary is matched.
    gt = np.zeros((200, 200), dtype=bool)
    gt[20:180, 20:180] = True
    pred = np.zeros_like(gt)
    pred[20:40, 20:40] = True
    p, r = boundary_precision_recall(gt, pred)
    assert p > 0.4 and r < 0.2
    assert boundary_precision_recall(pred, gt) == (r, p)
    assert f_measure(gt, pred) == pytest.approx(f_measure(pred, gt))


def test_seg2bmap_conventions():
    full = np.ones((5, 7), dtype=bool)
    assert not seg2bmap(full).any()  # the image border never makes boundary
    m = np.zeros((5, 7), dtype=bool)
    m[2, 3] = True
    expected = np.zeros_like(m)
    expected[[1, 1, 2, 2], [2, 3, 2, 3]] = True  # marked pixels are the ones nearer the origin
    np.testing.assert_array_equal(seg2bmap(m), expected)


def test_void_removed_before_boundaries():
    gt = np.zeros((50, 80), dtype=bool)
    gt[10:40, 10:70] = True
    void = np.zeros_like(gt)
    void[:, 35:45] = True
    # Same masks, but void cuts them: extra boundary appears along the cut in both, J ignores it.
    assert jaccard(gt, gt, void) == 1.0
    assert f_measure(gt, gt, void) == 1.0
    n_plain = seg2bmap(gt).sum()
    assert seg2bmap(gt & ~void).sum() > n_plain


def test_db_statistics_rules():
    v = np.array([0.9, 0.8, 0.5, 0.51, np.nan, 0.2])
    mean, recall, decay = db_statistics(v)
    assert mean == pytest.approx(np.nanmean(v))
    assert recall == pytest.approx(3 / 6)  # 0.5 is not > 0.5; NaN counts as a failure
    # N = 6: bins [0..1] and [4..5] (i_k = floor(k*5/4 + 1/2) = 0, 1, 3, 4, 5).
    assert decay == pytest.approx(np.mean([0.9, 0.8]) - 0.2)
    assert db_statistics(np.array([0.3]))[2] == 0.0
    assert db_statistics(np.array([0.7, 0.2]))[2] == pytest.approx(0.5)


def test_db_statistics_long_sequences_and_uint8_quirk():
    rng = np.random.default_rng(0)
    v = rng.random(300)
    _, _, decay = db_statistics(v)
    # Intended bins for N=300: i = 0, 75, 150, 224, 299.
    assert decay == pytest.approx(v[0:76].mean() - v[224:300].mean())
    # The toolkit's uint8 indices wrap (299 -> 43), so its last bin v[224:44] is empty: NaN.
    assert np.isnan(db_statistics(v, compat_uint8=True)[2])


def _two_object_clip(t=6, h=40, w=50):
    gt = np.zeros((t, h, w), dtype=np.uint8)
    gt[:, 5:15, 5:20] = 1
    gt[:, 20:35, 25:45] = 2
    return gt


def test_semi_pads_missing_objects_and_ignores_void():
    gt = _two_object_clip()
    gt[:, 0:2, :] = 255
    res = np.where(gt == 1, 1, 0).astype(np.uint8)
    out = evaluate_semisupervised("clip", gt, res)
    assert out.J.shape == (2, 4) and out.object_names == ["clip_1", "clip_2"]
    np.testing.assert_array_equal(out.J[0], 1.0)
    np.testing.assert_array_equal(out.J[1], 0.0)  # object 2 missing -> empty mask
    np.testing.assert_array_equal(out.F[1], 0.0)


def test_semi_skips_first_and_last_frame():
    gt = _two_object_clip()
    res = gt.copy()
    res[0] = 0
    res[-1] = 0
    out = evaluate_semisupervised("clip", gt, res)
    np.testing.assert_array_equal(out.J, 1.0)
    np.testing.assert_array_equal(out.F, 1.0)


def test_semi_too_many_objects_is_an_error():
    gt = _two_object_clip()
    res = gt.copy()
    res[2, 0:3, 0:3] = 3
    with pytest.raises(MetricInputError, match="clip-x.*3 objects"):
        evaluate_semisupervised("clip-x", gt, res)
    # A third id only in the (unevaluated) last frame is fine.
    res = gt.copy()
    res[-1, 0:3, 0:3] = 3
    assert evaluate_semisupervised("clip-x", gt, res).J.shape == (2, 4)


def test_unsup_too_many_proposals_is_an_error():
    gt = _two_object_clip()
    res = np.zeros_like(gt)
    res[0, 0, :21] = np.arange(1, 22)
    with pytest.raises(MetricInputError, match="seq-z.*21 proposals"):
        evaluate_unsupervised("seq-z", gt, res)
    assert evaluate_unsupervised("seq-z", gt, res, max_proposals=21).assignment.shape == (2, 2)


def test_unsup_assignment_finds_permutation():
    gt = _two_object_clip()
    res = np.zeros_like(gt)
    res[gt == 1] = 3
    res[gt == 2] = 1
    res[:, 37:39, 0:5] = 2  # distractor
    out = evaluate_unsupervised("perm", gt, res)
    np.testing.assert_array_equal(out.assignment, [[0, 1], [2, 0]])
    np.testing.assert_array_equal(out.J, 1.0)


def test_bad_inputs():
    assert issubclass(MetricInputError, ValueError)
    with pytest.raises(MetricInputError, match="2-D"):
        jaccard(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)))
    with pytest.raises(MetricInputError, match="shapes differ"):
        f_measure(np.zeros((4, 5)), np.zeros((5, 4)))
    with pytest.raises(MetricInputError, match="void shape"):
        jaccard(np.zeros((4, 5)), np.zeros((4, 5)), np.zeros((4, 4)))
    with pytest.raises(MetricInputError, match="bound_th"):
        f_measure(np.zeros((4, 5)), np.zeros((4, 5)), bound_th=-1)
    with pytest.raises(MetricInputError, match="s1.*frames"):
        evaluate_semisupervised("s1", np.zeros((5, 4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(MetricInputError, match="s2.*resolution"):
        evaluate_unsupervised("s2", np.zeros((5, 4, 4), np.uint8), np.zeros((5, 8, 8), np.uint8))
    with pytest.raises(MetricInputError, match="s3.*integer"):
        evaluate_semisupervised(
            "s3", np.zeros((5, 4, 4), np.float32), np.zeros((5, 4, 4), np.uint8)
        )
    with pytest.raises(MetricInputError, match=">= 3 frames"):
        evaluate_semisupervised("s4", np.zeros((2, 4, 4), np.uint8), np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(MetricInputError, match="non-empty 1-D"):
        db_statistics(np.zeros(0))
    with pytest.raises(MetricInputError, match="unknown DAVIS task"):
        DavisEvaluator("semi")  # type: ignore[arg-type]


def test_davis16_binary_protocol():
    gt = _two_object_clip(t=5)
    gt[gt == 2] = 255  # DAVIS-2016 PNGs are 0/255: 255 is the object there, not void
    res = (gt > 0).astype(np.uint8) * 7
    res[0] = 0  # first and last frame never count
    res[-1] = 1
    out = evaluate_davis16("bin", gt, res)
    assert out.object_names == ["bin_1"] and out.J.shape == (1, 3)
    np.testing.assert_array_equal(out.J, 1.0)
    np.testing.assert_array_equal(out.frame_indices, [1, 2, 3])
    half = res.copy()
    half[2][gt[2] == 255] = 0  # frame 2 loses the second blob
    out2 = evaluate_davis16("bin", gt, half)
    n1, n2 = (gt[2] == 1).sum(), (gt[2] == 255).sum()
    assert out2.J[0, 1] == pytest.approx(n1 / (n1 + n2))


def test_davis16_table_is_sequence_weighted():
    def res(seq, rows):
        j = np.array(rows, dtype=float)
        return SequenceResult(seq, [f"{seq}_{k + 1}" for k in range(len(rows))], j, j.copy())

    results = [res("a", [[1.0, 1.0], [0.0, 0.0]]), res("b", [[1.0, 1.0]])]
    assert global_table(results)["J-Mean"] == pytest.approx(2 / 3)  # object-weighted
    assert global_table_davis16(results)["J-Mean"] == pytest.approx(0.75)  # sequence-weighted
    single = [res("a", [[0.2, 0.4]]), res("b", [[1.0, 1.0]])]
    assert global_table(single) == global_table_davis16(single)


def test_mos_binary_truncates_and_uses_all_frames():
    gt = _two_object_clip(t=6)
    res = np.concatenate([(gt > 0).astype(np.uint8) * 3, np.zeros((2, 40, 50), np.uint8)])
    out = evaluate_mos_binary("m", gt, res)
    assert out.J.shape == (1, 6)
    np.testing.assert_array_equal(out.J, 1.0)
    res2 = res[:4].copy()
    res2[0] = 0
    out2 = evaluate_mos_binary("m", gt, res2)
    assert out2.J.shape == (1, 4) and out2.J[0, 0] == 0.0  # first frame is scored
    ev = DavisEvaluator("mos")
    ev.process("m", gt_labels=gt, res_labels=res2)
    assert ev.evaluate()["J-Mean"] == pytest.approx(0.75)
