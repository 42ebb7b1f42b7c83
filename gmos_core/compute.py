"""CPU threads and device choice shared by every command-line tool that runs a model.

Why one default of 1 thread on small machines: torch's default is one thread per core, and
with another job on the machine (a robot's SLAM, a training run) its threads fight for the
cores. Measured with `gmos-infer` on a 2-core machine with another job running: 0.9-2.8
frames/s with torch's default against 9.5 frames/s with one thread (issue 19). On machines
with more than :data:`SMALL_MACHINE_CORES` cores the default is torch's own.
"""

from __future__ import annotations

import argparse
import os

import cv2

__all__ = [
    "SMALL_MACHINE_CORES",
    "DeviceUnavailableError",
    "add_threads_argument",
    "apply_threads",
    "check_device",
    "default_threads",
]

#: Machines with at most this many cores default to one thread.
SMALL_MACHINE_CORES = 4


class DeviceUnavailableError(ValueError):
    """The requested torch device does not exist in this torch build / on this machine."""


def default_threads(cpu_count: int | None = None) -> int:
    """1 on machines with <= 4 cores, else 0 (= torch's default, one per core).

    Args:
        cpu_count: cores to decide for; default `os.cpu_count()`.
    """
    n = os.cpu_count() if cpu_count is None else cpu_count
    return 1 if (n or 1) <= SMALL_MACHINE_CORES else 0


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """Add the common `--threads N` option (0 = torch's default, one thread per core)."""
    parser.add_argument(
        "--threads",
        type=int,
        default=default_threads(),
        help="CPU threads for torch, onnxruntime and OpenCV (0 = one per core). Default: 1 on "
        f"machines with <= {SMALL_MACHINE_CORES} cores (where other jobs compete for them: "
        "measured 9.5 frames/s with 1 thread against 0.9-2.8 with the default), else 0",
    )


def apply_threads(threads: int) -> int:
    """Set torch's and OpenCV's CPU threads; 0 leaves the defaults.

    Args:
        threads: number of threads (>= 0).

    Returns:
        torch's thread count afterwards.

    Raises:
        ValueError: negative `threads`.
    """
    # torch here, not at the top: gmos_core.streaming imports this module and stays torch-free.
    import torch

    if threads < 0:
        raise ValueError(f"--threads must be >= 0, got {threads}")
    if threads > 0:
        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
    return torch.get_num_threads()


def check_device(device: str) -> str:
    """Check that torch can use `device` here, before anything is built on it.

    Args:
        device: a torch device string ("cpu", "cuda", "cuda:1", "mps").

    Returns:
        `device` unchanged.

    Raises:
        DeviceUnavailableError: unknown device string, a CUDA device with a CPU-only torch
            or no GPU, a CUDA index past the GPU count, or MPS without MPS.
    """
    import torch  # see apply_threads

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceUnavailableError(f"device {device!r} is not a torch device ({exc})") from None
    if dev.type == "cuda":
        if not torch.backends.cuda.is_built():
            raise DeviceUnavailableError(
                f"device {device!r}: this torch ({torch.__version__}) is a CPU-only build; use "
                "device cpu or install a CUDA build of torch"
            )
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"device {device!r}: torch sees no CUDA GPU (driver missing or "
                "CUDA_VISIBLE_DEVICES empty); use device cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailableError(f"device {device!r}: MPS is not available here")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise DeviceUnavailableError(f"device {device!r}: use cpu or cuda")
    return device
