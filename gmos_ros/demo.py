"""`make demo`: the ROS 2 node end to end over real DDS (loopback only) on a synthetic scene.

1. Write a synthetic scene bag with ground truth (`gmos-bag synth`) and an aligned depth topic
   (the renderer's exact depth as 16UC1 millimetres, same stamps as the images).
2. Start `gmos_node` (micro Gmos online, CPU) as its own process. With no trained bundle in
   gmos_core/assets/ it runs an untrained model (allow_random_weights) and this script says
   so loudly: the masks and scores are then plumbing checks, not results.
3. Play the bag into it over DDS in lock step with the node (each frame goes out once the
   node took the previous one and published the results it made ready: on 2 CPU cores it
   keeps up without dropping frames; the measured throughput is printed), record its outputs
   with the raw recorder, and deactivate it (the last frames of the window are finished).
4. Score the recorded outputs against the ground truth (MOS-I, and the metric 3-D object states
   the node computed from the depth against the renderer's object trajectories), run
   `gmos-bag eval` on the same bag (offline, same code path) and print both.
5. Write out/demo/overlay.mp4 (the node's ~/overlay stream) and out/demo/contact_sheet.png.

Takes one to three minutes on the 2-core build machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rclpy
import yaml
from gmos_msgs.msg import EgoMotion, MovingObjectArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, Image

from gmos_core.data.synthetic import SceneConfig, generate_scene
from gmos_core.metrics.object_states import score_object_states
from gmos_core.motion_decision import AUTO, MOTION_DECISION_CHOICES
from gmos_core.streaming.build import DEFAULT_BUNDLES
from gmos_core.visualize import labelled_rows_sheet, overlay_instances, write_rgb
from gmos_ros.bag import (
    BagPlayer,
    OutputMonitor,
    Recorder,
    iter_messages,
    load_params_file,
    paced_play,
    read_ground_truth,
    run_eval,
    score_mos_i,
)
from gmos_ros.bag import write_synthetic_bag as synth
from gmos_ros.bag.ground_truth import read_scene_truth
from gmos_ros.bag.scoring import frame_estimate
from gmos_ros.conversions import image_to_rgb
from gmos_ros.messages import stamp_to_ns
from gmos_ros.params import params_from_values

REPO = Path(__file__).resolve().parents[1]
IMAGE = "/camera/image_raw"
INFO = "/camera/camera_info"
DEPTH = "/camera/depth"
# The camera's exact pose (PoseStamped), standing for a robot's odometry (depth_warp only).
POSE = "/camera/pose"
NS = "/gmos"
OUTPUTS = {
    f"{NS}/instance_mask": "sensor_msgs/msg/Image",
    f"{NS}/dynamic_mask": "sensor_msgs/msg/Image",
    f"{NS}/objects": "gmos_msgs/msg/MovingObjectArray",
    f"{NS}/overlay": "sensor_msgs/msg/Image",
    f"{NS}/camera_info": "sensor_msgs/msg/CameraInfo",
    f"{NS}/ego_motion": "gmos_msgs/msg/EgoMotion",
}


def loopback_env() -> None:
    """DDS stays on this machine (environment note): set before rclpy starts anywhere."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", "87")
    profile = REPO / "config" / "fastdds_loopback.xml"
    if profile.is_file():
        os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(profile))


def model_params(variant: str) -> tuple[list[str], bool]:
    """Node parameter overrides for the model, and whether the weights are untrained."""
    # One torch thread: on the 2 shared cores of the build machine two threads were ~18x
    # slower (OpenMP oversubscription: 0.38 vs 6.8 frames/s for gmos-bag eval).
    base = [f"variant:={variant}", "torch_threads:=1"]
    if DEFAULT_BUNDLES[variant].is_file():
        return base, False
    return [*base, "allow_random_weights:=true"], True


def banner(text: str) -> None:
    """A message nobody can miss."""
    line = "!" * 78
    print(f"\n{line}\n!! {text}\n{line}\n", flush=True)


def _change_state(node: Any, transition: int, timeout_s: float) -> bool:
    client = node.create_client(ChangeState, f"{NS}/change_state")
    if not client.wait_for_service(timeout_sec=30.0):
        return False
    req = ChangeState.Request()
    req.transition.id = transition
    fut = client.call_async(req)
    deadline = time.monotonic() + timeout_s
    while not fut.done() and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(fut.done() and fut.result().success)


def run_node_over_dds(
    bag: Path, recorded: Path, params: list[str], log_path: Path, span_s: float
) -> dict:
    """Start gmos_node, play `bag` into it in lock step, record its outputs to `recorded`."""
    cmd = [sys.executable, "-m", "gmos_ros.node", "--ros-args",
           "--params-file", str(REPO / "config" / "gmos.yaml"),
           "-p", f"input_topics:=[{IMAGE}]", "-p", f"camera_info_topics:=[{INFO}]",
           "-p", "diagnostics_period_s:=0.1",
           # Lock-step replay waits for every frame: a best-effort (sensor_data) input could
           # lose one and stall the replay, so evaluation replays subscribe reliably.
           "-p", "qos.input:=reliable", "-p", "qos.camera_info:=reliable",
           # No end-of-stream flush mid-replay: a slow step on a loaded machine would finish
           # the window early and the live masks would differ from the offline ones.
           "-p", "idle_flush_s:=0.0",
           # The aligned depth of the bag: metric 3-D object states and ego-motion.
           "-p", f"geometry.depth_topics:=[{DEPTH}]"]  # fmt: skip
    for p in params:
        cmd += ["-p", p]
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    ctx = Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("gmos_demo_driver", context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    rec = None
    out: dict = {}
    try:
        # The pose topic is in the bag only for the depth_warp decision.
        player = BagPlayer(node, bag, topics=[IMAGE, INFO, DEPTH, POSE])
        monitor = OutputMonitor(node, NS)
        rec = Recorder(node, recorded, OUTPUTS, storage="mcap")
        spinner.start()
        t0 = time.perf_counter()
        # Every input a frame is processed with, subscribed before the first image goes out.
        wait = [IMAGE, INFO, DEPTH] + [POSE] * (POSE in player.publishers)
        if not player.wait_for_subscribers(wait, timeout_s=180.0):
            raise RuntimeError(f"gmos_node never subscribed; see {log_path}")
        # Outputs are volatile: play only once every output is matched by our readers.
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and any(
            sub.get_publisher_count() == 0 for sub in rec.subscriptions
        ):
            time.sleep(0.05)
        out["node_start_s"] = round(time.perf_counter() - t0, 1)
        t1 = time.perf_counter()
        stamps = paced_play(player, monitor, IMAGE, span_s=span_s, timeout_s=180.0)
        if not _change_state(node, Transition.TRANSITION_DEACTIVATE, 180.0):
            raise RuntimeError(f"deactivating gmos_node failed; see {log_path}")
        monitor.wait(lambda: set(monitor.result_stamps) >= set(stamps), 60.0)
        seconds = time.perf_counter() - t1
        out.update(
            frames=len(stamps),
            results=len(set(monitor.result_stamps)),
            frames_dropped=monitor.counter("frames_dropped"),
            play_s=round(seconds, 1),
            node_frames_per_s=round(len(stamps) / seconds, 3),
        )
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
        node.destroy_node()
        rclpy.shutdown(context=ctx)
    return out


def read_outputs(recorded: Path) -> dict[str, dict[int, object]]:
    """Recorded messages by topic and header stamp."""
    types = {
        "sensor_msgs/msg/Image": Image,
        "sensor_msgs/msg/CameraInfo": CameraInfo,
        "gmos_msgs/msg/MovingObjectArray": MovingObjectArray,
        "gmos_msgs/msg/EgoMotion": EgoMotion,
    }
    out: dict[str, dict[int, object]] = {t: {} for t in OUTPUTS}
    for topic, msgtype, _, raw in iter_messages(recorded):
        msg = deserialize_message(raw, types[msgtype])
        out[topic][stamp_to_ns(msg.header)] = msg
    return out


def _rgb(msg: Any) -> np.ndarray:
    return image_to_rgb(msg)


def write_video(frames: list[np.ndarray], path: Path, fps: float) -> Path:
    """RGB frames to an mp4 (mp4v), or an MJPG .avi where this OpenCV lacks mp4."""
    h, w = frames[0].shape[:2]
    for suffix, codec in ((".mp4", "mp4v"), (".avi", "MJPG")):
        p = path.with_suffix(suffix)
        vw = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*codec), fps, (w, h))
        if vw.isOpened():
            for f in frames:
                vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
            vw.release()
            return p
    raise RuntimeError("OpenCV can write neither mp4v nor MJPG video")


def contact_sheet(
    frames: np.ndarray,
    gt_now: np.ndarray,
    outputs: dict[str, dict[int, Any]],
    stamps: list[int],
    path: Path,
) -> None:
    """Rows = times; columns = input | ground truth moving now | node overlay | dynamic mask."""
    times = np.linspace(2, len(stamps) - 2, 5).astype(int)
    rows = []
    for t in times:
        s = stamps[t]
        gt = overlay_instances(frames[t], gt_now[t], set(np.unique(gt_now[t]).tolist()))
        ov = outputs[f"{NS}/overlay"].get(s)
        node_ov = _rgb(ov) if ov is not None else np.zeros_like(frames[t])
        dyn = _rgb(outputs[f"{NS}/dynamic_mask"][s])
        rows.append([frames[t], gt, node_ov, dyn])
    titles = ("input", "GT moving now", "gmos_node ~/overlay", "~/dynamic_mask")
    write_rgb(path, labelled_rows_sheet(rows, [f"t={t}" for t in times], titles))


def _fmt(x: float) -> str:
    return f"{x:8.3f}" if np.isfinite(x) else "     n/a"


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns 0 on success."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("out/demo"))
    ap.add_argument("--variant", default="gmos_online", choices=["gmos_online", "gmos_s"])
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--seed", type=int, default=900_001, help="scene seed (held out)")
    ap.add_argument(
        "--motion-decision",
        default=AUTO,
        choices=MOTION_DECISION_CHOICES,
        help="gmos_online: which proposals move: the motion head, the warp residual of the "
        "bag's depth with the camera's poses (written to the bag on /camera/pose as a robot's "
        "odometry would give them; node parameters motion_decision, geometry.pose_topics), or "
        "the flow motion net on the images' optical flow (RGB only); auto, the node's default: "
        "the flow motion net with the shipped micro Gmos (its head is at chance), else the head",
    )
    args = ap.parse_args(argv)
    loopback_env()  # before any rclpy.init: ROS and Fast DDS read these there, not at import
    t0 = time.perf_counter()
    out: Path = args.out
    for sub in ("scene", "recorded", "eval"):
        shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    params, untrained = model_params(args.variant)
    # The camera's topics as the node gets them (its command line names them too), so that the
    # settings checked here and given to `gmos-bag eval` are the node's.
    warp = args.motion_decision == "depth_warp"
    params += [
        f"motion_decision:={args.motion_decision}",
        f"camera_info_topics:=[{INFO}]",
        f"geometry.depth_topics:=[{DEPTH}]",
        *([f"geometry.pose_topics:=[{POSE}]"] if warp else []),
    ]
    if untrained:
        banner(
            f"NO TRAINED {args.variant} BUNDLE in gmos_core/assets/: running an UNTRAINED "
            "model (allow_random_weights). Masks and MOS-I numbers below measure the "
            "plumbing, NOT the method."
        )
    info = synth(
        out / "scene",
        "mcap",
        seed=args.seed,
        num_frames=args.frames,
        depth_topic=DEPTH,
        depth_encoding="16UC1",
        pose_topic=POSE if warp else None,
    )
    print(f"[1/4] synthetic bag: {out / 'scene'} ({info['frames']} frames, intervals "
          f"{info['intervals']})", flush=True)  # fmt: skip
    values = load_params_file(REPO / "config" / "gmos.yaml")
    for p in params:
        k, v = p.split(":=")
        values[k] = yaml.safe_load(v)
    settings = params_from_values(values)
    print("[2/4] gmos_node over DDS (lock-step playback)...", flush=True)
    live = run_node_over_dds(
        out / "scene", out / "recorded", params, out / "node.log", settings.runtime.span_s
    )
    print(f"      {json.dumps(live)}", flush=True)
    outputs = read_outputs(out / "recorded")
    gt = read_ground_truth(out / "scene")
    assert gt is not None
    preds = {}
    for s, m in outputs[f"{NS}/instance_mask"].items():
        ids = np.frombuffer(m.data, np.uint16).reshape(m.height, m.width)
        objs = outputs[f"{NS}/objects"].get(s)
        preds[s] = (ids, {o.id for o in objs.objects if o.moving} if objs else set())
    live_score = score_mos_i(gt, preds, seq="demo")
    scene_truth = read_scene_truth(out / "scene")
    estimates = [
        frame_estimate(s, preds[s][0], objs, outputs[f"{NS}/ego_motion"].get(s))
        for s, objs in outputs[f"{NS}/objects"].items()
        if s in preds
    ]
    live_3d, _ = score_object_states(scene_truth, estimates)
    print("[3/4] gmos-bag eval on the same bag (offline)...", flush=True)
    rep = run_eval(
        out / "scene",
        out / "eval",
        settings,
        metrics_path=out / "eval.json",
        depth_topic=DEPTH,
        pose_topic=POSE if warp else None,
    )
    print("[4/4] video and contact sheet", flush=True)
    stamps = gt.stamps_ns
    overlays = [_rgb(outputs[f"{NS}/overlay"][s]) for s in stamps if s in outputs[f"{NS}/overlay"]]
    video = write_video(overlays, out / "overlay.mp4", fps=10.0) if overlays else None
    scene = generate_scene(
        SceneConfig(
            seed=args.seed,
            num_frames=args.frames,
            scene_kind="dynamic",
            start_time_ns=1_000_000_000,
        )  # fmt: skip
    )
    gt_now = np.stack([scene.moving_masks(t, instantaneous=True) for t in range(args.frames)])
    contact_sheet(scene.frames, gt_now, outputs, stamps, out / "contact_sheet.png")
    summary = {
        "untrained_weights": untrained,
        "variant": args.variant,
        "live": live,
        "offline_eval_frames_per_s": round(rep.fps, 3),
        "mos_i_live_over_dds": {k: live_score[k] for k in ("mtIoU", "J_mov", "FP")},
        "mos_i_gmos_bag_eval": {k: rep.mos_i[k] for k in ("mtIoU", "J_mov", "FP")},
        # Metric 3-D states from the aligned depth, scored against the renderer's truth.
        "states_3d_live_over_dds": live_3d.to_json(),
        "states_3d_gmos_bag_eval": rep.states_3d.to_json() if rep.states_3d else None,
        "outputs": {
            "recorded_bag": str(out / "recorded"),
            "eval_bag": str(out / "eval"),
            "video": str(video) if video else None,
            "contact_sheet": str(out / "contact_sheet.png"),
        },
        "demo_seconds": round(time.perf_counter() - t0, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print("\nMOS-I on the synthetic scene            mtIoU    J_mov    FP")
    for name, sc in (("gmos_node over DDS", live_score), ("gmos-bag eval (offline)", rep.mos_i)):
        print(f"  {name:<36} {sc['mtIoU']:.4f}   {sc['J_mov']:.4f}   {sc['FP']:.3f}")
    print(
        "\n3-D object states (metric, from the depth topic)   matched/estimated   pos err m"
        "   static speed m/s   moving vel err m/s"
    )
    for name, st in (("gmos_node over DDS", live_3d), ("gmos-bag eval (offline)", rep.states_3d)):
        if st is None:
            continue
        print(
            f"  {name:<48} {st.objects_matched:>4}/{st.objects_estimated:<4}"
            f"   {_fmt(st.position_err_m_median)}   {_fmt(st.static_speed_mps_median)}"
            f"   {_fmt(st.moving_velocity_err_mps_median)}"
        )
    print(json.dumps(summary, indent=1))
    if untrained:
        banner("These numbers come from an UNTRAINED model (no bundle in gmos_core/assets/).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
