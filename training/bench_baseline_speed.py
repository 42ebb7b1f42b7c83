"""Speed of the weight-free node variants (`ego_residual`, `frame_diff`) on 640x480 frames.

    python -m training.bench_baseline_speed [--frames 60] [--height 480 --width 640]
                                            [--threads 1] [--out out/bench_baseline_speed]

Streams a synthetic dynamic scene through `gmos_core.streaming.build.build_segmenter` exactly as the
ROS node does (10 fps stamps, the 5-frame window over 0.4 s, the online propagator) and
reports, per variant: end-to-end frames/s and per-frame milliseconds (p50 / p95) of the
`step` calls that returned a result, plus the baseline's own `segment` time on one window.
Prints JSON, writes `bench_baseline_speed.json` and a bar plot into `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gmos_core.compute import apply_threads
from gmos_core.data.synthetic import SceneConfig, generate_scene
from gmos_core.streaming.build import RuntimeSettings, build_segmenter, load_frame_model

VARIANTS = ("ego_residual", "frame_diff")


def bench_variant(variant: str, frames: np.ndarray, fps: float) -> dict[str, float]:
    """Time one variant over `frames` (T, H, W, 3) uint8."""
    settings = RuntimeSettings(variant=variant, span_s=4 / fps)  # type: ignore[arg-type]
    model = load_frame_model(settings)
    seg = build_segmenter(settings, model=model)
    step_ms: list[float] = []
    t0 = time.perf_counter()
    n_out = 0
    for t, f in enumerate(frames):
        s = time.perf_counter()
        out = seg.step(f, int(round(t * 1e9 / fps)))
        if out:
            step_ms.append((time.perf_counter() - s) * 1e3)
        n_out += len(out)
    n_out += len(seg.flush())
    total = time.perf_counter() - t0
    window = frames[:5]
    s = time.perf_counter()
    reps = 5
    for _ in range(reps):
        model.baseline.segment(window, 2)
    seg_ms = (time.perf_counter() - s) * 1e3 / reps
    return {
        "frames": int(len(frames)),
        "results": int(n_out),
        "frames_per_s": round(len(frames) / total, 2),
        "step_ms_p50": round(float(np.percentile(step_ms, 50)), 1),
        "step_ms_p95": round(float(np.percentile(step_ms, 95)), 1),
        "segment_ms": round(seg_ms, 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point; prints the JSON summary."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=1, help="torch / OpenCV threads")
    ap.add_argument("--out", type=Path, default=Path("out/bench_baseline_speed"))
    args = ap.parse_args(argv)
    apply_threads(args.threads)
    scene = generate_scene(
        SceneConfig(
            seed=900_321,
            num_frames=args.frames,
            height=args.height,
            width=args.width,
            fps=args.fps,
            scene_kind="dynamic",
        )
    )
    frames = np.asarray(scene.frames)
    rows = {v: bench_variant(v, frames, args.fps) for v in VARIANTS}
    summary = {
        "what": "weight-free node variants through build_segmenter (as the node runs them)",
        "height": args.height,
        "width": args.width,
        "threads": args.threads,
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version()},
        "variants": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_baseline_speed.json").write_text(json.dumps(summary, indent=1) + "\n")
    _plot(summary, args.out / "bench_baseline_speed.png")
    print(json.dumps(summary))
    return 0


def _plot(summary: dict, path: Path) -> None:
    fig = Figure(figsize=(5.0, 3.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    names = list(summary["variants"])
    ax.bar(names, [summary["variants"][n]["frames_per_s"] for n in names], color="#3070b0")
    ax.set_ylabel("frames/s (end to end)")
    ax.set_title(f"{summary['width']}x{summary['height']}, {summary['threads']} thread(s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    raise SystemExit(main())
