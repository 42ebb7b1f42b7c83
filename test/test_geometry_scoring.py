"""gmos_core.metrics.object_states: 3-D states scored against a rendered scene's truth."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from gmos_core.data.synthetic import SceneConfig, generate_scene
from gmos_core.geometry import apply_transform, ego_motion_from_poses, invert_transform
from gmos_core.metrics.object_states import (
    EstimatedObject,
    FrameEstimate,
    ObjectStatesScore,
    match_objects,
    score_object_states,
)


@pytest.fixture(scope="module")
def scene():
    return generate_scene(SceneConfig(seed=4, num_frames=14, scene_kind="dynamic"))


def _truth_estimates(s, shift=(0.0, 0.0, 0.0), drop_velocity=False):
    """Estimates equal to the truth (plus a constant shift), oracle masks, true ego-motion."""
    out = []
    span = 5
    for t in range(s.num_frames):
        w2c = invert_transform(s.cam_to_world[t])
        objs = []
        for k in np.unique(s.instance_masks[t]):
            if k == 0:
                continue
            c = s.object_centroid_world[:, k - 1]
            vel = None
            if t >= span and not drop_velocity:
                vel = w2c[:3, :3] @ (c[t] - c[t - span]) / (span * 0.1)
            objs.append(
                EstimatedObject(int(k), apply_transform(w2c, c[t]) + np.asarray(shift), vel)
            )
        ego = None
        if t:
            ego = ego_motion_from_poses(
                s.cam_to_world[t - 1], s.cam_to_world[t], 0.1, True, "truth"
            )
        out.append(FrameEstimate(int(s.stamps_ns[t]), s.instance_masks[t], objs, ego))
    return out


def test_the_truth_scores_zero_and_a_shift_scores_its_length(scene):
    score, samples = score_object_states(scene, _truth_estimates(scene))
    assert score.objects_matched == score.objects_estimated > 30
    assert score.position_err_m_median == pytest.approx(0.0, abs=1e-9)
    assert score.static_samples > 5 and score.static_speed_mps_median == pytest.approx(0, abs=1e-9)
    assert score.moving_samples > 5
    assert score.moving_velocity_err_mps_median == pytest.approx(0.0, abs=1e-9)
    assert score.moving_true_speed_mps_median > 0.2
    assert score.ego_frames == scene.num_frames - 1
    assert score.ego_rpe_trans_m_median == pytest.approx(0.0, abs=1e-9)
    # The top-down track: estimates carried to the first camera with the (true) ego chain.
    assert samples.track and all(np.allclose(p.estimated, p.truth) for p in samples.track)
    shifted, _ = score_object_states(scene, _truth_estimates(scene, shift=(0.3, 0.0, 0.4)))
    assert shifted.position_err_m_median == pytest.approx(0.5, abs=1e-9)
    # Pooling two scenes' samples doubles the counts and keeps the medians.
    _, a = score_object_states(scene, _truth_estimates(scene, drop_velocity=True))
    b_score, b = score_object_states(scene, _truth_estimates(scene))
    a.extend(b)
    both = ObjectStatesScore.of(a)
    assert both.objects_matched == 2 * b_score.objects_matched
    assert both.static_samples == b_score.static_samples
    assert both.to_json()["position_err_m_median"] == 0.0


def test_ate_chains_the_ego_motion_and_a_missing_frame_keeps_the_pose(scene):
    exact, samples = score_object_states(scene, _truth_estimates(scene))
    assert exact.ego_ate_m_rmse == pytest.approx(0.0, abs=1e-9) and exact.ego_missing == 0
    assert len(samples.camera_pos_err_m) == scene.num_frames
    # The ego-motion of frame 3 lost: the chain holds frame 2's pose there (no motion), so the
    # camera is off by the true step 2 -> 3 from then on, and the ATE is the RMS of that offset.
    frames = _truth_estimates(scene)
    frames[3] = replace(frames[3], ego=None)
    lost, samples = score_object_states(scene, frames)
    assert lost.ego_missing == 1 and lost.ego_frames == scene.num_frames - 2
    assert len(samples.camera_pos_err_m) == scene.num_frames  # no frame left out
    first = invert_transform(scene.cam_to_world[0])
    step = scene.cam_to_world[2] @ invert_transform(scene.cam_to_world[3])  # the step not made
    offsets = []
    for t in range(scene.num_frames):
        est = first @ scene.cam_to_world[t] if t < 3 else first @ step @ scene.cam_to_world[t]
        offsets.append(np.linalg.norm(est[:3, 3] - (first @ scene.cam_to_world[t])[:3, 3]))
    assert lost.ego_ate_m_rmse > 0.01
    assert lost.ego_ate_m_rmse == pytest.approx(np.sqrt(np.mean(np.square(offsets))), rel=1e-9)
    # Estimates without any ego-motion: no ATE, nothing counted as missing.
    none, _ = score_object_states(scene, [replace(f, ego=None) for f in frames])
    assert none.to_json()["ego_ate_m_rmse"] is None and none.ego_missing == 0


def test_matching_and_bad_input(scene):
    t = 6
    pred = np.zeros_like(scene.instance_masks[t])
    k = int(np.unique(scene.instance_masks[t])[1])
    pred[scene.instance_masks[t] == k] = 9  # the same pixels under another id
    assert match_objects(pred, scene.instance_masks[t]) == {9: k}
    assert match_objects(np.zeros_like(pred), scene.instance_masks[t]) == {}
    # An estimate whose mask overlaps nothing is counted, not scored.
    est = FrameEstimate(int(scene.stamps_ns[t]), pred * 0, [EstimatedObject(3, np.ones(3), None)])
    score, _ = score_object_states(scene, [est])
    assert score.objects_estimated == 1 and score.objects_matched == 0
    assert score.to_json()["position_err_m_median"] is None
    with pytest.raises(ValueError, match="not one of the scene's"):
        score_object_states(scene, [FrameEstimate(123, pred, [])])
    with pytest.raises(ValueError, match="instance map"):
        score_object_states(scene, [FrameEstimate(int(scene.stamps_ns[0]), pred[:5], [])])
