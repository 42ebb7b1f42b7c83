"""The proposer probe: what the motion head selects is scored against all queries."""

from __future__ import annotations

import math

import pytest
import torch

from gmos_core.bundle import save_bundle
from gmos_core.models.build import build_frame_model
from training.probe_proposer import probe_proposer


def _bundle(tiny_model: str, path, motion_bias: float) -> str:
    fm = build_frame_model(tiny_model, "gmos", seed=1)
    with torch.no_grad():
        last = [m for m in fm.head.motion_head.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.weight.zero_()
        last.bias.fill_(motion_bias)  # every query called moving (+) or static (-)
    save_bundle(path, fm.pi3, fm.sam2.sam_model, fm.head, config=tiny_model, variant="gmos")
    return str(path)


def test_the_motion_head_decides_which_masks_count(tiny_model, tmp_path):
    torch.set_num_threads(1)
    kw = dict(num_windows=3, mask_threshold=-1e9)  # every mask covers the frame: IoU > 0
    called = probe_proposer(_bundle(tiny_model, tmp_path / "all.safetensors", 20.0), **kw)
    none = probe_proposer(_bundle(tiny_model, tmp_path / "none.safetensors", -20.0), **kw)
    assert called["moving_objects"] > 0 == none["false_moving_per_frame"]
    assert 0 < called["best_iou_moving"] == called["best_iou_any"] <= 1
    assert none["best_iou_moving"] == 0 < none["best_iou_any"] <= 1
    # full-frame masks of 4 queries match no object at IoU 0.5: all 4 are false, per window
    assert called["false_moving_per_frame"] == 4
    assert not math.isnan(called["best_iou_any"])


def test_the_probe_refuses_held_out_seeds(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="held-out"):
        probe_proposer(tmp_path / "never_read.safetensors", num_windows=10, seed=899_995)
