"""Cost of the flow_motion decision per frame: its planes (optical flow and robust fits) and its net.

    python -m training.bench_flow_motion [--frames 20] [--threads 1] [--out out/bench_flow_motion]

For each input size (the renderer's 128 × 128 and a camera's 640 × 480; both are brought to
128 px on the long side first) the frames of a synthetic dynamic scene go through
`FlowMotionDecision` as the streaming runtime calls it: `grey` once per frame, then `evidence`
for each frame's 5-frame window (8 DIS flows, 4 of them new when the previous windows' flows are
kept in the decision's `FlowPairCache`, 4 homography and 4 LMedS fundamental-matrix fits, the
net). Reports milliseconds per frame (p50 / p95) of `grey` and of `evidence`, and of the planes
(with every flow computed, and with the stream's flow cache) and the net apart. Prints JSON,
writes ``bench_flow_motion.json`` and a bar plot.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm import tqdm

from gmos_core.compute import apply_threads
from gmos_core.data.synthetic import SceneConfig, generate_scene
from gmos_core.geometry.flow_features import FlowPairCache, window_planes
from gmos_core.models.flow_decision import FlowMotionDecision, clamped_window

SIZES = ((128, 128), (480, 640))


def _ms(xs: list[float]) -> dict[str, float]:
    a = 1000.0 * np.asarray(xs)
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95))}


def bench_size(dec: FlowMotionDecision, frames: np.ndarray, size: tuple[int, int]) -> dict:
    """Per-frame timings of the decision on `frames` (T, h, w, 3) resized to `size` (H, W)."""
    h, w = size
    rgb = [cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in frames]
    grey_s, cold_s, planes_s, net_s, evidence_s = [], [], [], [], []
    flows = FlowPairCache()  # as a stream's decision keeps it
    greys = []
    for f in rgb:
        t0 = time.perf_counter()
        greys.append(dec.grey(f))
        grey_s.append(time.perf_counter() - t0)
    for t in tqdm(range(len(greys)), desc=f"{w}x{h}", unit="frame"):
        window, c = clamped_window(greys, t)
        tc = time.perf_counter()
        window_planes(window, c, pool=dec.pool)  # every flow computed (none shared)
        t0 = time.perf_counter()
        x = window_planes(window, c, flows, dec.pool)
        t1 = time.perf_counter()
        with torch.inference_mode():
            dec.net(torch.from_numpy(x)[None])
        t2 = time.perf_counter()
        dec.evidence(window, [None] * len(window), c)
        t3 = time.perf_counter()
        cold_s.append(t0 - tc)
        planes_s.append(t1 - t0)
        net_s.append(t2 - t1)
        evidence_s.append(t3 - t2)
    return {
        "input": f"{w}x{h}",
        "working": f"{greys[0].shape[1]}x{greys[0].shape[0]}",
        "grey_ms": _ms(grey_s),
        "planes_uncached_ms": _ms(cold_s),
        "planes_ms": _ms(planes_s),
        "net_ms": _ms(net_s),
        "evidence_ms": _ms(evidence_s),
    }


def plot(rows: list[dict], path: Path) -> None:
    """Bars of the p50 milliseconds per part and input size."""
    fig = Figure(figsize=(7, 3.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    parts = ("grey_ms", "planes_uncached_ms", "planes_ms", "net_ms", "evidence_ms")
    x = np.arange(len(parts))
    for i, r in enumerate(rows):
        ax.bar(x + 0.4 * i - 0.2, [r[p]["p50"] for p in parts], 0.4, label=r["input"])
    ax.set_xticks(x)
    ax.set_xticklabels([p.removesuffix("_ms") for p in parts])
    ax.set_ylabel("ms per frame (p50)")
    ax.set_title("flow_motion decision, one frame")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 0."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("out/bench_flow_motion"))
    args = ap.parse_args(argv)
    if args.frames < 3:
        ap.error(f"--frames must be >= 3, got {args.frames}")
    apply_threads(args.threads)
    scene = generate_scene(SceneConfig(num_frames=args.frames, seed=900_001))
    dec = FlowMotionDecision(threads=args.threads)
    rows = [bench_size(dec, scene.frames, s) for s in SIZES]
    report = {
        "frames": args.frames,
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_flow_motion.json").write_text(json.dumps(report, indent=1))
    plot(rows, args.out / "bench_flow_motion.png")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
