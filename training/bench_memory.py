"""Memory over a long stream: does the runtime stay flat? (issue: 10 000 frames, < 5 % growth)

    python -m training.bench_memory --frames 10000 [--variant gmos_online] [--out out/bench_memory]

Streams synthetic frames (scenes generated once and replayed back to back with ever
increasing stamps at 10 fps) through `gmos_core.streaming.build.build_segmenter` exactly as the ROS
node does, samples the process RSS every `--every` frames, and reports the peak RSS after
the first `--warmup` frames against the peak at the end. Prints JSON, writes it and a plot.
Uses the shipped micro bundle when present, else an untrained micro model (memory does not
depend on the weights' values).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from gmos_core.data.synthetic import SceneConfig, generate_scene  # noqa: E402
from gmos_core.streaming import ProposalPrediction  # noqa: E402
from gmos_core.streaming.build import RuntimeSettings, build_segmenter  # noqa: E402


def rss_mib() -> float:
    """Current resident set size of this process in MiB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_rss_mib() -> float:
    """Peak resident set size so far in MiB (getrusage reports KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ScriptedProposer:
    """Stand-in `FrameModel` whose proposals are moving discs that appear, stop, move again
    and leave (a new object every 40 frames), so the propagator keeps adding, tracking and
    releasing objects for the whole stream: memory growth of ids, tracks and histories shows
    even when an untrained network would propose nothing."""

    def __init__(self, hw: tuple[int, int] = (128, 128)) -> None:
        self.hw = hw
        self._t = 0

    def geometry_features(self, frame_rgb: np.ndarray) -> int:
        return 0

    def segmentation_features(self, frame_rgb: np.ndarray) -> int:
        self._t += 1
        return self._t - 1

    def predict(self, geometry: object, segmentation: int, out_hw: tuple[int, int]) -> object:
        t = int(segmentation)
        h, w = out_hw
        yy, xx = np.mgrid[:h, :w]
        masks, probs = [], []
        for k in range(3):  # three objects alive at a time, staggered lifetimes of 120 frames
            age = (t + 40 * k) % 120
            moving = (age // 20) % 2 == 0
            cx = 10 + (age * 0.8) % (w - 20)
            cy = 20 + 35 * k
            masks.append((yy - cy) ** 2 + (xx - cx) ** 2 <= 64)
            probs.append(0.9 if moving else 0.1)
        return ProposalPrediction(
            np.stack(masks), np.array(probs, np.float32), np.full(3, 0.9, np.float32)
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--variant", default="gmos_online", choices=("gmos_online", "gmos_s"))
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("out/bench_memory"))
    ap.add_argument(
        "--scripted",
        action="store_true",
        help="scripted proposals instead of the network (exercises tracking at full rate)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = RuntimeSettings(variant=args.variant, allow_random_weights=True)
    seg = build_segmenter(settings, model=ScriptedProposer() if args.scripted else None)
    scenes = [
        generate_scene(SceneConfig(seed=777_000 + i, scene_kind="dynamic", num_frames=40))
        for i in range(5)
    ]
    frames = np.concatenate([s.frames for s in scenes])
    samples: list[tuple[int, float, float, int]] = []
    t0 = time.perf_counter()
    results = 0
    max_id = 0
    for i in tqdm(range(args.frames), desc="stream", unit="frame"):
        out = seg.step(frames[i % len(frames)], i * 100_000_000)
        results += len(out)
        max_id = max([max_id] + [o.obj_id for r in out for o in r.objects])
        if i % args.every == 0 or i == args.frames - 1:
            samples.append((i, rss_mib(), peak_rss_mib(), seg.buffered))
    results += len(seg.flush())
    seconds = time.perf_counter() - t0
    at_warmup = [s for s in samples if s[0] >= args.warmup]
    base = at_warmup[0][2] if at_warmup else samples[-1][2]
    end = samples[-1][2]
    report = {
        "variant": args.variant,
        "model": "scripted proposals" if args.scripted else "micro network",
        "largest_object_id": max_id,
        "frames": args.frames,
        "results": results,
        "seconds": round(seconds, 1),
        "fps": round(args.frames / seconds, 2),
        "peak_rss_mib_after_warmup": round(base, 1),
        "peak_rss_mib_end": round(end, 1),
        "peak_growth_percent": round(100 * (end - base) / base, 2),
        "max_buffered_frames": max(s[3] for s in samples),
        "threads": args.threads,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memory.json").write_text(json.dumps({**report, "samples": samples}, indent=1))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    xs = [s[0] for s in samples]
    ax.plot(xs, [s[1] for s in samples], label="RSS")
    ax.plot(xs, [s[2] for s in samples], label="peak RSS")
    ax.axvline(args.warmup, color="grey", ls=":", label="warm-up")
    ax.set_xlabel("frame")
    ax.set_ylabel("MiB")
    ax.set_title(f"{args.variant}: {report['peak_growth_percent']} % peak growth after warm-up")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "memory.png", dpi=110)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
