"""`gmos-baseline`: the non-learned baselines on videos or image folders, in the official layout.

    gmos-baseline {frame-diff,ego-residual} --input VIDEO|DIR [VIDEO|DIR ...] --out DIR
                  [--fps F | --stride S] [--threads N]

No weights, CPU only. The same code path as the held-out benchmark
(`training/benchmark_synthetic.py`): the baseline segments each frame's centre of the
official 5-frame window (stride `max(1, int(fps / 8))`), connected components are linked into
tracks by IoU, and the tracks are written as

    <out>/mos-i_frame/<seq>/00000.png + <seq>___motion.npy   MOS-I (gmos-eval --protocol mos-i)
    <out>/mos_frame/<seq>/00000.png                          instances (davis17-unsup)
    <out>/frame/<seq>/00000.png                              binary foreground (mos, davis16)

so `gmos-eval` scores them unchanged. Frames of one input are held in memory (the window and
the track linking read all of them); use it on clips, not hours of video.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gmos_core.compute import add_threads_argument, apply_threads
from gmos_core.data.video import DataFormatError, read_frames

#: CLI name -> benchmark method name.
METHODS = {"frame-diff": "frame_diff", "ego-residual": "ego_residual"}


def make_baseline(method: str) -> object:
    """The baseline object of a CLI method name (default parameters, as the benchmark)."""
    from gmos_core.baselines import EgoMotionResidualBaseline
    from gmos_core.baselines_extra import FrameDifferencingBaseline

    if method == "frame-diff":
        return FrameDifferencingBaseline()
    if method == "ego-residual":
        return EgoMotionResidualBaseline()
    raise ValueError(f"unknown baseline {method!r}; choose from {', '.join(METHODS)}")


def run_baseline_on_frames(method: str, frames: np.ndarray, stride: int) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB -> (T, H, W) uint8 per-frame instance maps (window rule)."""
    from gmos_core.baselines_extra import run_window_baseline

    base = make_baseline(method)
    return run_window_baseline(frames, base.segment, stride)  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    """Entry point of `gmos-baseline`; returns a process exit code."""
    from training.benchmark_synthetic import write_tracks
    from training.infer import InferInputError, _resolve_rate, _sequence_name

    p = argparse.ArgumentParser(prog="gmos-baseline", description=__doc__.split("\n\n")[0])
    p.add_argument("method", choices=sorted(METHODS))
    p.add_argument("--input", required=True, nargs="+", type=Path, help="videos or image dirs")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--fps", type=float, default=None, help="frame rate of image folders")
    p.add_argument("--stride", type=int, default=None, help="window stride in frames")
    add_threads_argument(p)
    args = p.parse_args(argv)
    summary = []
    try:
        apply_threads(args.threads)
        for path in args.input:
            if not path.exists():
                raise InferInputError(f"input {path} does not exist")
        for path in args.input:
            seq = _sequence_name(path)
            _, stride = _resolve_rate(path, args.fps, args.stride)
            t0 = time.perf_counter()
            try:
                frames = list(tqdm(read_frames(path), desc=seq, unit="frame"))
            except DataFormatError as exc:
                raise InferInputError(f"{seq}: {exc}") from exc
            if not frames:
                raise InferInputError(f"{seq}: no frames")
            if any(f.shape != frames[0].shape for f in frames):
                raise InferInputError(f"{seq}: frames of different sizes")
            per_frame = run_baseline_on_frames(args.method, np.stack(frames), stride)
            write_tracks(args.out, seq, per_frame)
            secs = time.perf_counter() - t0
            summary.append({"name": seq, "num_frames": len(frames), "seconds": round(secs, 3)})
    except (InferInputError, FileNotFoundError, DataFormatError, ValueError) as exc:
        print(f"gmos-baseline: error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "baseline_summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
