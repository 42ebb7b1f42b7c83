"""The Gmos training objectives: Eq. 2 (proposer) and Eq. A1 (Gmos-S), with the paper's constants.

Proposer (paper Sec. 2.1, Eq. 2), per query i (frame index dropped)::

    L_i = λ_iou · L_iou + c̃ · (λ_mask · L_mask + λ_motion · L_motion)
          − [λ_conf^mov · m + λ_conf^sta · (1 − m)] · log c̃

with L_mask = 20 · focal(α=0.25, γ=2) + 1 · dice (the 20:1 ratio of Sec. 4.3 / App. B),
L_motion = BCE(motion logit, m), L_iou = (û − IoU(M̂ > 0, M))², c̃ = (c_max − 1) · ĉ + 1 ∈ [1, 5],
and (λ_mask, λ_motion, λ_iou, λ_conf^mov, λ_conf^sta) = (20, 1, 1, 0.1, 0.001).

Gmos-S (App. A.1, Eq. A1)::

    L^S = λ_iou · L_iou + c̃ · λ_mask · L_mask − λ_conf · log c̃,  (λ_mask, λ_iou, λ_conf) = (20, 1, 0.5)

Our reading where the paper is not explicit (documented in docs/training.md as well):

* Targets. A target is an annotated object of the sequence (synthetic: every object that moves
  at some point; Gmos-2K: every object with a mask). Its mask at frame t is its visible mask if it
  moves at t and EMPTY otherwise (Sec. 2.1 "an object's ground-truth mask is defined as empty
  whenever the object is not moving"); an invisible object counts as static (App. D, TFA rule).
  Static targets are matched like moving ones, on the same mask + motion cost (`matching.py`):
  the query that already predicts an (almost) empty, static-looking output is the cheapest.
* Unmatched queries are "no object": motion target 0 and no mask / IoU term (the DETR /
  Mask2Former convention; an unmatched query has no ground-truth mask to compare against).
  Their confidence still enters through c̃ · λ_motion · L_motion and the static regulariser.
* Averaging ("the loss is averaged over object queries i and frames t"): the motion and
  confidence-regulariser terms are averaged over all B·Q queries (``motion_no_object = 1``;
  the paper is silent on weighting "no object" queries: with ``motion_no_object < 1`` they are
  down-weighted as DETR's eos_coef does, the micro recipe's 0.1); the mask and IoU terms over the
  matched queries of the batch (at least 1), as Mask2Former normalises mask losses by the number
  of targets. Averaging the mask term over all Q queries instead would divide the only pixel-level
  signal by Q / (#targets) (16/2 in the micro model), which is the same objective up to that
  per-sample weight.
* The IoU target is the IoU of the binarised prediction (logit > 0, the inference threshold) with
  the target, detached; the IoU of two empty masks is 1 (a perfect empty prediction).
* Dice uses the SAM / Mask2Former smoothing of 1: 1 − (2|p·y| + 1) / (|p| + |y| + 1), so an empty
  target gives |p| / (|p| + 1), which pushes the mask of a static object to empty.
* c̃ is not detached in either place it appears: the model lowers it where the mask / motion
  loss is large (ambiguous motion-rest transitions) and the −log c̃ term keeps it from collapsing
  to 1 everywhere; this is the adversarial weighting of DUSt3R [62] that the paper follows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from training.matching import HungarianMatcher

__all__ = [
    "GmosLossWeights",
    "GmosSLossWeights",
    "LossOutput",
    "binary_iou",
    "dice_loss",
    "gmos_proposer_loss",
    "gmos_s_loss",
    "mask_loss",
    "sigmoid_focal_loss",
]


@dataclass(frozen=True)
class GmosLossWeights:
    """Eq. 2 constants (paper Sec. 4.3)."""

    mask: float = 20.0
    motion: float = 1.0
    iou: float = 1.0
    conf_mov: float = 0.1
    conf_sta: float = 0.001
    focal_weight: float = 20.0  # focal : dice = 20 : 1 inside L_mask
    dice_weight: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    # Plain BCE inside L_mask (0 = Eq. 2). The micro recipe uses Mask2Former's BCE 5 + dice 5
    # with focal 0, as stage 1b does: the focal term's α = 0.25 favours background pixels and
    # emptied the masks stage 1b had learned (docs/training.md).
    bce_weight: float = 0.0
    # Weight of an unmatched ("no object") query in the motion and confidence terms relative
    # to a matched one; the terms are then normalised by the summed weights (DETR's eos_coef
    # convention). 1.0 = the plain average over all B·Q queries (our reading of Eq. 2, which
    # is silent on it); with ~93 % of the micro queries unmatched that average is dominated by
    # "no object" targets, hence 0.1 in the micro recipe (DETR's value).
    motion_no_object: float = 1.0
    # Mask logit whose binarisation the IoU head learns to predict: the runtime's threshold
    # (0 at the paper's operating point; the calibrated one otherwise).
    iou_threshold: float = 0.0


@dataclass(frozen=True)
class GmosSLossWeights:
    """Eq. A1 constants (paper App. B)."""

    mask: float = 20.0
    iou: float = 1.0
    conf: float = 0.5
    focal_weight: float = 20.0
    dice_weight: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    bce_weight: float = 0.0  # plain BCE inside L_mask (0 = Eq. A1)
    # Not in the paper (0 = Eq. A1): mean BCE towards 0 over the pixels of objects that are
    # visible and NOT moving at the frame (hard negatives), added with this weight. Synthetic
    # data only (the renderer knows every object); see docs/training.md, session 11.
    static_penalty: float = 0.0


@dataclass
class LossOutput:
    """A total loss plus detached scalar parts for logging.

    Attributes:
        total: scalar tensor to back-propagate.
        parts: name -> float (unweighted component means, for logs and plots).
        metrics: name -> float (training-batch metrics, e.g. the IoU of the matched masks).
    """

    total: Tensor
    parts: dict[str, float]
    metrics: dict[str, float]


def sigmoid_focal_loss(
    logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """Per-mask mean focal loss (Lin et al.; the torchvision / SAM form).

    Args:
        logits: (N, P) mask logits, P pixels per mask.
        targets: (N, P) in {0, 1}.
        alpha: weight of positives (negatives get 1 − alpha).
        gamma: focusing exponent.

    Returns:
        (N,) mean over the P pixels.
    """
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(dim=-1)


def dice_loss(logits: Tensor, targets: Tensor, smooth: float = 1.0) -> Tensor:
    """Per-mask soft dice loss 1 − (2|p·y| + s) / (|p| + |y| + s).

    Args:
        logits: (N, P) mask logits.
        targets: (N, P) in {0, 1}.
        smooth: additive smoothing (1 as in SAM / Mask2Former); keeps empty targets defined.

    Returns:
        (N,) loss in [0, 1).
    """
    prob = logits.sigmoid()
    inter = (prob * targets).sum(-1)
    return 1 - (2 * inter + smooth) / (prob.sum(-1) + targets.sum(-1) + smooth)


def mask_loss(
    logits: Tensor,
    targets: Tensor,
    focal_weight: float = 20.0,
    dice_weight: float = 1.0,
    alpha: float = 0.25,
    gamma: float = 2.0,
    bce_weight: float = 0.0,
) -> Tensor:
    """L_mask = 20 · focal + 1 · dice per mask (+ bce_weight · BCE, 0 in the paper).

    Args:
        logits: (N, H, W) or (N, P) logits; targets: same shape, {0, 1}.
        bce_weight: weight of a plain per-pixel BCE term.

    Returns:
        (N,) per-mask loss.
    """
    lg = logits.flatten(1).float()
    tg = targets.flatten(1).to(lg.dtype)
    loss = dice_weight * dice_loss(lg, tg)
    if focal_weight:
        loss = loss + focal_weight * sigmoid_focal_loss(lg, tg, alpha, gamma)
    if bce_weight:
        bce = F.binary_cross_entropy_with_logits(lg, tg, reduction="none").mean(-1)
        loss = loss + bce_weight * bce
    return loss


@torch.no_grad()
def binary_iou(logits: Tensor, targets: Tensor, threshold: float = 0.0) -> Tensor:
    """IoU of (logits > threshold) with the target per mask; two empty masks have IoU 1.

    Args:
        logits: (N, H, W) or (N, P); targets: same shape.
        threshold: mask logit of the binarisation (the runtime's; 0 = probability 0.5).

    Returns:
        (N,) float in [0, 1], no gradient (it is a regression target).
    """
    pred = logits.flatten(1) > threshold
    gt = targets.flatten(1) > 0.5
    inter = (pred & gt).sum(-1).float()
    union = (pred | gt).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def gmos_proposer_loss(
    out: dict[str, Tensor],
    gt_masks: list[Tensor],
    gt_motion: list[Tensor],
    weights: GmosLossWeights | None = None,
    matcher: HungarianMatcher | None = None,
) -> LossOutput:
    """Eq. 2 over a batch of frames.

    Args:
        out: proposer output: ``mask`` (B, Q, h, w) logits, ``motion_logits`` (B, Q, 1),
            ``iou_pred`` (B, Q, 1) raw, ``conf_pred`` (B, Q, 1) already rescaled to [1, c_max].
        gt_masks: per frame (G_b, h, w) {0, 1} target masks (empty for static targets); G_b may
            be 0 (no annotated object in the frame).
        gt_motion: per frame (G_b,) {0, 1} motion state of each target.
        weights: loss constants (paper defaults).
        matcher: Hungarian matcher (default: the same constants as the loss).

    Returns:
        LossOutput with the scalar total and logged parts.
    """
    w = weights or GmosLossWeights()
    matcher = matcher or HungarianMatcher(
        mask_weight=w.mask,
        motion_weight=w.motion,
        focal_weight=w.focal_weight,
        dice_weight=w.dice_weight,
        focal_alpha=w.focal_alpha,
        focal_gamma=w.focal_gamma,
        bce_weight=w.bce_weight,
    )
    masks = out["mask"].float()
    motion = out["motion_logits"].float()[..., 0]  # (B, Q)
    iou_pred = out["iou_pred"].float()[..., 0]
    conf = out["conf_pred"].float()[..., 0]  # c̃ in [1, c_max]
    b, q = motion.shape
    indices = matcher.match(masks, motion, gt_masks, gt_motion)

    # Per-query motion target: the matched target's state, 0 ("no object") when unmatched.
    motion_tgt = torch.zeros_like(motion)
    q_idx_all, b_idx_all, g_masks, g_motion = [], [], [], []
    for bi, (qi, gi) in enumerate(indices):
        if len(qi) == 0:
            continue
        qi_t = torch.as_tensor(qi, dtype=torch.long, device=masks.device)
        gi_t = torch.as_tensor(gi, dtype=torch.long, device=masks.device)
        motion_tgt[bi, qi_t] = gt_motion[bi].to(motion.device).float()[gi_t]
        q_idx_all.append(qi_t)
        b_idx_all.append(torch.full_like(qi_t, bi))
        g_masks.append(gt_masks[bi].to(masks.device).float()[gi_t])
        g_motion.append(gt_motion[bi].to(masks.device).float()[gi_t])

    l_motion = F.binary_cross_entropy_with_logits(motion, motion_tgt, reduction="none")  # (B, Q)
    reg_w = w.conf_mov * motion_tgt + w.conf_sta * (1 - motion_tgt)
    log_c = conf.log()
    # Per-query weight: 1 for matched queries, `motion_no_object` for the rest; normalised by
    # the summed weights (with motion_no_object = 1 this is the plain mean over B·Q).
    q_w = torch.full_like(motion, w.motion_no_object)
    for bi, (qi, _) in enumerate(indices):
        if len(qi):
            q_w[bi, torch.as_tensor(qi, dtype=torch.long, device=q_w.device)] = 1.0
    q_w = q_w / q_w.sum().clamp(min=1e-12)
    motion_term = (q_w * conf * w.motion * l_motion).sum()
    reg_term = -(q_w * reg_w * log_c).sum()

    zero = masks.sum() * 0.0  # keeps the graph (and DDP's used-parameter set) intact
    mask_term, iou_term = zero, zero
    n_matched = 0
    l_mask_mean, l_iou_mean, miou = 0.0, 0.0, float("nan")
    if q_idx_all:
        qs, bs = torch.cat(q_idx_all), torch.cat(b_idx_all)
        tgt = torch.cat(g_masks)
        pm = masks[bs, qs]  # (M, h, w)
        l_mask = mask_loss(
            pm, tgt, w.focal_weight, w.dice_weight, w.focal_alpha, w.focal_gamma, w.bce_weight
        )
        iou_true = binary_iou(pm, tgt, w.iou_threshold)
        l_iou = (iou_pred[bs, qs] - iou_true) ** 2
        n_matched = int(qs.numel())
        mask_term = (conf[bs, qs] * w.mask * l_mask).sum() / max(n_matched, 1)
        iou_term = w.iou * l_iou.sum() / max(n_matched, 1)
        l_mask_mean = float(l_mask.mean().detach())
        l_iou_mean = float(l_iou.mean().detach())
        mov = torch.cat(g_motion) > 0.5
        if mov.any():
            miou = float(iou_true[mov].mean())
    total = iou_term + mask_term + motion_term + reg_term
    with torch.no_grad():
        pred_mov = motion > 0
        acc = float((pred_mov == (motion_tgt > 0.5)).float().mean())
    return LossOutput(
        total=total,
        parts={
            "loss": float(total.detach()),
            "mask": l_mask_mean,
            "motion": float(l_motion.mean().detach()),
            "iou": l_iou_mean,
            "conf_reg": float(reg_term.detach()),
            "conf_mean": float(conf.mean().detach()),
        },
        metrics={"matched": float(n_matched), "moving_iou": miou, "motion_acc": acc},
    )


def gmos_s_loss(
    out: dict[str, Tensor],
    gt_fg: Tensor,
    weights: GmosSLossWeights | None = None,
    gt_static: Tensor | None = None,
) -> LossOutput:
    """Eq. A1 over a batch of frames.

    Args:
        out: Gmos-S output: ``fg_mask`` (B, 1, h, w) logits, ``iou_pred`` (B, 1) raw,
            ``conf_pred`` (B, 1) in [1, c_max].
        gt_fg: (B, h, w) {0, 1} union of the objects moving at the frame (may be empty).
        weights: loss constants (paper defaults).
        gt_static: (B, h, w) {0, 1} objects visible and not moving at the frame; required when
            ``weights.static_penalty`` > 0, ignored otherwise.

    Returns:
        LossOutput; the IoU target of an empty frame predicted empty is 1.
    """
    w = weights or GmosSLossWeights()
    logits = out["fg_mask"].float()[:, 0]
    conf = out["conf_pred"].float()[:, 0]
    iou_pred = out["iou_pred"].float()[:, 0]
    tgt = gt_fg.to(logits.device).float()
    l_mask = mask_loss(
        logits, tgt, w.focal_weight, w.dice_weight, w.focal_alpha, w.focal_gamma, w.bce_weight
    )
    iou_true = binary_iou(logits, tgt)
    l_iou = (iou_pred - iou_true) ** 2
    total = (w.iou * l_iou + conf * w.mask * l_mask - w.conf * conf.log()).mean()
    extra: dict[str, float] = {}
    if w.static_penalty:
        if gt_static is None:
            raise ValueError("static_penalty > 0 needs gt_static (synthetic data only)")
        st = gt_static.to(logits.device).float().flatten(1)
        bce0 = F.binary_cross_entropy_with_logits(
            logits.flatten(1), torch.zeros_like(st), reduction="none"
        )
        l_static = (bce0 * st).sum(-1) / st.sum(-1).clamp(min=1.0)  # (B,) 0 on frames without
        total = total + w.static_penalty * l_static.mean()
        extra["static"] = float(l_static.mean().detach())
    nonempty = tgt.flatten(1).sum(-1) > 0
    return LossOutput(
        total=total,
        parts={
            **extra,
            "loss": float(total.detach()),
            "mask": float(l_mask.mean().detach()),
            "iou": float(l_iou.mean().detach()),
            "conf_reg": float(-(w.conf * conf.log()).mean().detach()),
            "conf_mean": float(conf.mean().detach()),
        },
        metrics={
            "fg_iou": float(iou_true[nonempty].mean()) if nonempty.any() else float("nan"),
            "fg_iou_all": float(iou_true.mean()),
        },
    )
