"""gmos-infer on a short generated video with the micro configuration: official output
layout, one PNG per frame at input size, scored by gmos-eval unchanged; bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gmos_core.data.palette import read_label_png
from gmos_core.data.synthetic import SceneConfig, generate_scene
from gmos_core.data.synthetic_writers import write_davis_style
from gmos_core.data.video import write_mp4
from training.evaluate import main as gmos_eval
from training.infer import main as gmos_infer


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scene")
    s = generate_scene(
        SceneConfig(seed=4242, num_frames=8, height=64, width=80, fps=10.0, scene_kind="dynamic")
    )
    write_davis_style([s], root / "davis", names=["clip"], progress=False)
    write_mp4(root / "clip.mp4", list(s.frames), fps=10.0)
    return root


def test_gmos_s_writes_prob_and_frame_per_input_frame(scene_dir, tmp_path) -> None:
    out = tmp_path / "out"
    rc = gmos_infer(
        ["--model", "gmos-s", "--input", str(scene_dir / "davis/JPEGImages/480p/clip"),
         "--fps", "10", "--out", str(out), "--allow-random-weights"]
    )  # fmt: skip
    assert rc == 0
    probs = sorted((out / "prob" / "clip").glob("*.png"))
    masks = sorted((out / "frame" / "clip").glob("*.png"))
    assert [p.name for p in probs] == [f"{t:05d}.png" for t in range(8)]
    assert len(masks) == 8 and read_label_png(masks[0]).shape == (64, 80)
    assert (out / "mp4" / "clip.mp4").stat().st_size > 0


def test_gmos_online_and_offline_layout_scores_with_gmos_eval(scene_dir, tmp_path) -> None:
    out = tmp_path / "out"
    rc = gmos_infer(
        ["--model", "gmos", "--input", str(scene_dir / "clip.mp4"), "--out", str(out),
         "--allow-random-weights", "--no-mp4"]
    )  # fmt: skip
    assert rc == 0
    for layout in ("mos-i_frame", "mos_frame"):
        pngs = sorted((out / layout / "clip").glob("*.png"))
        assert len(pngs) == 8
        lab = read_label_png(pngs[0])
        assert lab.shape == (64, 80) and lab.max() <= 20
    rc = gmos_eval(
        ["--protocol", "mos-i", "--results", str(out), "--gt",
         str(scene_dir / "davis/annotations"), "--time-anno",
         str(scene_dir / "davis/time_annotation.csv"), "--dataset", "synthetic",
         "--out", str(tmp_path / "eval"), "--quiet"]
    )  # fmt: skip
    assert rc == 0
    import json

    report = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert report["num_sequences"] == 1
    assert 0.0 <= report["global"]["sequence_level"]["mtIoU"] <= 1.0


def test_online_only_same_online_output_no_spill_left(scene_dir, tmp_path) -> None:
    """--online-only: the same mos-i_frame as a full run, mos_frame from the online pass; the
    full run's offline-pass files are removed when it ends."""
    spill = tmp_path / "spill"
    spill.mkdir()
    outs = {}
    for name, extra in (("full", ["--spill-dir", str(spill)]), ("online", ["--online-only"])):
        outs[name] = tmp_path / name
        rc = gmos_infer(
            ["--model", "gmos", "--input", str(scene_dir / "clip.mp4"), "--out",
             str(outs[name]), "--allow-random-weights", "--no-mp4", *extra]
        )  # fmt: skip
        assert rc == 0
    assert list(spill.iterdir()) == []
    for t in range(8):
        a = read_label_png(outs["full"] / "mos-i_frame" / "clip" / f"{t:05d}.png")
        b = read_label_png(outs["online"] / "mos-i_frame" / "clip" / f"{t:05d}.png")
        np.testing.assert_array_equal(a, b)
    assert len(list((outs["online"] / "mos_frame" / "clip").glob("*.png"))) == 8


def test_the_flow_motion_decision_from_the_command_line(scene_dir, tmp_path, capsys) -> None:
    """--motion-decision flow_motion: the shipped micro Gmos at its flow_motion point, the
    online layout written; Gmos-S has no proposals to decide (exit 2, said)."""
    out = tmp_path / "out"
    rc = gmos_infer(
        ["--model", "gmos", "--input", str(scene_dir / "clip.mp4"), "--out", str(out),
         "--no-mp4", "--online-only", "--motion-decision", "flow_motion"]
    )  # fmt: skip
    assert rc == 0
    assert len(sorted((out / "mos-i_frame" / "clip").glob("*.png"))) == 8
    rc = gmos_infer(
        ["--model", "gmos-s", "--input", str(scene_dir / "clip.mp4"), "--out",
         str(tmp_path / "s"), "--no-mp4", "--motion-decision", "flow_motion"]
    )  # fmt: skip
    assert rc == 2
    assert "gmos_online only" in capsys.readouterr().err


def test_bad_inputs_exit_2_with_a_message(tmp_path, capsys) -> None:
    assert gmos_infer(["--model", "gmos-s", "--input", str(tmp_path / "nope"),
                       "--out", str(tmp_path / "o"), "--allow-random-weights"]) == 2  # fmt: skip
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert gmos_infer(["--model", "gmos-s", "--input", str(empty), "--fps", "10",
                       "--out", str(tmp_path / "o"), "--allow-random-weights"]) == 2  # fmt: skip
    folder = tmp_path / "frames"
    folder.mkdir()
    import cv2

    cv2.imwrite(str(folder / "0.png"), np.zeros((8, 8, 3), np.uint8))
    assert gmos_infer(["--model", "gmos-s", "--input", str(folder), "--out",
                       str(tmp_path / "o"), "--allow-random-weights"]) == 2  # fmt: skip
    assert "--fps" in capsys.readouterr().err


@pytest.mark.slow
def test_peak_rss_flat_in_video_length(tmp_path) -> None:
    """1000 frames through gmos-infer --model gmos peak within 10 % of 100 frames (~6 min)."""
    from training.bench_infer_memory import run_infer, write_long_video

    peaks = {}
    for n in (100, 1000):
        video = tmp_path / f"clip_{n}.mp4"
        write_long_video(video, n, 96, 128, 10.0)
        peak, _, rc = run_infer(video, tmp_path / f"out_{n}", [])
        assert rc == 0
        assert len(list((tmp_path / f"out_{n}" / "mos_frame" / f"clip_{n}").glob("*.png"))) == n
        peaks[n] = peak
    assert peaks[1000] <= 1.10 * peaks[100], peaks
