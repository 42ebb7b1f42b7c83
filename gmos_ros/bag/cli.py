"""`gmos-bag`: play, record, evaluate and synthesise ROS 2 bags without rosbag2 (rosbags).

Subcommands:
  synth   write a synthetic scene bag with ground truth (gmos_core.data.synthetic):
          <image topic> sensor_msgs/Image rgb8, <camera_info topic> sensor_msgs/CameraInfo,
          /gt/labels sensor_msgs/Image mono16 (Gmos-2K labels: the scene's dynamic objects
          re-indexed 1..M, visible or not moving), /gt/intervals std_msgs/String (JSON
          {"1": [[start, end], ...]}: inclusive frame indices, in image order, in which each
          object moves; also stored in the bag metadata custom_data "gmos.intervals"), and
          with --depth-topic the renderer's exact depth, aligned (32FC1 m or 16UC1 mm), with
          --pose-topic the camera's exact pose (geometry_msgs/PoseStamped, as odometry).
  eval    offline and deterministic: run the node's own code (conversion, the same
          StreamingSegmenter, header bookkeeping, message builders) on every frame of a bag,
          write an mcap bag with <ns>/instance_mask, <ns>/dynamic_mask, <ns>/objects and a
          metrics JSON (MOS-I when /gt/labels and intervals are present). With --depth-topic
          also the node's metric 3-D states and <ns>/ego_motion, scored against the scene
          truth of a synthetic bag; with -p motion_decision:=depth_warp the depth (and with
          --pose-topic the camera poses) decide which objects move, as in the node.
  play    publish a bag's stored CDR bytes with rclpy (rate, loop, start offset, /clock).
  record  subscribe raw to topics and write them to a bag (sqlite3 or mcap).

Both storages are read and written. Message types unknown here (no importable Python class or
no definition) are skipped with a notice. `record` and `eval` close their bag on SIGINT and
SIGTERM, so an interrupted bag stays readable with everything written so far.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions
from rosgraph_msgs.msg import Clock

from gmos_core.compute import add_threads_argument
from gmos_core.deploy import add_backend_arguments, plan_backend
from gmos_core.errors import ModelSetupError
from gmos_core.metrics.ranges import MetricRangeError
from gmos_ros.bag.evaluation import camera_info_topic, run_eval
from gmos_ros.bag.params_file import _settings
from gmos_ros.bag.player import BagPlayer
from gmos_ros.bag.recorder import Recorder
from gmos_ros.bag.signals import _ClosingSignals, _StopOnSignal
from gmos_ros.bag.storage import COMPRESSIONS, STORAGES, _notice
from gmos_ros.bag.synth import write_synthetic_bag


def _cmd_synth(a: argparse.Namespace) -> int:
    info = write_synthetic_bag(
        a.out,
        a.storage,
        a.seed,
        a.frames,
        a.fps,
        a.height,
        a.width,
        a.scene_kind,
        a.image_topic,
        depth_topic=a.depth_topic,
        depth_encoding=a.depth_encoding,
        pose_topic=a.pose_topic,
    )
    print(json.dumps({k: v for k, v in info.items() if k != "stamps_ns"}))
    return 0


def _cmd_eval(a: argparse.Namespace) -> int:
    # --threads is the node's torch_threads; a later `-p torch_threads:=N` still wins.
    threads = [f"torch_threads:={a.threads}"] if a.threads > 0 else []
    # The backend options are node parameters; given flags win over the params file.
    flags = {
        "backend": a.backend,
        "onnx_dir": a.onnx_dir,
        "engine_dir": a.engine_dir,
        "ort_provider": a.ort_provider,
        "device": a.device,
        "precision": a.precision,
    }
    overrides = [f"{k}:={v}" for k, v in flags.items() if v is not None]
    try:
        # The bag's depth (and the camera_info it goes with) is this camera's, as the node's
        # geometry.depth_topics / camera_info_topics would say (motion_decision checks them).
        depth = (
            [f"geometry.depth_topics:=[{a.depth_topic}]",
             f"camera_info_topics:=[{camera_info_topic(a.bag)}]"]
            if a.depth_topic else []
        )  # fmt: skip
        if a.pose_topic:
            depth.append(f"geometry.pose_topics:=[{a.pose_topic}]")
        params = _settings(a.params_file, [*threads, *depth, *a.param, *overrides])
        plan_backend(params.runtime)  # refused before the bag is read
    except (ValueError, ModelSetupError) as exc:
        print(f"gmos-bag eval: error: {exc}", file=sys.stderr)
        return 2
    metrics = a.metrics or (Path(a.out).with_suffix(".json") if a.out else None)
    try:
        rep = run_eval(
            a.bag,
            a.out,
            params,
            a.image_topic,
            a.ns,
            a.storage,
            metrics,
            depth_topic=a.depth_topic,
            pose_topic=a.pose_topic,
        )
    except (MetricRangeError, ModelSetupError) as err:  # e.g. device:=cuda without CUDA
        print(f"gmos-bag eval: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(rep.to_json(), indent=1))
    return 0


def _ros_node(name: str, own_signals: bool = False) -> Any:
    # With own_signals, SIGINT/SIGTERM stay with us (rclpy would shut the context down at
    # once, and the messages already received but not yet handled would be lost).
    opts = SignalHandlerOptions.NO if own_signals else SignalHandlerOptions.ALL
    rclpy.init(args=["--ros-args"], signal_handler_options=opts)
    return rclpy.create_node(name)


def _cmd_play(a: argparse.Namespace) -> int:
    node = _ros_node("gmos_bag_player")
    try:
        player = BagPlayer(node, a.bag, a.topics or None)
        clock = node.create_publisher(Clock, "/clock", 10) if a.clock else None
        if a.wait_subscribers:
            player.wait_for_subscribers(list(player.publishers), a.wait_subscribers)
        n = player.play(a.rate, a.loop, a.start_offset, clock, should_stop=lambda: not rclpy.ok())
        _notice(f"published {n} messages")
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


def _discover_types(node: Any, topics: list[str], timeout_s: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    found: dict[str, str] = {}
    while time.monotonic() < deadline and len(found) < len(topics):
        for name, types in node.get_topic_names_and_types():
            if name in topics and types:
                found[name] = types[0]
        time.sleep(0.1)
    for t in topics:
        if t not in found:
            _notice(f"not recording {t}: no publisher seen within {timeout_s:.0f} s")
    return found


def _cmd_record(a: argparse.Namespace) -> int:
    node = _ros_node("gmos_bag_recorder", own_signals=True)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    rec = None
    try:
        with _ClosingSignals():
            types = _discover_types(node, a.topics, a.discovery_timeout)
        with _StopOnSignal() as stop:
            rec = Recorder(node, a.out, types, a.storage, compression=a.compression)
            _notice(f"recording {sorted(rec.count)} to {a.out}")
            end = time.monotonic() + a.duration if a.duration > 0 else float("inf")
            while rclpy.ok() and not stop.signals and time.monotonic() < end:
                executor.spin_once(timeout_sec=0.1)
            # Handle what DDS already delivered (acknowledged to the publisher) before
            # closing: stop once a spin brings nothing new, or at a second signal.
            first = stop.signals
            for _ in range(1000):
                before = sum(rec.count.values())
                executor.spin_once(timeout_sec=0.05)
                if sum(rec.count.values()) == before or stop.signals > max(first, 1):
                    break
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if rec is not None:
            rec.close()
            _notice(f"closed {a.out}: {rec.count}")
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `gmos-bag` argument parser."""
    ap = argparse.ArgumentParser(
        prog="gmos-bag", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("synth", help="write a synthetic scene bag with ground truth")
    s.add_argument("--out", required=True, help="bag directory (must not exist)")
    s.add_argument("--storage", choices=sorted(STORAGES), default="mcap")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--frames", type=int, default=24)
    s.add_argument("--fps", type=float, default=10.0)
    s.add_argument("--height", type=int, default=128)
    s.add_argument("--width", type=int, default=128)
    s.add_argument(
        "--scene-kind", default="dynamic", choices=["dynamic", "static", "hard_parallax", "random"]
    )
    s.add_argument("--image-topic", default="/camera/image_raw")
    s.add_argument(
        "--depth-topic",
        default=None,
        help="also write the exact depth, aligned (e.g. /camera/depth)",
    )
    s.add_argument("--depth-encoding", choices=["32FC1", "16UC1"], default="32FC1")
    s.add_argument(
        "--pose-topic",
        default=None,
        help="also write the camera's exact pose, as odometry would (e.g. /camera/pose)",
    )
    s.set_defaults(func=_cmd_synth)
    e = sub.add_parser("eval", help="run the node's code on a bag offline, score it")
    e.add_argument("bag")
    e.add_argument("--out", help="output mcap bag directory (must not exist)")
    e.add_argument("--metrics", help="metrics JSON (default: <out>.json)")
    e.add_argument("--image-topic")
    e.add_argument(
        "--depth-topic",
        default=None,
        help="aligned depth topic: metric 3-D object states (scored on a synthetic bag)",
    )
    e.add_argument(
        "--pose-topic",
        default=None,
        help="camera pose topic (PoseStamped) for motion_decision depth_warp (needs --depth-topic)",
    )
    e.add_argument("--ns", default="/gmos", help="output namespace (the node's name)")
    e.add_argument("--storage", choices=sorted(STORAGES), default="mcap")
    e.add_argument("--params-file", help="node params YAML (default config/gmos.yaml)")
    e.add_argument("-p", "--param", action="append", default=[], help="name:=value override")
    add_threads_argument(e)
    e.add_argument("--device", default=None, help="torch device / GPU of the engines")
    e.add_argument("--precision", default=None, choices=["fp32", "bf16", "fp16"])
    add_backend_arguments(e, defaults=False)
    e.set_defaults(func=_cmd_eval)
    p = sub.add_parser("play", help="publish a bag's messages")
    p.add_argument("bag")
    p.add_argument("--rate", type=float, default=1.0, help="speed factor (<= 0: max speed)")
    p.add_argument("--loop", action="store_true")
    p.add_argument("--start-offset", type=float, default=0.0, help="skip the first s seconds")
    p.add_argument("--topics", nargs="*")
    p.add_argument("--clock", action="store_true", help="also publish /clock (use_sim_time)")
    p.add_argument(
        "--wait-subscribers", type=float, default=0.0, help="wait up to s for subscribers"
    )
    p.set_defaults(func=_cmd_play)
    r = sub.add_parser("record", help="record topics to a bag")
    r.add_argument("--out", required=True)
    r.add_argument("--topics", nargs="+", required=True)
    r.add_argument("--storage", choices=sorted(STORAGES), default="mcap")
    r.add_argument(
        "--compression",
        choices=COMPRESSIONS,
        default="none",
        help="MCAP chunk compression: lz4 (fast) or zstd (smaller); see docs/ros.md",
    )
    r.add_argument("--duration", type=float, default=0.0, help="stop after s seconds (0: never)")
    r.add_argument("--discovery-timeout", type=float, default=10.0)
    r.set_defaults(func=_cmd_record)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of `gmos-bag`."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))
