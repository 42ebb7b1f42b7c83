"""End to end across processes over real DDS (loopback): synthetic bag -> gmos_node -> bag.

The node runs as its own process (`python -m gmos_ros.node`); this test process plays the
bag into it in lock step (so nothing is dropped), records its outputs with the raw
recorder, then checks stamps, resolutions, objects vs instance masks, and that the MOS-I
score of the recorded outputs equals `gmos-bag eval` on the same bag (same code path).

The model is the shipped micro Gmos-S (`gmos_core/assets/`, at its calibrated operating
point), or seeded random weights where no bundle is shipped (`allow_random_weights`): the test
is about the plumbing, not the score; both processes load the identical model, so the equality
is exact. proposer_stride 4 keeps the run short on 2 shared cores.
"""

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

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from gmos_msgs.msg import MovingObjectArray  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.serialization import deserialize_message  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from gmos_ros.bag import (  # noqa: E402
    BagPlayer,
    OutputMonitor,
    Recorder,
    iter_messages,
    labels_from_image,
    paced_play,
    read_ground_truth,
    score_mos_i,
    write_synthetic_bag,
)
from gmos_ros.messages import stamp_to_ns  # noqa: E402

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[1]
IMAGE = "/camera/image_raw"
INFO = "/camera/camera_info"
MODEL_PARAMS = [
    "variant:=gmos_s",
    "allow_random_weights:=true",
    "proposer_stride:=4",
    "torch_threads:=1",
]
# The weight-free CPU mode: same topics, diagnostics and offline/live equality.
BASELINE_PARAMS = ["variant:=ego_residual", "torch_threads:=1"]
DEPTH = "/camera/depth"
POSE = "/camera/pose"
# The shipped Gmos with the depth_warp decision: the bag's depth and camera poses reach the
# decision live (subscriptions, pairing by stamp) exactly as they do offline.
WARP_PARAMS = [
    "variant:=gmos_online",
    "proposer_stride:=2",
    "torch_threads:=1",
    "motion_decision:=depth_warp",
    f"geometry.depth_topics:=[{DEPTH}]",
    f"geometry.pose_topics:=[{POSE}]",
]
# The shipped Gmos with the flow_motion decision (RGB only): the net decides live as offline.
FLOW_PARAMS = [
    "variant:=gmos_online",
    "proposer_stride:=2",
    "torch_threads:=1",
    "motion_decision:=flow_motion",
]
OUTPUTS = {
    "/gmos/instance_mask": "sensor_msgs/msg/Image",
    "/gmos/dynamic_mask": "sensor_msgs/msg/Image",
    "/gmos/objects": "gmos_msgs/msg/MovingObjectArray",
    "/gmos/overlay": "sensor_msgs/msg/Image",
    "/gmos/camera_info": "sensor_msgs/msg/CameraInfo",
}
TYPES = {
    "sensor_msgs/msg/Image": Image,
    "sensor_msgs/msg/CameraInfo": CameraInfo,
    "gmos_msgs/msg/MovingObjectArray": MovingObjectArray,
}


def _domain() -> str:
    # A domain private to this run, so parallel test sessions on the machine never cross.
    return str(100 + os.getpid() % 100)


def _spin(executor: SingleThreadedExecutor, stop: threading.Event) -> None:
    while not stop.is_set():
        executor.spin_once(timeout_sec=0.05)


def _change_state(node, transition: int, timeout_s: float = 120.0) -> bool:
    client = node.create_client(ChangeState, "/gmos/change_state")
    assert client.wait_for_service(timeout_sec=30.0), "lifecycle service never appeared"
    req = ChangeState.Request()
    req.transition.id = transition
    fut = client.call_async(req)
    deadline = time.monotonic() + timeout_s
    while not fut.done() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fut.done(), "change_state did not answer"
    return bool(fut.result().success)


@pytest.mark.parametrize(
    "model_params",
    [MODEL_PARAMS, BASELINE_PARAMS, WARP_PARAMS, FLOW_PARAMS],
    ids=["gmos_s", "ego", "depth_warp", "flow_motion"],
)
def test_node_over_dds_matches_offline_eval(tmp_path: Path, model_params: list[str]) -> None:
    bag = tmp_path / "synth"
    warp = "motion_decision:=depth_warp" in model_params
    info = write_synthetic_bag(
        bag,
        storage="mcap",
        seed=7,
        num_frames=8,
        scene_kind="dynamic",
        depth_topic=DEPTH if warp else None,
        pose_topic=POSE if warp else None,
    )
    input_stamps = info["stamps_ns"]
    env = dict(os.environ, ROS_DOMAIN_ID=_domain(), PYTHONUNBUFFERED="1")
    log = open(tmp_path / "node.log", "w")  # noqa: SIM115 - closed in finally
    cmd = [sys.executable, "-m", "gmos_ros.node", "--ros-args",
           "--params-file", str(REPO / "config" / "gmos.yaml"),
           "-p", f"input_topics:=[{IMAGE}]", "-p", f"camera_info_topics:=[{INFO}]",
           "-p", "diagnostics_period_s:=0.05",
           # Lock-step replay waits for every frame: a best-effort (sensor_data) input could
           # lose one and stall the replay, so evaluation replays subscribe reliably.
           "-p", "qos.input:=reliable", "-p", "qos.camera_info:=reliable",
           # No end-of-stream flush mid-replay (a slow step would finish the window early).
           "-p", "idle_flush_s:=0.0"]  # fmt: skip
    for p in model_params:
        cmd += ["-p", p]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    ctx = Context()
    rclpy.init(context=ctx, domain_id=int(env["ROS_DOMAIN_ID"]))
    node = rclpy.create_node("e2e_driver", context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    stop = threading.Event()
    spinner = threading.Thread(target=_spin, args=(executor, stop), daemon=True)
    received: dict[str, list[bytes]] = {t: [] for t in OUTPUTS}
    diags: list[DiagnosticArray] = []
    rec = None
    try:
        sensors = [DEPTH, POSE] if warp else []
        player = BagPlayer(node, bag, topics=[IMAGE, INFO, *sensors])
        # depth_warp uses every input of a frame when its image comes: wait for all of them.
        waits = [IMAGE, INFO, *sensors] if warp else [IMAGE]
        monitor = OutputMonitor(node, "/gmos")
        rec = Recorder(
            node,
            tmp_path / "recorded",
            OUTPUTS,
            storage="sqlite3",
            on_message=lambda t, raw: received[t].append(raw),
        )
        node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
        spinner.start()
        # The node subscribes only once its model is loaded (activate): bounded wait.
        assert player.wait_for_subscribers(waits, timeout_s=120.0), (
            "node never subscribed:\n" + (tmp_path / "node.log").read_text()
        )
        deadline = time.monotonic() + 30.0
        # Matched publishers of every recorded output (the outputs are volatile).
        while time.monotonic() < deadline and any(
            sub.get_publisher_count() == 0 for sub in rec.subscriptions
        ):
            time.sleep(0.05)
        assert all(sub.get_publisher_count() > 0 for sub in rec.subscriptions)
        played = paced_play(player, monitor, IMAGE, span_s=0.5, timeout_s=90.0)
        assert played == input_stamps
        # Deactivate finishes the frames still in the window and publishes them.
        assert _change_state(node, Transition.TRANSITION_DEACTIVATE)
        assert monitor.wait(lambda: set(monitor.result_stamps) >= set(input_stamps), 60.0)
        dropped = monitor.counter("frames_dropped")
    except BaseException:
        proc.send_signal(signal.SIGUSR1)  # the node prints its threads' stacks to the log
        time.sleep(1.0)
        raise
    finally:
        stop.set()
        if spinner.is_alive():
            spinner.join()
        if rec is not None:
            rec.close()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        print((tmp_path / "node.log").read_text())
        node.destroy_node()
        rclpy.shutdown(context=ctx)
    assert dropped == 0
    if warp:  # and live: no frame went without its depth or pose
        keys = {kv.key for d in diags for st in d.status for kv in st.values}
        assert any(k.startswith("frames") for k in keys), keys  # diagnostics did arrive
        assert not [k for k in keys if "warp_" in k], keys

    # Everything the recorder wrote is in the bag it closed (read back, by field).
    from_bag: dict[str, list] = {t: [] for t in OUTPUTS}
    for topic, msgtype, _, raw in iter_messages(tmp_path / "recorded"):
        from_bag[topic].append(deserialize_message(raw, TYPES[msgtype]))
    msgs = {t: [deserialize_message(r, TYPES[OUTPUTS[t]]) for r in received[t]] for t in OUTPUTS}
    for t in OUTPUTS:
        assert len(from_bag[t]) == len(msgs[t])

    # Every output carries the header of an input frame; one of each per input frame.
    for t in OUTPUTS:
        stamps = [stamp_to_ns(m.header) for m in msgs[t]]
        assert sorted(stamps) == input_stamps, t
        assert {m.header.frame_id for m in msgs[t]} == {"camera_optical"}
    inst = {stamp_to_ns(m.header): m for m in msgs["/gmos/instance_mask"]}
    dyn = {stamp_to_ns(m.header): m for m in msgs["/gmos/dynamic_mask"]}
    objs = {stamp_to_ns(m.header): m for m in msgs["/gmos/objects"]}
    for m in msgs["/gmos/overlay"]:
        assert (m.encoding, m.height, m.width) == ("rgb8", 128, 128)
    for m in msgs["/gmos/camera_info"]:
        assert (m.height, m.width) == (128, 128) and len(m.k) == 9
    preds = {}
    for stamp in input_stamps:
        im, dm, om = inst[stamp], dyn[stamp], objs[stamp]
        assert (im.encoding, im.height, im.width) == ("mono16", 128, 128)
        assert (dm.encoding, dm.height, dm.width) == ("mono8", 128, 128)
        ids = labels_from_image(im)
        present = {int(k) for k in np.unique(ids) if k}
        assert present == {o.id for o in om.objects}
        for o in om.objects:
            ys, xs = np.nonzero(ids == o.id)
            assert o.area == len(xs)
            assert (o.x, o.y, o.width, o.height) == (
                xs.min(),
                ys.min(),
                xs.max() - xs.min() + 1,
                ys.max() - ys.min() + 1,
            )
        moving = {o.id for o in om.objects if o.moving}
        expect = np.isin(ids, list(moving)) if moving else np.zeros_like(ids, bool)
        assert np.array_equal(labels_from_image(dm) > 0, expect)
        assert set(np.unique(labels_from_image(dm))) <= {0, 255}
        preds[stamp] = (ids, moving)
    # The model (random weights, or the baseline) does segment something, so the checks
    # above had content.
    assert any(len(m.objects) for m in objs.values())

    # MOS-I of the live outputs == gmos-bag eval of the same bag (same code path).
    gt = read_ground_truth(bag)
    assert gt is not None and gt.stamps_ns == input_stamps
    live = score_mos_i(gt, preds, seq=bag.name)
    out = tmp_path / "eval"
    cmd = [sys.executable, "-m", "gmos_ros.bag", "eval", str(bag), "--out", str(out),
           "--metrics", str(tmp_path / "eval.json")]  # fmt: skip
    if warp:
        cmd += ["--depth-topic", DEPTH, "--pose-topic", POSE]
    for p in model_params:
        cmd += ["-p", p]
    subprocess.run(cmd, env=env, cwd=REPO, check=True, capture_output=True, timeout=300)
    report = json.loads((tmp_path / "eval.json").read_text())
    offline = report["mos_i"]
    if warp:  # every frame's depth and pose reached the decision offline
        assert report["geometry_errors"] == {}
    assert offline["missing_predictions"] == live["missing_predictions"] == 0
    for key in ("mtIoU", "J_mov", "FP"):
        assert live[key] == pytest.approx(offline[key], abs=1e-6), key
    # Stronger than the score: the offline masks are the live masks, bit for bit.
    for _topic, msgtype, _, raw in iter_messages(out, ["/gmos/instance_mask"]):
        m = deserialize_message(raw, TYPES[msgtype])
        assert np.array_equal(labels_from_image(m), preds[stamp_to_ns(m.header)][0])
