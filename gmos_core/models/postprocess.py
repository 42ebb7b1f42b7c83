"""Turning Gmos head outputs into proposals, label maps and foreground probabilities.

Follows the official inference scripts (``inference_gmos.py:run_proposer`` and
``inference_gmos_s.py``):

* proposer: keep the top-k (20) queries by motion logit, upsample their mask logits bilinearly
  (align_corners=False) to the input size, then take a per-pixel argmax over the kept queries,
  keeping only pixels whose best logit is > 0 (``get_numpy_hard_max(mask, threshold=0)``);
* Gmos-S: upsample the foreground *logits* bilinearly, then apply the sigmoid, then threshold the
  probability at > 0.5 (resizing probabilities instead would give slightly different edges).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "SelectedProposals",
    "gmos_s_to_prob",
    "proposals_to_label_map",
    "select_proposals",
]

# Official number of proposals handed to the propagator.
DEFAULT_TOP_K = 20


class SelectedProposals(NamedTuple):
    """Top-k proposals of a batch (a 4-tuple, so it unpacks as ``masks, motion, iou, indices``).

    Attributes:
        masks: (B, K, h, w) mask logits of the kept queries (after the motion offset).
        motion: (B, K) motion *probabilities*, ``sigmoid(motion_logits)``, sorted descending; the
            official pipeline thresholds these at ``MOTION_THRES = 0.5``.
        iou: (B, K) raw predicted IoU of the kept queries.
        indices: (B, K) int64 query indices into the proposer's Q queries.
    """

    masks: Tensor
    motion: Tensor
    iou: Tensor
    indices: Tensor


def select_proposals(out: Mapping[str, Tensor], top_k: int = DEFAULT_TOP_K) -> SelectedProposals:
    """Keep the ``top_k`` queries with the largest motion logit (official: 20 of 100).

    Args:
        out: proposer output with ``mask`` (B, Q, h, w), ``motion_logits`` (B, Q, 1) and
            ``iou_pred`` (B, Q, 1).
        top_k: number of queries to keep; clipped to Q like the official ``min(20, Q)``.
    Returns:
        :class:`SelectedProposals` with K = min(top_k, Q), ordered by decreasing motion.
    """
    for key in ("mask", "motion_logits", "iou_pred"):
        if key not in out:
            raise KeyError(f"select_proposals: proposer output has no {key!r} entry")
    masks, motion_logits, iou_pred = out["mask"], out["motion_logits"], out["iou_pred"]
    if masks.dim() != 4:
        raise ValueError(f"'mask' must be (B, Q, h, w), got {tuple(masks.shape)}")
    b, q = masks.shape[:2]
    for name, t in (("motion_logits", motion_logits), ("iou_pred", iou_pred)):
        if tuple(t.shape) != (b, q, 1):
            raise ValueError(f"{name!r} must be (B, Q, 1) = {(b, q, 1)}, got {tuple(t.shape)}")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    k = min(top_k, q)
    motion_top, indices = motion_logits[..., 0].topk(k, dim=1)  # sorted, descending
    gather_idx = indices[:, :, None, None].expand(-1, -1, masks.shape[2], masks.shape[3])
    return SelectedProposals(
        masks=torch.gather(masks, 1, gather_idx),
        motion=motion_top.sigmoid(),
        iou=torch.gather(iou_pred[..., 0], 1, indices),
        indices=indices,
    )


def _as_tensor(x: Tensor | np.ndarray, name: str) -> Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} must hold floating-point logits, got dtype {x.dtype}")
    return x


def _check_hw(out_hw: tuple[int, int]) -> tuple[int, int]:
    if len(out_hw) != 2 or any(int(v) != v or v <= 0 for v in out_hw):
        raise ValueError(f"out_hw must be (H, W) with positive integers, got {out_hw!r}")
    return int(out_hw[0]), int(out_hw[1])


def _upsample(logits: Tensor, out_hw: tuple[int, int]) -> Tensor:
    """(C, h, w) -> (C, H, W) float32, bilinear, align_corners=False, no antialias."""
    x = logits.detach().to(torch.float32)[None]
    if tuple(x.shape[-2:]) != out_hw:
        x = F.interpolate(x, size=out_hw, mode="bilinear", align_corners=False)
    return x[0]


@torch.no_grad()
def proposals_to_label_map(
    mask_logits: Tensor | np.ndarray, out_hw: tuple[int, int], threshold: float = 0.0
) -> np.ndarray:
    """Indexed label map of one frame from K proposal mask logits.

    Args:
        mask_logits: (K, h, w) logits (e.g. ``select_proposals(...).masks[b]``).
        out_hw: (H, W) of the input frame.
        threshold: logit a pixel's best proposal must exceed (official 0; a calibrated
            `OperatingPoint.mask_logit_threshold` otherwise).
    Returns:
        (H, W) label map: 0 = background, ``k + 1`` for pixels won by proposal channel k. Pixels
        whose best logit is <= `threshold` are background. dtype uint8 when K <= 255, else uint16.
    """
    logits = _as_tensor(mask_logits, "mask_logits")
    if logits.dim() != 3 or logits.shape[0] == 0:
        raise ValueError(f"mask_logits must be (K, h, w) with K >= 1, got {tuple(logits.shape)}")
    k = logits.shape[0]
    if k > 65535:
        raise ValueError(f"too many proposals for a uint16 label map: K={k}")
    up = _upsample(logits, _check_hw(out_hw))
    best, arg = up.max(dim=0)  # ties go to the first channel, like numpy.argmax
    labels = torch.where(best > threshold, arg + 1, torch.zeros_like(arg))
    # Upsampled where the logits live (GPU for a CUDA model), one copy of the label map to host.
    return labels.cpu().numpy().astype(np.uint8 if k <= 255 else np.uint16)


@torch.no_grad()
def gmos_s_to_prob(
    fg_logits: Tensor | np.ndarray, out_hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Foreground probability and mask of one frame from Gmos-S logits.

    Args:
        fg_logits: (1, h, w) or (h, w) foreground logits (``out["fg_mask"][b]``).
        out_hw: (H, W) of the input frame.
    Returns:
        (prob (H, W) float32 in [0, 1], mask (H, W) bool = prob > 0.5).
    """
    logits = _as_tensor(fg_logits, "fg_logits")
    if logits.dim() == 2:
        logits = logits[None]
    if logits.dim() != 3 or logits.shape[0] != 1:
        raise ValueError(f"fg_logits must be (1, h, w) or (h, w), got {tuple(logits.shape)}")
    # Official order: resize the logits, then sigmoid.
    prob = _upsample(logits, _check_hw(out_hw))[0].sigmoid().float().cpu().numpy()
    return prob, prob > 0.5
