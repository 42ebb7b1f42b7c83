"""gmos_node's 3-D outputs over real DDS: depth pairing by stamp, counted bad input, SLAM masks.

The model is the weight-free Gmos-S stand-in of test_ros_node (red pixels = foreground), so the
masks are known exactly; the depth image puts that object at a known distance.
"""

from __future__ import annotations

import os
import threading
import time

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("gmos_msgs.msg")
pytest.importorskip("visualization_msgs.msg")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from gmos_msgs.msg import EgoMotion, MovingObjectArray  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

from gmos_core.streaming import ForegroundPrediction  # noqa: E402
from gmos_ros.messages import make_image  # noqa: E402
from gmos_ros.node import GmosNode, autostart  # noqa: E402

pytestmark = pytest.mark.ros

H, W = 96, 128
FX = 50.0
OBJ_Z = 2.0  # m, the red square
BG_NEAR, BG_FAR = 3.0, 9.0  # m, the background wall


class StubModel:
    def geometry_features(self, frame):
        return None

    def segmentation_features(self, frame):
        return frame

    def predict(self, geometry, segmentation, out_hw):
        return ForegroundPrediction((segmentation[..., 0] > 128).astype(np.float32), iou=0.9)


class HeadsModel:
    """The stand-in's masks (red = foreground) on a real micro π³ whose heads have random
    weights: the window geometry comes from the real decoder and heads, one pass per window."""

    def __init__(self, real):
        assert real.window_geometry
        self.real = real
        self.window_geometry = True
        self.geometry_calls = 0

    def geometry_features(self, frame):
        return self.real.geometry_features(frame)

    def segmentation_features(self, frame):
        return frame, self.real.segmentation_features(frame)

    def predict(self, geometry, segmentation, out_hw):
        return StubModel().predict(None, segmentation[0], out_hw)

    def predict_with_geometry(self, geometry, segmentation, out_hw):
        self.geometry_calls += 1
        _, geom = self.real.predict_with_geometry(geometry, segmentation[1], out_hw)
        return self.predict(None, segmentation, out_hw), geom


@pytest.fixture(scope="module")
def heads_bundle(tmp_path_factory):
    """A micro Gmos-S bundle whose π³ has (random-weight) geometry heads."""
    from gmos_core.bundle import save_bundle
    from gmos_core.models.build import build_frame_model
    from gmos_core.models.pi3_heads import Pi3HeadSizes

    m = build_frame_model("micro", "gmos_s", pi3_heads=Pi3HeadSizes(64, 1, 4, 64))
    path = tmp_path_factory.mktemp("heads") / "micro_heads.safetensors"
    return save_bundle(path, m.pi3, m.sam2.sam_model, m.head, "micro", "gmos_s")


def _heads_model(bundle):
    from gmos_core.streaming.build import RuntimeSettings, load_frame_model

    return HeadsModel(load_frame_model(RuntimeSettings(variant="gmos_s", bundle=str(bundle))))


def _header(stamp_ns: int) -> Header:
    h = Header(frame_id="cam")
    h.stamp.sec, h.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return h


def _frame(i: int) -> np.ndarray:
    # A smooth random texture (trackable corners) on the still background.
    noise = np.random.default_rng(0).random((H, W)).astype(np.float32)
    tex = cv2.GaussianBlur(noise, (0, 0), 1.5)
    tex = (tex - tex.min()) / (tex.max() - tex.min()) * 100
    img = np.repeat(tex[..., None], 3, axis=2).astype(np.uint8)
    x0 = 10 + 2 * i
    img[16:32, x0 : x0 + 16, 0] = 255
    return img


def _depth(i: int, encoding: str = "32FC1") -> np.ndarray:
    # Two walls (left 3 m, right 9 m): depth variation keeps the odometry's translation apart from
    # rotation (a single-depth plane cannot tell them apart).
    d = np.full((H, W), BG_NEAR, np.float32)
    d[:, W // 2 :] = BG_FAR
    x0 = 10 + 2 * i
    d[16:32, x0 : x0 + 16] = OBJ_Z
    d[16:18, x0 : x0 + 16] = np.nan if encoding == "32FC1" else 0.0  # holes inside the mask
    if encoding == "16UC1":
        return np.nan_to_num(d * 1000).astype(np.uint16)
    return d


def _depth_msg(i: int, stamp_ns: int, encoding: str = "32FC1", shape=None) -> Image:
    d = _depth(i, encoding)
    if shape is not None:
        d = np.zeros(shape, d.dtype)
    msg = Image(header=_header(stamp_ns), height=d.shape[0], width=d.shape[1], encoding=encoding)
    msg.is_bigendian = 0
    msg.step = d.shape[1] * d.dtype.itemsize
    msg.data = d.tobytes()
    return msg


def _info(stamp_ns: int) -> CameraInfo:
    info = CameraInfo(header=_header(stamp_ns), height=H, width=W, distortion_model="plumb_bob")
    info.k = [FX, 0.0, (W - 1) / 2, 0.0, FX, (H - 1) / 2, 0.0, 0.0, 1.0]
    return info


def _wait(pred, timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


@pytest.fixture
def ros():
    ctx = Context()
    rclpy.init(context=ctx, domain_id=100 + (os.getpid() + 53) % 100)
    executor = SingleThreadedExecutor(context=ctx)
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.02)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    made = []

    def make(params: dict, name: str = "gmos", model=None) -> GmosNode:
        base = {
            "variant": "gmos_s",
            "window_s": 0.2,
            "diagnostics_period_s": 0.05,
            "input_topics": ["/cam/image"],
            "camera_info_topics": ["/cam/camera_info"],
            "qos.input": "reliable",
            "geometry.depth_topics": ["/cam/depth"],
        }
        base.update(params)
        node = GmosNode(
            name,
            model_loader=lambda s: model if model is not None else StubModel(),
            context=ctx,
            parameter_overrides=[Parameter(k, value=v) for k, v in base.items()],
        )
        made.append(node)
        executor.add_node(node)
        return node

    yield ctx, executor, make
    stop.set()
    thread.join()
    for node in made:
        node._shutdown_inference(flush=False)
        node.destroy_node()
    rclpy.shutdown(context=ctx)


def _rig(ctx, executor, node, depth: bool = True):
    io = rclpy.create_node("rig", context=ctx)
    executor.add_node(io)
    pubs = {
        "image": io.create_publisher(Image, "/cam/image", 50),
        "depth": io.create_publisher(Image, "/cam/depth", 50),
        "info": io.create_publisher(CameraInfo, "/cam/camera_info", 50),
    }
    got: dict[str, list] = {"objs": [], "diag": [], "ego": [], "markers": [], "inst": [], "dyn": []}
    io.create_subscription(MovingObjectArray, "/gmos/objects", got["objs"].append, 100)
    io.create_subscription(DiagnosticArray, "/diagnostics", got["diag"].append, 100)
    io.create_subscription(EgoMotion, "/gmos/ego_motion", got["ego"].append, 100)
    io.create_subscription(MarkerArray, "/gmos/markers", got["markers"].append, 100)
    io.create_subscription(Image, "/gmos/instance_mask", got["inst"].append, 100)
    io.create_subscription(Image, "/gmos/dynamic_mask", got["dyn"].append, 100)
    cam = node.cameras[0]
    assert _wait(lambda: cam.pub_objects.get_subscription_count() > 0)
    assert _wait(lambda: pubs["image"].get_subscription_count() > 0)
    if depth:
        assert _wait(lambda: pubs["depth"].get_subscription_count() > 0)
    assert _wait(lambda: pubs["info"].get_subscription_count() > 0)
    g = node.geometry.cams[id(cam)]
    # Every output the tests read must be matched before the first frame, or DDS drops it.
    assert _wait(lambda: g.pub_markers.get_subscription_count() > 0)
    if g.pub_ego is not None:  # none without depth or heads
        assert _wait(lambda: g.pub_ego.get_subscription_count() > 0)
    return pubs, got


def _send(node, pubs, i: int, stamp: int, depth: Image | None) -> None:
    cam = node.cameras[0]
    g = node.geometry.cams[id(cam)]
    n_depth = len(g.depths)
    pubs["info"].publish(_info(stamp))
    if depth is not None:
        pubs["depth"].publish(depth)
        assert _wait(lambda: len(g.depths) > n_depth or len(g.depths) == g.depths.maxlen)
    assert _wait(lambda: len(cam.infos) and cam.infos[-1].header.stamp.sec * 10**9
                 + cam.infos[-1].header.stamp.nanosec == stamp)  # fmt: skip
    taken = cam.counters.frames_taken
    pubs["image"].publish(make_image(_frame(i), "rgb8", _header(stamp)))
    assert _wait(lambda: cam.counters.frames_taken > taken)


def _errors(got) -> dict[str, float]:
    out: dict[str, float] = {}
    for arr in got["diag"]:
        for st in arr.status:
            for kv in st.values:
                if kv.key.startswith("errors."):
                    out[kv.key] = out.get(kv.key, 0.0) + float(kv.value)
    return out


def test_equal_stamps_give_metric_states_and_unmatched_depth_is_counted(ros):
    ctx, executor, make = ros
    node = make({"slam.dynamic_mask_dilation_px": 3, "slam.instance_mask_encoding": "32SC1"})
    assert autostart(node)
    pubs, got = _rig(ctx, executor, node)
    step = 100_000_000
    for i in range(8):  # equal stamps, 32FC1 then 16UC1
        enc = "32FC1" if i < 4 else "16UC1"
        _send(node, pubs, i, (i + 1) * step, _depth_msg(i, (i + 1) * step, enc))
    for i in range(8, 12):  # depth stamped 1 ms off: never paired
        stamp = (i + 1) * step
        _send(node, pubs, i, stamp, _depth_msg(i, stamp + 1_000_000))
    node.trigger_deactivate()  # flushes the frames in flight
    assert _wait(lambda: len(got["objs"]) >= 12)
    by_stamp = {m.header.stamp.sec * 10**9 + m.header.stamp.nanosec: m for m in got["objs"]}
    metric = [by_stamp[(i + 1) * step] for i in range(8)]
    for m in metric:
        (o,) = m.objects
        assert o.has_position and o.metric
        assert o.position.z == pytest.approx(OBJ_Z, abs=1e-3)
        # 16 px wide at 2 m with f = 50 px: 0.64 m; the 5-95 % range spans 0.9 of it.
        assert 0.5 < o.extent.x < 0.65
    # Static textured background: the depth odometry sees a still camera, so the object's velocity
    # is its own, 2 px per frame at 2 m with f = 50 px: 0.08 m per 0.1 s = 0.8 m/s along +x.
    later = [m.objects[0] for m in metric[3:]]
    assert all(o.has_velocity for o in later)
    for o in later:
        assert o.velocity.x == pytest.approx(0.8, abs=0.05)
        assert abs(o.velocity.y) < 0.05 and abs(o.velocity.z) < 0.05
    assert got["ego"] and all(e.metric and e.source == "odometry" for e in got["ego"])
    assert max(abs(e.velocity.linear.x) + abs(e.velocity.linear.z) for e in got["ego"]) < 0.05
    for i in range(8, 12):
        (o,) = by_stamp[(i + 1) * step].objects
        assert not o.has_position and not o.has_velocity
    assert _wait(lambda: _errors(got).get("errors.depth_unmatched", 0) >= 4)
    assert "errors.depth_invalid" not in _errors(got)
    # SLAM encodings: 32SC1 instance ids, dilated dynamic mask.
    inst = got["inst"][0]
    assert inst.encoding == "32SC1" and inst.step == inst.width * 4
    ids = np.frombuffer(bytes(inst.data), "<i4").reshape(inst.height, inst.width)
    assert set(np.unique(ids)) == {0, metric[0].objects[0].id}
    dyn = got["dyn"][0]
    dmask = np.frombuffer(bytes(dyn.data), np.uint8).reshape(dyn.height, dyn.width)
    if metric[0].objects[0].moving:
        assert (dmask > 0).sum() > (ids > 0).sum()
    # Markers were built (someone subscribed): a DELETEALL, then a box and a text per object.
    assert got["markers"] and len(got["markers"][-1].markers) >= 1


def test_bad_depth_and_missing_camera_info_are_counted_node_alive(ros):
    ctx, executor, make = ros
    node = make({})
    assert autostart(node)
    pubs, got = _rig(ctx, executor, node)
    step = 100_000_000
    bad = [
        _depth_msg(0, step, shape=(H // 2, W // 2)),  # another size
        _depth_msg(1, 2 * step, encoding="32FC1"),
        _depth_msg(2, 3 * step, encoding="32FC1"),
    ]
    bad[1].encoding = "rgb8"  # unknown depth encoding
    bad[2].data = bytes(bad[2].data)[:100]  # truncated
    for i, d in enumerate(bad):
        _send(node, pubs, i, (i + 1) * step, d)
    node.trigger_deactivate()
    assert _wait(lambda: _errors(got).get("errors.depth_invalid", 0) >= 3)
    assert _wait(lambda: len(got["objs"]) >= 3)
    assert all(not o.has_position for m in got["objs"] for o in m.objects)

    # Missing camera_info: a node with depth but no camera_info topic counts it.
    node2 = make({"camera_info_topics": [""]}, name="gmos2")
    node2.trigger_configure()
    node2.trigger_activate()
    assert node2.active
    cam = node2.cameras[0]
    g = node2.geometry.cams[id(cam)]
    g.depths.append((step, _depth_msg(0, step)))
    taken = cam.counters.frames_taken
    node2.enqueue(cam, make_image(_frame(0), "rgb8", _header(step)))
    assert _wait(lambda: cam.counters.frames_taken > taken)
    node2.trigger_deactivate()
    assert cam.counters.errors["camera_info_missing"] >= 1


def test_a_live_parameter_change_keeps_the_frames_the_odometry_needs(ros):
    _ctx, _executor, make = ros
    node = make({})  # depth topic, no overlay
    assert autostart(node)
    cam = node.cameras[0]
    assert cam.stream.keep_frames
    node.set_parameters([Parameter("publish_overlay", value=False)])
    assert cam.stream.keep_frames  # the depth odometry still gets its RGB frames


@pytest.mark.parametrize(
    "bad",
    [
        {"slam.instance_mask_encoding": "8UC1"},
        {"geometry.pi3_heads": "on"},
        {"geometry.depth_topics": ["/a/depth", "/b/depth"]},  # 2 entries for 1 camera
    ],
)
def test_bad_geometry_parameters_fail_configure(ros, bad):
    _ctx, _executor, make = ros
    node = make(bad)
    node.trigger_configure()
    assert node.params is None


def test_without_depth_a_model_with_pi3_heads_gives_up_to_scale_states(ros, heads_bundle):
    ctx, executor, make = ros
    model = _heads_model(heads_bundle)
    node = make({"geometry.depth_topics": [""]}, model=model)
    assert autostart(node)
    cam = node.cameras[0]
    g = node.geometry.cams[id(cam)]
    assert g.pi3 is not None and cam.stream.segmenter.window_geometry
    pubs, got = _rig(ctx, executor, node, depth=False)
    step = 100_000_000
    for i in range(8):
        _send(node, pubs, i, (i + 1) * step, None)
    node.trigger_deactivate()
    assert _wait(lambda: len(got["objs"]) >= 8), (len(got["objs"]), _errors(got))
    assert model.geometry_calls >= 8  # one decoder pass with the heads per window
    objs = [m.objects[0] for m in got["objs"] if m.objects]
    assert len(objs) == 8, [len(m.objects) for m in got["objs"]]
    for o in objs:
        assert o.has_position and not o.metric
        p = np.array([o.position.x, o.position.y, o.position.z])
        e = np.array([o.extent.x, o.extent.y, o.extent.z])
        assert np.isfinite(p).all() and p[2] > 0 and np.isfinite(e).all() and (e >= 0).all()
    # Velocities once a previous frame of the same window is known, in π³ units per second.
    assert any(o.has_velocity for o in objs[1:]), [o.has_velocity for o in objs]
    for o in objs:
        if o.has_velocity:
            assert np.isfinite([o.velocity.x, o.velocity.y, o.velocity.z]).all()
    assert got["ego"], (len(got["ego"]), _errors(got))
    assert all(not e.metric and e.source == "pi3" for e in got["ego"])
    assert got["markers"] and any("(up to scale)" in m.text for m in got["markers"][-1].markers)
    errors = _errors(got)
    assert "errors.depth_unmatched" not in errors and "errors.internal" not in errors


def test_with_depth_the_heads_are_not_run_and_states_are_metric(ros, heads_bundle):
    ctx, executor, make = ros
    model = _heads_model(heads_bundle)
    node = make({}, model=model)
    assert autostart(node)
    cam = node.cameras[0]
    assert node.geometry.cams[id(cam)].pi3 is None
    assert not cam.stream.segmenter.window_geometry  # metric from depth: no head cost
    pubs, got = _rig(ctx, executor, node)
    step = 100_000_000
    for i in range(5):
        _send(node, pubs, i, (i + 1) * step, _depth_msg(i, (i + 1) * step))
    node.trigger_deactivate()
    assert _wait(lambda: len(got["objs"]) >= 5)
    assert model.geometry_calls == 0
    for m in got["objs"]:
        (o,) = m.objects
        assert o.has_position and o.metric
        assert o.position.z == pytest.approx(OBJ_Z, abs=1e-3)


def _images_only(ctx, executor, node, frames: int) -> list:
    """Publish `frames` images (no depth, no camera_info), deactivate; the objects messages."""
    cam = node.cameras[0]
    io = rclpy.create_node("rig2", context=ctx)
    executor.add_node(io)
    pub = io.create_publisher(Image, "/cam/image", 50)
    got: list = []
    io.create_subscription(MovingObjectArray, "/gmos/objects", got.append, 100)
    assert _wait(lambda: pub.get_subscription_count() > 0)
    assert _wait(lambda: cam.pub_objects.get_subscription_count() > 0)
    for i in range(frames):
        taken = cam.counters.frames_taken
        pub.publish(make_image(_frame(i), "rgb8", _header((i + 1) * 100_000_000)))
        assert _wait(lambda taken=taken: cam.counters.frames_taken > taken)
    node.trigger_deactivate()
    assert _wait(lambda: len(got) >= frames)
    return got


def test_without_depth_or_heads_there_is_no_3d_state(ros):
    ctx, executor, make = ros
    node = make({"geometry.depth_topics": [""]})  # the stand-in has no π³ heads
    assert autostart(node)
    cam = node.cameras[0]
    g = node.geometry.cams[id(cam)]
    assert g.pi3 is None and g.pub_ego is None and g.pub_markers is None
    got = _images_only(ctx, executor, node, 4)
    assert all(o.objects and not o.objects[0].has_position for o in got)


def test_pi3_heads_off_never_runs_the_heads(ros, heads_bundle):
    """`geometry.pi3_heads: off`: a model with heads and no depth topic runs no decoder pass
    with the heads (auto would run one per window, the test above) and publishes no 3-D state."""
    ctx, executor, make = ros
    model = _heads_model(heads_bundle)
    node = make({"geometry.depth_topics": [""], "geometry.pi3_heads": "off"}, model=model)
    assert autostart(node)
    cam = node.cameras[0]
    g = node.geometry.cams[id(cam)]
    assert g.pi3 is None and g.pub_ego is None and g.pub_markers is None
    assert not cam.stream.segmenter.window_geometry
    # Not live: switching the heads needs the streams rebuilt (set at launch).
    (res,) = node.set_parameters([Parameter("geometry.pi3_heads", value="auto")])
    assert not res.successful and "read-only" in res.reason
    got = _images_only(ctx, executor, node, 8)
    assert model.geometry_calls == 0
    objs = [m.objects[0] for m in got if m.objects]
    assert len(objs) == 8  # the masks are still published
    assert all(not o.has_position and not o.has_velocity for o in objs)
