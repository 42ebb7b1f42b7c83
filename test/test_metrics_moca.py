"""MoCA box success rate: behaviour of the motiongrouping MoCA_eval.py conventions."""

from __future__ import annotations

import numpy as np
import pytest

from gmos_core.metrics import (
    Evaluator,
    MetricInputError,
    MocaEvaluator,
    box_iou,
    gt_box_from_xywh,
    mask_to_box,
)


def _mask(h=60, w=80, fill=0):
    return np.full((h, w), fill, dtype=np.uint8)


def test_box_is_exclusive_bounding_rect():
    m = _mask()
    m[10:15, 20:30] = 255
    assert mask_to_box(m) == (20, 10, 30, 15)
    assert mask_to_box(_mask()) is None


def test_border_heuristic_inverts_bright_background():
    m = _mask(fill=255)
    m[20:30, 30:50] = 0  # a dark object on a white background
    assert mask_to_box(m) == (30, 20, 50, 30)
    # Exactly half of the border bright is not > 0.5: no inversion, the bright half wins.
    h, w = 20, 20
    m = _mask(h, w)
    m[:, : w // 2] = 255
    border = np.concatenate([m[0], m[-1], m[1:-1, 0], m[1:-1, -1]])
    assert (border > 127.5).mean() == 0.5
    assert mask_to_box(m) == (0, 0, w // 2, h)


def test_binarization_threshold_is_a_tenth_of_255():
    m = _mask()
    m[5:10, 5:10] = 25  # <= 25.5: background
    assert mask_to_box(m) is None
    m[5:10, 5:10] = 26
    assert mask_to_box(m) == (5, 5, 10, 10)


def test_colour_masks_are_averaged():
    m = np.zeros((30, 30, 3), dtype=np.uint8)
    m[5:10, 5:15, 2] = 255  # mean 85 > 25.5
    m[20:25, 20:25, 2] = 60  # mean 20 <= 25.5
    assert mask_to_box(m) == (5, 5, 15, 10)


def test_largest_bounding_rect_wins_not_largest_contour_area():
    m = _mask(100, 100)
    m[5:25, 5:25] = 255  # 20x20 square: contour area ~361, rect area 400
    for i in range(60):  # thin diagonal: tiny contour area, 60x60 rect
        m[35 + i, 35 + i] = 255
    assert mask_to_box(m) == (35, 35, 95, 95)
    m2 = _mask(100, 100)
    m2[5:25, 5:25] = 255
    m2[60:65, 60:70] = 255
    assert mask_to_box(m2) == (5, 5, 25, 25)


def test_box_iou_without_plus_one():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching edges do not overlap
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    with pytest.raises(MetricInputError, match="x1, y1, x2, y2"):
        box_iou((0, 0, 1), (0, 0, 1, 1))


def test_gt_box_clipping_shifts_the_box():
    assert gt_box_from_xywh(-4, 3, 10, 5) == (0.0, 3.0, 10.0, 8.0)


def test_strict_threshold():
    m = _mask()
    m[10:15, 10:20] = 255  # box (10, 10, 20, 15)
    ev = MocaEvaluator()
    ev.process("v", masks=m[None], gt_boxes={0: (10, 10, 20, 20)})  # IoU exactly 0.5
    assert ev.videos[0].ious.tolist() == [0.5]
    out = ev.evaluate()
    assert out["SR@0.5"] == 0.0
    assert out["mean_IoU"] == 0.5


def test_pooling_frames_vs_video_weighted_iou():
    hit = _mask()
    hit[10:20, 10:20] = 255
    ev = MocaEvaluator()
    assert isinstance(ev, Evaluator)
    ev.process("a", masks=hit[None], gt_boxes={0: (10, 10, 20, 20)})
    ev.process(
        "b",
        masks=np.stack([_mask()] * 3),
        gt_boxes={0: (1, 1, 5, 5), 1: (1, 1, 5, 5), 2: (1, 1, 5, 5)},
    )
    out = ev.evaluate()
    assert out["SR@0.5"] == pytest.approx(1 / 4)  # pooled over frames
    assert out["mean_IoU"] == pytest.approx(0.5)  # mean of per-video means (1 and 0)
    assert out["num_frames"] == 4 and out["num_videos"] == 2
    ev.reset()
    with pytest.raises(MetricInputError, match="no annotated frames"):
        ev.evaluate()


def test_only_annotated_frames_with_masks_are_scored():
    m = _mask()
    m[10:20, 10:20] = 255
    masks = np.stack([m, _mask(), m])
    ev = MocaEvaluator()
    # Frame 1 has no box (not scored); frame 5 has no mask (skipped like the script).
    ev.process(
        "v", masks=masks, gt_boxes={0: (10, 10, 20, 20), 2: (10, 10, 20, 20), 5: (0, 0, 4, 4)}
    )
    assert ev.videos[0].frames.tolist() == [0, 2]
    assert ev.evaluate()["SR@0.9"] == 1.0


def test_boxes_rescaled_to_image_size():
    m = _mask(30, 40)
    m[5:10, 10:20] = 255  # box (10, 5, 20, 10) at mask size
    ev = MocaEvaluator()
    ev.process("v", masks=[m], gt_boxes={0: (20, 10, 40, 20)}, image_size=(60, 80))
    assert ev.videos[0].ious.tolist() == [1.0]


def test_motion_categories_and_errors():
    m = _mask()
    m[10:20, 10:20] = 255
    ev = MocaEvaluator()
    boxes = {0: (10, 10, 20, 20), 1: (30, 30, 40, 40)}
    ev.process("v", masks=[m, m], gt_boxes=boxes, motion={0: 0, 1: 2})
    out = ev.evaluate()
    assert out["SR@0.5/locomotion"] == 1.0 and out["SR@0.5/static"] == 0.0
    assert "SR@0.5/deformation" not in out
    with pytest.raises(MetricInputError, match="already processed"):
        ev.process("v", masks=[m], gt_boxes={0: (0, 0, 1, 1)})
    with pytest.raises(MetricInputError, match="no motion label"):
        ev.process("w", masks=[m, m], gt_boxes=boxes, motion={0: 0})
    with pytest.raises(MetricInputError, match="motion label 7"):
        ev.process("w2", masks=[m], gt_boxes={0: (0, 0, 1, 1)}, motion={0: 7})
    with pytest.raises(MetricInputError, match="x frame 0.*2 x 2"):
        MocaEvaluator().process("x", masks=[np.zeros((1, 5), np.uint8)], gt_boxes={0: (0, 0, 1, 1)})
