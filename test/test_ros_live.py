"""gmos_node over real DDS (loopback): sliding-window diagnostics that alarm and recover,
parameters refused with a reason or applied live, remapped compressed input.

The node runs in this process with the stand-in model of test_ros_node.py, but every message
(images in, outputs and /diagnostics out, parameter services) goes through DDS between two
ROS nodes, as with a camera driver and a monitor.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("gmos_msgs.msg")

import test_ros_node  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from test_ros_node import Loader, _frame, _header, _msg, _wait  # noqa: E402

from gmos_ros.health import Level  # noqa: E402
from gmos_ros.messages import stamp_to_ns  # noqa: E402
from gmos_ros.node import autostart  # noqa: E402

pytestmark = pytest.mark.ros

ros = test_ros_node.ros  # the in-process node fixture (its own DDS domain)


def _status(arr: DiagnosticArray) -> DiagnosticStatus:
    assert len(arr.status) == 1
    return arr.status[0]


def _value(st: DiagnosticStatus, key: str) -> str | None:
    return next((kv.value for kv in st.values if kv.key == key), None)


def _level(st: DiagnosticStatus) -> int:
    return st.level[0] if isinstance(st.level, bytes) else int(st.level)


def _peer(ctx, executor, name: str):
    node = rclpy.create_node(name, context=ctx)
    executor.add_node(node)
    return node


def test_no_input_goes_stale_within_the_threshold_then_recovers(ros):
    ctx, executor, make = ros
    node = make(
        {
            "input_topics": ["/cam/image"],
            "diagnostics_period_s": 0.1,
            "diagnostics_stale_s": 1.0,
            "qos.input": "reliable",
        }
    )
    peer = _peer(ctx, executor, "monitor")
    diags: list[DiagnosticArray] = []
    peer.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 100)
    pub = peer.create_publisher(Image, "/cam/image", 10)
    assert autostart(node)

    def no_input(d: DiagnosticArray) -> bool:
        return _status(d).message.startswith("no input for")

    assert _wait(lambda: any(no_input(d) for d in diags))
    k = next(i for i, d in enumerate(diags) if no_input(d))
    first = _status(diags[k])
    # diagnostic_updater conventions: "<node>: <camera>", hardware_id = the camera.
    assert first.name == "gmos: /cam/image" and first.hardware_id == "/cam/image"
    assert _level(first) == Level.STALE
    # Reported as soon as the threshold is passed (one diagnostics period later at most,
    # plus scheduling on a loaded machine); OK before that, once active.
    assert 1.0 <= float(_value(first, "since_input_s")) < 2.5
    before = [_status(d) for d in diags[:k]]
    active = [st for st in before if not st.message.startswith("inactive")]
    assert active and all(_level(st) == Level.OK for st in active)
    # The camera starts: OK again, hardware_id becomes its frame_id.
    assert _wait(lambda: pub.get_subscription_count() > 0)
    n = len(diags)
    for i in range(5):
        pub.publish(_msg(i))
        time.sleep(0.05)
    assert _wait(lambda: any(_level(_status(d)) == Level.OK for d in diags[n:]))
    ok = next(_status(d) for d in diags[n:] if _level(_status(d)) == Level.OK)
    assert ok.hardware_id == "cam" and ok.message == "ok"
    # no_input_level: error, set live: the same silence is now an ERROR.
    assert node.set_parameters([Parameter("diagnostics_no_input_level", value="error")])[
        0
    ].successful
    n = len(diags)
    assert _wait(lambda: any(_level(_status(d)) == Level.ERROR for d in diags[n:]))


def test_burst_of_drops_warns_and_returns_to_ok_after_the_window(ros):
    ctx, executor, make = ros
    node = make(
        {
            "input_topics": ["/cam/image"],
            "diagnostics_period_s": 0.1,
            "diagnostics_window_s": 1.0,
            "diagnostics_stale_s": 5.0,
            "diagnostics_drop_warn_pct": 10.0,
            # Every message reaches the callback: drops are the node's, not DDS's.
            "qos.input": "reliable",
            "qos.input_depth": 100,
        },
        Loader(delay_s=0.05),
    )
    peer = _peer(ctx, executor, "camera")
    diags: list[DiagnosticArray] = []
    peer.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 200)
    pub = peer.create_publisher(Image, "/cam/image", 100)
    assert autostart(node)
    assert _wait(lambda: pub.get_subscription_count() > 0)
    stamp = iter(range(1, 10**6))

    def publish(k: int, pause_s: float) -> None:
        for _ in range(k):
            i = next(stamp)
            pub.publish(_msg(i, stamp_ns=i * 10**8))
            time.sleep(pause_s)

    def levels_since(n: int) -> list[int]:
        return [_level(_status(d)) for d in diags[n:]]

    publish(8, 0.1)  # a steady 10 Hz camera the node keeps up with
    n = len(diags)
    publish(4, 0.1)
    assert Level.OK in levels_since(n)
    n = len(diags)
    publish(40, 0.0)  # a burst: the depth-1 slot keeps the newest, the rest are dropped
    counters = node.cameras[0].counters
    assert _wait(lambda: counters.frames_in >= 52)  # DDS delivers the burst asynchronously
    assert counters.frames_dropped > 4
    warn_seen = ok_after = False
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline and not ok_after:
        publish(1, 0.1)  # the camera goes on at 10 Hz
        for d in diags[n:]:
            st = _status(d)
            if _level(st) == Level.WARN and "dropped" in st.message:
                warn_seen = True
            elif warn_seen and _level(st) == Level.OK:
                ok_after = True
        n = len(diags)
    assert warn_seen and ok_after
    # The totals keep the record; the window no longer holds the burst.
    final = _status(diags[-1])
    assert int(_value(final, "frames_dropped")) > 4
    assert float(_value(final, "window.drop_pct")) <= 10.0


def _set(client: AsyncParameterClient, params: list[Parameter]):
    fut = client.set_parameters(params)
    assert _wait(fut.done, 10.0)
    return fut.result().results


def test_wrong_parameter_sets_are_refused_with_their_reason(ros):
    ctx, executor, make = ros
    node = make({"diagnostics_period_s": 1.0})
    assert autostart(node)
    peer = _peer(ctx, executor, "operator")
    client = AsyncParameterClient(peer, "gmos")
    assert client.wait_for_services(10.0)
    cases = {
        # needs a reload: read-only on a running node
        "variant": ("nonsense", "read-only"),
        "window_s": (-3.0, "read-only"),
        # live ones: the descriptor's range, or the node's own check
        "diagnostics_period_s": (-1.0, "range"),
        "diagnostics_drop_warn_pct": (150.0, "range"),
        "diagnostics_no_input_level": ("nonsense", "must be one of stale, error"),
        "publish_overlay": ("yes", "type"),
    }
    for name, (value, reason) in cases.items():
        (res,) = _set(client, [Parameter(name, value=value)])
        assert not res.successful, name
        assert reason in res.reason.lower() or reason in res.reason, (name, res.reason)
    assert node.get_parameter("variant").value == "gmos_s"
    assert node.get_parameter("diagnostics_period_s").value == 1.0
    # A valid live change is applied at once: the diagnostics timer runs at the new period.
    (res,) = _set(client, [Parameter("diagnostics_period_s", value=0.2)])
    assert res.successful
    assert node._diag_timer.timer_period_ns == 200_000_000
    assert node.params.diagnostics_period_s == 0.2
    (res,) = _set(client, [Parameter("idle_flush_s", value=0.0)])
    assert res.successful and node.params.idle_flush_s == 0.0


def test_overlay_stops_within_one_frame_of_publish_overlay_false(ros):
    ctx, executor, make = ros
    node = make({"input_topics": ["/cam/image"], "qos.input": "reliable", "window_s": 0.0})
    peer = _peer(ctx, executor, "viewer")
    got: dict[str, list] = {"overlay": [], "inst": []}
    peer.create_subscription(Image, "/gmos/overlay", got["overlay"].append, 100)
    peer.create_subscription(Image, "/gmos/instance_mask", got["inst"].append, 100)
    pub = peer.create_publisher(Image, "/cam/image", 10)
    client = AsyncParameterClient(peer, "gmos")
    assert autostart(node) and client.wait_for_services(10.0)
    cam = node.cameras[0]
    assert _wait(lambda: pub.get_subscription_count() > 0)
    assert _wait(lambda: cam.pub_overlay.get_subscription_count() > 0)
    assert _wait(lambda: cam.pub_instance.get_subscription_count() > 0)

    def feed(indices) -> None:
        for i in indices:
            pub.publish(_msg(i))
            assert _wait(lambda i=i: cam.counters.frames_processed >= i + 1)

    feed(range(0, 5))
    assert _wait(lambda: len(got["overlay"]) == 5)
    (res,) = _set(client, [Parameter("publish_overlay", value=False)])
    assert res.successful
    feed(range(5, 10))
    assert _wait(lambda: len(got["inst"]) == 10)  # processing goes on
    time.sleep(0.2)
    off = {stamp_to_ns(_msg(i).header) for i in range(5, 10)}
    assert not off & {stamp_to_ns(m.header) for m in got["overlay"]}
    (res,) = _set(client, [Parameter("publish_overlay", value=True)])
    assert res.successful
    feed(range(10, 13))
    assert _wait(lambda: len(got["overlay"]) == 8)


def test_compressed_transport_follows_the_image_remap(ros):
    from gmos_ros.node import GmosNode

    ctx, executor, _ = ros
    # The remap comes from the command line, as a user gives it.
    node = GmosNode(
        "gmos_remapped",
        model_loader=Loader(),
        context=ctx,
        cli_args=["--ros-args", "-r", "image:=/cam/image_raw"],
        parameter_overrides=[
            Parameter("variant", value="gmos_s"),
            Parameter("window_s", value=0.0),
            Parameter("input_transport", value="compressed"),
            Parameter("qos.input", value="reliable"),
        ],
    )
    executor.add_node(node)
    try:
        assert autostart(node)
        cam = node.cameras[0]
        # image_transport's rule: <resolved image topic>/compressed.
        assert cam.cfg.image_topic == "/cam/image_raw/compressed"
        peer = _peer(ctx, executor, "jpeg_camera")
        pub = peer.create_publisher(CompressedImage, "/cam/image_raw/compressed", 10)
        assert _wait(lambda: pub.get_subscription_count() > 0)
        assert node.count_subscribers("/image/compressed") == 0
        ok, buf = cv2.imencode(".png", _frame(3)[..., ::-1])
        msg = CompressedImage(header=_header(10**8), format="png")
        msg.data = buf.tobytes()
        pub.publish(msg)
        assert _wait(lambda: cam.counters.frames_processed == 1)
    finally:
        node._shutdown_inference(flush=False)
        executor.remove_node(node)
        node.destroy_node()


def test_params_mapping_resolves_names_before_the_transport_suffix():
    from gmos_ros.params import params_from_values

    remaps = {"image": "/cam/image_raw", "info": "/cam/camera_info"}
    p = params_from_values(
        {"input_transport": "compressed", "camera_info_topics": ["info"]},
        resolve=lambda t: remaps.get(t, t),
    )
    assert p.cameras[0].image_topic == "/cam/image_raw/compressed"
    assert p.cameras[0].camera_info_topic == "/cam/camera_info"
    # already a /compressed topic: not doubled
    p = params_from_values(
        {"input_transport": "compressed", "input_topics": ["/a/image/compressed"]},
        resolve=lambda t: t,
    )
    assert p.cameras[0].image_topic == "/a/image/compressed"


def test_corrupt_jpeg_is_counted_as_a_decode_warning_not_printed(ros):
    _, _, make = ros
    node = make({"input_transport": "compressed"})
    assert autostart(node)
    cam = node.cameras[0]
    img = (np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    data = bytearray(buf.tobytes())
    data[len(data) // 2], data[len(data) // 2 + 1] = 0xFF, 0xD9  # an early end marker
    msg = CompressedImage(header=_header(10**8), format="jpeg")
    msg.data = bytes(data)
    assert node.enqueue(cam, msg)  # libjpeg recovered: the frame is used...
    assert cam.counters.errors["decode_warning"] == 1  # ...and the damage counted
    assert cam.counters.window.summary().errors == {"decode_warning": 1}


def test_12_megapixel_frame_goes_to_the_model_downscaled_and_comes_back_full_size(ros):
    from sensor_msgs.msg import CameraInfo

    from gmos_ros.messages import make_image

    seen: list[tuple[int, int]] = []

    class SizeLoader(Loader):
        def __call__(self, settings):
            model = super().__call__(settings)
            predict = model.predict

            def spy(geometry, segmentation, out_hw):
                seen.append(tuple(segmentation.shape[:2]))
                return predict(geometry, segmentation, out_hw)

            model.predict = spy
            return model

    _, _, make = ros
    node = make(
        {
            "window_s": 0.0,
            "max_input_pixels": 2_073_600,
            "camera_info_topics": ["/cam/camera_info"],
        },
        SizeLoader(),
    )
    assert autostart(node)
    cam = node.cameras[0]
    published: dict[str, list] = {"inst": [], "dyn": [], "objs": [], "info": []}
    cam.pub_instance.publish = published["inst"].append
    cam.pub_dynamic.publish = published["dyn"].append
    cam.pub_objects.publish = published["objs"].append
    cam.pub_info.publish = published["info"].append
    h, w = 3000, 4000
    frame = np.zeros((h, w, 3), np.uint8)
    frame[1000:2000, 500:1700, 0] = 255  # a red block: the stand-in model's foreground
    header = _header(10**9)
    info = CameraInfo(header=header, height=h, width=w, distortion_model="plumb_bob")
    info.k = [3000.0, 0.0, 2000.0, 0.0, 3000.0, 1500.0, 0.0, 0.0, 1.0]
    cam.infos.append(info)
    assert node.enqueue(cam, make_image(frame, "rgb8", header))
    assert _wait(lambda: len(published["inst"]) == 1, 60.0)
    assert seen and seen[0][0] * seen[0][1] <= 2_073_600  # the model saw <= 2.07 MP
    assert seen[0] == (1247, 1662)  # 4:3 kept to a pixel
    inst, dyn, objs = published["inst"][0], published["dyn"][0], published["objs"][0]
    assert (inst.height, inst.width, dyn.height, dyn.width) == (h, w, h, w)
    ids = np.frombuffer(inst.data, np.uint16).reshape(h, w)
    (obj,) = objs.objects
    ys, xs = np.nonzero(ids == obj.id)
    assert obj.area == len(xs) and (obj.x, obj.y) == (xs.min(), ys.min())
    assert abs(obj.x - 500) <= 3 and abs(obj.y - 1000) <= 3 and abs(obj.width - 1200) <= 6
    # The input's camera_info, unchanged, with the image header (outputs are at its size).
    (out_info,) = published["info"]
    assert (out_info.height, out_info.width) == (h, w) and list(out_info.k) == list(info.k)


def test_decision_thresholds_apply_live_to_the_running_segmenter(ros):
    from gmos_core.streaming import ForegroundPrediction

    class Prob09Loader(Loader):
        """Foreground probability 0.9 on red pixels."""

        def __call__(self, settings):
            model = super().__call__(settings)
            model.predict = lambda g, seg, out_hw: ForegroundPrediction(
                np.where(seg[..., 0] > 128, 0.9, 0.0).astype(np.float32), iou=0.9
            )
            return model

    ctx, executor, make = ros
    node = make({"operating_point": "bundle", "window_s": 0.0}, Prob09Loader())
    assert autostart(node)
    cam = node.cameras[0]
    seg = cam.stream.segmenter
    assert seg.fg_threshold == 0.5  # the stand-in has no operating point: the paper's
    published: list = []
    cam.pub_objects.publish = published.append
    peer = _peer(ctx, executor, "tuner")
    client = AsyncParameterClient(peer, "gmos")
    assert client.wait_for_services(10.0)
    # Under operating_point: bundle the parameter does not override the model's value...
    (res,) = _set(client, [Parameter("fg_threshold", value=0.95)])
    assert res.successful and seg.fg_threshold == 0.5
    # ...switching to params applies it, at once, to the stream that runs.
    (res,) = _set(client, [Parameter("operating_point", value="params")])
    assert res.successful and seg.fg_threshold == 0.95
    (res,) = _set(client, [Parameter("fg_threshold", value=1.5)])
    assert not res.successful and "range" in res.reason
    assert seg.fg_threshold == 0.95

    def objects_of_next_frame(i: int) -> int:
        n = len(published)
        assert node.enqueue(cam, _msg(i))
        assert _wait(lambda: len(published) > n)
        return len(published[-1].objects)

    # The red square (probability 0.9) is background at 0.95 and an object at 0.8.
    assert objects_of_next_frame(0) == 0
    (res,) = _set(client, [Parameter("fg_threshold", value=0.8)])
    assert res.successful and seg.fg_threshold == 0.8
    assert objects_of_next_frame(1) == 1


def test_propagator_thresholds_reach_the_running_propagator(ros):
    import dataclasses

    from gmos_core.streaming import StreamingSegmenter
    from gmos_core.streaming.build import RuntimeSettings
    from gmos_core.streaming.tracking import PropagatorTracking

    _, _, make = ros
    node = make()
    assert autostart(node)
    settings = RuntimeSettings(variant="gmos_online", propagator={"max_objects": 4})
    tracking = PropagatorTracking(settings)
    seg = StreamingSegmenter(node.model, "gmos", tracking=tracking)
    live = dataclasses.replace(
        settings, propagator={"motion_threshold": 0.3, "motion_gate": 0.6, "max_objects": 9}
    )
    node._apply_thresholds(seg, live)
    assert tracking.config.motion_threshold == 0.3 and tracking.config.motion_gate == 0.6
    assert tracking.config.max_objects == 4  # sizes the registry: read-only, not applied live
    assert tracking.config.iou_threshold == 0.7  # the operating point's (paper) value
