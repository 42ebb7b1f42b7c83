"""The proposer's masks under swapped motion decisions (training.probe_motion_decision)."""

from __future__ import annotations

import json

import pytest

from training import probe_motion_decision as pmd

GMOS = "gmos_core/assets/micro_gmos.safetensors"
GMOS_S = "gmos_core/assets/micro_gmos_s.safetensors"


def test_every_decision_is_scored_on_the_same_frames_in_range():
    rep = pmd.probe_motion_decision(
        GMOS, num_seqs=1, frame_stride=6, motion_thresholds=(0.0, 0.5), residual_thresholds=(3.0,)
    )
    j = rep["J"]
    assert set(j) == {
        "motion_head@0", "motion_head@0.5", "homography@3", "warp_true@3", "warp_depth_vo@3",
        "oracle", "all_queries",
    }  # fmt: skip
    assert rep["frames"] > 0
    assert all(0.0 <= v <= 100.0 for v in j.values())
    # A motion threshold of 0 calls every non-empty query moving: no decision at all.
    assert j["motion_head@0"] == pytest.approx(j["all_queries"])


def test_bad_inputs_are_refused_by_name(tmp_path, capsys):
    with pytest.raises(ValueError, match="Gmos proposer"):
        pmd.probe_motion_decision(GMOS_S, num_seqs=1)
    with pytest.raises(ValueError, match="probabilities"):
        pmd.probe_motion_decision(GMOS, num_seqs=1, motion_thresholds=(1.5,))
    with pytest.raises(ValueError, match="grey levels"):
        pmd.probe_motion_decision(GMOS, num_seqs=1, residual_thresholds=(-1.0,))
    with pytest.raises(ValueError, match="held-out"):
        pmd.probe_motion_decision(GMOS, num_seqs=5, seed=899_990)
    with pytest.raises(SystemExit):
        pmd.main(["--bundle", GMOS, "--num-seqs", "0", "--out", str(tmp_path)])
    assert "must be positive" in capsys.readouterr().err


def test_cli_writes_the_report_and_its_picture(tmp_path):
    argv = ["--bundle", GMOS, "--num-seqs", "1", "--frame-stride", "8", "--out", str(tmp_path)]
    assert pmd.main(argv) == 0
    rep = json.loads((tmp_path / "motion_decision.json").read_text())
    assert rep["frames"] > 0 and "oracle" in rep["J"]
    assert (tmp_path / "motion_decision.png").stat().st_size > 1000


@pytest.mark.parametrize("cue", ["homography", "motion_head", "oracle"])
def test_mos_i_of_a_decision_is_chosen_on_calibration_clips_and_checked_elsewhere(cue, tmp_path):
    rep = pmd.mos_i_with_decision(
        GMOS, cue, tmp_path, cal_seqs=1, check_seqs=1, mask_grid=(0.0,),
        tau_grid=(0.5,) if cue == "motion_head" else (3.0,), iou_grid=(0.5,),
    )  # fmt: skip
    for part in (rep["calibration"]["chosen"], rep["check"]["chosen"]):
        assert 0.0 <= part["mtIoU"] <= 100.0 and 0.0 <= part["J_mov"] <= 100.0
        assert part["FP"] >= 0.0
    assert set(rep["check_baselines"]) == {"frame_diff", "ego_residual"}
    with pytest.raises(ValueError, match="mos-i must be one of"):
        pmd.mos_i_with_decision(GMOS, "flow", tmp_path)


def test_mos_i_cli_writes_the_report_and_the_comparison_plot(tmp_path, capsys):
    argv = ["--bundle", GMOS, "--mos-i", "oracle", "--cal-seqs", "1", "--check-seqs", "1"]
    argv += ["--tracker", "0.1:in_place", "--out", str(tmp_path)]
    assert pmd.main(argv) == 0
    rep = json.loads((tmp_path / "mos_i_oracle.json").read_text())
    assert rep["calibration"]["chosen"]["tracker"] == [0.1, False]
    assert 0.0 <= rep["check"]["chosen"]["J_mov"] <= 100.0
    assert (tmp_path / "mos_i.png").stat().st_size > 1000
    with pytest.raises(SystemExit):
        pmd.main([*argv[:-4], "--tracker", "0.1", "--out", str(tmp_path)])
    assert "SNAP:velocity or SNAP:in_place" in capsys.readouterr().err
