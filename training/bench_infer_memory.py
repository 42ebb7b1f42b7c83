"""Peak RSS of `gmos-infer --model gmos` against video length: is it flat? (issue 19)

    python -m training.bench_infer_memory --frames 100 1000 5000 [--height 96 --width 128]
                                          [--online-only] [--out out/bench_infer_memory]

For each length, a synthetic video is written (one generated scene replayed back to back,
encoded frame by frame) and `gmos-infer --model gmos --no-mp4 --threads 1` runs on it in a
fresh process; its peak RSS is that child's `ru_maxrss` (`os.wait4`), so every length is
measured alone. Uses the shipped micro bundle (memory does not depend on the weights'
values). Prints JSON, writes `bench_infer_memory.json` and a plot into `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gmos_core.data.synthetic import SceneConfig, generate_scene
from gmos_core.data.video import write_mp4


def write_long_video(path: Path, num_frames: int, height: int, width: int, fps: float) -> None:
    """An MP4 of `num_frames` frames: one 40-frame dynamic scene replayed back and forth.

    Replayed forward then backward (a ping-pong) so the motion is continuous at the joins.
    """
    scene = generate_scene(
        SceneConfig(
            seed=900_123, num_frames=40, height=height, width=width, fps=fps, scene_kind="dynamic"
        )
    )
    frames = np.asarray(scene.frames)
    order = np.concatenate([np.arange(len(frames)), np.arange(len(frames) - 2, 0, -1)])

    def gen() -> Iterator[np.ndarray]:
        for i in range(num_frames):
            yield frames[order[i % len(order)]]

    write_mp4(path, gen(), fps=fps)


def run_infer(video: Path, out: Path, extra: list[str]) -> tuple[float, float, int]:
    """Run gmos-infer in a child process; returns (peak RSS MiB, seconds, exit code)."""
    cmd = [sys.executable, "-m", "training.infer", "--model", "gmos", "--input", str(video)]
    cmd += ["--out", str(out), "--no-mp4", "--threads", "1", *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024.0, time.perf_counter() - t0, proc.returncode


def main(argv: list[str] | None = None) -> int:
    """Entry point; prints the JSON summary, returns 0 when every run succeeded."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[100, 1000, 5000])
    ap.add_argument("--height", type=int, default=96)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--online-only", action="store_true", help="pass --online-only")
    ap.add_argument("--out", type=Path, default=Path("out/bench_infer_memory"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    extra = ["--online-only"] if args.online_only else []
    runs = []
    with tempfile.TemporaryDirectory(prefix="gmos-bench-mem-") as tmp:
        for n in args.frames:
            video = Path(tmp) / f"clip_{n}.mp4"
            write_long_video(video, n, args.height, args.width, args.fps)
            peak, secs, rc = run_infer(video, Path(tmp) / f"out_{n}", extra)
            runs.append(
                {
                    "frames": n,
                    "peak_rss_mib": round(peak, 1),
                    "seconds": round(secs, 1),
                    "frames_per_s": round(n / secs, 2),
                    "exit_code": rc,
                }
            )
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    base = runs[0]["peak_rss_mib"]
    summary = {
        "what": "peak RSS of gmos-infer --model gmos (micro bundle, --threads 1) by video length",
        "height": args.height,
        "width": args.width,
        "online_only": args.online_only,
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version()},
        "runs": runs,
        "growth_vs_first": [round(r["peak_rss_mib"] / base - 1.0, 4) for r in runs],
    }
    (args.out / "bench_infer_memory.json").write_text(json.dumps(summary, indent=1) + "\n")
    _plot(summary, args.out / "bench_infer_memory.png")
    print(json.dumps(summary))
    return 0 if all(r["exit_code"] == 0 for r in runs) else 1


def _plot(summary: dict, path: Path) -> None:
    fig = Figure(figsize=(5.5, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    xs = [r["frames"] for r in summary["runs"]]
    ax.plot(xs, [r["peak_rss_mib"] for r in summary["runs"]], "o-")
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("video length (frames)")
    ax.set_ylabel("peak RSS (MiB)")
    ax.set_title(f"gmos-infer --model gmos, {summary['width']}x{summary['height']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    raise SystemExit(main())
