"""Measurement: per-stage latency statistics, FLOPs, the machine's matmul peak, BLAS threads, peak RSS."""

from __future__ import annotations

import ctypes
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count


@dataclass
class StageStats:
    """Latency of one stage (ms) and its work."""

    median_ms: float
    p95_ms: float
    n: int
    gflop: float | None = None
    achieved_gflops: float | None = None
    peak_fraction: float | None = None
    local_peak_gflops: float | None = None
    local_peak_fraction: float | None = None


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_fn(fn: Callable[[], Any], warmup: int, repeats: int, device: str = "cpu") -> list[float]:
    """Wall times (s) of `repeats` calls after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t0)
    return out


def stats(
    times: Sequence[float], flop: float | None = None, peak_gflops: float | None = None
) -> StageStats:
    t = np.asarray(times, dtype=np.float64)
    med = float(np.median(t))
    s = StageStats(round(med * 1e3, 3), round(float(np.percentile(t, 95)) * 1e3, 3), len(t))
    if flop:
        s.gflop = round(flop / 1e9, 4)
        s.achieved_gflops = round(flop / med / 1e9, 2)
        if peak_gflops:
            s.peak_fraction = round(flop / med / 1e9 / peak_gflops, 3)
    return s


PEAK_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def matmul_peak(
    device: str, n: int | None = None, repeats: int = 5, precision: str = "fp32"
) -> dict[str, Any]:
    """Best and median GFLOP/s of an n x n matmul in `precision` (the machine's practical peak
    for the stages that run in it)."""
    # CPUs without bf16 matrix instructions run bf16 matmuls ~80x slower than fp32 (1.4 vs
    # 110 GFLOP/s on this 2-core machine): a smaller product keeps the reference affordable.
    n = n or (8192 if device.startswith("cuda") else (2048 if precision == "fp32" else 512))
    dtype = PEAK_DTYPES[precision]
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = time_fn(lambda: a @ b, warmup=1, repeats=repeats, device=device)
    g = [2 * n**3 / t / 1e9 for t in times]
    return {
        "n": n,
        "dtype": str(dtype).removeprefix("torch."),
        "best_gflops": round(max(g), 2),
        "median_gflops": round(float(np.median(g)), 2),
    }


def _cpu_sdpa_flops(
    q_shape: Any, k_shape: Any, v_shape: Any, *args: Any, out_shape: Any = None, **kw: Any
) -> int:
    # torch's flop registry covers the CUDA attention kernels, not the CPU flash kernel.
    return sdpa_flop_count(q_shape, k_shape, v_shape)


def count_flops(fn: Callable[[], Any], module: torch.nn.Module | None = None) -> float:
    """FLOPs of one call (matmuls, convolutions and attention; elementwise ops are not counted).

    The counter's module tracker hooks autograd; with parameters that require grad it trips
    over tensors cached under inference mode, so `module`'s parameters are frozen meanwhile.
    """
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}
    params = [p for p in module.parameters() if p.requires_grad] if module is not None else []
    for p in params:
        p.requires_grad_(False)
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=mapping) as fc:
            fn()
    finally:
        for p in params:
            p.requires_grad_(True)
    return float(fc.get_total_flops())


def limit_blas_threads(n: int) -> bool:
    """Set numpy's OpenBLAS thread count at run time (no threadpoolctl here).

    Why: the propagator's mask IoU is a numpy BLAS product; with OpenBLAS's default (all cores)
    on a loaded machine one (20 x 410k) @ (410k x 20) product took 15 s instead of 0.05 s.
    Returns False where numpy's BLAS is not a recognised OpenBLAS (then set
    OPENBLAS_NUM_THREADS before starting Python).
    """
    libdir = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    for lib in sorted(libdir.glob("lib*openblas*.so*")):
        handle = ctypes.CDLL(str(lib))  # already loaded by numpy: same handle, no second copy
        for sym in (
            "scipy_openblas_set_num_threads64_",
            "scipy_openblas_set_num_threads",
            "openblas_set_num_threads",
        ):
            fn = getattr(handle, sym, None)
            if fn is not None:
                fn(int(n))
                return True
    return False


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
