"""Depth-and-pose warp residual (gmos_core.geometry.warp) and the per-object motion-cue probe."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from gmos_core.data.synthetic import SceneConfig, generate_scene
from gmos_core.geometry.camera import PinholeIntrinsics, backproject_depth, relative_pose
from gmos_core.geometry.warp import fit_pinhole, warp_residual
from training import probe_motion_cues as pmc


def _grey(frame: np.ndarray) -> np.ndarray:
    return frame.astype(np.float32).mean(axis=2)


def test_fit_pinhole_recovers_the_camera_of_a_point_map():
    k = PinholeIntrinsics(70.0, 65.0, 40.3, 29.8, 80, 60)
    depth = np.random.default_rng(0).uniform(1.0, 9.0, (60, 80)).astype(np.float32)
    depth[5:9, 10:30] = np.nan  # holes are left out of the fit
    fit = fit_pinhole(backproject_depth(depth, k))
    assert (fit.width, fit.height) == (80, 60)
    np.testing.assert_allclose(
        [fit.fx, fit.fy, fit.cx, fit.cy], [70.0, 65.0, 40.3, 29.8], atol=1e-3
    )


def test_fit_pinhole_refuses_point_maps_that_are_not_a_camera():
    k = PinholeIntrinsics(70.0, 65.0, 40.0, 30.0, 80, 60)
    pts = backproject_depth(np.full((60, 80), 2.0, np.float32), k)
    mirrored = pts.copy()
    mirrored[..., 0] *= -1  # x grows to the left: a negative focal length
    with pytest.raises(ValueError, match="not > 0"):
        fit_pinhole(mirrored)
    with pytest.raises(ValueError, match="usable points"):
        fit_pinhole(np.full((4, 4, 3), np.nan))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        fit_pinhole(pts[..., :2])


def test_warp_residual_explains_the_camera_and_leaves_moving_objects():
    """Exact renderer geometry: static pixels warp onto themselves whatever their depth."""
    s = generate_scene(
        SceneConfig(seed=5, scene_kind="hard_parallax", num_frames=6, height=96, width=128)
    )
    k = PinholeIntrinsics.from_matrix(s.intrinsics, 128, 96)
    t, j = 2, 4
    pts = backproject_depth(s.depth[t], k)
    rel = relative_pose(s.cam_to_world[t], s.cam_to_world[j])
    res = warp_residual(pts, _grey(s.frames[t]), _grey(s.frames[j]), rel, k)
    assert res.shape == (96, 128) and res.dtype == np.float32
    labels = s.instance_masks[t]
    moving_ids = [int(o) for o, mv in zip(s.object_ids, s.motion_state[t]) if mv]
    static = (labels > 0) & ~np.isin(labels, moving_ids) & np.isfinite(res)
    moving = np.isin(labels, moving_ids) & np.isfinite(res)
    assert static.sum() > 50 and moving.sum() > 50
    # Moving objects keep what the camera's motion does not explain (measured: 19 against 7).
    assert res[moving].mean() > 2 * res[static].mean()
    # The same static pixels with the camera motion ignored (identity pose): parallax is left
    # over (measured: 16 against 7 grey levels).
    naive = warp_residual(pts, _grey(s.frames[t]), _grey(s.frames[j]), np.eye(4), k)
    assert np.nanmean(naive[static]) > 2 * res[static].mean()
    # Identity pose onto itself: zero everywhere it is defined.
    same = warp_residual(pts, _grey(s.frames[t]), _grey(s.frames[t]), np.eye(4), k)
    assert np.nanmax(same) < 1e-3


def test_warp_residual_marks_what_it_cannot_see_and_checks_shapes():
    k = PinholeIntrinsics(50.0, 50.0, 31.5, 23.5, 64, 48)
    pts = backproject_depth(np.full((48, 64), 2.0, np.float32), k)
    grey = np.random.default_rng(1).uniform(0, 255, (48, 64)).astype(np.float32)
    shift = np.eye(4)
    shift[0, 3] = -1.0  # the neighbour camera 1 m to the right: the left part leaves its view
    res = warp_residual(pts, grey, grey, shift, k)
    assert np.isnan(res[:, :20]).all() and np.isfinite(res[:, -10:]).all()
    behind = np.eye(4)
    behind[2, 3] = -5.0
    assert np.isnan(warp_residual(pts, grey, grey, behind, k)).all()
    with pytest.raises(ValueError, match="do not match"):
        warp_residual(pts[:10], grey, grey, shift, k)
    with pytest.raises(ValueError, match="intrinsics"):
        warp_residual(pts, grey, grey, shift, PinholeIntrinsics(50, 50, 31.5, 23.5, 32, 48))
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        warp_residual(pts, grey, grey, np.eye(3), k)


def test_auroc_is_a_probability_of_ranking():
    assert pmc.auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert pmc.auroc(np.array([0.0]), np.array([1.0, 2.0])) == 0.0
    assert pmc.auroc(np.array([1.0, 1.0]), np.array([1.0])) == 0.5
    assert pmc.auroc(np.array([]), np.array([1.0])) is None


def test_probe_motion_cues_scores_the_same_objects_for_every_cue(tmp_path):
    res, report = pmc.probe_motion_cues(num_seqs=2, frame_stride=8)
    n = report["objects"]
    assert n == len(res.moving) > 0 and report["moving"] == sum(res.moving)
    assert set(res.scores) == {"homography", "warp_true", "warp_depth_vo"}
    assert set(report["frames_without_evidence"]) == set(res.scores)
    assert all(len(v) == n for v in res.scores.values())
    for value in report["auroc"].values():
        assert value is None or 0.0 <= value <= 1.0
    # The exact geometry separates better than one homography does (hard-parallax clip inside).
    assert report["auroc"]["warp_true"] > report["auroc"]["homography"]
    pmc.plot_roc(res, tmp_path / "roc.png")
    assert (tmp_path / "roc.png").stat().st_size > 1000


def test_a_cue_without_evidence_says_so_instead_of_guessing():
    s = generate_scene(
        SceneConfig(seed=5, scene_kind="dynamic", num_frames=6, height=96, width=128)
    )
    assert np.isfinite(pmc.depth_vo_warp_cue(s, 2)).any()
    blank = dataclasses.replace(s, frames=np.zeros_like(s.frames))  # no corners to track
    with pytest.raises(pmc.NoEvidence, match="odometry"):
        pmc.depth_vo_warp_cue(blank, 2)


def test_a_stage_one_state_with_heads_gives_the_probe_and_the_pi3_warp(tmp_path):
    from gmos_core.models.build import build_frame_model
    from gmos_core.models.pi3_heads import Pi3HeadSizes
    from training.pretrain_pi3 import MotionProbe
    from training.resume import save_fp16_state

    fm = build_frame_model("micro", "gmos", pi3_heads=Pi3HeadSizes(64, 1, 4, 64))
    with_heads = tmp_path / "with_heads.safetensors"
    save_fp16_state(with_heads, {"pi3": fm.pi3, "probe": MotionProbe(fm.pi3.embed_dim, 2)}, 1)
    cues = pmc.pi3_state_cues(with_heads)
    assert set(cues) == {
        "pi3_probe", "warp_pi3", "warp_pi3_k", "warp_pi3_depth", "warp_pi3_pose",
    }  # fmt: skip
    s = generate_scene(
        SceneConfig(seed=5, scene_kind="dynamic", num_frames=6, height=128, width=128)
    )
    prob = cues["pi3_probe"](s, 2)
    assert prob.shape == (126, 126) and 0.0 <= prob.min() and prob.max() <= 1.0
    try:  # random heads: the point map may or may not look like a camera's; both are handled
        assert cues["warp_pi3"](s, 2).shape == (126, 126)
    except pmc.NoEvidence as exc:
        assert "fit_pinhole" in str(exc)
    # With the camera's intrinsics given, every frame has evidence whatever the heads predict.
    for name in ("warp_pi3_k", "warp_pi3_depth", "warp_pi3_pose"):
        assert cues[name](s, 2).shape == (126, 126) and np.isfinite(cues[name](s, 2)).any()
    with pytest.raises(ValueError, match="already has π³ heads"):
        pmc.probe_motion_cues(1, pi3_state=with_heads, bundle=with_heads)
    save_fp16_state(tmp_path / "no_probe.safetensors", {"pi3": fm.pi3}, 1)
    with pytest.raises(ValueError, match="not a stage-1 state"):
        pmc.pi3_state_cues(tmp_path / "no_probe.safetensors")


def test_the_given_intrinsics_warp_with_exact_geometry_explains_a_static_scene():
    """The π³-size warp with the renderer's depth and poses (neither taken from π³) leaves a
    static scene's pixels where they are; shuffling the poses does not."""
    from gmos_core.models.build import build_frame_model
    from gmos_core.models.pi3_heads import Pi3HeadSizes

    fm = build_frame_model("micro", "gmos", pi3_heads=Pi3HeadSizes(64, 1, 4, 64))
    window = pmc._Pi3Window(fm.pi3.eval(), fm.config.pi3.pixel_limit)
    s = generate_scene(
        SceneConfig(seed=3, scene_kind="static", num_frames=6, height=128, width=128)
    )
    exact = pmc._pi3_warp_given_k(window, s, 2, pi3_depth=False, pi3_pose=False)
    moved = dataclasses.replace(s, cam_to_world=s.cam_to_world[::-1].copy())
    wrong = pmc._pi3_warp_given_k(window, moved, 2, pi3_depth=False, pi3_pose=False)
    assert np.nanmedian(exact) < 0.5 * np.nanmedian(wrong)


def test_probe_motion_cues_cli_validates_its_inputs(tmp_path, capsys):
    for argv, msg in (
        (["--num-seqs", "0"], "num_seqs must be positive"),
        (["--frame-stride", "-1"], "frame_stride must be positive"),
        (["--seed", "899990"], "held-out"),
        (["--pi3-state", str(tmp_path / "none.safetensors")], "none.safetensors"),
    ):
        with pytest.raises(SystemExit):
            pmc.main([*argv, "--out", str(tmp_path)])
        assert msg in capsys.readouterr().err
    assert pmc.main(["--num-seqs", "1", "--frame-stride", "10", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "motion_cues.json").read_text())
    assert report["frames"] == 2 and (tmp_path / "motion_cues.png").is_file()


def test_a_point_hidden_in_the_neighbour_gives_no_evidence():
    """With the neighbour's depth, a surface that something nearer covers there is not
    compared (its grey value there is the occluder's, not its own)."""
    k = PinholeIntrinsics(40.0, 40.0, 15.5, 11.5, 32, 24)
    depth = np.full((24, 32), 10.0, np.float32)
    pts = backproject_depth(depth, k)
    rng = np.random.default_rng(0)
    grey = rng.uniform(0, 255, (24, 32)).astype(np.float32)
    near = depth.copy()
    near[5:10, 8:20] = 2.0  # an object in front, in the neighbour only
    seen = near.copy()
    seen[5:10, 8:20] = 9.8  # within the 5 % tolerance: the same surface, still compared
    plain = warp_residual(pts, grey, grey, np.eye(4), k)
    hidden = warp_residual(pts, grey, grey, np.eye(4), k, neighbour_depth=near)
    same = warp_residual(pts, grey, grey, np.eye(4), k, neighbour_depth=seen)
    assert np.isfinite(plain).all() and np.isfinite(same).all()
    assert np.isnan(hidden[5:10, 8:20]).all() and np.isfinite(hidden).sum() == 24 * 32 - 60
    with pytest.raises(ValueError, match="neighbour depth"):
        warp_residual(pts, grey, grey, np.eye(4), k, neighbour_depth=near[:10])
