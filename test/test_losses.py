"""Eq. 2 / Eq. A1 losses and the Hungarian matcher: hand-computed values, invariances, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.losses import (
    GmosLossWeights,
    GmosSLossWeights,
    binary_iou,
    dice_loss,
    gmos_proposer_loss,
    gmos_s_loss,
    mask_loss,
    sigmoid_focal_loss,
)
from training.matching import (
    HungarianMatcher,
    pairwise_bce_cost,
    pairwise_dice_cost,
    pairwise_focal_cost,
)

LN2 = math.log(2.0)


def test_focal_and_dice_hand_values():
    logits = torch.zeros(1, 2)
    tgt = torch.tensor([[1.0, 0.0]])
    # p = 0.5 everywhere: CE = ln 2, (1 - p_t)^2 = 1/4, alpha_t = 0.25 (pos) / 0.75 (neg).
    focal = sigmoid_focal_loss(logits, tgt)
    assert focal.item() == pytest.approx(0.5 * (0.25 + 0.75) * 0.25 * LN2)
    # dice: 1 - (2 * 0.5 + 1) / (1 + 1 + 1) = 1/3
    assert dice_loss(logits, tgt).item() == pytest.approx(1 / 3)
    # L_mask = 20 focal + 1 dice
    assert mask_loss(logits, tgt).item() == pytest.approx(20 * 0.125 * LN2 + 1 / 3)


def test_binary_iou_conventions():
    pred = torch.tensor([[5.0, -5.0, 5.0, -5.0], [-1.0, -1.0, -1.0, -1.0]])
    gt = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    iou = binary_iou(pred, gt)
    assert iou[0].item() == pytest.approx(1 / 3)
    assert iou[1].item() == 1.0  # empty prediction of an empty target is perfect


def test_gmos_s_loss_hand_value_and_confidence():
    fg = torch.zeros(1, 1, 1, 2)
    gt = torch.tensor([[[1.0, 0.0]]])
    l_mask = 20 * 0.125 * LN2 + 1 / 3
    # c~ = 1: 1 * (0 - 0)^2 [IoU of an empty prediction vs a non-empty target is 0]
    #         + 1 * 20 * L_mask - 0.5 * log 1
    out = {"fg_mask": fg, "iou_pred": torch.zeros(1, 1), "conf_pred": torch.ones(1, 1)}
    assert gmos_s_loss(out, gt).total.item() == pytest.approx(20 * l_mask)
    # c~ = 2 doubles the mask term and pays 0.5 * log 2; predicted IoU 0.5 adds 0.25.
    out = {"fg_mask": fg, "iou_pred": torch.full((1, 1), 0.5), "conf_pred": torch.full((1, 1), 2.0)}
    assert gmos_s_loss(out, gt).total.item() == pytest.approx(0.25 + 40 * l_mask - 0.5 * LN2)


def test_gmos_s_static_penalty_is_off_by_default_and_adds_hand_value():
    fg = torch.tensor([[[[0.0, 2.0, -2.0]]]])  # (1, 1, 1, 3) logits
    gt = torch.tensor([[[1.0, 0.0, 0.0]]])
    static = torch.tensor([[[0.0, 1.0, 1.0]]])  # two pixels of a static object
    out = {"fg_mask": fg, "iou_pred": torch.zeros(1, 1), "conf_pred": torch.ones(1, 1)}
    plain = gmos_s_loss(out, gt)
    assert gmos_s_loss(out, gt, gt_static=static).total.item() == plain.total.item()
    w = GmosSLossWeights(static_penalty=3.0)
    r = gmos_s_loss(out, gt, w, static)
    # mean BCE towards 0 over the static pixels: (softplus(2) + softplus(-2)) / 2
    expect = (math.log1p(math.exp(2.0)) + math.log1p(math.exp(-2.0))) / 2
    assert r.parts["static"] == pytest.approx(expect, rel=1e-5)
    assert r.total.item() == pytest.approx(plain.total.item() + 3.0 * expect, rel=1e-5)
    # A frame without static pixels adds nothing; a missing map is an error, not a silent 0.
    assert gmos_s_loss(out, gt, w, torch.zeros_like(static)).total.item() == pytest.approx(
        plain.total.item()
    )
    with pytest.raises(ValueError, match="gt_static"):
        gmos_s_loss(out, gt, w)


def test_gmos_s_confidence_lowered_on_hard_raised_on_easy():
    # d L / d c~ = 20 L_mask - 0.5 / c~: positive for a bad mask, negative for a near-perfect one.
    gt = torch.tensor([[[1.0, 0.0]]])
    for fg_val, sign in (
        (torch.tensor([[[[-3.0, 3.0]]]]), 1),
        (torch.tensor([[[[12.0, -12.0]]]]), -1),
    ):
        conf = torch.full((1, 1), 2.0, requires_grad=True)
        out = {"fg_mask": fg_val, "iou_pred": torch.zeros(1, 1), "conf_pred": conf}
        gmos_s_loss(out, gt).total.backward()
        assert torch.sign(conf.grad).item() == sign


def _proposer_out(masks, motion, iou=None, conf=None):
    b, q = masks.shape[:2]
    return {
        "mask": masks,
        "motion_logits": motion.view(b, q, 1),
        "iou_pred": (iou if iou is not None else torch.zeros(b, q)).view(b, q, 1),
        "conf_pred": (conf if conf is not None else torch.ones(b, q)).view(b, q, 1),
    }


def test_proposer_loss_hand_value_one_query():
    masks = torch.zeros(1, 1, 1, 2)
    out = _proposer_out(masks, torch.zeros(1, 1), conf=torch.full((1, 1), 2.0))
    gt_m = [torch.tensor([[[1.0, 0.0]]])]
    gt_mv = [torch.tensor([1.0])]
    res = gmos_proposer_loss(out, gt_m, gt_mv)
    l_mask = 20 * 0.125 * LN2 + 1 / 3
    # iou: (0 - 0)^2; c~ (20 L_mask + 1 * BCE(0, 1) = ln 2); moving regulariser 0.1 * log 2
    expected = 2.0 * (20 * l_mask + LN2) - 0.1 * LN2
    assert res.total.item() == pytest.approx(expected, rel=1e-5)


def test_static_target_regulariser_uses_sta_weight():
    # A static target (empty mask, m = 0) only differs from a moving one in the regulariser.
    masks = torch.full((1, 1, 1, 2), -20.0)  # empty prediction: IoU target 1
    out = _proposer_out(masks, torch.full((1, 1), -20.0), iou=torch.ones(1, 1),
                        conf=torch.full((1, 1), 3.0))  # fmt: skip
    res = gmos_proposer_loss(out, [torch.zeros(1, 1, 2)], [torch.tensor([0.0])])
    w = GmosLossWeights()
    mask_l = mask_loss(masks[0], torch.zeros(1, 1, 2)).item()
    motion_l = float(torch.nn.functional.softplus(torch.tensor(-20.0)))
    expected = 3.0 * (w.mask * mask_l + motion_l) - w.conf_sta * math.log(3.0)
    assert res.total.item() == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_pairwise_costs_equal_the_losses():
    torch.manual_seed(0)
    lg = torch.randn(3, 10)
    tg = (torch.rand(4, 10) > 0.5).float()
    fc, dc = pairwise_focal_cost(lg, tg), pairwise_dice_cost(lg, tg)
    for q in range(3):
        for g in range(4):
            assert fc[q, g].item() == pytest.approx(
                sigmoid_focal_loss(lg[q : q + 1], tg[g : g + 1]).item(), rel=1e-5
            )
            assert dc[q, g].item() == pytest.approx(
                dice_loss(lg[q : q + 1], tg[g : g + 1]).item(), rel=1e-5
            )


def test_bce_term_of_the_mask_loss_and_its_matching_cost():
    torch.manual_seed(1)
    lg = torch.randn(3, 10)
    tg = (torch.rand(4, 10) > 0.5).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    # Mask2Former's 5 BCE + 5 dice with the focal term off.
    got = mask_loss(lg, tg[:3], focal_weight=0.0, dice_weight=5.0, bce_weight=5.0)
    for q in range(3):
        want = 5 * bce(lg[q], tg[q]) + 5 * dice_loss(lg[q : q + 1], tg[q : q + 1])[0]
        assert got[q].item() == pytest.approx(want.item(), rel=1e-5)
    bc = pairwise_bce_cost(lg, tg)
    for q in range(3):
        for g in range(4):
            assert bc[q, g].item() == pytest.approx(bce(lg[q], tg[g]).item(), rel=1e-5)
    # The matcher's mask cost follows the same weights: with BCE only it picks the target
    # of lowest BCE for each query.
    m = HungarianMatcher(focal_weight=0.0, dice_weight=0.0, bce_weight=1.0, motion_weight=0.0)
    c = m.cost_matrix(lg.view(3, 1, 10), torch.zeros(3), tg.view(4, 1, 10), torch.zeros(4))
    assert torch.allclose(c, m.mask_weight * bc, rtol=1e-5)
    # Default weights (Eq. 2) keep the loss as it was: focal + dice, no BCE.
    assert torch.allclose(
        mask_loss(lg, tg[:3]), 20 * sigmoid_focal_loss(lg, tg[:3]) + dice_loss(lg, tg[:3])
    )


def _targets():
    gt = torch.zeros(3, 8, 8)
    gt[0, :3, :3] = 1
    gt[1, 5:, 5:] = 1  # target 2 is static: empty mask
    return gt, torch.tensor([1.0, 1.0, 0.0])


def test_matching_recovers_planted_assignment_and_static_target():
    gt, mv = _targets()
    q = 6
    masks = torch.full((1, q, 8, 8), -8.0)
    motion = torch.full((1, q), 3.0)  # unassigned queries claim motion
    masks[0, 4] = gt[0] * 16 - 8
    masks[0, 1] = gt[1] * 16 - 8
    motion[0, 2] = -8.0  # the only query that says "static, empty"
    qi, gi = HungarianMatcher().match(masks, motion, [gt], [mv])[0]
    assert dict(zip(qi.tolist(), gi.tolist())) == {4: 0, 1: 1, 2: 2}


def test_matching_is_permutation_equivariant():
    torch.manual_seed(1)
    gt, mv = _targets()
    masks = torch.randn(1, 7, 8, 8) * 3
    motion = torch.randn(1, 7)
    m = HungarianMatcher()
    qi, gi = m.match(masks, motion, [gt], [mv])[0]
    perm = torch.randperm(7)
    qi2, gi2 = m.match(masks[:, perm], motion[:, perm], [gt], [mv])[0]
    # query perm[j] of the original is query j after permuting
    a = {int(perm[j]): int(g) for j, g in zip(qi2, gi2)}
    assert a == dict(zip(qi.tolist(), gi.tolist()))


def test_gradients_flow_to_every_output():
    torch.manual_seed(2)
    gt, mv = _targets()
    masks = torch.randn(2, 5, 8, 8, requires_grad=True)
    motion = torch.randn(2, 5, requires_grad=True)
    iou = torch.rand(2, 5, requires_grad=True)
    conf = (1 + 4 * torch.rand(2, 5)).requires_grad_(True)
    out = _proposer_out(masks, motion, iou, conf)
    res = gmos_proposer_loss(out, [gt, gt[:1]], [mv, mv[:1]])
    res.total.backward()
    for t in (masks, motion, iou, conf):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    assert res.metrics["matched"] == 4.0


def test_empty_ground_truth_frame():
    masks = torch.randn(1, 4, 8, 8, requires_grad=True)
    motion = torch.randn(1, 4, requires_grad=True)
    out = _proposer_out(masks, motion)
    res = gmos_proposer_loss(out, [torch.zeros(0, 8, 8)], [torch.zeros(0)])
    assert np.isfinite(res.total.item())
    res.total.backward()
    # No target: no mask term, every query is "no object" -> motion pushed down.
    assert masks.grad.abs().sum() == 0
    assert (motion.grad > 0).all()
    expected = torch.nn.functional.binary_cross_entropy_with_logits(motion, torch.zeros(1, 4))
    assert res.total.item() == pytest.approx(expected.item(), rel=1e-5)
    # Gmos-S on an empty frame: an empty prediction has IoU target 1.
    fg = torch.full((1, 1, 8, 8), -10.0)
    r = gmos_s_loss({"fg_mask": fg, "iou_pred": torch.ones(1, 1), "conf_pred": torch.ones(1, 1)},
                    torch.zeros(1, 8, 8))  # fmt: skip
    assert r.parts["iou"] == pytest.approx(0.0)


def test_no_object_weight_counts_motion_on_matched_queries():
    # Two queries, one target matched to query 0 (its mask fits); query 1 is "no object".
    masks = torch.full((1, 2, 1, 2), -20.0)
    masks[0, 0, 0, 0] = 20.0
    gt_m, gt_mv = [torch.tensor([[[1.0, 0.0]]])], [torch.tensor([1.0])]

    def total(motion_q1: float, no_object: float) -> float:
        out = _proposer_out(masks, torch.tensor([[0.0, motion_q1]]))
        w = GmosLossWeights(motion_no_object=no_object)
        return gmos_proposer_loss(out, gt_m, gt_mv, w).total.item()

    # Weight 0: the unmatched query's motion logit no longer enters the loss.
    assert total(3.0, 0.0) == pytest.approx(total(-3.0, 0.0), rel=1e-6)
    # Weight 1 (the plain mean of Eq. 2): it does.
    assert total(3.0, 1.0) > total(-3.0, 1.0) + 0.5


def test_iou_target_uses_the_runtime_threshold():
    logits = torch.tensor([[-1.0, -1.0, -5.0, -5.0]])
    target = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    assert binary_iou(logits, target).item() == 0.0  # nothing above 0
    assert binary_iou(logits, target, threshold=-2.0).item() == 1.0
