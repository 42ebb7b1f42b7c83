"""Hungarian matching of proposer queries to ground-truth targets (paper Sec. 2.1).

The cost of assigning query q to target g is the training loss that pair would pay (without the
confidence factor, which is a per-query weight and would only rescale rows):

    C[q, g] = λ_mask · (20 · focal(M̂_q, M_g) + 1 · dice(M̂_q, M_g)) + λ_motion · BCE(m̂_q, m_g)

Static targets (motion 0) have EMPTY masks (Sec. 2.1), so their cheapest query is one whose mask
is empty and whose motion logit is low; they are matched with the same cost and take part in the
assignment like moving ones. This keeps a query from being asked to both segment an object and
call the same object static in the next frame: the supervision of a static object is "this query
says static and empty". Solved exactly with `scipy.optimize.linear_sum_assignment`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

__all__ = ["HungarianMatcher", "pairwise_dice_cost", "pairwise_focal_cost"]


def pairwise_focal_cost(
    logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """Mean focal loss of every (prediction, target) pair.

    Args:
        logits: (Q, P) mask logits.
        targets: (G, P) {0, 1} masks.

    Returns:
        (Q, G): entry [q, g] equals `sigmoid_focal_loss(logits[q], targets[g])`.
    """
    prob = logits.sigmoid()
    # Per-pixel focal loss if the pixel were positive / negative; a pair's loss is their
    # target-weighted sum, so the whole matrix is two matmuls.
    pos = (
        alpha
        * (1 - prob) ** gamma
        * F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    )
    neg = (
        (1 - alpha)
        * prob**gamma
        * F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    )
    p = logits.shape[1]
    return (pos @ targets.T + neg @ (1 - targets).T) / p


def pairwise_dice_cost(logits: Tensor, targets: Tensor, smooth: float = 1.0) -> Tensor:
    """Dice loss of every pair: (Q, P) logits x (G, P) targets -> (Q, G)."""
    prob = logits.sigmoid()
    inter = prob @ targets.T
    return 1 - (2 * inter + smooth) / (prob.sum(-1)[:, None] + targets.sum(-1)[None] + smooth)


def pairwise_bce_cost(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean BCE of every pair: (Q, P) logits x (G, P) {0, 1} targets -> (Q, G)."""
    pos = F.softplus(-logits)  # BCE of a pixel whose target is 1
    neg = F.softplus(logits)  # ... and 0
    return (pos @ targets.T + neg @ (1 - targets).T) / logits.shape[1]


@dataclass(frozen=True)
class HungarianMatcher:
    """Bipartite assignment of queries to targets on the mask + motion cost.

    Attributes:
        mask_weight: λ_mask (20).
        motion_weight: λ_motion (1).
        focal_weight, dice_weight: the 20:1 mix inside the mask cost.
        bce_weight: plain BCE in the mask cost (0 in Eq. 2; Mask2Former's 5 with dice 5).
        focal_alpha, focal_gamma: focal constants (0.25, 2).
    """

    mask_weight: float = 20.0
    motion_weight: float = 1.0
    focal_weight: float = 20.0
    dice_weight: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    bce_weight: float = 0.0

    @torch.no_grad()
    def cost_matrix(
        self, mask_logits: Tensor, motion_logits: Tensor, gt_masks: Tensor, gt_motion: Tensor
    ) -> Tensor:
        """Cost of one frame.

        Args:
            mask_logits: (Q, h, w); motion_logits: (Q,); gt_masks: (G, h, w); gt_motion: (G,).

        Returns:
            (Q, G) float32 cost.
        """
        lg = mask_logits.flatten(1).float()
        tg = gt_masks.flatten(1).to(lg)
        c_mask = self.focal_weight * pairwise_focal_cost(
            lg, tg, self.focal_alpha, self.focal_gamma
        ) + self.dice_weight * pairwise_dice_cost(lg, tg)
        if self.bce_weight:
            c_mask = c_mask + self.bce_weight * pairwise_bce_cost(lg, tg)
        ml = motion_logits.float()[:, None].expand(-1, tg.shape[0])
        mt = gt_motion.to(ml)[None].expand(lg.shape[0], -1)
        c_motion = F.binary_cross_entropy_with_logits(ml, mt, reduction="none")
        return self.mask_weight * c_mask + self.motion_weight * c_motion

    @torch.no_grad()
    def match(
        self,
        mask_logits: Tensor,
        motion_logits: Tensor,
        gt_masks: list[Tensor],
        gt_motion: list[Tensor],
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Match every frame of a batch.

        Args:
            mask_logits: (B, Q, h, w); motion_logits: (B, Q).
            gt_masks: per frame (G_b, h, w); gt_motion: per frame (G_b,).

        Returns:
            Per frame (query_indices, target_indices), int64 arrays of length min(Q, G_b),
            sorted by query index. Frames without targets give two empty arrays.
        """
        out: list[tuple[np.ndarray, np.ndarray]] = []
        for b in range(mask_logits.shape[0]):
            g = gt_masks[b].shape[0]
            if g == 0:
                out.append((np.zeros(0, np.int64), np.zeros(0, np.int64)))
                continue
            cost = self.cost_matrix(mask_logits[b], motion_logits[b], gt_masks[b], gt_motion[b])
            cost = torch.nan_to_num(cost, nan=1e6, posinf=1e6, neginf=-1e6)
            qi, gi = linear_sum_assignment(cost.cpu().numpy())
            order = np.argsort(qi)
            out.append((qi[order].astype(np.int64), gi[order].astype(np.int64)))
        return out
