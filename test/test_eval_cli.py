"""End-to-end `gmos-eval` (training.evaluate.main) on tiny synthetic folders + the MOS-I fixture."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from gmos_core.data import TimeAnnoRow, write_indexed_png, write_time_anno
from gmos_core.metrics import davis as dm
from gmos_core.metrics.moca import MocaEvaluator
from gmos_core.metrics.mos_i import aggregate_mos_i, evaluate_mos_i_sequence
from training.evaluate import main

H, W = 24, 32


def _gt_seq(t: int, n_obj: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lab = np.zeros((t, H, W), np.uint8)
    for k in range(1, n_obj + 1):
        y, x = rng.integers(0, H - 8), rng.integers(0, W - 10)
        for i in range(t):
            lab[i, y : y + 6, (x + i) % (W - 8) : (x + i) % (W - 8) + 7] = k
    return lab


def _perturb(lab: np.ndarray, seed: int, max_id: int) -> np.ndarray:
    """A plausible prediction: shifted by one pixel, some ids swapped, one extra blob."""
    rng = np.random.default_rng(seed)
    out = np.roll(lab, 1, axis=2).copy()
    out[out == 255] = 0
    if max_id > lab[lab != 255].max():
        out[:, -4:, -4:] = max_id
    out[rng.random(out.shape) < 0.02] = 0
    return out


def _write_seq(folder: Path, labels: np.ndarray) -> None:
    for t, lab in enumerate(labels):
        write_indexed_png(folder / f"{t:05d}.png", lab)


@pytest.fixture()
def davis(tmp_path):
    """Tiny DAVIS root (2 sequences, 6 frames, void pixels in the unsupervised GT)."""
    root = tmp_path / "DAVIS"
    gts = {"bear": _gt_seq(6, 2, 1), "car": _gt_seq(6, 1, 2)}
    gts["bear"][:, 0, :3] = 255  # void
    for year in ("2016", "2017"):
        (root / "ImageSets" / year).mkdir(parents=True)
        (root / "ImageSets" / year / "val.txt").write_text("bear\ncar\n")
    for seq, g in gts.items():
        _write_seq(root / "Annotations" / "480p" / seq, np.where(g == 255, 0, g))
        _write_seq(root / "Annotations_unsupervised" / "480p" / seq, g)
    preds = {
        "bear": _perturb(gts["bear"], 3, max_id=3),
        "car": _perturb(gts["car"], 4, max_id=1),
    }
    save = tmp_path / "save"  # Gmos --save_dir layout: results in mos_frame/
    for seq, p in preds.items():
        _write_seq(save / "mos_frame" / seq, p)
    return root, gts, preds, save


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = main(["--quiet", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("protocol", ["davis17-unsup", "davis17-semi", "davis16", "mos"])
def test_davis_protocols_equal_direct_metric_calls(davis, tmp_path, capsys, protocol):
    root, gts, preds, save = davis
    preds = dict(preds)
    if protocol == "davis17-semi":  # the semi protocol forbids ids above the GT count
        preds["bear"] = np.where(preds["bear"] > 2, 0, preds["bear"])
        _write_seq(save / "mos_frame" / "bear", preds["bear"])
    out = tmp_path / f"out_{protocol}"
    argv = ["--protocol", protocol, "--results", str(save), "--gt", str(root), "--out", str(out)]
    rc, stdout, stderr = _run(argv, capsys)
    assert rc == 0, stderr
    assert "J&F-Mean" in stdout
    got = json.loads((out / "results.json").read_text())
    assert got["protocol"] == protocol and got["results_dir"].endswith("mos_frame")

    gt_sem = {s: np.where(g == 255, 0, g) for s, g in gts.items()}
    if protocol == "davis17-unsup":
        direct = [dm.evaluate_unsupervised(s, gts[s], preds[s]) for s in gts]
    elif protocol == "davis17-semi":
        direct = [dm.evaluate_semisupervised(s, gt_sem[s], preds[s]) for s in gts]
    elif protocol == "davis16":
        direct = [dm.evaluate_davis16(s, gt_sem[s], preds[s]) for s in gts]
    else:
        direct = [dm.evaluate_mos_binary(s, gt_sem[s], preds[s]) for s in gts]
    table = dm.global_table_davis16(direct) if protocol == "davis16" else dm.global_table(direct)
    assert set(table) <= set(got["global"])
    for k, v in table.items():
        assert got["global"][k] == pytest.approx(v, abs=1e-12), k

    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    per_obj = dm.per_object_table(direct)
    assert [r["Sequence"] for r in rows] == [r["Sequence"] for r in per_obj]
    for r, d in zip(rows, per_obj):
        assert float(r["J-Mean"]) == pytest.approx(d["J-Mean"], abs=1e-12)
    assert (out / "per_sequence.png").stat().st_size > 1000


def test_default_out_is_a_folder_of_its_own(davis, capsys):
    root, _, _, save = davis
    rc, _, err = _run(
        ["--protocol", "davis17-unsup", "--results", str(save / "mos_frame"), "--gt", str(root)],
        capsys,
    )
    assert rc == 0, err
    # Nothing is written into the results folder: only the sequence folders stay there.
    assert sorted(p.name for p in (save / "mos_frame").iterdir()) == ["bear", "car"]
    assert (save / "mos_frame_eval" / "davis17-unsup" / "results.json").is_file()


def test_sequences_without_image_set(davis, tmp_path, capsys):
    root, _, _, save = davis
    for year in ("2016", "2017"):
        (root / "ImageSets" / year / "val.txt").unlink()
    out = tmp_path / "o"
    argv = ["--protocol", "davis16", "--results", str(save), "--gt", str(root), "--out", str(out)]
    rc, _, err = _run(argv, capsys)
    assert rc == 2 and "val.txt" in err  # no image set and no --sequences: said plainly
    rc, stdout, err = _run([*argv, "--sequences", "car"], capsys)
    assert rc == 0, err
    got = json.loads((out / "results.json").read_text())
    assert got["sequences"] == ["car"] and got["num_sequences"] == 1
    rc, _, err = _run([*argv, "--sequences", "car,dog"], capsys)
    assert rc == 2 and "dog" in err and "no ground-truth folder" in err


# ------------------------------------------------------------------------- bad input


def test_missing_frame(davis, capsys):
    root, _, _, save = davis
    (save / "mos_frame" / "car" / "00003.png").unlink()
    rc, _, err = _run(
        ["--protocol", "davis17-unsup", "--results", str(save), "--gt", str(root)], capsys
    )
    assert rc == 2 and "sequence car, frame 00003" in err and "missing" in err
    rc, _, err = _run(["--protocol", "mos", "--results", str(save), "--gt", str(root)], capsys)
    assert rc == 2 and "sequence car, frame 00003" in err


def test_wrong_sequence_names(davis, capsys):
    root, _, _, save = davis
    (save / "mos_frame" / "car").rename(save / "mos_frame" / "cars")
    rc, _, err = _run(
        ["--protocol", "davis17-semi", "--results", str(save), "--gt", str(root)], capsys
    )
    assert rc == 2 and "lacks 1 of 2 sequence(s): car" in err


def test_corrupt_png(davis, capsys):
    root, _, _, save = davis
    f = save / "mos_frame" / "bear" / "00002.png"
    f.write_bytes(f.read_bytes()[:40])
    rc, _, err = _run(
        ["--protocol", "davis17-unsup", "--results", str(save), "--gt", str(root)], capsys
    )
    assert rc == 2 and "sequence bear, frame 00002" in err and "corrupt" in err
    rc, _, err = _run(["--protocol", "mos", "--results", str(save), "--gt", str(root)], capsys)
    assert rc == 2 and "00002.png" in err


def test_too_many_proposals(davis, capsys):
    root, gts, _, save = davis
    p = gts["bear"].copy()
    p[p == 255] = 0
    p[4, 10:12, 10:12] = 23
    _write_seq(save / "mos_frame" / "bear", p)
    rc, _, err = _run(
        ["--protocol", "davis17-unsup", "--results", str(save), "--gt", str(root)], capsys
    )
    assert rc == 2 and "sequence bear, frame 00004: label 23 exceeds" in err and "20" in err


def test_semi_extra_object(davis, capsys):
    root, _, preds, save = davis  # bear prediction carries an id-3 blob, GT has 2 objects
    rc, _, err = _run(
        ["--protocol", "davis17-semi", "--results", str(save), "--gt", str(root)], capsys
    )
    assert rc == 2 and "sequence bear, frame 00001: result label 3" in err


# ------------------------------------------------------------------------- MOS-I


def _gmos2k(tmp_path: Path) -> tuple[Path, Path, Path, dict]:
    gt_dir, res_dir = tmp_path / "gmos2k" / "davis" / "test", tmp_path / "save" / "mos-i_frame"
    seqs = {
        "dogs": (_gt_seq(8, 2, 5), {1: [(0, 7)], 2: [(0, 3)]}),
        "kite": (_gt_seq(10, 1, 6), {1: [(2, 9)]}),
    }
    rows = []
    preds = {}
    for name, (g, iv) in seqs.items():
        _write_seq(gt_dir / name, g)
        preds[name] = _perturb(g, 9, max_id=4)[:-1]  # one frame short: T = min
        _write_seq(res_dir / name, preds[name])
        rows.append(TimeAnnoRow(name, iv, len(g), len(g), "davis", "test"))
    rows.insert(1, TimeAnnoRow("ignored_train", {1: [(0, 1)]}, 2, 2, "davis", "train"))
    csv_path = tmp_path / "time_annotation.csv"
    write_time_anno(csv_path, rows)
    return gt_dir, res_dir.parent, csv_path, {n: (seqs[n][0], preds[n], seqs[n][1]) for n in seqs}


def test_mos_i_equals_direct_metric_calls(tmp_path, capsys):
    gt_dir, save, csv_path, data = _gmos2k(tmp_path)
    out = tmp_path / "out"
    rc, stdout, err = _run(
        ["--protocol", "mos-i", "--results", str(save), "--gt", str(gt_dir)]
        + ["--time-anno", str(csv_path), "--out", str(out)],
        capsys,
    )
    assert rc == 0, err
    assert "mtIoU" in stdout and "J_mov" in stdout and "FP" in stdout
    direct = [evaluate_mos_i_sequence(g, p, iv, seq=n) for n, (g, p, iv) in data.items()]
    agg = aggregate_mos_i(direct)
    got_all = json.loads((out / "results.json").read_text())["global"]
    assert "frame_level" not in got_all
    got = got_all["sequence_level"]
    for k in ("mtIoU", "J_mov", "FP"):
        assert got[k] == pytest.approx(agg[k], abs=1e-12)
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["sequence"] for r in rows] == ["dogs", "kite"]
    assert int(rows[0]["frames_evaluated"]) == 7
    assert float(rows[1]["mtIoU"]) == pytest.approx(direct[1].mtiou_mean, abs=1e-12)


def test_mos_i_unparsable_csv_row(tmp_path, capsys):
    gt_dir, save, csv_path, _ = _gmos2k(tmp_path)
    lines = csv_path.read_text().splitlines()
    lines[3] = lines[3].replace("[[2, 9]]", "[[2, 9]")
    csv_path.write_text("\n".join(lines) + "\n")
    rc, _, err = _run(
        ["--protocol", "mos-i", "--results", str(save), "--gt", str(gt_dir)]
        + ["--time-anno", str(csv_path)],
        capsys,
    )
    assert rc == 2 and "time_annotation.csv:4: sequence 'kite'" in err


def test_mos_i_missing_results_sequence_and_bad_motion(tmp_path, capsys):
    gt_dir, save, csv_path, _ = _gmos2k(tmp_path)
    argv = ["--protocol", "mos-i", "--results", str(save), "--gt", str(gt_dir)]
    argv += ["--time-anno", str(csv_path)]
    np.save(save / "mos-i_frame" / "kite___motion.npy", np.ones((3, 20, 1), np.float32))
    rc, _, err = _run(argv, capsys)
    assert rc == 2 and "sequence kite" in err and "motion" in err
    (save / "mos-i_frame" / "kite___motion.npy").unlink()
    (save / "mos-i_frame" / "kite").rename(save / "mos-i_frame" / "Kite")
    rc, _, err = _run(argv, capsys)
    assert rc == 2 and "lacks 1 of 2 sequence(s): kite" in err
    rc, _, err = _run(argv[:-2], capsys)
    assert rc == 2 and "--time-anno" in err
    rc, _, err = _run([*argv, "--dataset", "ytvos19-im"], capsys)
    assert rc == 2 and "no non-empty rows for --dataset ytvos19-im" in err
    assert "('davis', 'test')" in err


def test_mos_i_all_frame_results_for_sparse_gt(tmp_path, capsys):
    gt_dir, res_dir = tmp_path / "gt", tmp_path / "res"
    g = _gt_seq(4, 1, 7)
    _write_seq(gt_dir / "yt1", g)  # 4 annotated frames out of 16 raw ones
    _write_seq(res_dir / "yt1", np.repeat(g, 4, axis=0))
    csv_path = tmp_path / "t.csv"
    write_time_anno(csv_path, [TimeAnnoRow("yt1", {1: [(0, 3)]}, 4, 16, "ytvos", "test")])
    rc, _, err = _run(
        ["--protocol", "mos-i", "--results", str(res_dir), "--gt", str(gt_dir)]
        + ["--time-anno", str(csv_path), "--dataset", "ytvos19-im"],
        capsys,
    )
    assert rc == 2 and "sequence yt1: 16 result frames" in err and "annotated" in err


def _write_fixture(z, tmp_path: Path) -> tuple[Path, Path, Path]:
    gt_dir, res_dir = tmp_path / "anno", tmp_path / "res"
    rows = []
    extra = [tuple(r) for r in z["csv_extra_rows"]]
    for i, seq in enumerate(z["seq_names"].tolist()):
        iv = {
            int(k): [tuple(x) for x in v]
            for k, v in json.loads(str(z["seq_time_anno_json"][i])).items()
        }
        gt = z[f"gt__{seq}"]
        _write_seq(gt_dir / seq, gt)
        _write_seq(res_dir / seq, z[f"pred__{seq}"])
        if f"pred_motion__{seq}" in z.files:
            np.save(res_dir / f"{seq}___motion.npy", z[f"pred_motion__{seq}"])
        rows.append(TimeAnnoRow(seq, iv, len(gt), len(gt), "davis", "test"))
        if i % 5 == 0 and extra:  # interleave the rows that must be skipped
            name, anno, ds, split = extra.pop(0)
            rows.append(TimeAnnoRow(name, {}, 4, 4, ds, split))
            if anno != "{}":
                rows[-1] = TimeAnnoRow(name, {1: [(0, 3)]}, 4, 4, ds, split)
    assert not extra
    csv_path = tmp_path / "time_annotation.csv"
    write_time_anno(csv_path, rows)
    return gt_dir, res_dir, csv_path


def test_mos_i_official_parity_fixture(fixtures_dir, tmp_path, capsys):
    """One run with --frame-level-match reports both matchings (the sequence-level numbers
    do not depend on the flag; the default run is covered by the tiny MOS-I test)."""
    z = np.load(fixtures_dir / "mos_i_parity.npz")
    gt_dir, res_dir, csv_path = _write_fixture(z, tmp_path)
    out = tmp_path / "out"
    argv = ["--protocol", "mos-i", "--results", str(res_dir), "--gt", str(gt_dir)]
    argv += ["--time-anno", str(csv_path), "--dataset", "davis17-im", "--out", str(out)]
    rc, stdout, err = _run([*argv, "--frame-level-match"], capsys)
    assert rc == 0, err
    res = json.loads((out / "results.json").read_text())
    assert res["num_sequences"] == 13
    objs = {(o["sequence"], o["object_id"]): o for o in res["objects"]}
    assert len(objs) == sum(z[f"motion_channels__{s}"].size for s in z["seq_names"].tolist())
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["sequence"] for r in rows] == z["seq_names"].tolist()
    np.testing.assert_array_equal(
        [int(r["frames_evaluated"]) for r in rows], z["n_frames_evaluated"]
    )
    for tag, mode, suffix in (("slhm", "sequence_level", ""), ("flhm", "frame_level", "_flhm")):
        got = res["global"][mode]
        assert got["mtIoU"] == pytest.approx(float(z[f"overall_{tag}_mtiou"]), abs=1e-6)
        assert got["J_mov"] == pytest.approx(float(z[f"overall_{tag}_j_mov"]), abs=1e-6)
        assert got["FP"] == pytest.approx(float(z[f"overall_{tag}_fp_count"]), abs=1e-6)
        np.testing.assert_allclose(
            [float(r[f"mtIoU{suffix}"]) for r in rows], z[f"{tag}_mtiou_seq_mean"], atol=1e-6
        )
        np.testing.assert_allclose(
            [float(r[f"FP{suffix}"]) for r in rows], z[f"{tag}_fp_count"], atol=1e-6
        )
        # per-object J_mov (what the overall J_mov pools) is in results.json
        for seq in z["seq_names"].tolist():
            for ch, jm in zip(z[f"motion_channels__{seq}"], z[f"{tag}_j_mov__{seq}"]):
                o = objs[(seq, int(ch) + 1)]
                assert o[f"J_mov{suffix}"] == pytest.approx(float(jm), abs=1e-6)
        assert f"{float(z[f'overall_{tag}_mtiou']) * 100:.1f}" in stdout


# ------------------------------------------------------------------------- MoCA


def test_moca_equals_direct_evaluator(tmp_path, capsys):
    ann = tmp_path / "MoCA" / "annotations.csv"
    ann.parent.mkdir()
    lines = [",file_list,spatial_coordinates,metadata"]
    masks = {}
    for v, video in enumerate(["fox", "viper"]):
        m = np.zeros((5, H, W), np.uint8)
        for t in range(5):
            m[t, 4 + t : 12 + t, 3 + v : 15 + v] = 1
            box = f'"[2,{3 + t},{4 + t},{11 + v},{9}]"'
            lines.append(f"{len(lines)},/{video}/{t:05d}.jpg,{box},{{'1': '{v}'}}")
        masks[video] = m
        _write_seq(tmp_path / "res" / video, m)
    ann.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    rc, stdout, err = _run(
        ["--protocol", "moca", "--results", str(tmp_path / "res"), "--gt", str(ann.parent)]
        + ["--out", str(out)],
        capsys,
    )
    assert rc == 0, err
    from gmos_core.data import read_moca_annotations

    boxes = read_moca_annotations(ann)
    ev = MocaEvaluator()
    for video, m in masks.items():
        ev.process(
            video,
            masks=(m > 0).astype(np.uint8) * 255,
            gt_boxes={f: b.xyxy() for f, b in boxes[video].items()},
        )
    direct = ev.evaluate()
    got = json.loads((out / "results.json").read_text())["global"]
    for k in ("mean_IoU", "SR@0.5", "SR@0.9"):
        assert got[k] == pytest.approx(direct[k], abs=1e-12)
    assert "SR@0.5" in stdout
