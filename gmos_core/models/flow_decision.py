"""Which proposals move, decided from the window's optical-flow geometry (RGB only).

The ``flow_motion`` motion decision (`gmos_core.motion_decision`): the flow motion net
(`gmos_core.models.flow_motion_net`) turns the planes of `gmos_core.geometry.flow_features`
into a per-pixel probability of moving in the world now, and each proposal's motion
probability becomes the mean of that map under its mask. The proposer still finds and segments
the objects and the propagator tracks them; only the head's motion probability is replaced.
Unlike ``depth_warp`` it needs no depth and no odometry: a monocular camera is enough. The net
learned from the renderer's 10 fps, 128 px clips (pixel motions in those units; the frames are
brought to 128 px on the long side, the runtime's window stride keeps ~0.5 s per window).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from safetensors import safe_open

from gmos_core.geometry.flow_features import (
    NEIGHBOUR_OFFSETS,
    FlowPairCache,
    flow_grey,
    window_planes,
)
from gmos_core.geometry.warp import mask_means
from gmos_core.models.flow_motion_net import FlowMotionNet
from gmos_core.models.prediction import ProposalPrediction

__all__ = [
    "DEFAULT_FLOW_MOTION_WEIGHTS",
    "FLOW_MOTION_FORMAT",
    "FlowMotionDecision",
    "clamped_window",
    "clip_motion_maps",
    "load_flow_motion_net",
]

#: The shipped net (trained by `training.train_flow_motion`).
DEFAULT_FLOW_MOTION_WEIGHTS = (
    Path(__file__).resolve().parent.parent / "assets" / "flow_motion.safetensors"
)
#: `format` metadata of a weights file; another value is refused (planes changed).
FLOW_MOTION_FORMAT = "gmos-flow-motion-1"


def clamped_window(frames: Sequence[Any], t: int, size: int = 5) -> tuple[list[Any], int]:
    """The `size`-frame window around frame t of a clip, indices clamped at the clip's ends
    as the streaming runtime clamps them (a repeated frame is the same object), and the
    centre's index in it."""
    if not 0 <= t < len(frames):
        raise ValueError(f"clamped_window: frame {t} outside a clip of {len(frames)}")
    half = size // 2
    return [frames[min(max(t + k, 0), len(frames) - 1)] for k in range(-half, half + 1)], half


def load_flow_motion_net(path: str | Path = DEFAULT_FLOW_MOTION_WEIGHTS) -> FlowMotionNet:
    """The net of a weights file written by `training.train_flow_motion.export_net`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a file of another format, or weights that do not fit the net.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"flow motion weights not found: {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FLOW_MOTION_FORMAT:
            raise ValueError(
                f"{path}: format {meta.get('format')!r}, expected {FLOW_MOTION_FORMAT!r}"
            )
        state = {k: f.get_tensor(k).float() for k in f.keys()}  # noqa: SIM118
    net = FlowMotionNet(width=int(meta.get("width", 24)))
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not fit the flow motion net: {e}") from e
    return net.eval()


class FlowMotionDecision:
    """Motion probabilities of a frame's proposals from the flow motion net (module doc).

    Args:
        net: the net (evaluation mode is set); None loads `weights`.
        weights: safetensors file of the net (default: the shipped one).
        min_pixels: a proposal needs this many pixels under its mask (fewer: probability 0).
        threads: CPU threads for a window's four neighbour pairs (flows and fits at once, the
            same planes); 1 computes them one after another. The streaming runtime computes
            the evidence before it runs the model, so the two can share a thread budget.

    Attributes:
        flows: the flows of recent frame pairs (`FlowPairCache`): consecutive windows of a
            stream share pairs, so each pair's flow is computed once. Shared by every stream
            this decision serves (pairs are told apart by their frames' grey arrays).
        pool: the worker threads of `threads` > 1 (at most one per neighbour), else None.
    """

    def __init__(
        self,
        net: FlowMotionNet | None = None,
        weights: str | Path = DEFAULT_FLOW_MOTION_WEIGHTS,
        min_pixels: int = 1,
        threads: int = 1,
    ) -> None:
        if min_pixels < 1:
            raise ValueError(f"min_pixels must be >= 1, got {min_pixels}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.net = (net if net is not None else load_flow_motion_net(weights)).eval()
        self.min_pixels = min_pixels
        self.flows = FlowPairCache()
        # Idle worker threads cost nothing; they end with the process.
        self.pool = (
            ThreadPoolExecutor(
                min(threads, len(NEIGHBOUR_OFFSETS)), thread_name_prefix="flow_planes"
            )
            if threads > 1
            else None
        )

    @staticmethod
    def grey(frame_rgb: np.ndarray) -> np.ndarray:
        """(h, w) uint8 grey at the working size (`flow_grey`)."""
        return flow_grey(frame_rgb)

    def evidence(
        self, greys: Sequence[np.ndarray], sensors: Sequence[Any], center: int
    ) -> np.ndarray | None:
        """(h', w') float32 probability that each cell moves in the world now, at the planes'
        size (`feature_size`), or None when no other frame is in the window (a clip of one
        frame). `sensors` are not read (RGB only)."""
        if not 0 <= center < len(greys):
            raise ValueError(f"evidence: centre {center} outside a window of {len(greys)}")
        if all(g is greys[center] for g in greys):
            return None
        planes = window_planes(greys, center, self.flows, self.pool)
        planes = torch.from_numpy(planes)[None]
        with torch.inference_mode():
            return torch.sigmoid(self.net(planes))[0].numpy().astype(np.float32)

    def decide(self, pred: ProposalPrediction, evidence: np.ndarray) -> ProposalPrediction:
        """`pred` with each proposal's motion probability the mean of `evidence` (resized to
        the masks' size) under its mask; masks and IoU kept.

        Args:
            pred: the proposer's output, (K, H, W) masks at frame size.
            evidence: (h', w') map from :meth:`evidence`.
        """
        h, w = pred.masks.shape[1:]
        prob = cv2.resize(evidence, (w, h), interpolation=cv2.INTER_LINEAR)
        means = mask_means(prob, pred.masks.astype(bool), self.min_pixels)
        return replace(pred, motion_prob=np.nan_to_num(means, nan=0.0).astype(np.float32))


def clip_motion_maps(
    decision: FlowMotionDecision, frames: Sequence[np.ndarray], indices: Iterable[int] | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """The net's probability of moving now for frames of a whole clip, each computed as the
    streaming runtime computes it (its 5-frame window clamped at the clip's ends), for offline
    tools.

    Args:
        decision: the flow decision.
        frames: the clip's (H, W, 3) uint8 RGB frames.
        indices: the frames wanted, in any order (default: all).

    Yields:
        (t, (H, W) float32 probability at the frames' size), or (t, None) when the window gives
        no evidence (a clip of one frame).
    """
    greys = [decision.grey(f) for f in frames]
    for t in range(len(frames)) if indices is None else indices:
        window, centre = clamped_window(greys, t)
        prob = decision.evidence(window, [None] * len(window), centre)
        if prob is not None:
            h, w = frames[t].shape[:2]
            prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
        yield t, prob
