"""Per-frame prediction types of the Gmos heads and the one post-processing function.

They live with the models, not with the streaming runtime: every backend
(`gmos_core.backends`), the runtime, calibration and the benchmarks share them, and nothing in
`gmos_core/models/` or `gmos_core/backends/` imports `gmos_core.streaming`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "ForegroundPrediction",
    "ProposalPrediction",
    "WindowGeometry",
    "head_outputs_to_prediction",
]


@dataclass(frozen=True)
class ForegroundPrediction:
    """Gmos-S output for one frame: (H, W) float32 foreground probability at input size."""

    fg_prob: np.ndarray
    iou: float = 0.0


@dataclass(frozen=True)
class ProposalPrediction:
    """Proposer output for one frame after post-processing, at input resolution.

    Attributes:
        masks: (K, H, W) bool proposal masks (the hard-max label map split per proposal).
        motion_prob: (K,) float32 sigmoid of the motion logits.
        iou: (K,) float32 predicted IoU.
    """

    masks: np.ndarray
    motion_prob: np.ndarray
    iou: np.ndarray


@dataclass(frozen=True)
class WindowGeometry:
    """What the π³ heads say about one window, computed on the decoder pass of the masks.

    π³ is scale-free: every length here is in the units of this window's point map, one
    unknown scale per window (a new window may have another scale). Camera axes are OpenCV's
    (x right, y down, z forward). Sizes are the π³ input's (H', W'), not the camera frame's.

    Attributes:
        local_points: (N, H', W', 3) float32 per-pixel points, each in its frame's camera frame.
        conf: (N, H', W') float32 confidence logits (sigmoid → [0, 1]).
        camera_poses: (N, 4, 4) float32 camera-to-world transforms in the window's frame.
        stamps_ns: the N frames' stamps (set by the streaming runtime; a frame repeated at a
            stream end appears twice).
        center: index of the frame the result describes (N // 2 in a full window).
    """

    local_points: np.ndarray
    conf: np.ndarray
    camera_poses: np.ndarray
    stamps_ns: tuple[int, ...] = field(default_factory=tuple)
    center: int = 0

    @property
    def num_frames(self) -> int:
        return int(self.local_points.shape[0])

    def index_of(self, stamp_ns: int) -> int | None:
        """Index of the window frame with this stamp (None if the window does not hold it)."""
        for i, s in enumerate(self.stamps_ns):
            if s == stamp_ns:
                return i
        return None


def head_outputs_to_prediction(
    out: dict[str, Any],
    out_hw: tuple[int, int],
    top_k: int,
    mask_logit_threshold: float = 0.0,
) -> ForegroundPrediction | ProposalPrediction:
    """Raw head outputs of one frame (batch 1, torch tensors or numpy arrays) -> prediction.

    Gmos-S outputs (``fg_mask``) give a `ForegroundPrediction`, proposer outputs (``mask``,
    ``motion_logits``, ``iou_pred``) a `ProposalPrediction`: the top-k proposals by motion,
    split from their hard-max label map. Every backend post-processes through this one function.
    """
    # torch (here and in postprocess) only when a head's outputs are post-processed: the
    # prediction types above are used by torch-free code (streaming, baselines).
    import torch

    from gmos_core.models.postprocess import (
        gmos_s_to_prob,
        proposals_to_label_map,
        select_proposals,
    )

    t = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in out.items()}
    if "fg_mask" in t:
        prob, _ = gmos_s_to_prob(t["fg_mask"][0], out_hw)
        return ForegroundPrediction(prob, iou=float(t["iou_pred"][0, 0]))
    sel = select_proposals(t, top_k=top_k)
    labels = proposals_to_label_map(sel.masks[0], out_hw, threshold=mask_logit_threshold)
    k = sel.masks.shape[1]
    masks = labels[None] == np.arange(1, k + 1, dtype=labels.dtype)[:, None, None]
    return ProposalPrediction(
        masks=masks,
        motion_prob=sel.motion[0].float().cpu().numpy(),
        iou=sel.iou[0].float().cpu().numpy(),
    )
