"""``gmos-bench``: where every millisecond of a Gmos frame goes, per stage, per backend.

For each configuration (micro; the paper architecture at 672x378 π³ / 1024² SAM2 behind
``--paper``, random weights: fine for timing) and each available backend (torch, onnxruntime):

* per-stage latency, median and p95 over ``--repeats`` runs after ``--warmup``: image
  conversion (numpy stand-in for the ROS conversion: bytes -> (H, W, 3) uint8 honouring
  ``step``), pre-processing, π³ per-frame encoder, π³ window decoder, SAM2 encoder, head,
  post-processing, propagator (scripted proposals) and message building (numpy stand-in: id and
  dynamic masks + object list from a result); composed into a per-frame budget for Gmos-S and
  Gmos online;
* work per stage (FLOPs, `torch.utils.flop_counter.FlopCounterMode`, CPU flash-attention
  included) and the achieved fraction of the machine's matmul peak (a large fp32 matmul timed in
  the same run);
* the streaming speed-up, measured: cached per-frame π³ features versus re-encoding every
  window's 5 frames (what an implementation without the cache pays);
* frames per second end to end through `StreamingSegmenter` (conversion and message building
  included), peak RSS;
* behind ``--stride-curve``: the proposer-stride speed / accuracy curve (k = 1, 2, 3, 5) of the
  trained micro model on held-out synthetic scenes (MOS-I mtIoU, J_mov, FP).

Prints the JSON summary and writes ``<out>/bench.json`` and ``<out>/breakdown.png``.

    gmos-bench                                  # micro, torch + onnxruntime, CPU
    gmos-bench --paper --paper-repeats 1        # + the paper architecture (minutes on a CPU)
    gmos-bench --device cuda --paper            # on a GPU (torch CUDA + onnxruntime CUDA EP)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from gmos_core.backends import available_backends
from gmos_core.compute import DeviceUnavailableError, add_threads_argument, check_device
from training.bench.measure import (
    limit_blas_threads,
    matmul_peak,
    peak_rss_mb,
)
from training.bench.plots import plot_breakdown, plot_stride_curve
from training.bench.stride_curve import MICRO_BUNDLE, stride_curve
from training.bench.summary import SUMMARY_PEAK, bench_config, targets


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gmos-bench", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--config", default="micro", help="configuration benchmarked first (default micro)"
    )
    ap.add_argument(
        "--paper", action="store_true", help="also the paper architecture (random weights)"
    )
    ap.add_argument("--backends", nargs="+", default=None, help="default: every available one")
    ap.add_argument("--paper-backends", nargs="+", default=["torch"], help="backends for --paper")
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16", "fp16"],
        help="torch backend precision (autocast); fp16 needs CUDA",
    )
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--paper-warmup", type=int, default=0)
    ap.add_argument("--paper-repeats", type=int, default=1)
    ap.add_argument(
        "--paper-decoder-blocks",
        type=int,
        default=None,
        help="time only this many π³ decoder blocks (even) and extrapolate to 36 (slow CPUs)",
    )
    ap.add_argument(
        "--e2e-frames", type=int, default=30, help="frames streamed end to end (0: skip)"
    )
    ap.add_argument("--cache-windows", type=int, default=8, help="windows for the cache speed-up")
    add_threads_argument(ap)  # also the onnxruntime intra-op threads
    ap.add_argument(
        "--stride-curve", action="store_true", help="proposer stride curve (trained micro)"
    )
    ap.add_argument("--stride-scenes", type=int, default=30, help="held-out clips for the curve")
    ap.add_argument(
        "--stride-bundle", type=Path, default=MICRO_BUNDLE, help="trained proposer bundle"
    )
    ap.add_argument("--out", type=Path, default=Path("out/bench"))
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``gmos-bench``; prints the JSON summary, returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        check_device(args.device)
    except DeviceUnavailableError as exc:
        print(f"gmos-bench: error: {exc}", file=sys.stderr)
        return 2
    if args.precision == "fp16" and not args.device.startswith("cuda"):
        print(
            "gmos-bench: --precision fp16 needs --device cuda (use bf16 on a CPU)", file=sys.stderr
        )
        return 2
    blas_limited = False
    if args.threads:
        torch.set_num_threads(args.threads)
        blas_limited = limit_blas_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    avail = available_backends()
    if args.backends is None:
        backends = [b for b in ("torch", "onnxruntime") if avail[b].startswith("ok")]
    else:
        backends = args.backends
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731 - progress on stderr, JSON on stdout
    load_before = os.getloadavg()
    peak = matmul_peak(args.device, repeats=8)
    SUMMARY_PEAK[(args.device, "fp32")] = peak["best_gflops"]
    device_name = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"{platform.processor() or platform.machine()} CPU x{os.cpu_count()}"
    )
    summary: dict[str, Any] = {
        "machine": {
            "device": device_name,
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "numpy_blas_threads_limited": blas_limited,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "loadavg_before": [round(x, 2) for x in load_before],
            "backends_available": avail,
        },
        "matmul_peak": peak,
        "torch_precision": args.precision,
        "configs": {},
    }
    log(f"matmul peak {peak}")
    summary["configs"][args.config] = bench_config(
        args.config,
        backends,
        args.device,
        args.warmup,
        args.repeats,
        args.e2e_frames,
        args.cache_windows,
        args.out,
        args.threads,
        log=log,
        precision=args.precision,
    )
    if args.paper:
        summary["configs"]["paper"] = bench_config(
            "paper",
            args.paper_backends,
            args.device,
            args.paper_warmup,
            args.paper_repeats,
            0,
            0 if args.device == "cpu" else 4,
            args.out,
            args.threads,
            log=log,
            decoder_blocks=args.paper_decoder_blocks,
            precision=args.precision,
        )
    if args.stride_curve:
        summary["stride_curve"] = stride_curve(args.stride_scenes, args.device, args.stride_bundle)
        if summary["stride_curve"].get("ran"):
            plot_stride_curve(summary["stride_curve"], args.out / "stride_curve.png")
    else:
        summary["stride_curve"] = {"ran": False, "reason": "not requested (--stride-curve)"}
    summary["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    summary["peak_rss_mb"] = peak_rss_mb()
    summary["targets"] = targets(summary)
    (args.out / "bench.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_breakdown(summary, args.out / "breakdown.png")
    print(json.dumps(summary, indent=2))
    return 0
