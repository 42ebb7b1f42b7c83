"""``gmos-bench``: where every millisecond of a Gmos frame goes, per stage, per backend.

One concern per module (the command line and its full description are in `cli`):
  standins      numpy stand-ins for the ROS side, scripted frames and proposals
  measure       latency statistics, FLOPs, matmul peak, BLAS threads, peak RSS
  stages        one configuration's models, per-stage timing of one backend
  streaming     the feature-cache speed-up and end-to-end frames per second
  stride_curve  the proposer-stride speed / accuracy curve
  plots         the breakdown and stride-curve figures
  summary       one configuration end to end, and the summary targets
  cli           ``gmos-bench`` / ``python -m training.bench``
"""

from __future__ import annotations

from training.bench.cli import build_parser, main
from training.bench.measure import (
    PEAK_DTYPES,
    StageStats,
    count_flops,
    limit_blas_threads,
    matmul_peak,
    peak_rss_mb,
    stats,
    time_fn,
)
from training.bench.plots import plot_breakdown, plot_stride_curve
from training.bench.stages import (
    FRAME_STAGES,
    MODEL_STAGES,
    ConfigModels,
    bench_backend,
    build_models,
    export_onnx,
    inputs_and_flops,
    torch_backend,
)
from training.bench.standins import (
    ImageMsg,
    build_messages,
    image_msg_to_rgb,
    live_tracking,
    make_image_msg,
    propagation_available,
    scripted_proposals,
    synthetic_frames,
)
from training.bench.streaming import end_to_end_fps, streaming_cache_speedup
from training.bench.stride_curve import MICRO_BUNDLE, STRIDES, stride_curve
from training.bench.summary import SUMMARY_PEAK, bench_config, targets

__all__ = [
    "ConfigModels",
    "FRAME_STAGES",
    "ImageMsg",
    "MICRO_BUNDLE",
    "MODEL_STAGES",
    "PEAK_DTYPES",
    "STRIDES",
    "SUMMARY_PEAK",
    "StageStats",
    "bench_backend",
    "bench_config",
    "build_messages",
    "build_models",
    "build_parser",
    "count_flops",
    "end_to_end_fps",
    "export_onnx",
    "image_msg_to_rgb",
    "inputs_and_flops",
    "limit_blas_threads",
    "live_tracking",
    "main",
    "make_image_msg",
    "matmul_peak",
    "peak_rss_mb",
    "plot_breakdown",
    "plot_stride_curve",
    "propagation_available",
    "scripted_proposals",
    "stats",
    "streaming_cache_speedup",
    "stride_curve",
    "synthetic_frames",
    "targets",
    "time_fn",
    "torch_backend",
]
