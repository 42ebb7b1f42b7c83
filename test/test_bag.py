"""gmos-bag: synth -> eval (deterministic, sqlite3 and mcap), play, record, unknown types,
interrupted recordings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("gmos_msgs.msg")

from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from rosbags.rosbag2 import Writer  # noqa: E402
from rosbags.typesys import get_types_from_msg  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from gmos_core.data.synthetic import SceneConfig, generate_scene  # noqa: E402
from gmos_core.streaming import ForegroundPrediction  # noqa: E402
from gmos_ros.bag import (  # noqa: E402
    BagPlayer,
    iter_messages,
    labels_from_image,
    load_params_file,
    make_typestore,
    read_ground_truth,
    run_eval,
    write_synthetic_bag,
)
from gmos_ros.messages import stamp_to_ns  # noqa: E402
from gmos_ros.params import params_from_values  # noqa: E402

pytestmark = pytest.mark.ros
REPO = Path(__file__).resolve().parents[1]
DOMAIN = 100 + (os.getpid() + 71) % 100


class StubModel:
    """Weight-free Gmos-S stand-in: foreground = pixels brighter than the frame mean."""

    def geometry_features(self, frame):
        return None

    def segmentation_features(self, frame):
        return frame

    def predict(self, geometry, segmentation, out_hw):
        g = segmentation.mean(axis=2)
        return ForegroundPrediction((g > g.mean() + 40).astype(np.float32))


def _params():
    values = load_params_file(REPO / "config" / "gmos.yaml")
    values["variant"] = "gmos_s"
    return params_from_values(values)


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_synth_then_eval_is_deterministic(tmp_path, storage):
    info = write_synthetic_bag(tmp_path / "in", storage=storage, seed=3, num_frames=8)
    gt = read_ground_truth(tmp_path / "in")
    scene = generate_scene(SceneConfig(seed=3, num_frames=8, scene_kind="dynamic",
                                       start_time_ns=1_000_000_000))  # fmt: skip
    mos = scene.mos_i_labels()
    assert gt is not None and gt.stamps_ns == info["stamps_ns"]
    assert np.array_equal(gt.labels, mos.labels)
    assert gt.intervals == {k: list(v) for k, v in mos.intervals.items()}
    reports = []
    for run in range(2):
        rep = run_eval(
            tmp_path / "in",
            tmp_path / f"out{run}",
            _params(),
            metrics_path=tmp_path / f"m{run}.json",
            model=StubModel(),
        )
        reports.append(json.loads((tmp_path / f"m{run}.json").read_text()))
        assert rep.frames == rep.results == 8 and rep.mos_i["missing_predictions"] == 0
    assert reports[0]["mos_i"] == reports[1]["mos_i"]
    outs = [list(iter_messages(tmp_path / f"out{run}")) for run in range(2)]
    topics = {t for t, *_ in outs[0]}
    assert topics == {"/gmos/instance_mask", "/gmos/dynamic_mask", "/gmos/objects"}
    assert len(outs[0]) == len(outs[1]) == 3 * 8
    for (t0, m0, s0, r0), (t1, _, s1, r1) in zip(outs[0], outs[1]):
        assert (t0, s0) == (t1, s1)
        if m0 == "sensor_msgs/msg/Image":
            a, b = deserialize_message(r0, Image), deserialize_message(r1, Image)
            assert np.array_equal(labels_from_image(a), labels_from_image(b))
            assert stamp_to_ns(a.header) == s0 and a.header.frame_id == "camera_optical"


def test_unknown_types_are_skipped_with_a_notice(tmp_path, capsys):
    bag = tmp_path / "mixed"
    store = make_typestore()
    store.register(get_types_from_msg("int32 x\nstring label", "acme_msgs/msg/Thing"))
    writer = Writer(bag, version=Writer.VERSION_LATEST)
    writer.open()
    thing = writer.add_connection("/acme/thing", "acme_msgs/msg/Thing", typestore=store)
    text = writer.add_connection("/note", "std_msgs/msg/String", typestore=store)
    cls = store.types["acme_msgs/msg/Thing"]
    writer.write(thing, 1, store.serialize_cdr(cls(x=3, label="a"), "acme_msgs/msg/Thing"))
    writer.write(text, 2, serialize_message(String(data="hello")))
    writer.close()
    msgs = list(iter_messages(bag))
    assert [(t, m) for t, m, _, _ in msgs] == [("/note", "std_msgs/msg/String")]
    assert (
        "skipping /acme/thing: message type acme_msgs/msg/Thing unknown" in capsys.readouterr().err
    )


@pytest.fixture
def ros_node():
    ctx = Context()
    rclpy.init(context=ctx, domain_id=DOMAIN)
    node = rclpy.create_node("bag_test", context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.02)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    yield node
    stop.set()
    thread.join()
    node.destroy_node()
    rclpy.shutdown(context=ctx)


def _wait(pred, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not pred():
        time.sleep(0.02)
    return pred()


def test_play_publishes_the_stored_messages(tmp_path, ros_node):
    info = write_synthetic_bag(tmp_path / "in", storage="sqlite3", seed=1, num_frames=5)
    got: list[Image] = []
    ros_node.create_subscription(Image, "/camera/image_raw", got.append, 50)
    player = BagPlayer(ros_node, tmp_path / "in", topics=["/camera/image_raw"])
    assert player.wait_for_subscribers(["/camera/image_raw"])
    assert player.play(rate=0.0) == 5
    assert _wait(lambda: len(got) == 5)
    assert [stamp_to_ns(m.header) for m in got] == info["stamps_ns"]
    assert (got[0].encoding, got[0].height, got[0].width) == ("rgb8", 128, 128)


@pytest.mark.parametrize(("sig", "storage"), [(signal.SIGTERM, "sqlite3"), (signal.SIGINT, "mcap")])
def test_interrupted_recording_stays_readable(tmp_path, ros_node, sig, storage):
    pub = ros_node.create_publisher(String, "/chatter", 50)
    out = tmp_path / "rec"
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gmos_ros.bag", "record", "--out", str(out),
         "--topics", "/chatter", "--storage", storage],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert _wait(lambda: pub.get_subscription_count() > 0, 30.0), "recorder never subscribed"
        for i in range(20):
            pub.publish(String(data=f"msg {i}"))
        # Reliable QoS: once acknowledged, the recorder has every message.
        assert pub.wait_for_all_acked(rclpy.duration.Duration(seconds=20))
    finally:
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "closed" in err
    msgs = [deserialize_message(raw, String).data for _, _, _, raw in iter_messages(out)]
    assert msgs == [f"msg {i}" for i in range(20)]


def test_play_start_offset_and_loop(tmp_path, ros_node):
    info = write_synthetic_bag(tmp_path / "in", storage="mcap", seed=2, num_frames=5)
    got: list[Image] = []
    ros_node.create_subscription(Image, "/camera/image_raw", got.append, 50)
    player = BagPlayer(ros_node, tmp_path / "in", topics=["/camera/image_raw"])
    assert player.wait_for_subscribers(["/camera/image_raw"])
    # 10 fps: skipping the first 0.25 s leaves frames 3 and 4.
    assert player.play(rate=0.0, start_offset_s=0.25) == 2
    assert _wait(lambda: len(got) == 2)
    assert [stamp_to_ns(m.header) for m in got] == info["stamps_ns"][3:]
    got.clear()
    # 5x speed (20 ms apart): the subscriber never falls behind the publisher's queue.
    sent = player.play(rate=5.0, loop=True, should_stop=lambda: len(got) >= 8)
    assert sent >= 8
    stamps = [stamp_to_ns(m.header) for m in got[:8]]
    assert stamps == info["stamps_ns"] + info["stamps_ns"][:3]  # the stamps jump back: a loop
