"""gmos_node in-process: hostile input, latest-frame semantics, parameters, lifecycle.

These tests drive the node's real callbacks, threads, publishers and diagnostics; the model
is a weight-free Gmos-S stand-in (bright pixels = foreground, optionally slow) so that they
run in seconds. The real micro model runs in test_ros_e2e.py.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("gmos_msgs.msg")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from gmos_msgs.msg import MovingObjectArray  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from gmos_core.streaming import ForegroundPrediction  # noqa: E402
from gmos_core.streaming.build import DEFAULT_BUNDLES  # noqa: E402
from gmos_ros.messages import make_image, stamp_to_ns  # noqa: E402
from gmos_ros.node import GmosNode, autostart  # noqa: E402
from gmos_ros.params import PARAMS, QosSpec, make_qos, params_from_values  # noqa: E402

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[1]
FPS = 10


class StubModel:
    """Gmos-S stand-in: foreground = red channel > 128; `delay_s` per prediction."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s

    def geometry_features(self, frame):
        return None

    def segmentation_features(self, frame):
        return frame

    def predict(self, geometry, segmentation, out_hw):
        if self.delay_s:
            time.sleep(self.delay_s)
        return ForegroundPrediction((segmentation[..., 0] > 128).astype(np.float32), iou=0.9)


class Loader:
    """Counts loads; the node must call it once per activation for all cameras."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls = 0
        self.delay_s = delay_s

    def __call__(self, settings):
        self.calls += 1
        return StubModel(self.delay_s)


@pytest.fixture
def ros():
    ctx = Context()
    rclpy.init(context=ctx, domain_id=100 + (os.getpid() + 37) % 100)
    executor = SingleThreadedExecutor(context=ctx)
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.02)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    made = []

    def make(params: dict | None = None, loader=None, name: str = "gmos") -> GmosNode:
        base = {"variant": "gmos_s", "window_s": 0.2, "diagnostics_period_s": 0.05}
        base.update(params or {})
        node = GmosNode(
            name,
            model_loader=loader or Loader(),
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


def _frame(i: int, h: int = 12, w: int = 16) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[2:6, (i % (w - 4)) : (i % (w - 4)) + 4, 0] = 255  # a moving red square
    return img


def _header(stamp_ns: int) -> Header:
    h = Header(frame_id="cam")
    h.stamp.sec, h.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return h


def _msg(i: int, stamp_ns: int | None = None, **fields) -> Image:
    msg = make_image(_frame(i), "rgb8", _header(i * 10**9 // FPS if stamp_ns is None else stamp_ns))
    for k, v in fields.items():
        setattr(msg, k, v)
    return msg


def _wait(pred, timeout_s: float = 20.0) -> bool:
    """Bounded poll (the inference thread and DDS are asynchronous)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def _feed(node: GmosNode, msg) -> bool:
    """Call the subscription callback, then wait until the inference thread took the frame."""
    cam = node.cameras[0]
    ok = node.enqueue(cam, msg)
    assert _wait(lambda: cam.slot is None)
    return ok


def test_hostile_input_node_stays_up_bounded_and_counted(ros):
    ctx, executor, make = ros
    loader = Loader(delay_s=0.01)
    node = make({"input_topics": ["/cam/image"]}, loader)
    assert autostart(node) and node.active and loader.calls == 1
    cam = node.cameras[0]
    listener = rclpy.create_node("listener", context=ctx)
    executor.add_node(listener)
    got: dict[str, list] = {"inst": [], "objs": [], "diag": []}
    listener.create_subscription(Image, "/gmos/instance_mask", got["inst"].append, 200)
    listener.create_subscription(MovingObjectArray, "/gmos/objects", got["objs"].append, 200)
    listener.create_subscription(DiagnosticArray, "/diagnostics", got["diag"].append, 50)
    assert _wait(lambda: node.cameras[0].pub_objects.get_subscription_count() > 0)
    assert _wait(lambda: node.cameras[0].pub_instance.get_subscription_count() > 0)

    fed: list[int] = []  # stamps of frames the node accepted and took
    for i in range(6):
        assert _feed(node, _msg(i))
        fed.append(i * 10**9 // FPS)
    bad = [
        _msg(6, encoding="yuv420"),
        _msg(6, encoding="32FC1"),
        _msg(6, step=10),  # step < width * 3
        _msg(6, height=0),
        _msg(6, data=bytes(_msg(6).data)[:100]),  # truncated
    ]
    for msg in bad:
        assert not node.enqueue(cam, msg)
    jpeg = CompressedImage(header=_header(10**9), format="jpeg")
    ok, buf = cv2.imencode(".jpg", _frame(0))
    jpeg.data = buf.tobytes()[: len(buf) // 3]  # corrupt: cut short
    assert not node.enqueue(cam, jpeg)
    # Stamps going backwards (bag loop): the stream finishes its frames and restarts.
    assert _feed(node, _msg(7, stamp_ns=50_000_000))
    fed.append(50_000_000)
    # A duplicate stamp is refused by the segmenter (nothing published for it).
    assert _feed(node, _msg(8, stamp_ns=50_000_000))
    # A 10x burst: 50 frames at once; the slot keeps only the newest, the rest are dropped.
    burst = [_msg(i, stamp_ns=10**9 + i * 10**7) for i in range(50)]
    dropped_before = cam.counters.frames_dropped
    taken_before = cam.counters.frames_taken
    max_pending = max_buffered = 0
    for msg in burst:
        node.enqueue(cam, msg)
        if cam.stream is not None:
            max_pending = max(max_pending, cam.stream.pending)
            max_buffered = max(max_buffered, cam.stream.segmenter.buffered)
    assert _wait(lambda: cam.slot is None)
    dropped = cam.counters.frames_dropped - dropped_before
    taken = cam.counters.frames_taken - taken_before
    assert dropped >= 1 and dropped + taken == 50
    # Memory stays bounded: one frame in the slot, the window's frames in the segmenter.
    assert max_pending <= 20 and max_buffered <= 20

    # The node is still up and serves good frames; deactivate flushes the rest.
    assert _feed(node, _msg(0, stamp_ns=3 * 10**9))
    c = cam.counters
    assert c.errors["encoding"] == 2 and c.errors["step"] == 1 and c.errors["size"] == 1
    assert c.errors["truncated"] == 1 and c.errors["decode"] == 1
    assert c.errors["duplicate_stamp"] == 1 and c.stream_resets == 1

    def reported(d: DiagnosticArray) -> bool:
        # Diagnostics are asynchronous: wait for a report that includes everything above.
        return (
            _diag_value(d, "errors.decode") == "1"
            and _diag_value(d, "errors.encoding") == "2"
            and _diag_value(d, "errors.duplicate_stamp") == "1"
            and _diag_value(d, "stream_resets") == "1"
            and int(_diag_value(d, "frames_dropped") or 0) == c.frames_dropped
        )

    assert _wait(lambda: any(reported(d) for d in list(got["diag"])))
    node.trigger_deactivate()
    assert not node.active and node.model is None
    processed = c.frames_processed
    assert _wait(lambda: len(got["objs"]) == processed and len(got["inst"]) == processed)
    # Every output stamp is the stamp of a frame the node took; never a dropped one.
    out_stamps = [stamp_to_ns(m.header) for m in got["objs"]]
    assert len(set(out_stamps)) == len(out_stamps)
    taken_burst = set(out_stamps) - set(fed) - {3 * 10**9}
    burst_stamps = {stamp_to_ns(m.header) for m in burst}
    assert taken_burst <= burst_stamps and len(taken_burst) == taken
    assert set(fed) <= set(out_stamps)
    for m in got["inst"]:
        assert (m.height, m.width, m.encoding) == (12, 16, "mono16")


def _diag_value(arr: DiagnosticArray, key: str) -> str | None:
    for st in arr.status:
        for kv in st.values:
            if kv.key == key:
                return kv.value
    return None


def test_publish_errors_are_caught_and_counted(ros):
    from rclpy._rclpy_pybind11 import RCLError

    _, _, make = ros
    node = make()
    assert autostart(node)
    cam = node.cameras[0]

    def refuse(msg):
        raise RCLError("cannot publish data")

    cam.pub_objects.publish = refuse
    for i in range(5):
        _feed(node, _msg(i))
    assert cam.counters.errors["publish"] >= 1
    assert cam.counters.frames_processed >= 1 and node.active


def test_lifecycle_activate_loads_once_deactivate_frees(ros):
    _, _, make = ros
    loader = Loader()
    node = make(
        {"autostart": False, "input_topics": ["/left/image_raw", "/right/image_raw"]}, loader
    )
    assert not autostart(node) and node.params is None
    node.trigger_configure()
    assert [c.cfg.name for c in node.cameras] == ["left", "right"]
    assert node.resolve_topic_name(node.cameras[1].cfg.output("dynamic_mask")) == (
        "/gmos/right/dynamic_mask"
    )
    assert loader.calls == 0 and node.model is None  # configure does not load
    node.trigger_activate()
    assert node.active and loader.calls == 1  # one model for both cameras
    s0, s1 = (c.stream for c in node.cameras)
    assert s0 is not None and s1 is not None and s0.segmenter is not s1.segmenter
    assert s0.segmenter.model is s1.segmenter.model
    assert _wait(lambda: node.count_subscribers("/left/image_raw") == 1)
    node.trigger_deactivate()
    assert not node.active and node.model is None
    assert all(c.stream is None and c.sub_image is None for c in node.cameras)
    assert _wait(lambda: node.count_subscribers("/left/image_raw") == 0)
    node.trigger_activate()
    assert node.active and loader.calls == 2
    node.trigger_deactivate()
    node.trigger_cleanup()
    assert node.cameras == []
    assert _wait(lambda: node.count_publishers("/gmos/left/objects") == 0)


def test_missing_weights_fail_activation_clearly(ros, tmp_path):
    from gmos_core.streaming.build import load_frame_model

    _, _, make = ros
    node = make({"autostart": False, "bundle": str(tmp_path / "nope.safetensors")})
    node._model_loader = load_frame_model
    node.trigger_configure()
    node.trigger_activate()
    assert not node.active and node.model is None
    assert node._worker is None  # nothing left running; configure/activate can be retried


def test_bad_parameters_fail_configure(ros):
    _, _, make = ros
    node = make({"autostart": False, "variant": "gmos_xl"})
    node.trigger_configure()
    assert node.params is None and node.cameras == []
    with pytest.raises(ValueError, match="variant='gmos_xl': must be one of gmos_s, gmos_online"):
        params_from_values({"variant": "gmos_xl"})
    with pytest.raises(ValueError, match="qos.input=.*sensor_data"):
        params_from_values({"qos.input": "fast"})
    with pytest.raises(ValueError, match="camera_info_topics has 2 entries for 1"):
        params_from_values({"camera_info_topics": ["a", "b"]})
    with pytest.raises(ValueError, match="operating_point='best'"):
        params_from_values({"operating_point": "best"})
    with pytest.raises(ValueError, match="precision='int8': must be one of fp32, bf16, fp16"):
        params_from_values({"precision": "int8"})
    assert params_from_values({"precision": "bf16"}).runtime.precision == "bf16"
    with pytest.raises(ValueError, match="fg_threshold=1.5"):
        params_from_values({"operating_point": "params", "fg_threshold": 1.5})
    with pytest.raises(ValueError, match="motion_decision='lidar': must be one of auto, head"):
        params_from_values({"motion_decision": "lidar"})
    warp = {"motion_decision": "depth_warp", "camera_info_topics": ["info"]}
    with pytest.raises(ValueError, match="needs an aligned depth topic for every camera"):
        params_from_values(warp)
    with pytest.raises(ValueError, match="variant gmos_online only"):
        params_from_values({**warp, "variant": "gmos_s", "geometry.depth_topics": ["d"]})
    with pytest.raises(ValueError, match="needs camera_info for every camera"):
        params_from_values({"motion_decision": "depth_warp", "geometry.depth_topics": ["d"]})
    ok = params_from_values({**warp, "geometry.depth_topics": ["d"]})
    assert ok.runtime.motion_decision == "depth_warp"
    # The flow motion net needs nothing but the images; Gmos-S has no proposals to decide.
    flow = params_from_values({"motion_decision": "flow_motion", "flow_motion_weights": "w.st"})
    assert flow.runtime.motion_decision == "flow_motion"
    assert flow.runtime.flow_motion_weights == "w.st"
    with pytest.raises(ValueError, match="variant gmos_online only"):
        params_from_values({"motion_decision": "flow_motion", "variant": "gmos_s"})
    # auto (the default) names the decision that runs: the flow net for the shipped micro Gmos
    # online, the head for any other model (a bundle of one's own, official checkpoints,
    # Gmos-S); pose topics belong to depth_warp, which auto never picks.
    shipped = DEFAULT_BUNDLES["gmos_online"].is_file()
    assert params_from_values({}).runtime.motion_decision == ("flow_motion" if shipped else "head")
    for other in ({"bundle": "mine.safetensors"}, {"head_checkpoint": "gmos.pth"},
                  {"variant": "gmos_s"}, {"variant": "ego_residual"}):  # fmt: skip
        assert params_from_values(other).runtime.motion_decision == "head", other
    assert params_from_values({"motion_decision": "head"}).runtime.motion_decision == "head"
    with pytest.raises(ValueError, match="used by motion_decision depth_warp only"):
        params_from_values({"geometry.pose_topics": ["/pose"]})


def test_params_mapping():
    p = params_from_values(
        {
            "input_topics": ["/a/image", "/b/image"],
            "camera_info_topics": ["/a/info"],
            "input_transport": "compressed",
            "max_objects": 4,
            "propagator.release_lost_after": 30,
            "window_s": 1.0,
        }
    )
    assert [(c.name, c.image_topic, c.camera_info_topic) for c in p.cameras] == [
        ("a", "/a/image/compressed", "/a/info"),
        ("b", "/b/image/compressed", ""),
    ]
    assert p.runtime.span_s == 1.0 and p.runtime.propagator["max_objects"] == 4
    assert p.runtime.propagator["release_lost_after"] == 30
    single = params_from_values({})
    assert single.cameras[0].output("objects") == "~/objects"
    # Default: the bundle's calibrated thresholds, which the threshold parameters do not override.
    assert single.runtime.fg_threshold is None
    decision = {"motion_threshold", "iou_threshold", "snap_iou", "use_velocity"}
    assert not decision & set(single.runtime.propagator)
    own = params_from_values(
        {
            "operating_point": "params",
            "fg_threshold": 0.3,
            "propagator.iou_threshold": 0.2,
            "propagator.snap_iou": 0.1,
            "propagator.use_velocity": False,
        }
    )
    assert own.runtime.fg_threshold == 0.3 and own.runtime.propagator["iou_threshold"] == 0.2
    assert (own.runtime.propagator["snap_iou"], own.runtime.propagator["use_velocity"]) == (
        0.1,
        False,
    )
    assert single.qos_input == QosSpec("sensor_data", 1)
    from rclpy.qos import ReliabilityPolicy

    assert make_qos(single.qos_input).reliability == ReliabilityPolicy.BEST_EFFORT
    assert make_qos(QosSpec("reliable", 3)).reliability == ReliabilityPolicy.RELIABLE
    assert make_qos(QosSpec("reliable", 3)).depth == 3


def test_yaml_defaults_match_declared_parameters():
    from gmos_ros.bag import load_params_file

    values = load_params_file(REPO / "config" / "gmos.yaml")
    declared = {p.name: p.default for p in PARAMS}
    assert set(values) <= set(declared)
    for name, default in declared.items():
        if isinstance(default, Parameter.Type):
            continue  # typed lists without a default (ROS 2 cannot type an empty list)
        assert values[name] == default, name
    # The file is also valid for the node as-is.
    params_from_values(values)
    assert yaml.safe_load((REPO / "config" / "gmos.yaml").read_text())["/**"]["ros__parameters"]


def test_two_cameras_over_dds_compressed_each_on_its_own(ros):
    ctx, executor, make = ros
    node = make(
        {
            "input_topics": ["/left/image", "/right/image"],
            "input_transport": "compressed",
            "qos.input": "reliable",
        }
    )
    assert autostart(node)
    assert [c.cfg.image_topic for c in node.cameras] == [
        "/left/image/compressed",
        "/right/image/compressed",
    ]
    peer = rclpy.create_node("camera_driver", context=ctx)
    executor.add_node(peer)
    pubs = {
        s: peer.create_publisher(CompressedImage, f"/{s}/image/compressed", 10)
        for s in ("left", "right")
    }
    got: dict[str, list] = {"left": [], "right": []}
    for side in got:
        peer.create_subscription(MovingObjectArray, f"/gmos/{side}/objects", got[side].append, 50)
    assert _wait(lambda: all(p.get_subscription_count() > 0 for p in pubs.values()))
    # Matched (not just discovered) readers: volatile outputs published earlier are lost.
    assert _wait(lambda: all(c.pub_objects.get_subscription_count() > 0 for c in node.cameras))
    offsets = {"left": 0, "right": 5_000_000}  # distinct stamps per camera
    for i in range(6):
        for side, pub in pubs.items():
            ok, buf = cv2.imencode(".png", _frame(i if side == "left" else 9 - i)[..., ::-1])
            msg = CompressedImage(header=_header(i * 10**8 + offsets[side]), format="png")
            msg.data = buf.tobytes()
            pub.publish(msg)
        assert _wait(lambda i=i: all(c.counters.frames_taken == i + 1 for c in node.cameras))
    node.trigger_deactivate()
    assert _wait(lambda: len(got["left"]) == 6 and len(got["right"]) == 6)
    for side, msgs in got.items():
        assert [stamp_to_ns(m.header) for m in msgs] == [
            i * 10**8 + offsets[side] for i in range(6)
        ]
        assert all(m.objects and m.objects[0].moving for m in msgs)
    # Each camera's square moves its own way: the boxes differ between cameras.
    assert [m.objects[0].x for m in got["left"]] != [m.objects[0].x for m in got["right"]]


def test_sim_time_latency_uses_the_ros_clock(ros):
    from rosgraph_msgs.msg import Clock

    ctx, executor, make = ros
    node = make({"use_sim_time": True, "diagnostics_period_s": 600.0})
    assert autostart(node)
    peer = rclpy.create_node("sim_clock", context=ctx)
    executor.add_node(peer)
    clock = peer.create_publisher(Clock, "/clock", 10)
    assert _wait(lambda: clock.get_subscription_count() > 0)
    sim_now = Clock()
    sim_now.clock.sec = 2  # 2.0 s of simulated time
    assert _wait(
        lambda: (clock.publish(sim_now), node.get_clock().now().nanoseconds == 2 * 10**9)[1]
    )
    cam = node.cameras[0]
    for i in range(6):
        _feed(node, _msg(i, stamp_ns=10**9 + i * 10**8))
    assert _wait(lambda: cam.counters.frames_processed >= 3)
    # Frames stamped 1.0 s, 1.1 s, ... published at sim time 2.0 s: latency 1000 ms, 900 ms...
    assert cam.counters.window.summary().latency_ms_max == pytest.approx(1000.0)


@pytest.mark.slow
def test_soak_memory_stays_flat(ros):
    """20 000 frames (about an hour of a 5 Hz camera, squeezed): bounded buffers, flat heap."""
    import tracemalloc

    _, _, make = ros
    node = make({"window_s": 0.5})
    assert autostart(node)
    cam = node.cameras[0]
    tracemalloc.start()
    peak_buffers = 0
    for i in range(20_000):
        node.enqueue(cam, _msg(i, stamp_ns=10**9 + i * 2 * 10**8))
        if i == 2_000:
            base = tracemalloc.get_traced_memory()[0]
        if cam.stream is not None:
            peak_buffers = max(peak_buffers, cam.stream.pending + cam.stream.segmenter.buffered)
    assert _wait(lambda: cam.slot is None)
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert peak_buffers <= 16 and grown < 5 * 2**20
