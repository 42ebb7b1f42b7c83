"""Synthetic bags with an aligned depth topic, and `gmos-bag eval --depth-topic`: the node's
metric 3-D states run offline and scored against the rendered scene's truth."""

from __future__ import annotations

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("gmos_msgs.msg")

from geometry_msgs.msg import PoseStamped  # noqa: E402
from gmos_msgs.msg import EgoMotion, MovingObjectArray  # noqa: E402
from rclpy.serialization import deserialize_message  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from gmos_core.geometry import decode_depth  # noqa: E402
from gmos_core.streaming import ForegroundPrediction  # noqa: E402
from gmos_ros.bag import (  # noqa: E402
    default_params_file,
    iter_messages,
    load_params_file,
    run_eval,
    write_synthetic_bag,
)
from gmos_ros.bag.ground_truth import read_scene_truth  # noqa: E402
from gmos_ros.geometry_outputs import depth_image_to_array  # noqa: E402
from gmos_ros.messages import stamp_to_ns  # noqa: E402
from gmos_ros.params import params_from_values  # noqa: E402

pytestmark = pytest.mark.ros
DEPTH = "/camera/depth"


@pytest.mark.parametrize("encoding, atol", [("32FC1", 0.0), ("16UC1", 5.1e-4)])
def test_synth_writes_the_exact_depth_aligned_and_the_scene_is_rendered_again(
    tmp_path, encoding, atol
):
    info = write_synthetic_bag(
        tmp_path / "b", seed=5, num_frames=6, depth_topic=DEPTH, depth_encoding=encoding
    )
    assert info["depth_topic"] == DEPTH and info["depth_encoding"] == encoding
    scene = read_scene_truth(tmp_path / "b")
    assert scene is not None and scene.num_frames == 6
    depth, images = {}, {}
    for topic, _, log_ns, raw in iter_messages(tmp_path / "b", [DEPTH, "/camera/image_raw"]):
        msg = deserialize_message(raw, Image)
        assert stamp_to_ns(msg.header) == log_ns
        (depth if topic == DEPTH else images)[log_ns] = msg
    assert sorted(depth) == sorted(images) == [int(s) for s in scene.stamps_ns]
    for t, s in enumerate(scene.stamps_ns):
        msg = depth[int(s)]
        assert msg.encoding == encoding and msg.header.frame_id == images[int(s)].header.frame_id
        d = decode_depth(*depth_image_to_array(msg))
        np.testing.assert_allclose(d, scene.depth[t], rtol=0, atol=atol)
    with pytest.raises(ValueError, match="depth_encoding"):
        write_synthetic_bag(tmp_path / "c", num_frames=2, depth_topic=DEPTH, depth_encoding="8UC1")
    plain = write_synthetic_bag(tmp_path / "plain", seed=5, num_frames=2)
    assert plain["depth_topic"] is None


class OneObjectModel:
    """Gmos-S stand-in whose mask is the renderer's mask of one moving object (frames are
    recognised by their bytes), so the 3-D states are those of a good segmenter."""

    def __init__(self, scene, obj_id):
        self.masks = {
            scene.frames[t].tobytes(): (scene.instance_masks[t] == obj_id).astype(np.float32)
            for t in range(scene.num_frames)
        }

    def geometry_features(self, frame):
        return None

    def segmentation_features(self, frame):
        return frame

    def predict(self, geometry, segmentation, out_hw):
        return ForegroundPrediction(self.masks[segmentation.tobytes()], iou=0.9)


def test_eval_with_depth_gives_the_node_metric_states_and_scores_them(tmp_path):
    write_synthetic_bag(tmp_path / "b", seed=5, num_frames=12, depth_topic=DEPTH)
    scene = read_scene_truth(tmp_path / "b")
    moving = scene.object_ids[scene.object_is_dynamic]
    # The moving object with the most visible pixels over the clip.
    obj = int(max(moving, key=lambda k: (scene.instance_masks == k).sum()))
    values = load_params_file(default_params_file())
    values["variant"] = "gmos_s"
    params = params_from_values(values)
    model = OneObjectModel(scene, obj)
    rep = run_eval(tmp_path / "b", tmp_path / "out", params, model=model, depth_topic=DEPTH)
    assert rep.geometry_errors == {}
    st = rep.states_3d
    assert st is not None and st.frames == 12
    assert st.objects_matched == st.objects_estimated >= 10
    assert st.position_err_m_median < 0.3  # m, the 128x128 renderer with exact depth
    assert st.ego_frames == 11 and st.ego_rpe_trans_m_median < 0.05
    topics = {t for t, *_ in iter_messages(tmp_path / "out")}
    assert "/gmos/ego_motion" in topics
    objs = [
        deserialize_message(r, MovingObjectArray)
        for t, _, _, r in iter_messages(tmp_path / "out", ["/gmos/objects"])
    ]
    assert all(o.has_position and o.metric for m in objs for o in m.objects)
    egos = [
        deserialize_message(r, EgoMotion)
        for _, _, _, r in iter_messages(tmp_path / "out", ["/gmos/ego_motion"])
    ]
    assert egos and all(e.metric and e.source == "odometry" for e in egos)
    # Without --depth-topic: no 3-D states, as before.
    plain = run_eval(tmp_path / "b", None, params, "/camera/image_raw", model=model)
    assert plain.states_3d is None and plain.geometry_errors == {}
    with pytest.raises(ValueError, match="no depth topic"):
        run_eval(tmp_path / "b", None, params, model=model, depth_topic="/nope")


class AllMovingProposer:
    """Proposer stand-in: the renderer's mask of every visible object (frames recognised by
    their bytes), and a motion head that calls every one of them moving."""

    def __init__(self, scene):
        self.masks = {}
        for t in range(scene.num_frames):
            ids = [k for k in scene.object_ids if (scene.instance_masks[t] == k).sum() >= 20]
            self.masks[scene.frames[t].tobytes()] = np.stack(
                [scene.instance_masks[t] == k for k in ids]
            )

    def geometry_features(self, frame):
        return None

    def segmentation_features(self, frame):
        return frame

    def predict(self, geometry, segmentation, out_hw):
        from gmos_core.streaming import ProposalPrediction

        m = self.masks[segmentation.tobytes()]
        return ProposalPrediction(m, np.full(len(m), 0.9, np.float32), np.full(len(m), 0.9))


def test_eval_with_the_depth_warp_decision_drops_the_static_objects(tmp_path):
    """`gmos-bag eval` with motion_decision depth_warp: the depth of every frame reaches the
    decision (no error counted) and, with object masks given, the static objects that the
    head called moving are no longer false positives (a scene whose depth odometry is good:
    per-object AUROC 0.99, against 0.55-0.9 on others, docs/training.md)."""
    write_synthetic_bag(tmp_path / "b", seed=6, num_frames=12, depth_topic=DEPTH)
    scene = read_scene_truth(tmp_path / "b")
    model = AllMovingProposer(scene)
    values = load_params_file(default_params_file())
    # The stand-in's head, named: "auto" would pick the flow net for the shipped bundle.
    values.update(
        {"variant": "gmos_online", "operating_point": "params", "motion_decision": "head"}
    )
    values.update({"propagator.motion_threshold": 0.5, "propagator.iou_threshold": 0.0})
    head = run_eval(
        tmp_path / "b", None, params_from_values(values), "/camera/image_raw", model=model
    )
    values["motion_decision"] = "depth_warp"
    values.update({"geometry.depth_topics": [DEPTH], "camera_info_topics": ["/camera/camera_info"]})
    params = params_from_values(values)
    warp = run_eval(tmp_path / "b", None, params, model=model, depth_topic=DEPTH)
    assert warp.geometry_errors == {} and warp.frames == 12
    fp_head = head.mos_i["FP"]
    fp_warp = warp.mos_i["FP"]
    assert fp_head > 1.0 and fp_warp < 0.5 * fp_head
    jm = warp.mos_i["J_mov"]
    assert jm >= 0.8 * head.mos_i["J_mov"]
    with pytest.raises(ValueError, match="needs the bag's aligned depth topic"):
        run_eval(tmp_path / "b", None, params, "/camera/image_raw", model=model)


def test_eval_with_camera_poses_uses_them_and_the_pose_round_trips(tmp_path):
    """A bag with the camera's poses (as odometry gives them): the depth_warp decision takes
    them instead of the depth odometry's, for every frame."""
    from gmos_ros.geometry_outputs import matrix_to_pose, pose_to_matrix

    write_synthetic_bag(
        tmp_path / "b", seed=6, num_frames=12, depth_topic=DEPTH, pose_topic="/camera/pose"
    )
    scene = read_scene_truth(tmp_path / "b")
    poses = [
        deserialize_message(r, PoseStamped)
        for _, _, _, r in iter_messages(tmp_path / "b", ["/camera/pose"])
    ]
    assert len(poses) == 12
    for t, msg in enumerate(poses):
        assert stamp_to_ns(msg.header) == int(scene.stamps_ns[t])
        np.testing.assert_allclose(pose_to_matrix(msg), scene.cam_to_world[t], atol=1e-6)
    np.testing.assert_allclose(pose_to_matrix(matrix_to_pose(np.eye(4), msg.header)), np.eye(4))
    bad = PoseStamped()
    bad.pose.orientation.w = 0.0  # an all-zero quaternion
    with pytest.raises(ValueError, match="not a rotation quaternion"):
        pose_to_matrix(bad)
    values = load_params_file(default_params_file())
    values.update({"variant": "gmos_online", "operating_point": "params"})
    values.update({"propagator.motion_threshold": 0.5, "propagator.iou_threshold": 0.0})
    values.update({"motion_decision": "depth_warp", "geometry.depth_topics": [DEPTH]})
    values.update({"camera_info_topics": ["/camera/camera_info"]})
    values["geometry.pose_topics"] = ["/camera/pose"]
    params = params_from_values(values)
    model = AllMovingProposer(scene)
    rep = run_eval(
        tmp_path / "b", None, params, model=model, depth_topic=DEPTH, pose_topic="/camera/pose"
    )
    assert rep.geometry_errors == {} and rep.mos_i["J_mov"] > 0.5
    values.update({"motion_decision": "head", "geometry.pose_topics": ["/camera/pose"]})
    with pytest.raises(ValueError, match="pose_topics: camera poses are used by"):
        params_from_values(values)


def _sensor_geometry(settings, pose_topic: str = "") -> tuple:
    """The node's `GeometryOutputs` for one camera with depth topic "/d" (and `pose_topic`),
    over a stand-in node whose camera_info is a 32 x 24 pinhole: (outputs, camera, its
    `CameraGeometry`, the messages it logged)."""
    from sensor_msgs.msg import CameraInfo

    from gmos_ros.diagnostics import CameraCounters
    from gmos_ros.geometry_outputs import CameraGeometry, GeometryOutputs

    info = CameraInfo(height=24, width=32, k=[50.0, 0.0, 15.5, 0.0, 50.0, 11.5, 0.0, 0.0, 1.0])
    logged: list[str] = []

    class FakeNode:
        @staticmethod
        def _matching_info(cam, stamp_ns):
            return info

        @staticmethod
        def _errlog(key, msg):
            logged.append(msg)

    class Cam:
        counters = CameraCounters()

    cam = Cam()
    geo = GeometryOutputs(FakeNode())
    geo.settings = settings
    g = CameraGeometry("/d", pose_topic=pose_topic)
    geo.cams[id(cam)] = g
    return geo, cam, g, logged


def test_the_node_builds_the_decisions_sensor_frame_or_counts_why_not():
    """`GeometryOutputs.sensor_frame` (the node's side of motion_decision depth_warp): depth and
    pose paired by stamp; a missing or bad one is counted, logged and gives no frame."""
    from std_msgs.msg import Header

    from gmos_ros.bag.synth import depth_image
    from gmos_ros.geometry_outputs import matrix_to_pose
    from gmos_ros.messages import copy_header
    from gmos_ros.params import GeometrySettings

    settings = GeometrySettings(depth_topics=("/d",), pose_topics=("/p",))
    geo, cam, g, logged = _sensor_geometry(settings, pose_topic="/p")
    frame = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)

    def header(stamp):
        h = Header(frame_id="cam")
        h.stamp.sec, h.stamp.nanosec = divmod(stamp, 10**9)
        return h

    assert geo.sensor_frame(cam, frame, (24, 32), 100) is None
    g.depths.append((100, depth_image(np.full((24, 32), 3.0), "32FC1", header(100))))
    assert geo.sensor_frame(cam, frame, (24, 32), 100) is None  # no pose for that stamp
    pose = np.eye(4)
    pose[:3, 3] = (1.0, 2.0, 3.0)
    g.pose_msgs.append((100, matrix_to_pose(pose, header(100))))
    got = geo.sensor_frame(cam, frame, (24, 32), 100)
    assert got is not None and got.size == (24, 32)
    np.testing.assert_allclose(got.cam_to_world, pose, atol=1e-9)
    np.testing.assert_allclose(got.depth_m, 3.0)
    # A depth image of another size than the frame: counted and logged, no frame.
    g.depths.append((200, depth_image(np.full((12, 16), 3.0), "32FC1", header(200))))
    g.pose_msgs.append((200, matrix_to_pose(pose, copy_header(header(200)))))
    assert geo.sensor_frame(cam, frame, (24, 32), 200) is None
    assert dict(cam.counters.errors) == {
        "warp_depth_missing": 1,
        "warp_pose_missing": 1,
        "depth_invalid": 1,
    }
    assert len(logged) == 1 and "12" in logged[0]
    # Downscaled frames (max_input_pixels) get the depth and intrinsics at their size.
    small = frame[::2, ::2].copy()
    got = geo.sensor_frame(cam, small, (24, 32), 100)
    assert got is not None and got.size == (12, 16) and got.intrinsics.width == 16


def test_the_warp_decision_waits_for_a_depth_that_arrives_after_its_image():
    """Colour and depth are separate topics: the frame being stepped may come first. Its depth,
    published a moment later from another thread, is used; a newer depth already there (the
    frame's own was lost) ends the wait at once with the frame counted missing."""
    import threading

    from std_msgs.msg import Header

    from gmos_ros.bag.synth import depth_image
    from gmos_ros.params import GeometrySettings

    def depth(stamp):
        h = Header(frame_id="cam")
        h.stamp.sec, h.stamp.nanosec = divmod(stamp, 10**9)
        return depth_image(np.full((24, 32), 2.0), "32FC1", h)

    # A wait far longer than the publisher's delay, so the outcome never depends on timing.
    geo, cam, g, _ = _sensor_geometry(GeometrySettings(depth_topics=("/d",), sensor_wait_s=30.0))
    frame = np.zeros((24, 32, 3), np.uint8)

    late = threading.Timer(0.05, lambda: g.add_depth(100, depth(100)))
    late.start()
    got = geo.sensor_frame(cam, frame, (24, 32), 100)
    late.join()
    assert got is not None and float(got.depth_m.mean()) == pytest.approx(2.0)
    # The depth of stamp 200 was lost; 300's is there: no wait for 200, counted missing.
    g.add_depth(300, depth(300))
    assert g.wait_for_sensor(200, 0, 30.0) is True
    assert geo.sensor_frame(cam, frame, (24, 32), 200) is None
    assert dict(cam.counters.errors) == {"warp_depth_missing": 1}
    # Without the wait (0), a frame whose depth is not there yet is missing at once.
    geo.settings = GeometrySettings(depth_topics=("/d",), sensor_wait_s=0.0)
    assert g.wait_for_sensor(400, 0, 0.0) is False
    assert geo.sensor_frame(cam, frame, (24, 32), 400) is None
