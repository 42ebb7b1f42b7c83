"""`python -m gmos_ros.soak`: what the node costs, measured (JSON on stdout, plots written).

Three measurements, one sub-command each:

- `soak`: `gmos_node` as its own process (shipped micro model, CPU, config/gmos.yaml with
  its default best-effort input) fed 640x480 rgb8 at 30 Hz per camera over loopback DDS for
  `--duration` s, with one and with two cameras. Per run: frames published, received by the
  node, processed, dropped (the node's depth-1 slot), latency p50 / p95 (input stamp -> the
  objects message received here, so it includes the window_s / 2 look-ahead by design) and
  the node's RSS before the stream and after it.
- `big-frame`: one 4000x3000 frame through the node's stream path (`HeaderedStream`, micro
  model) with `max_input_pixels` at its default and with no limit: wall time and peak RSS,
  each in a fresh process.
- `bag-compression`: 640x480 synthetic camera frames written to MCAP with no, lz4 and zstd
  chunk compression: bytes per frame and the writer's CPU time per frame.

Numbers depend on the machine and on what else runs on it: say so next to them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from gmos_msgs.msg import MovingObjectArray
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from gmos_core.data.synthetic import SceneConfig, generate_scene
from gmos_core.streaming.build import build_segmenter, load_frame_model
from gmos_ros.bag import COMPRESSIONS, _open_writer, load_params_file, make_typestore
from gmos_ros.messages import HeaderedStream, make_image, stamp_to_ns
from gmos_ros.params import PARAMS, QosSpec, make_qos, params_from_values

REPO = Path(__file__).resolve().parents[1]


def _loopback_env(domain: int) -> dict[str, str]:
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_DOMAIN_ID"] = str(domain)
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(REPO / "config" / "fastdds_loopback.xml")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _rss_mb(pid: int) -> dict[str, float]:
    """Resident (VmRSS) and peak resident (VmHWM) memory of a process, MB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, val = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(val.split()[0]) / 1024.0
    return out


def _frames(n: int, height: int = 480, width: int = 640, seed: int = 0) -> np.ndarray:
    """(n, H, W, 3) uint8: a rendered synthetic scene (moving objects, textured background)."""
    cfg = SceneConfig(height=height, width=width, fps=30.0, num_frames=max(2, n), seed=seed)
    return generate_scene(cfg).frames[:n]


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None}
    return {
        "n": len(values),
        "p50": round(float(np.percentile(values, 50)), 1),
        "p95": round(float(np.percentile(values, 95)), 1),
    }


# ------------------------------------------------------------------------------------ soak
def soak_run(cameras: int, duration_s: float, rate_hz: float, domain: int) -> dict[str, Any]:
    """One soak run (see the module docstring); returns its figures."""
    topics = [f"/cam{i}/image_raw" for i in range(cameras)]
    env = _loopback_env(domain)
    # This process's DDS participant needs the same transports (the shared-memory profile:
    # without it Fast DDS loses most 0.9 MB best-effort samples).
    os.environ.update(
        {k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE")}
    )
    cmd = [sys.executable, "-m", "gmos_ros.node", "--ros-args",
           "--params-file", str(REPO / "config" / "gmos.yaml"),
           "-p", f"input_topics:=[{', '.join(topics)}]",
           "-p", "torch_threads:=1", "-p", "diagnostics_period_s:=0.5",
           "-p", f"diagnostics_window_s:={duration_s}"]  # fmt: skip
    log = tempfile.NamedTemporaryFile("w", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = rclpy.create_node("soak_camera", context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    stop = threading.Event()
    lock = threading.Lock()
    latencies: dict[str, list[float]] = {t: [] for t in topics}
    timing: dict[str, list[tuple[int, int]]] = {t: [] for t in topics}  # (stamp, received) ns
    diag: dict[str, dict[str, str]] = {}
    names = [t.strip("/").split("/")[0] for t in topics] if cameras > 1 else [""]

    def on_objects(topic: str):
        def cb(msg: Any) -> None:
            with lock:
                now = time.time_ns()
                stamp = stamp_to_ns(msg.header)
                latencies[topic].append((now - stamp) / 1e6)
                timing[topic].append((stamp, now))

        return cb

    def on_diag(msg: Any) -> None:
        with lock:
            for st in msg.status:
                diag[st.name] = {kv.key: kv.value for kv in st.values}

    for topic, name in zip(topics, names):
        out = f"/gmos/{name}/objects" if name else "/gmos/objects"
        node.create_subscription(MovingObjectArray, out, on_objects(topic), 100)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)

    pubs = [node.create_publisher(Image, t, make_qos(QosSpec("sensor_data", 1))) for t in topics]
    spinner = threading.Thread(
        target=lambda: [executor.spin_once(timeout_sec=0.05) for _ in iter(stop.is_set, True)],
        daemon=True,
    )
    spinner.start()
    frames = _frames(60)
    try:
        deadline = time.monotonic() + 180.0
        while any(p.get_subscription_count() == 0 for p in pubs):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("node never subscribed: see " + log.name)
            time.sleep(0.1)
        time.sleep(1.0)  # settle after activation
        rss_before = _rss_mb(proc.pid)
        published = 0
        t0 = time.monotonic()
        start_ns = time.time_ns()
        period = 1.0 / rate_hz
        k = 0
        while time.monotonic() - t0 < duration_s:
            stamp = time.time_ns()
            for cam, pub in enumerate(pubs):
                header_stamp = stamp + cam  # distinct per camera
                h = Header(frame_id=f"cam{cam}")
                h.stamp.sec, h.stamp.nanosec = divmod(header_stamp, 1_000_000_000)
                pub.publish(make_image(frames[k % len(frames)], "rgb8", h))
                published += 1
            k += 1
            sleep = t0 + k * period - time.monotonic()
            if sleep > 0:
                time.sleep(sleep)
        wall = time.monotonic() - t0
        end_ns = time.time_ns()
        time.sleep(2.0)  # the last results and a diagnostics report
        rss_after = _rss_mb(proc.pid)
    finally:
        stop.set()
        spinner.join()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
    per_camera = []
    with lock:
        for topic, name in zip(topics, names):
            st = next((v for k2, v in diag.items() if k2.endswith(f": {name or topic}")), {})
            per_camera.append(
                {
                    "topic": topic,
                    "frames_published": k,
                    "frames_in": int(float(st.get("frames_in", "nan"))),
                    "frames_processed": int(float(st.get("frames_processed", "nan"))),
                    "frames_dropped": int(float(st.get("frames_dropped", "nan"))),
                    "results_received": len(latencies[topic]),
                    "latency_ms": _percentiles(latencies[topic]),
                    # Where the tail comes from: the first 5 s of input (warm-up), the rest
                    # while input runs, and results published after the input stopped (the
                    # end-of-stream flush).
                    "latency_ms_by_phase": {
                        phase: _percentiles(
                            [(r - st) / 1e6 for st, r in timing[topic] if keep(st, r)]
                        )
                        for phase, keep in (
                            ("first_5s", lambda st, r: st < start_ns + 5e9),
                            ("steady", lambda st, r: st >= start_ns + 5e9 and r <= end_ns),
                            ("after_input_stopped", lambda st, r: r > end_ns),
                        )
                    },
                }
            )
    return {
        "cameras": cameras,
        "resolution": [480, 640],
        "rate_hz": rate_hz,
        "duration_s": round(wall, 2),
        "frames_published": published,
        "per_camera": per_camera,
        "rss_mb_before": rss_before,
        "rss_mb_after": rss_after,
        "latencies_ms": {t: v for t, v in latencies.items()},
    }


def _soak(a: argparse.Namespace) -> dict[str, Any]:
    # Runs one after the other (each node process is stopped first): one domain serves all.
    runs = [soak_run(n, a.duration, a.rate, a.domain) for n in a.cameras]
    if a.plot:
        # matplotlib only with --plot: it stays out of the big-frame children, whose peak RSS
        # is measured (spawned children import this module).
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        for r in runs:
            for topic, lat in r["latencies_ms"].items():
                if lat:
                    xs = np.sort(lat)
                    ax.plot(xs, np.linspace(0, 1, len(xs)), label=f"{r['cameras']} cam: {topic}")
        ax.set_xlabel("input stamp -> objects received, ms")
        ax.set_ylabel("fraction of results")
        ax.set_title(f"gmos_node soak, 640x480 at {a.rate:g} Hz per camera, {a.duration:g} s")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(a.plot, dpi=120)
    for r in runs:
        r.pop("latencies_ms")
    return {"soak": runs}


# ------------------------------------------------------------------------------- big frame
def _big_frame_child(max_pixels: int, conn: Any) -> None:
    torch.set_num_threads(1)

    values = load_params_file(REPO / "config" / "gmos.yaml")
    values["window_s"] = 0.0  # one frame in, its result out
    p = params_from_values(values)
    stream = HeaderedStream(
        build_segmenter(p.runtime, model=load_frame_model(p.runtime)), max_input_pixels=max_pixels
    )

    small = _frames(1, 480, 640)[0]
    frame = cv2.resize(small, (4000, 3000), interpolation=cv2.INTER_CUBIC)
    h = Header()
    h.stamp.sec = 1
    stream.step(small, h)  # warm-up at camera size (lazy initialisation)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    h2 = Header()
    h2.stamp.sec = 2
    t0 = time.perf_counter()
    out = stream.step(frame, h2) + stream.flush()
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    conn.send(
        {
            "max_input_pixels": max_pixels,
            "seconds": round(dt, 3),
            "peak_rss_mb": round(peak, 1),
            "peak_rss_mb_before": round(rss0, 1),
            "output_hw": list(out[-1].result.instance_ids.shape),
        }
    )


def _big_frame(a: argparse.Namespace) -> dict[str, Any]:
    default = next(s.default for s in PARAMS if s.name == "max_input_pixels")
    results = []
    ctx = mp.get_context("spawn")
    for max_pixels in (default, 0):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_big_frame_child, args=(max_pixels, child))
        proc.start()
        # Bounded: a child that dies never sends.
        if not parent.poll(timeout=300):
            proc.kill()
            raise RuntimeError(f"big-frame child (max_input_pixels={max_pixels}) failed")
        results.append(parent.recv())
        proc.join()
    return {"big_frame": {"input_hw": [3000, 4000], "runs": results}}


# ------------------------------------------------------------------------- bag compression
def _bag_compression(a: argparse.Namespace) -> dict[str, Any]:
    store = make_typestore()
    frames = _frames(a.frames)
    raws = []
    for i, f in enumerate(frames):
        h = Header(frame_id="cam")
        h.stamp.sec = i
        raws.append(bytes(_serialize(make_image(f, "rgb8", h))))
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for comp in COMPRESSIONS:
            path = Path(tmp) / comp
            c0 = time.process_time()
            writer = _open_writer(path, "mcap", comp)
            conn = writer.add_connection("/cam/image_raw", "sensor_msgs/msg/Image", typestore=store)
            for i, raw in enumerate(raws):
                writer.write(conn, (i + 1) * 33_333_333, raw)
            writer.close()
            cpu = time.process_time() - c0
            size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
            out.append(
                {
                    "compression": comp,
                    "bytes_per_frame": round(size / len(raws)),
                    "ratio": round(size / sum(len(r) for r in raws), 3),
                    "writer_cpu_ms_per_frame": round(1000 * cpu / len(raws), 2),
                    "mb_per_10s_at_30hz": round(size / len(raws) * 300 / 1e6, 1),
                }
            )
    return {"bag_compression": {"frames": len(raws), "resolution": [480, 640], "runs": out}}


def _serialize(msg: Any) -> bytes:
    return serialize_message(msg)


def main(argv: list[str] | None = None) -> int:
    """Entry point: `python -m gmos_ros.soak {soak,big-frame,bag-compression}`."""
    ap = argparse.ArgumentParser(prog="gmos-soak", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("soak", help="node process at 30 Hz, one and two cameras")
    s.add_argument("--duration", type=float, default=60.0, help="seconds of input per run")
    s.add_argument("--rate", type=float, default=30.0, help="frames/s per camera")
    s.add_argument("--cameras", type=int, nargs="+", default=[1, 2])
    s.add_argument(
        "--domain",
        type=int,
        default=int(os.environ.get("ROS_DOMAIN_ID", "87")),
        help="ROS_DOMAIN_ID of the runs (default: $ROS_DOMAIN_ID, else 87)",
    )
    s.add_argument("--plot", type=Path, default=None, help="latency CDF figure (png)")
    s.set_defaults(func=_soak)
    b = sub.add_parser("big-frame", help="one 4000x3000 frame, with and without the limit")
    b.set_defaults(func=_big_frame)
    c = sub.add_parser("bag-compression", help="MCAP size / CPU per compression")
    c.add_argument("--frames", type=int, default=90)
    c.set_defaults(func=_bag_compression)
    a = ap.parse_args(argv)
    print(json.dumps(a.func(a), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
