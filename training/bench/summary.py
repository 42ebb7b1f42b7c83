"""One configuration benchmarked end to end, and the summary targets."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from gmos_core.backends import BackendFrameModel, make_backend
from gmos_core.backends.base import Backend
from gmos_core.models.build import GmosModelConfig
from training.bench.measure import (
    matmul_peak,
    peak_rss_mb,
)
from training.bench.stages import (
    bench_backend,
    build_models,
    export_onnx,
    inputs_and_flops,
    torch_backend,
)
from training.bench.standins import (
    propagation_available,
    synthetic_frames,
)
from training.bench.streaming import end_to_end_fps, streaming_cache_speedup


def bench_config(
    config: str,
    backends: Sequence[str],
    device: str,
    warmup: int,
    repeats: int,
    e2e_frames: int,
    cache_windows: int,
    out_dir: Path,
    threads: int | None,
    frame_hw: tuple[int, int] | None = None,
    log: Callable[[str], None] = print,
    decoder_blocks: int | None = None,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Everything for one configuration (models built once, shared by all backends).

    `precision` applies to the torch backend (autocast; onnxruntime runs the fp32 graphs); the
    peak fractions of a torch run are against a matmul in the same precision.

    `decoder_blocks` (paper size on a CPU): build and time only the first blocks of the π³
    decoder and extrapolate time and FLOPs linearly to the full depth. Exact in structure: the
    decoder is a stack of identical (frame-wise, global) block pairs on the same token count.
    """
    t_build = time.perf_counter()
    full_depth = GmosModelConfig.load(config).pi3.decoder_depth
    if decoder_blocks is not None and (decoder_blocks >= full_depth or decoder_blocks % 2):
        decoder_blocks = None  # only whole (frame, global) pairs, and only when it is a cut
    m = build_models(config, device, frame_hw, decoder_blocks)
    scale = {"pi3_decoder": full_depth / decoder_blocks} if decoder_blocks else {}
    log(f"[{config}] models built in {time.perf_counter() - t_build:.1f} s; shapes {m.shapes}")
    frames = synthetic_frames(max(e2e_frames, cache_windows + m.shapes.num_frames), m.frame_hw)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    # FLOPs are counted on the fp32 modules (the count does not depend on the precision).
    tb = torch_backend(m, device)
    t0 = time.perf_counter()
    inputs, flops = inputs_and_flops(m, tb, frames[0])
    if precision != "fp32":
        tb = torch_backend(m, device, precision)
    for part, f in scale.items():
        flops[part] *= f
    log(
        f"[{config}] FLOPs counted in {time.perf_counter() - t0:.1f} s: "
        + ", ".join(f"{k} {v / 1e9:.2f} G" for k, v in flops.items())
    )
    result: dict[str, Any] = {
        "shapes": m.shapes.to_dict(),
        "frame_hw": list(m.frame_hw),
        "gflop_per_frame": {k: round(v / 1e9, 4) for k, v in flops.items()},
        "pi3_decoder_extrapolated": (
            {"measured_blocks": decoder_blocks, "full_blocks": full_depth}
            if decoder_blocks
            else None
        ),
        "backends": {},
        "torch_precision": precision,
    }
    peak = SUMMARY_PEAK[(device, precision)] if (device, precision) in SUMMARY_PEAK else None
    if peak is None:
        peak = matmul_peak(device, repeats=8, precision=precision)["best_gflops"]
        SUMMARY_PEAK[(device, precision)] = peak
    for name in backends:
        if name == "torch":
            backend: Backend = tb
        elif name == "onnxruntime":
            onnx_dir = out_dir / f"onnx_{config}"
            t0 = time.perf_counter()
            export_onnx(m, onnx_dir)
            log(f"[{config}] ONNX export for onnxruntime in {time.perf_counter() - t0:.1f} s")
            backend = make_backend("onnxruntime", onnx_dir=onnx_dir, device=device, threads=threads)
        else:
            backend = make_backend(
                name,
                onnx_dir=out_dir / f"onnx_{config}",
                engine_dir=out_dir / "engines",
                device=device,
            )
        t0 = time.perf_counter()
        res = bench_backend(
            m, backend, inputs, flops, peak, warmup, repeats, device, frames[0], scale
        )
        if cache_windows > 0:
            res["streaming_cache"] = streaming_cache_speedup(
                backend, m, frames, device, cache_windows
            )
        if e2e_frames > 0:
            e2e = {}
            for variant in ("gmos_s", "gmos"):
                if variant == "gmos" and propagation_available() is not None:
                    e2e[variant] = {"fps": None, "reason": propagation_available()}
                    continue
                # Every backend, torch included, runs frames through the one frame model.
                model = BackendFrameModel(backend, variant, m.cfg.pi3.pixel_limit, m.cfg.top_k)
                e2e[variant] = end_to_end_fps(
                    model, variant, frames[:e2e_frames], 15.0, m.cfg.span_s
                )
            res["end_to_end"] = e2e
        res["bench_s"] = round(time.perf_counter() - t0, 1)
        result["backends"][name] = res
        pf = res["per_frame"]
        log(
            f"[{config}/{name}] per frame: gmos_s {pf['gmos_s']['total_ms']:.1f} ms, gmos {pf['gmos']['total_ms']:.1f} ms"
            + (
                f"; e2e fps { ({k: v.get('fps') for k, v in res['end_to_end'].items()}) }"
                if "end_to_end" in res
                else ""
            )
        )
    result["peak_rss_mb"] = peak_rss_mb()
    if device.startswith("cuda"):
        result["cuda_peak_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return result


# (device, precision) -> best matmul GFLOP/s measured in this run.
SUMMARY_PEAK: dict[tuple[str, str], float] = {}


def targets(summary: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets against what was measured (None where not measured)."""
    out: dict[str, Any] = {}
    micro = summary["configs"].get("micro", {}).get("backends", {})
    best_s = max(
        (b.get("end_to_end", {}).get("gmos_s", {}).get("fps") or 0 for b in micro.values()),
        default=0,
    )
    best_g = max(
        (b.get("end_to_end", {}).get("gmos", {}).get("fps") or 0 for b in micro.values()), default=0
    )
    out["micro_gmos_s_fps>=10"] = {"value": best_s or None, "met": best_s >= 10}
    out["micro_gmos_fps>=5"] = {"value": best_g or None, "met": best_g >= 5}
    paper = summary["configs"].get("paper", {}).get("backends", {}).get("torch")
    if paper:
        names = ("pi3_encoder", "pi3_decoder", "sam2_encoder", "gmos_s_head", "gmos_head")
        glob = {k: paper["stages"][k]["peak_fraction"] for k in names}
        local = {k: paper["stages"][k]["local_peak_fraction"] for k in names}
        out["paper_stages>=50%_peak"] = {
            "value": local,
            "vs_run_peak": glob,
            "met": all((v or 0) >= 0.5 for v in local.values()),
            "note": "value: against a matmul timed just before each stage (shared machine)",
        }
    else:
        out["paper_stages>=50%_peak"] = {"value": None, "met": None, "reason": "run with --paper"}
    caches = {k: b["streaming_cache"] for k, b in micro.items() if b.get("streaming_cache")}
    if caches:
        calls = next(iter(caches.values()))["encoder_calls_per_frame"]
        # Work = FLOPs: each encoder call is the same graph, so the work ratio is the call
        # ratio; the measured time ratios are listed beside it (noisy on a shared machine).
        work_ratio = calls["uncached"] / calls["cached"]
        out["cache_cuts_pi3_encoder_work_~5x"] = {
            "value": work_ratio,
            "encoder_calls_per_frame": calls,
            "measured_encoder_time_ratio": {k: c["encoder_speedup"] for k, c in caches.items()},
            "measured_pi3_total_time_ratio": {k: c["pi3_total_speedup"] for k, c in caches.items()},
            "met": work_ratio >= 5.0,
        }
    return out
