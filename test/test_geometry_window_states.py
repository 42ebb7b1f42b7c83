"""gmos_core.geometry.window_states: up-to-scale object states from successive π³ windows.

The π³ outputs are built from the renderer's truth (exact depth and camera poses), each window with
its own unknown scale, so the up-to-scale states must equal the metric ones (true depth, true
ego-motion) times the current window's scale.
"""

from __future__ import annotations

import numpy as np
import pytest

from gmos_core.data.synthetic import SceneConfig, generate_scene
from gmos_core.geometry import (
    ObjectStateEstimator,
    PinholeIntrinsics,
    backproject_depth,
    ego_motion_from_poses,
    invert_transform,
    measure_object,
)
from gmos_core.geometry.window_states import Pi3ObjectStates
from gmos_core.models.prediction import WindowGeometry

H, W = 96, 128


@pytest.fixture(scope="module")
def scene():
    return generate_scene(
        SceneConfig(seed=3, scene_kind="dynamic", num_frames=16, height=H, width=W)
    )


def _window(s, t: int, scale: float, n: int = 5, res: tuple[int, int] | None = None):
    """π³-like outputs of the window centred on frame t (clamped at the ends), scale `scale`."""
    intr = PinholeIntrinsics.from_matrix(s.intrinsics, W, H)
    idx = [min(max(t + k - n // 2, 0), s.num_frames - 1) for k in range(n)]
    world = invert_transform(s.cam_to_world[idx[0]])  # the window's frame: its first camera
    poses = np.stack([world @ s.cam_to_world[i] for i in idx])
    poses[:, :3, 3] *= scale
    local = np.stack([backproject_depth(s.depth[i], intr) for i in idx]) * scale
    if res is not None:  # a π³ input of another size than the masks (nearest resize)
        rows = (np.arange(res[0]) * H // res[0])[:, None]
        cols = (np.arange(res[1]) * W // res[1])[None, :]
        local = local[:, rows, cols]
    conf = np.full(local.shape[:3], 4.0, np.float32)
    return WindowGeometry(
        local_points=local.astype(np.float32),
        conf=conf,
        camera_poses=poses.astype(np.float32),
        stamps_ns=tuple(int(s.stamps_ns[i]) for i in idx),
        center=n // 2,
    )


def test_states_are_the_metric_ones_times_the_window_scale(scene):
    s = scene
    intr = PinholeIntrinsics.from_matrix(s.intrinsics, W, H)
    rng = np.random.default_rng(0)
    pi3 = Pi3ObjectStates(min_points=20)
    metric = ObjectStateEstimator(window_s=0.5)
    compared = velocities = 0
    prev_scale = None
    for t in range(s.num_frames):
        scale = float(rng.uniform(0.3, 3.0))  # every window has its own unknown scale
        ids = s.instance_masks[t]
        up = pi3.update(int(s.stamps_ns[t]), _window(s, t, scale), ids, s.object_ids)
        if prev_scale is None:
            assert up.ego is None and np.isnan(up.scale_ratio)
        else:
            assert up.ego is not None and not up.ego.metric and up.ego.source == "pi3"
            assert up.scale_ratio == pytest.approx(scale / prev_scale, rel=1e-4)
        prev_scale = scale
        pts = backproject_depth(s.depth[t], intr)
        meas = {}
        for oid in s.object_ids:
            m = measure_object(ids == oid, pts, True)
            if m is not None:
                meas[int(oid)] = m
        ego = (
            ego_motion_from_poses(s.cam_to_world[t - 1], s.cam_to_world[t], 0.1, True, "truth")
            if t
            else None
        )
        truth = {st.object_id: st for st in metric.update(int(s.stamps_ns[t]), meas, ego)}
        assert [st.object_id for st in up.states] == sorted(truth)
        for st in up.states:
            ref = truth[st.object_id]
            assert not st.metric
            np.testing.assert_allclose(st.position, ref.position * scale, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(st.extent, ref.extent * scale, rtol=1e-4, atol=1e-4)
            assert st.velocity_valid == ref.velocity_valid
            if st.velocity_valid:
                np.testing.assert_allclose(
                    st.velocity, ref.velocity * scale, rtol=1e-3, atol=1e-3 * scale
                )
                velocities += 1
            compared += 1
    assert compared > 40 and velocities > 30


def test_point_map_of_another_size_and_chaining_failures(scene):
    s = scene
    pi3 = Pi3ObjectStates(min_points=5)
    ids = s.instance_masks[4]
    up = pi3.update(int(s.stamps_ns[4]), _window(s, 4, 1.0, res=(42, 56)), ids, s.object_ids)
    assert up.states and all(np.isfinite(st.position).all() for st in up.states)
    # A window that shares no frame with the previous one: no scale ratio, no ego-motion, the
    # tracks restart (no velocity), but positions are still given.
    up = pi3.update(int(s.stamps_ns[12]), _window(s, 12, 2.0, n=3), s.instance_masks[12], [1, 2])
    assert np.isnan(up.scale_ratio) and up.ego is None
    assert all(not st.velocity_valid for st in up.states)
    # No confident pixel: no state at all (never a made-up position).
    g = _window(s, 13, 1.0)
    g = WindowGeometry(g.local_points, np.full_like(g.conf, -9.0), g.camera_poses, g.stamps_ns, 2)
    assert pi3.update(int(s.stamps_ns[13]), g, s.instance_masks[13], s.object_ids).states == []
    # The geometry must be that of the result's frame.
    with pytest.raises(ValueError, match="not that of the frame"):
        pi3.update(int(s.stamps_ns[15]), _window(s, 14, 1.0), s.instance_masks[15], [1])
