"""gmos_core.geometry: depth decoding, back-projection, per-object state and ego-motion.

Exact checks on hand-built geometry, and statistical checks on rendered synthetic scenes, whose
depth, camera poses and object trajectories are exact.
"""

from __future__ import annotations

import numpy as np
import pytest

from gmos_core.data.synthetic import SceneConfig, generate_scene, intrinsics_from_fov
from gmos_core.geometry import (
    DepthError,
    EgoMotion,
    ObjectStateEstimator,
    PinholeIntrinsics,
    apply_transform,
    backproject_depth,
    decode_depth,
    dilate_mask,
    ego_motion_from_poses,
    encode_instance_mask,
    invert_transform,
    measure_object,
    median_scale_ratio,
)
from gmos_core.geometry.depth_states import DepthObjectStates


def _rot_y(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def _pose(r: np.ndarray, t) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = r
    out[:3, 3] = t
    return out


# ---- depth -----------------------------------------------------------------------------------------


def test_decode_depth_units_and_invalid_values():
    mm = np.array([[0, 1500], [65535, 250]], dtype=np.uint16)
    m = decode_depth(mm, "16UC1", expected_hw=(2, 2), max_depth_m=60.0)
    assert np.isnan(m[0, 0]) and np.isnan(m[1, 0])  # 0 = no return; 65.5 m > max
    np.testing.assert_allclose(m[0, 1], 1.5)
    np.testing.assert_allclose(m[1, 1], 0.25)
    f = np.array([[np.nan, np.inf, 0.0, -1.0, 2.5]], dtype=np.float32)
    out = decode_depth(f, "32FC1")
    assert np.isnan(out[0, :4]).all() and out[0, 4] == np.float32(2.5)


@pytest.mark.parametrize(
    ("data", "encoding", "hw", "match"),
    [
        (np.zeros((4, 4), np.uint16), "rgb8", None, "not supported"),
        (np.zeros((4, 4), np.float32), "16UC1", None, "dtype uint16"),
        (np.zeros((4, 4, 1), np.float32), "32FC1", None, "single-channel"),
        (np.zeros((4, 6), np.float32), "32FC1", (4, 4), "aligned"),
    ],
)
def test_decode_depth_rejects_bad_input(data, encoding, hw, match):
    with pytest.raises(DepthError, match=match):
        decode_depth(data, encoding, expected_hw=hw)


# ---- camera -------------------------------------------------------------------------------------------


def test_backprojection_inverts_projection_and_resize_is_consistent():
    k = intrinsics_from_fov(128, 96, 60.0)
    intr = PinholeIntrinsics.from_matrix(k, 128, 96)
    rng = np.random.default_rng(0)
    depth = rng.uniform(1, 20, (96, 128)).astype(np.float32)
    pts = backproject_depth(depth, intr)
    uvw = pts.reshape(-1, 3).astype(np.float64) @ k.T
    uv = uvw[:, :2] / uvw[:, 2:]
    vv, uu = np.mgrid[0:96, 0:128]
    np.testing.assert_allclose(uv, np.stack((uu.ravel(), vv.ravel()), 1), atol=1e-3)
    # Resizing the intrinsics equals rendering at the new size (same field of view).
    half = intr.resized(64, 48)
    np.testing.assert_allclose(half.matrix(), intrinsics_from_fov(64, 48, 60.0), atol=1e-9)
    with pytest.raises(ValueError, match="intrinsics are for"):
        backproject_depth(depth[:, :100], intr)
    with pytest.raises(ValueError, match="focal"):
        PinholeIntrinsics(0.0, 1.0, 0.0, 0.0, 4, 4)


def test_transforms_and_ego_motion_from_poses():
    c2w_prev = _pose(_rot_y(5.0), [0.2, 0.0, 1.0])
    c2w_curr = _pose(_rot_y(15.0), [0.5, -0.1, 2.0])
    ego = ego_motion_from_poses(c2w_prev, c2w_curr, 0.1, True, "truth")
    world = np.array([3.0, 1.0, 10.0])
    p_prev = apply_transform(invert_transform(c2w_prev), world)
    p_curr = apply_transform(invert_transform(c2w_curr), world)
    np.testing.assert_allclose(apply_transform(ego.curr_from_prev, p_prev), p_curr, atol=1e-12)
    np.testing.assert_allclose(ego.prev_from_curr @ ego.curr_from_prev, np.eye(4), atol=1e-12)
    # 10° about y in 0.1 s.
    np.testing.assert_allclose(ego.camera_angular_velocity(), [0, np.radians(100.0), 0], atol=1e-9)
    # Pure forward translation of 0.3 m in 0.1 s: 3 m/s along +z of the camera.
    fwd = ego_motion_from_poses(np.eye(4), _pose(np.eye(3), [0, 0, 0.3]), 0.1, True, "odometry")
    np.testing.assert_allclose(fwd.camera_linear_velocity(), [0, 0, 3.0], atol=1e-12)
    with pytest.raises(ValueError, match="dt_s"):
        EgoMotion(np.eye(4), 0.0, True, "pi3")


def test_median_scale_ratio():
    rng = np.random.default_rng(1)
    ref = rng.uniform(1, 10, (30, 40))
    est = ref / 3.5
    est[0, :5] = np.nan
    ref[1, :5] = 0.0
    assert median_scale_ratio(ref, est) == pytest.approx(3.5)
    assert np.isnan(median_scale_ratio(ref[:2, :2], est[:2, :2]))


# ---- per-object state -------------------------------------------------------------------------------


def test_measure_object_on_a_known_box_ignores_holes():
    h, w = 40, 50
    pts = np.full((h, w, 3), np.nan, np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    mask = (yy >= 10) & (yy < 30) & (xx >= 10) & (xx < 40)
    # A 3 x 2 m fronto-parallel patch at z = 5 m, centred on (1, -0.5, 5).
    pts[..., 0] = 1.0 + (xx - 24.5) * 3.0 / 30
    pts[..., 1] = -0.5 + (yy - 19.5) * 2.0 / 20
    pts[..., 2] = 5.0
    pts[10:13, 10:40, 2] = 0.0  # zero depth inside the mask
    pts[13:16, 10:40] = np.nan  # holes
    pts[~mask] = [50.0, 50.0, 50.0]  # background far away: must not leak in
    meas = measure_object(mask, pts, metric=True)
    assert meas is not None and meas.metric
    assert meas.num_points == 14 * 30 and meas.valid_fraction == pytest.approx(14 / 20)
    # Rows 16-29 remain valid: median row 22.5 -> y = -0.5 + 3 * 0.1.
    np.testing.assert_allclose(meas.position, [1.0, -0.2, 5.0], atol=0.06)
    np.testing.assert_allclose(meas.extent[0], 0.9 * 3.0, atol=0.11)
    assert meas.extent[2] == 0.0
    assert measure_object(mask, pts, True, min_points=1000) is None
    assert measure_object(np.zeros_like(mask), pts, True) is None
    with pytest.raises(ValueError, match="do not match"):
        measure_object(mask[:, :10], pts, True)


def _run_scene(seed: int, depth_scale: float = 1.0):
    """Measure every object of a rendered scene with true depth and true ego-motion."""
    s = generate_scene(
        SceneConfig(seed=seed, scene_kind="dynamic", num_frames=16, height=96, width=128)
    )
    intr = PinholeIntrinsics.from_matrix(s.intrinsics, 128, 96)
    metric = depth_scale == 1.0
    est = ObjectStateEstimator(window_s=0.5)
    rows = []  # (t, k, n_points, pos err, speed, velocity err, moving over the fit window)
    for t in range(s.num_frames):
        pts = backproject_depth(s.depth[t] * depth_scale, intr)
        meas = {}
        for oid in s.object_ids:
            m = measure_object(s.instance_masks[t] == oid, pts, metric)
            if m is not None:
                meas[int(oid)] = m
        ego = None
        if t:
            ego = ego_motion_from_poses(
                s.cam_to_world[t - 1], s.cam_to_world[t], 0.1, True, "truth"
            )
            if not metric:
                scaled = ego.curr_from_prev.copy()
                scaled[:3, 3] *= depth_scale
                ego = EgoMotion(scaled, 0.1, False, "pi3")
        w2c = invert_transform(s.cam_to_world[t])
        for st in est.update(int(s.stamps_ns[t]), meas, ego):
            k = st.object_id - 1
            truth = apply_transform(w2c, s.object_centroid_world[t, k]) * depth_scale
            t0 = max(t - 5, 0)
            v_true = w2c[:3, :3] @ (s.object_centroid_world[t, k] - s.object_centroid_world[t0, k])
            v_true = v_true / max((t - t0) * 0.1, 1e-9) * depth_scale
            moving = bool(s.motion_state[t0:t, k].any()) if t else False
            steady = bool(s.motion_state[t0:t, k].all()) if t else False
            rows.append(
                (
                    t,
                    k,
                    st.num_points,
                    np.linalg.norm(st.position - truth),
                    st.speed,
                    np.linalg.norm(st.velocity - v_true) if st.velocity_valid else np.nan,
                    moving,
                    steady,
                    st.velocity_valid,
                    st.metric,
                )
            )
    return np.array(rows, dtype=np.float64)


@pytest.fixture(scope="module")
def scene_rows():
    return np.concatenate([_run_scene(seed) for seed in (3, 11)])


def test_positions_match_the_renderer(scene_rows):
    big = scene_rows[:, 2] >= 300  # mostly visible objects
    assert big.sum() > 40
    assert np.median(scene_rows[big, 3]) < 0.2  # m


def test_static_objects_have_near_zero_velocity_and_moving_ones_do_not(scene_rows):
    r = scene_rows[(scene_rows[:, 0] >= 5) & (scene_rows[:, 2] >= 100) & (scene_rows[:, 8] == 1)]
    static = r[r[:, 6] == 0]
    moving = r[r[:, 7] == 1]  # moved over the whole fit window
    assert len(static) > 20 and len(moving) > 10
    assert np.median(static[:, 4]) < 0.1  # m/s, with the camera itself moving
    assert np.median(moving[:, 5]) < 0.25  # velocity error, m/s
    assert np.median(moving[:, 4]) > 3 * np.median(static[:, 4])


def test_up_to_scale_states_scale_linearly():
    a = _run_scene(3)
    b = _run_scene(3, depth_scale=0.37)
    assert (a[:, 9] == 1).all() and (b[:, 9] == 0).all()
    np.testing.assert_allclose(b[:, 4], 0.37 * a[:, 4], rtol=0, atol=1e-5)  # float32 depth


def test_depth_states_use_a_known_ego_motion_instead_of_the_odometry():
    """`DepthObjectStates(known_ego=...)` (training.bench_geometry's truth rows) gives the states
    of the measurement + estimator path above, and never runs the depth odometry."""
    s = generate_scene(
        SceneConfig(seed=3, scene_kind="dynamic", num_frames=16, height=96, width=128)
    )
    intr = PinholeIntrinsics.from_matrix(s.intrinsics, 128, 96)
    states = DepthObjectStates(velocity_window_s=0.5)
    speeds = []
    for t in range(s.num_frames):
        truth = (
            ego_motion_from_poses(s.cam_to_world[t - 1], s.cam_to_world[t], 0.1, True, "truth")
            if t
            else None
        )
        still = np.zeros(s.instance_masks[t].shape, bool)
        ids = [int(k) for k in s.object_ids]
        up = states.update(
            int(s.stamps_ns[t]), s.depth[t], intr, s.instance_masks[t], ids, still, None, truth
        )
        assert up.ego is truth and states.vo is None
        speeds += [st.speed for st in up.states]
    assert len(speeds) > 40
    np.testing.assert_array_equal(speeds, _run_scene(3)[:, 4])


def test_estimator_without_ego_motion_and_memory_bound():
    est = ObjectStateEstimator(max_gap_s=0.3, window_s=0.5)
    meas = measure_object(np.ones((5, 5), bool), np.ones((5, 5, 3)), True, min_points=1)
    assert meas is not None
    s0 = est.update(0, {1: meas}, None)
    assert not s0[0].velocity_valid
    s1 = est.update(100_000_000, {1: meas}, None)  # ego-motion unknown: cannot difference
    assert not s1[0].velocity_valid
    s2 = est.update(200_000_000, {1: meas}, EgoMotion(np.eye(4), 0.1, True, "odometry"))
    assert s2[0].velocity_valid and s2[0].speed == pytest.approx(0.0)
    for i in range(3, 200):  # a stream of new ids: old ones must be dropped
        est.update(i * 100_000_000, {i: meas}, EgoMotion(np.eye(4), 0.1, True, "odometry"))
    assert est.num_tracks <= 4


# ---- SLAM mask encodings ----------------------------------------------------------------------------


def test_dilate_and_instance_encodings():
    m = np.zeros((31, 31), bool)
    m[15, 15] = True
    d = dilate_mask(m, 5)
    assert d.dtype == np.uint8 and set(np.unique(d)) == {0, 255}
    assert d[15, 20] == 255 and d[15, 21] == 0 and d[10, 15] == 255
    np.testing.assert_array_equal(dilate_mask(m, 0), m.astype(np.uint8) * 255)
    with pytest.raises(ValueError, match=">= 0"):
        dilate_mask(m, -1)
    labels = np.array([[0, 3], [70000, 1]])
    assert encode_instance_mask(labels, "32SC1").dtype == np.int32
    with pytest.raises(ValueError, match="does not fit mono16"):
        encode_instance_mask(labels, "mono16")
    assert encode_instance_mask(labels[:, 1:], "mono16").dtype == np.uint16
    with pytest.raises(ValueError, match="not supported"):
        encode_instance_mask(labels, "8UC1")


# ---- depth visual odometry (the non-learned ego-motion) ---------------------------------------------


def test_depth_visual_odometry_recovers_the_camera_motion():
    from gmos_core.geometry.visual_odometry import DepthVisualOdometry

    errs, rot_errs = [], []
    for seed in (3, 5):
        s = generate_scene(
            SceneConfig(seed=seed, scene_kind="dynamic", num_frames=10, height=192, width=256)
        )
        vo = DepthVisualOdometry(PinholeIntrinsics.from_matrix(s.intrinsics, 256, 192))
        for t in range(s.num_frames):
            dyn = np.isin(s.instance_masks[t], s.object_ids[s.object_is_dynamic])
            est = vo.step(s.frames[t], s.depth[t], dyn, int(s.stamps_ns[t]))
            if t == 0:
                assert est is None
                continue
            assert est is not None and est.metric and est.dt_s == pytest.approx(0.1)
            truth = ego_motion_from_poses(
                s.cam_to_world[t - 1], s.cam_to_world[t], 0.1, True, "truth"
            )
            errs.append(np.linalg.norm(est.curr_from_prev[:3, 3] - truth.curr_from_prev[:3, 3]))
            r = est.curr_from_prev[:3, :3].T @ truth.curr_from_prev[:3, :3]
            rot_errs.append(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))))
    assert np.median(errs) < 0.015  # m per frame (the camera moves 3-9 cm per frame here)
    assert np.max(rot_errs) < 0.5  # degrees


# ---- π³ outputs (scale-free) --------------------------------------------------------------------------


def test_pi3_outputs_give_up_to_scale_states_that_align_to_depth():
    """π³-like outputs built from the renderer's truth, each window with its own unknown scale."""
    from gmos_core.geometry import align_to_depth, confident_points, pi3_ego_motion

    s = generate_scene(
        SceneConfig(seed=3, scene_kind="dynamic", num_frames=16, height=96, width=128)
    )
    intr = PinholeIntrinsics.from_matrix(s.intrinsics, 128, 96)
    est = ObjectStateEstimator(window_s=0.5)
    static_speeds, pos_rel_err = [], []
    prev_scale = None
    for t in range(1, s.num_frames):
        scale = 0.2 + 0.05 * (t % 3)  # a new window every frame, each with its own scale
        win = [t - 1, t]
        c2w0 = invert_transform(s.cam_to_world[win[0]])
        poses = np.stack([c2w0 @ s.cam_to_world[i] for i in win])
        poses[:, :3, 3] *= scale
        local = backproject_depth(s.depth[t], intr) * scale
        conf = np.full(s.depth[t].shape, 3.0)
        conf[:5] = -5.0  # unconfident rows are dropped
        pts = confident_points(local, conf)
        assert np.isnan(pts[:5]).all()
        if prev_scale is not None:
            est.rescale(scale / prev_scale)  # tracks into this window's scale
        prev_scale = scale
        ego = pi3_ego_motion(poses, 0, 1, 0.1)
        assert not ego.metric and ego.source == "pi3"
        meas = {}
        for oid in s.object_ids:
            m = measure_object(s.instance_masks[t] == oid, pts, metric=False)
            if m is not None and m.num_points >= 300:
                meas[int(oid)] = m
        w2c = invert_transform(s.cam_to_world[t])
        for st in est.update(int(s.stamps_ns[t]), meas, ego):
            assert not st.metric
            k = st.object_id - 1
            truth = apply_transform(w2c, s.object_centroid_world[t, k])
            pos_rel_err.append(np.linalg.norm(st.position / scale - truth) / np.linalg.norm(truth))
            if st.velocity_valid and t >= 6 and not s.motion_state[t - 5 : t, k].any():
                static_speeds.append(st.speed / scale)
        metric_pts, found = align_to_depth(local, s.depth[t])
        assert found == pytest.approx(1.0 / scale, rel=1e-5)
        np.testing.assert_allclose(metric_pts[..., 2], s.depth[t], rtol=1e-5)
    assert np.median(pos_rel_err) < 0.05
    assert len(static_speeds) > 5 and np.median(static_speeds) < 0.1  # m/s after scaling back
