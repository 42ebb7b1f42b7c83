"""Node throughput per backend: the demo bag through an in-process `GmosNode` on torch and on
onnxruntime (CPU), against `gmos-bench`'s per-frame stage sums on the same machine, in one run.

    python -m gmos_ros.node_bench --out out/bench_node

Lock step (each frame goes in once the inference thread took the previous one, so nothing is
dropped and the thread never idles): node frames/s = frames / (first frame in -> last result
out, deactivate's flush included). The stage sum of `gmos-bench` (micro configuration,
random weights of the same architecture, same threads) is the network plus pre/post-processing
per frame; node ms / stage-sum ms says what the node adds (conversion, propagation, messages,
the thread hand-off). Writes `<out>/node_bench.json` and `<out>/node_bench.png`.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import rclpy
import torch
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.serialization import deserialize_message
from rosbags.rosbag2 import Reader
from sensor_msgs.msg import Image

from gmos_core.streaming.build import DEFAULT_BUNDLES
from gmos_ros.bag import write_synthetic_bag
from gmos_ros.node import GmosNode, autostart
from training.bench import bench_config
from training.export.onnx_export import export_bundle_parts

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


class InProcessNode:
    """One `GmosNode` with the real model loader on a private ROS context, fed by calls.

    `results` collects every `FrameResult` the node publishes (recorded just before it turns
    them into messages).
    """

    def __init__(self, params: dict[str, Any], name: str = "gmos") -> None:
        self._rclpy = rclpy
        self.ctx = Context()
        rclpy.init(context=self.ctx, domain_id=int(os.environ.get("ROS_DOMAIN_ID", "87")))
        self.executor = SingleThreadedExecutor(context=self.ctx)
        base = {"variant": "gmos_online", "torch_threads": 1, "diagnostics_period_s": 1.0}
        self.node = GmosNode(
            name,
            context=self.ctx,
            parameter_overrides=[Parameter(k, value=v) for k, v in {**base, **params}.items()],
        )
        self.executor.add_node(self.node)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()
        self.results: list[Any] = []
        self.last_result_wall = 0.0
        orig = self.node._publish

        def record(cam: Any, items: list[Any]) -> None:
            self.results.extend(i.result for i in items)
            orig(cam, items)
            self.last_result_wall = time.perf_counter()

        self.node._publish = record  # type: ignore[method-assign]
        autostart(self.node)  # configure + activate, as `gmos_node` does on start

    def _spin(self) -> None:
        while not self.stop.is_set():
            self.executor.spin_once(timeout_sec=0.02)

    def feed_all(self, msgs: list[Any], timeout_s: float = 300.0) -> float:
        """Lock step, then deactivate (the last frames are finished); returns the wall time
        from the first frame in to the last result out, s."""
        if not self.node.active:
            raise RuntimeError("the node did not activate (see its log)")
        cam = self.node.cameras[0]
        t0 = time.perf_counter()
        for msg in msgs:
            if not self.node.enqueue(cam, msg):
                raise RuntimeError("the node rejected a frame")
            deadline = time.monotonic() + timeout_s
            while cam.slot is not None and time.monotonic() < deadline:
                time.sleep(0.002)
            if cam.slot is not None:
                raise RuntimeError("the inference thread did not take the frame")
        self.node.trigger_deactivate()
        return self.last_result_wall - t0

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.node._shutdown_inference(flush=False)
        self.node.destroy_node()
        self._rclpy.shutdown(context=self.ctx)


def bag_images(bag: str | Path, topic: str = "/camera/image_raw") -> list[Any]:
    """The bag's Image messages as rclpy objects (what a subscription would hand the node)."""
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [deserialize_message(raw, Image) for _, _, raw in reader.messages(conns)]


def run_backend(params: dict[str, Any], msgs: list[Any]) -> tuple[list[Any], float, str]:
    """Results, wall time (s) and the node's plan summary of one backend over `msgs`."""
    run = InProcessNode(params)
    try:
        wall = run.feed_all(msgs)
        summary = run.node.plan.summary() if run.node.plan is not None else ""
        return run.results, wall, summary
    finally:
        run.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gmos-node-bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=48, help="demo bag length")
    ap.add_argument("--repeats", type=int, default=15, help="gmos-bench repeats per stage")
    ap.add_argument("--out", type=Path, default=Path("out/bench_node"))
    ap.add_argument("--device", default="cpu", help="torch device of the torch backend (cuda)")
    ap.add_argument(
        "--ort-provider", default="cpu", help="onnxruntime provider (cpu | cuda | tensorrt)"
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # one thread everywhere: the node (torch_threads 1) and the bench
    args.out.mkdir(parents=True, exist_ok=True)
    bundle = DEFAULT_BUNDLES["gmos_online"]
    bag = args.out / "demo_bag"
    if not bag.exists():
        write_synthetic_bag(bag, "mcap", seed=0, num_frames=args.frames)
    onnx_dir = args.out / "onnx"
    export_bundle_parts(bundle, onnx_dir, (128, 128), check=False)
    msgs = bag_images(bag)
    backends = {
        "torch": {"backend": "torch", "device": args.device},
        "onnxruntime": {
            "backend": "onnxruntime",
            "onnx_dir": str(onnx_dir),
            "ort_provider": args.ort_provider,
        },
    }
    try:  # only whether TensorRT is installed (optional): nothing here uses it
        import tensorrt  # noqa: F401
    except ImportError:
        print("TensorRT is not installed here: the tensorrt backend is not run", flush=True)
    node: dict[str, Any] = {}
    results = {}
    for name, params in backends.items():
        res, wall, summary = run_backend(params, msgs)
        results[name] = res
        node[name] = {
            "plan": summary,
            "frames": len(msgs),
            "results": len(res),
            "wall_s": round(wall, 3),
            "fps": round(len(msgs) / wall, 2),
            "ms_per_frame": round(1000 * wall / len(msgs), 2),
        }
        print(f"[node/{name}] {node[name]}", flush=True)
    flips = [
        float(np.mean(a.instance_ids != b.instance_ids))
        for a, b in zip(results["torch"], results["onnxruntime"])
    ]
    same_states = all(
        {o.obj_id: o.moving for o in a.objects} == {o.obj_id: o.moving for o in b.objects}
        for a, b in zip(results["torch"], results["onnxruntime"])
    )
    bench = bench_config(
        "micro",
        list(backends),
        args.device,
        warmup=2,
        repeats=args.repeats,
        e2e_frames=0,
        cache_windows=0,
        out_dir=args.out / "bench",
        threads=1,
        frame_hw=(128, 128),
    )
    for name in backends:
        stage_ms = float(bench["backends"][name]["per_frame"]["gmos"]["total_ms"])
        node[name]["bench_stage_sum_ms"] = round(stage_ms, 2)
        node[name]["node_over_stage_sum"] = round(node[name]["ms_per_frame"] / stage_ms, 3)
    report = {
        "what": "demo bag (gmos-bag synth, 128x128, 10 fps) through an in-process GmosNode, "
        f"micro Gmos online (shipped bundle), torch on {args.device}, onnxruntime provider "
        f"{args.ort_provider}, 1 CPU thread, lock step",
        "node": node,
        "onnxruntime_vs_torch": {
            "same_motion_states_every_frame": same_states,
            "max_mask_pixel_fraction_differing": max(flips, default=0.0),
        },
        "ort_speedup_node": round(
            node["torch"]["ms_per_frame"] / node["onnxruntime"]["ms_per_frame"], 3
        ),
        "ort_speedup_bench": round(
            node["torch"]["bench_stage_sum_ms"] / node["onnxruntime"]["bench_stage_sum_ms"], 3
        ),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
    (args.out / "node_bench.json").write_text(json.dumps(report, indent=1) + "\n")
    _plot(node, args.out / "node_bench.png")
    print(json.dumps(report, indent=1))
    return 0


def _plot(node: dict[str, Any], path: Path) -> None:
    names = list(node)
    x = range(len(names))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar([i - 0.2 for i in x], [node[n]["ms_per_frame"] for n in names], 0.4, label="node")
    ax.bar(
        [i + 0.2 for i in x],
        [node[n]["bench_stage_sum_ms"] for n in names],
        0.4,
        label="gmos-bench stage sum",
    )
    for i, n in enumerate(names):
        ax.text(
            i - 0.2, node[n]["ms_per_frame"], f"{node[n]['fps']:.1f} fps", ha="center", va="bottom"
        )
    ax.set_xticks(list(x), names)
    ax.set_ylabel("ms per frame (micro Gmos online, CPU, 1 thread)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
