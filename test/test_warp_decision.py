"""The depth-warp motion decision (gmos_core.geometry.warp_decision) and its runtime plumbing:
segmenter, settings, bundle points, calibration."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from gmos_core.data.synthetic import SceneConfig, generate_scene
from gmos_core.geometry.camera import PinholeIntrinsics
from gmos_core.geometry.warp_decision import (
    RESIDUAL_AT_HALF,
    SensorFrame,
    WarpMotionDecision,
    residual_to_motion_prob,
)
from gmos_core.streaming import ProposalPrediction, StreamError, StreamingSegmenter
from training.splits import sensor_frames

MS = 1_000_000


@pytest.fixture(scope="module")
def scene() -> Any:
    # Hard parallax: a near static object shows more image motion than the far moving ones,
    # so 2-D motion alone calls the wrong object moving.
    return generate_scene(
        SceneConfig(seed=5, scene_kind="hard_parallax", num_frames=9, height=96, width=128)
    )


def _objects(s: Any, t: int) -> tuple[np.ndarray, np.ndarray]:
    """(K, H, W) masks of the objects visible at frame t (≥ 30 px) and whether each moves."""
    keep = [k for k, o in enumerate(s.object_ids) if (s.instance_masks[t] == o).sum() >= 30]
    masks = np.stack([s.instance_masks[t] == s.object_ids[k] for k in keep])
    return masks, np.array([bool(s.motion_state[t, k]) for k in keep])


def test_sensor_frame_refuses_what_is_not_an_aligned_depth_and_a_pose() -> None:
    k = PinholeIntrinsics(50.0, 50.0, 15.5, 11.5, 32, 24)
    depth = np.ones((24, 32), np.float32)
    assert SensorFrame(depth, np.eye(4), k).size == (24, 32)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        SensorFrame(np.ones((24, 32, 1), np.float32), np.eye(4), k)
    with pytest.raises(ValueError, match="intrinsics are for 32x24, the depth is 16x24"):
        SensorFrame(np.ones((24, 16), np.float32), np.eye(4), k)
    scaled = np.eye(4)
    scaled[:3, :3] *= 2.0
    with pytest.raises(ValueError, match="not a rotation"):
        SensorFrame(depth, scaled, k)
    bad = np.eye(4)
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        SensorFrame(depth, bad, k)


def test_motion_probability_is_half_at_the_reference_residual_and_zero_without_evidence():
    p = residual_to_motion_prob(np.array([np.nan, 0.0, RESIDUAL_AT_HALF, 9.0, 1e6]))
    assert p.dtype == np.float32
    assert p[0] == 0.0 and p[2] == pytest.approx(0.5)
    assert 0.0 < p[1] < p[2] < p[3] < p[4] <= 1.0


def test_the_warp_calls_the_moving_objects_moving_in_a_hard_parallax_scene(scene) -> None:
    s, t = scene, 2  # (at frame 4 a static object beside the moving one reads 0.97)
    sensors = sensor_frames(s)
    window = list(range(t - 2, t + 3))
    greys = [WarpMotionDecision.grey(s.frames[i]) for i in window]
    res = WarpMotionDecision().evidence(greys, sensors[t - 2 : t + 3], 2)
    assert res is not None and res.shape == (96, 128)
    masks, moving = _objects(s, t)
    assert moving.any() and (~moving).any()
    pred = ProposalPrediction(
        masks, np.full(len(masks), 0.9, np.float32), np.linspace(0.1, 0.9, len(masks))
    )
    out = WarpMotionDecision().decide(pred, res)
    np.testing.assert_array_equal(out.masks, pred.masks)  # only the motion changes
    np.testing.assert_array_equal(out.iou, pred.iou)
    assert out.motion_prob[moving].min() > 0.5 > out.motion_prob[~moving].max()


def test_no_sensor_data_means_no_decision_and_repeats_are_not_neighbours(scene) -> None:
    s = scene
    sensors = sensor_frames(s)
    dec = WarpMotionDecision()
    frames = [dec.grey(s.frames[i]) for i in range(5)]
    assert dec.evidence(frames, [None, *sensors[1:5]], 0) is None  # the centre has none
    assert dec.evidence(frames, [sensors[0], None, None, None, None], 0) is None
    # A window clamped at a stream end repeats the centre: the repeat is not compared.
    same = [frames[0], frames[0], frames[0]]
    assert dec.evidence(same, [sensors[0]] * 3, 1) is None
    with pytest.raises(ValueError, match="2 frames, 3 sensor entries"):
        dec.evidence(frames[:2], sensors[:3], 0)
    pred = ProposalPrediction(np.zeros((1, 4, 4), bool), np.zeros(1, np.float32), np.zeros(1))
    with pytest.raises(ValueError, match="masks are"):
        dec.decide(pred, np.zeros((96, 128), np.float32))


class _GroundTruthProposer:
    """Proposes the scene's visible objects at the centre frame; its head calls all moving."""

    def __init__(self, s: Any) -> None:
        self.s = s

    def _index(self, frame: np.ndarray) -> int:
        return next(i for i, f in enumerate(self.s.frames) if np.array_equal(f, frame))

    def geometry_features(self, frame: np.ndarray) -> int:
        return self._index(frame)

    def segmentation_features(self, frame: np.ndarray) -> int:
        return self._index(frame)

    def predict(self, geometry: Any, segmentation: int, out_hw: tuple[int, int]) -> Any:
        masks, _ = _objects(self.s, segmentation)
        k = len(masks)
        return ProposalPrediction(masks, np.full(k, 0.9, np.float32), np.full(k, 0.9, np.float32))


class _RecordingTracking:
    def __init__(self) -> None:
        self.seen: list[tuple[int, ProposalPrediction | None]] = []

    def reset(self) -> None:
        self.seen.clear()

    def step(self, frame_index: int, proposals: Any, tracker_input: Any, out_hw: Any) -> Any:
        from gmos_core.propagation import PropagationFrame

        self.seen.append((frame_index, proposals))
        ids = np.zeros(out_hw, np.uint16)
        return PropagationFrame(frame_index, None, [], ids, ids)


def test_the_segmenter_lets_the_warp_decide_and_carries_frames_without_sensor(scene) -> None:
    s = scene
    sensors = sensor_frames(s)
    tracking = _RecordingTracking()
    seg = StreamingSegmenter(
        _GroundTruthProposer(s),
        "gmos",
        tracking=tracking,
        span_s=0.4,
        motion_decision=WarpMotionDecision(),
    )
    out = []
    for i, f in enumerate(s.frames):
        # Frame 6's depth did not arrive: that frame's result still comes, with its stamp.
        out.extend(seg.step(f, i * 100 * MS, None if i == 6 else sensors[i]))
    with pytest.raises(StreamError, match="sensor data is 32x24") as err:
        seg.step(s.frames[0], 10_000 * MS, SensorFrame(np.ones((24, 32)), np.eye(4), _k32()))
    assert err.value.kind == "bad_sensor" and seg.stats.rejected == 1
    out.extend(seg.flush())
    assert [r.stamp_ns for r in out] == [i * 100 * MS for i in range(len(s.frames))]
    assert seg.stats.decisions_without_sensor == 1 and seg.stats.proposer_runs == 8
    assert dict(tracking.seen)[6] is None  # carried by the tracker, as on a stride frame
    decided = [(i, p) for i, p in tracking.seen if p is not None]
    right = 0
    for i, p in decided:
        _, moving = _objects(s, i)
        right += int(((p.motion_prob > 0.5) == moving).mean() >= 0.75)
    assert right >= len(decided) - 1  # the head said "all moving"; the warp disagrees


def _k32() -> PinholeIntrinsics:
    return PinholeIntrinsics(30.0, 30.0, 15.5, 11.5, 32, 24)


def test_only_the_proposer_variant_takes_a_motion_decision() -> None:
    from gmos_core.errors import ModelSetupError
    from gmos_core.streaming.build import RuntimeSettings, build_segmenter

    with pytest.raises(ModelSetupError, match="motion_decision must be one of"):
        build_segmenter(RuntimeSettings(motion_decision="lidar"), model=object())  # type: ignore[arg-type]
    with pytest.raises(ModelSetupError, match="variant gmos_online only"):
        build_segmenter(
            RuntimeSettings(variant="gmos_s", motion_decision="depth_warp"),
            model=object(),  # type: ignore[arg-type]
        )
    with pytest.raises(ValueError, match="mode 'gmos' only"):
        StreamingSegmenter(object(), "gmos_s", motion_decision=WarpMotionDecision())  # type: ignore[arg-type]


def test_a_bundle_keeps_one_operating_point_per_decision(tmp_path, caplog) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    from gmos_core.bundle import read_bundle_info, write_operating_point
    from gmos_core.operating_point import OperatingPoint
    from gmos_core.streaming.build import RuntimeSettings, load_frame_model

    src = "gmos_core/assets/micro_gmos.safetensors"
    head = read_bundle_info(src).operating_point
    plain = tmp_path / "plain.safetensors"
    with safe_open(src, framework="pt") as f:  # the shipped bundle without its depth_warp point
        meta = {k: v for k, v in (f.metadata() or {}).items() if k != "operating_point.depth_warp"}
        save_file({k: f.get_tensor(k) for k in f.keys()}, str(plain), metadata=meta)  # noqa: SIM118
    assert read_bundle_info(plain).point_for("depth_warp") is None
    with caplog.at_level(logging.WARNING):
        m = load_frame_model(RuntimeSettings(bundle=str(plain), motion_decision="depth_warp"))
    assert "no calibrated depth_warp operating point" in caplog.text
    assert m.operating_point.motion_threshold == 0.5
    assert m.operating_point.mask_logit_threshold == head.mask_logit_threshold

    warp = OperatingPoint(mask_logit_threshold=-1.0, motion_threshold=0.73, snap_iou=0.1)
    both = tmp_path / "both.safetensors"
    write_operating_point(plain, both, warp, decision="depth_warp")
    info = read_bundle_info(both)
    assert info.point_for("head") == head and info.point_for("depth_warp") == warp
    assert info.point_for("other") is None
    m = load_frame_model(RuntimeSettings(bundle=str(both), motion_decision="depth_warp"))
    assert m.operating_point == warp
    assert load_frame_model(RuntimeSettings(bundle=str(both))).operating_point == head


def test_depth_odometry_poses_follow_the_camera_and_restart_when_lost(scene) -> None:
    from gmos_core.geometry.camera import relative_pose
    from gmos_core.geometry.warp_decision import DepthOdometryPoses

    s = scene
    k = sensor_frames(s)[0].intrinsics
    poses = DepthOdometryPoses()
    got = [poses.step(s.frames[i], s.depth[i], k, i * 100 * MS) for i in range(5)]
    assert all(g is not None and g.world == got[0].world for g in got)
    np.testing.assert_array_equal(got[0].cam_to_world, np.eye(4))
    errs = []
    for i in range(1, 5):  # the camera slides ~9 cm per frame along x
        est = relative_pose(got[i - 1].cam_to_world, got[i].cam_to_world)
        true = relative_pose(s.cam_to_world[i - 1], s.cam_to_world[i])
        assert abs(true[0, 3]) > 0.08 and abs(est[0, 3] - true[0, 3]) < 0.02
        errs.append(np.linalg.norm(est[:3, 3] - true[:3, 3]))
    assert np.median(errs) < 0.04  # m (forward translation is the odometry's weak axis)
    # No texture to track (a blank frame): the chain restarts in a new world there.
    blank = poses.step(np.zeros_like(s.frames[5]), s.depth[5], k, 500 * MS)
    assert blank is not None and blank.world == got[0].world + 1
    np.testing.assert_array_equal(blank.cam_to_world, np.eye(4))
    # The decision never compares frames of different worlds.
    frames = [WarpMotionDecision.grey(s.frames[i]) for i in (3, 4, 5)]
    assert WarpMotionDecision().evidence(frames, [got[3], got[4], blank], 2) is None
