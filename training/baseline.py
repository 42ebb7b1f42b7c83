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
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gmos_core.baselines import EgoMotionResidualBaseline
from gmos_core.baselines_extra import FrameDifferencingBaseline, iter_window_baseline
from gmos_core.compute import add_threads_argument, apply_threads
from gmos_core.data.video import DataFormatError, read_frames
from training.benchmark_synthetic import write_tracks
from training.infer import InferInputError, _resolve_rate, _sequence_name

#: CLI name -> benchmark method name.
METHODS = {"frame-diff": "frame_diff", "ego-residual": "ego_residual"}


def make_baseline(method: str) -> object:
    """The baseline object of a CLI method name (default parameters, as the benchmark)."""
    if method == "frame-diff":
        return FrameDifferencingBaseline()
    if method == "ego-residual":
        return EgoMotionResidualBaseline()
    raise ValueError(f"unknown baseline {method!r}; choose from {', '.join(METHODS)}")


def iter_baseline(method: str, frames: Iterable[np.ndarray], stride: int) -> Iterator[np.ndarray]:
    """(H, W, 3) uint8 RGB frames -> (H, W) uint8 per-frame instance maps (window rule),
    streamed: only the frames a pending window needs are held (`iter_window_baseline`)."""
    base = make_baseline(method)
    return iter_window_baseline(frames, base.segment, stride)  # type: ignore[attr-defined]


def _checked_frames(seq: str, path: Path, shape: list[tuple[int, ...]]) -> Iterator[np.ndarray]:
    """`read_frames` with the errors gmos-baseline names; the first frame's shape lands in
    `shape` and every later frame must match it."""
    try:
        for t, frame in enumerate(tqdm(read_frames(path), desc=seq, unit="frame")):
            if not shape:
                shape.append(frame.shape)
            elif frame.shape != shape[0]:
                raise InferInputError(
                    f"{seq}: frame {t} is {frame.shape}, the first frame was {shape[0]}"
                )
            yield frame
    except DataFormatError as exc:
        raise InferInputError(f"{seq}: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    """Entry point of `gmos-baseline`; returns a process exit code."""
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
            shape: list[tuple[int, ...]] = []
            frames = _checked_frames(seq, path, shape)
            count = write_tracks(args.out, seq, iter_baseline(args.method, frames, stride))
            if count == 0:
                raise InferInputError(f"{seq}: no frames")
            secs = time.perf_counter() - t0
            summary.append({"name": seq, "num_frames": count, "seconds": round(secs, 3)})
    except (InferInputError, FileNotFoundError, DataFormatError, ValueError) as exc:
        print(f"gmos-baseline: error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "baseline_summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
