"""Inference precision of the torch paths: names, checks and the autocast context.

One place for what `TorchBackend` (parts, benchmark) and the runtime (node, CLIs)
both do: "fp32" runs plain float32; "bf16" / "fp16" run under `torch.autocast` (weights stay
float32; matmuls and convolutions in the low precision). fp16 is CUDA-only: autocast has few
CPU fp16 kernels, so it would time and test something no deployment runs.
"""

from __future__ import annotations

from typing import Any

import torch

# Precision name -> autocast dtype (None: plain fp32, no autocast).
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def check_precision(precision: str, device: torch.device | str) -> None:
    """Raise ValueError, naming the problem, unless `precision` can run on `device`."""
    if precision not in AUTOCAST_DTYPES:
        raise ValueError(f"precision must be one of {sorted(AUTOCAST_DTYPES)}, got {precision!r}")
    if precision == "fp16" and torch.device(device).type != "cuda":
        raise ValueError("precision 'fp16' needs a CUDA device (use bf16 on a CPU)")


def autocast(device: torch.device | str, precision: str) -> Any:
    """The autocast context for `precision` on `device` (disabled for fp32)."""
    dtype = AUTOCAST_DTYPES[precision]
    return torch.autocast(
        torch.device(device).type, dtype=dtype or torch.float32, enabled=dtype is not None
    )
