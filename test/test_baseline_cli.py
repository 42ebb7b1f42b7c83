"""`gmos-baseline` outputs, scored by `gmos-eval`, reproduce the held-out benchmark's rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.baseline import main as gmos_baseline
from training.benchmark_synthetic import (
    SplitSpec,
    evaluate,
    run_baselines,
    summarise,
    write_split,
)


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> tuple[Path, list[str], list]:
    root = tmp_path_factory.mktemp("heldout")
    names, scenes = write_split(SplitSpec(num_seqs=3), root / "data")
    # Lossless copies of the frames the benchmark segments (its JPEGs are lossy).
    for name, s in zip(names, scenes):
        (root / "frames" / name).mkdir(parents=True)
        for t, f in enumerate(s.frames):
            Image.fromarray(f).save(root / "frames" / name / f"{t:05d}.png")
    return root, names, scenes


def test_cli_reproduces_benchmark_rows(split, tmp_path):
    root, names, scenes = split
    bench = tmp_path / "bench"
    methods = run_baselines(names, scenes, bench)
    assert methods == ["frame_diff", "ego_residual"]
    for method, cli_name in zip(methods, ("frame-diff", "ego-residual")):
        cli = tmp_path / "cli" / method
        rc = gmos_baseline(
            [cli_name, "--input", *[str(root / "frames" / n) for n in names], "--out", str(cli)]
            + ["--fps", "10"]
        )
        assert rc == 0
        want = summarise(evaluate(bench / method, root / "data", tmp_path / "ev_b" / method))
        got = summarise(evaluate(cli, root / "data", tmp_path / "ev_c" / method))
        assert set(want) == {"mtIoU", "J_mov", "FP", "MOS_J", "MOS_F", "UVOS_JF"}
        assert got == want  # exactly, not approximately
        for n in names:  # the same files, byte for byte in content
            a = np.load(bench / method / "mos-i_frame" / f"{n}___motion.npy")
            b = np.load(cli / "mos-i_frame" / f"{n}___motion.npy")
            np.testing.assert_array_equal(a, b)


def test_cli_errors(tmp_path, capsys):
    assert gmos_baseline(["frame-diff", "--input", str(tmp_path / "no"), "--out", "x"]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    rc = gmos_baseline(["ego-residual", "--input", str(tmp_path / "empty"), "--out", "x"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
