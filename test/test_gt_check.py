"""Ground truth checked before scoring: 0/255, 0/1 and palette masks under every protocol.

A protocol either refuses 0/255 masks with a message that says so, or reads them (natively,
or converted by `--binary-gt`) and then gives the same numbers as 0/1 masks; no protocol
ever reports a number outside its range.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gmos_core.data import TimeAnnoRow, write_indexed_png, write_time_anno
from gmos_core.data.gt_check import (
    GT_CONVENTIONS,
    GtLabelError,
    check_interval_ids,
    is_binary_255,
    prepare_gt_labels,
)
from training.evaluate import main

H, W, T = 24, 32, 6
MASK_PROTOCOLS = ("davis16", "mos", "davis17-unsup", "davis17-semi", "mos-i")


def _object(t: int, x0: int) -> np.ndarray:
    lab = np.zeros((t, H, W), np.uint8)
    for i in range(t):
        lab[i, 6:14, x0 + i : x0 + i + 9] = 1
    return lab


def _write(folder: Path, labels: np.ndarray, encoding: str) -> None:
    """encoding: palette (P-mode ids), gray01 (L-mode 0/1), gray255 (L-mode 0/255)."""
    folder.mkdir(parents=True, exist_ok=True)
    for t, lab in enumerate(labels):
        if encoding == "palette":
            write_indexed_png(folder / f"{t:05d}.png", lab)
        else:
            vals = np.where(lab > 0, 255 if encoding == "gray255" else 1, 0).astype(np.uint8)
            Image.fromarray(vals, mode="L").save(folder / f"{t:05d}.png")


def _layout(tmp_path: Path, protocol: str, encoding: str) -> list[str]:
    """Write ground truth in `encoding` and a prediction; return the gmos-eval arguments."""
    gt = _object(T, 4)
    if encoding == "palette":  # a second object, only representable with ids
        gt[:, 16:22, 2:8] = 2
    pred = np.roll(np.where(gt > 0, 1, 0).astype(np.uint8), 1, axis=2)
    res = tmp_path / "res"
    for t, p in enumerate(pred):
        write_indexed_png(res / "clip" / f"{t:05d}.png", p)
    out = ["--results", str(res), "--out", str(tmp_path / "out"), "--protocol", protocol]
    if protocol == "mos-i":
        gt_dir = tmp_path / "gmos2k"
        _write(gt_dir / "clip", gt, encoding)
        intervals = {1: [(0, T - 1)]} | ({2: [(2, 4)]} if encoding == "palette" else {})
        csv_path = tmp_path / "time_annotation.csv"
        write_time_anno(csv_path, [TimeAnnoRow("clip", intervals, T, T, "davis", "test")])
        return [*out, "--gt", str(gt_dir), "--time-anno", str(csv_path)]
    root = tmp_path / "DAVIS"
    for anno in ("Annotations", "Annotations_unsupervised"):
        _write(root / anno / "480p" / "clip", gt, encoding)
    return [*out, "--gt", str(root), "--sequences", "clip"]


def _numbers(d: object) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    if isinstance(d, dict):
        for k, v in d.items():
            if isinstance(v, dict):
                out += [(f"{k}/{kk}", vv) for kk, vv in _numbers(v)]
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append((str(k), float(v)))
    return out


def _assert_in_range(global_: dict) -> None:
    for k, v in _numbers(global_):
        if math.isnan(v) or k.endswith("FP") or "num_" in k:
            continue
        lo = -1.0 if "Decay" in k else 0.0
        assert lo <= v <= 1.0, (k, v)


def _run(tmp_path: Path, argv: list[str], capsys) -> tuple[int, str, dict | None]:
    rc = main(["--quiet", *argv])
    err = capsys.readouterr().err
    res = tmp_path / "out" / "results.json"
    got = json.loads(res.read_text())["global"] if rc == 0 else None
    if res.exists():
        res.unlink()
    return rc, err, got


@pytest.mark.parametrize("protocol", MASK_PROTOCOLS)
def test_0_255_refused_or_read_never_out_of_range(tmp_path, capsys, protocol):
    runs = {}
    for enc in ("gray01", "gray255", "palette"):
        sub = tmp_path / enc
        argv = _layout(sub, protocol, enc)
        runs[enc] = (sub, argv, _run(sub, argv, capsys))
    # 0/1 and palette masks are always scored, inside the ranges.
    for enc in ("gray01", "palette"):
        rc, err, got = runs[enc][2]
        assert rc == 0, (enc, err)
        _assert_in_range(got)
    rc, err, got = runs["gray255"][2]
    sub, argv, _ = runs["gray255"]
    if GT_CONVENTIONS[protocol].binary:
        # davis16 / mos read 0/255 natively: the same numbers as 0/1.
        assert rc == 0, err
        assert got == runs["gray01"][2][2]
    else:
        assert rc == 2 and "0/255" in err and "--binary-gt" in err, err
        assert "Traceback" not in err
    # --binary-gt converts 0/255 to the 0/1 numbers under every mask protocol ...
    rc, err, got = _run(sub, [*argv, "--binary-gt"], capsys)
    assert rc == 0, err
    _assert_in_range(got)
    assert got == runs["gray01"][2][2]
    # ... and is refused on ground truth that is not 0/255 (it would hide void / ids).
    sub, argv, _ = runs["palette"]
    rc, err, _ = _run(sub, [*argv, "--binary-gt"], capsys)
    assert rc == 2 and "--binary-gt" in err and "not 0/255" in err


def test_moca_refuses_binary_gt(tmp_path, capsys):
    (tmp_path / "res" / "v").mkdir(parents=True)
    rc = main(["--quiet", "--protocol", "moca", "--results", str(tmp_path / "res")]
              + ["--gt", str(tmp_path), "--binary-gt"])  # fmt: skip
    assert rc == 2 and "moca" in capsys.readouterr().err


def test_mos_i_interval_ids_must_be_in_masks(tmp_path, capsys):
    gt = _object(T, 4)
    with pytest.raises(GtLabelError, match=r"id\(s\) 3 that appear in no ground-truth frame"):
        check_interval_ids(gt, {1: [(0, 5)], 3: [(1, 2)]}, "clip")
    with pytest.raises(GtLabelError, match="object 1 moves in frames 2..3"):
        check_interval_ids(np.where(np.arange(T)[:, None, None] < 2, gt, 0), {1: [(2, 3)]}, "c")
    two = gt.copy()
    two[:, 0:2, 0:2] = 2
    assert check_interval_ids(two, {1: [(0, 5)]}, "clip") == [2]  # id 2: static, allowed
    # Through the CLI: a clear message, exit 2.
    argv = _layout(tmp_path, "mos-i", "gray01")
    csv_path = tmp_path / "time_annotation.csv"
    write_time_anno(csv_path, [TimeAnnoRow("clip", {2: [(0, 5)]}, T, T, "davis", "test")])
    rc, err, _ = _run(tmp_path, argv, capsys)
    assert rc == 2 and "object id(s) 2" in err


def test_mos_i_metric_above_one_is_refused(tmp_path, capsys):
    """Moving-but-empty GT frames count as TPs officially: mtIoU 10/5 = 2 must not print."""
    gt = _object(10, 4)
    gt[5:] = 0  # the object leaves the image but its interval goes on
    gt_dir = tmp_path / "gmos2k"
    _write(gt_dir / "clip", gt, "palette")
    for t, p in enumerate(gt):  # a perfect prediction
        write_indexed_png(tmp_path / "res" / "clip" / f"{t:05d}.png", p)
    csv_path = tmp_path / "time_annotation.csv"
    write_time_anno(csv_path, [TimeAnnoRow("clip", {1: [(0, 9)]}, 10, 10, "davis", "test")])
    argv = ["--protocol", "mos-i", "--results", str(tmp_path / "res"), "--gt", str(gt_dir)]
    argv += ["--time-anno", str(csv_path), "--out", str(tmp_path / "out")]
    rc, err, _ = _run(tmp_path, argv, capsys)
    assert rc == 2 and "mtIoU" in err and "outside [0, 1]" in err, err
    assert not (tmp_path / "out" / "results.json").exists()


def test_prepare_gt_labels_units():
    gt255 = np.where(_object(T, 4) > 0, 255, 0).astype(np.uint8)
    assert is_binary_255(gt255) and not is_binary_255(_object(T, 4))
    assert not is_binary_255(np.zeros((2, 3, 3), np.uint8))  # empty masks are not 0/255
    np.testing.assert_array_equal(prepare_gt_labels(gt255, "mos-i", "s", True), _object(T, 4))
    assert prepare_gt_labels(gt255, "davis16", "s") is not None
    with pytest.raises(GtLabelError, match="void under davis17-unsup"):
        prepare_gt_labels(gt255, "davis17-unsup", "s")
    with pytest.raises(GtLabelError, match="ids 21 exceed the largest id 20"):
        prepare_gt_labels(np.full((1, 2, 2), 21, np.uint8), "mos-i", "s")
    # DAVIS-2017 palette GT with some void: void stays, ids kept.
    pal = _object(T, 4)
    pal[:, 0, :3] = 255
    np.testing.assert_array_equal(prepare_gt_labels(pal, "davis17-unsup", "s"), pal)


def test_evaluator_classes_refuse_out_of_range():
    """The gmos_core evaluator protocol refuses the same impossible numbers as gmos-eval."""
    from gmos_core.metrics import MosIEvaluator
    from gmos_core.metrics.ranges import MetricRangeError, check_metric_ranges

    gt = _object(10, 4)
    gt[5:] = 0
    ev = MosIEvaluator()
    ev.process("clip", gt_labels=gt, res_labels=gt, intervals={1: [(0, 9)]})
    with pytest.raises(MetricRangeError, match=r"mtIoU = 2 is outside \[0, 1\]"):
        ev.evaluate()
    check_metric_ranges({"J-Decay": -0.5, "FP": 3.0, "J_mov": float("nan")}, "ok")
    with pytest.raises(MetricRangeError, match="J-Mean"):
        check_metric_ranges({"x": {"J-Mean": 1.5}}, "DAVIS")


def test_bag_eval_score_refuses_out_of_range():
    """`gmos-bag eval` scores with the same rule: no mtIoU above 1 is returned."""
    pytest.importorskip("rclpy")
    from gmos_core.metrics.ranges import MetricRangeError
    from gmos_ros.bag import GroundTruth, score_mos_i

    gt = _object(10, 4).astype(np.uint16)
    gt[5:] = 0
    stamps = [int(t * 1e8) for t in range(10)]
    preds = {s: (gt[t], {1} if gt[t].any() else set()) for t, s in enumerate(stamps)}
    with pytest.raises(MetricRangeError, match="mtIoU"):
        score_mos_i(GroundTruth(stamps, gt, {1: [(0, 9)]}), preds)
    ok = {1: [(0, 4)]}  # the intervals that match the masks: scored, in range
    assert 0.0 <= score_mos_i(GroundTruth(stamps, gt, ok), preds)["mtIoU"] <= 1.0
