"""A Gmos bundle with stage 1b's proposer: its weights, and a π³ slot that gives what stage 1b saw."""

from __future__ import annotations

import pytest
import torch

from gmos_core.bundle import read_bundle, read_bundle_info, sam2_feature_state, save_bundle
from gmos_core.models.build import build_frame_model, build_frame_model_from_bundle
from gmos_core.operating_point import OperatingPoint
from training.objects_bundle import main, objects_bundle
from training.resume import save_fp16_state


def _head_inputs(head, pi3_token: torch.Tensor) -> tuple:
    g = head.grid
    gen = torch.Generator().manual_seed(5)
    sam = torch.randn(1, head.sam_projector.proj.in_features, g, g, generator=gen)
    high = [torch.randn(1, *s, generator=gen) for s in head.high_res_shapes]
    return pi3_token, sam, high


def test_the_bundle_has_stage_1b_weights_and_its_proposer_ignores_the_pi3_feature(
    tiny_model, tmp_path
):
    torch.set_num_threads(1)
    stage2 = build_frame_model(tiny_model, "gmos", seed=1)
    bundle = save_bundle(
        tmp_path / "stage2.safetensors",
        stage2.pi3,
        stage2.sam2.sam_model,
        stage2.head,
        config=tiny_model,
        variant="gmos",
        operating_point=OperatingPoint(motion_threshold=0.3),
    )
    stage1b = build_frame_model(tiny_model, "gmos", seed=2)  # stands in for a stage-1b run
    objects = save_fp16_state(
        tmp_path / "objects.safetensors",
        {"sam2": sam2_feature_state(stage1b.sam2.sam_model), "head": stage1b.head},
        step=7,
        meta={"stage": "objects"},
    )
    out = objects_bundle(bundle, objects, tmp_path / "out" / "objects_gmos.safetensors")

    info, parts = read_bundle(out)
    assert info.variant == "gmos" and info.extra["step"] == "7"
    assert "untrained" in info.extra["motion_head"]
    assert info.operating_point == OperatingPoint()  # the head's point is not copied
    for k, v in stage2.pi3.state_dict().items():  # π³ from the bundle
        assert torch.equal(parts["pi3"][k].float(), v.half().float()), k
    for k, v in stage1b.head.state_dict().items():  # the proposer from stage 1b, but one tensor
        want = torch.zeros_like(v) if k == "pi3_projector.proj.weight" else v
        assert torch.equal(parts["head"][k].float(), want.half().float()), k

    # Any π³ feature gives what stage 1b's proposer gave with the zero token it was trained on.
    head = build_frame_model_from_bundle(out).head.eval()
    ref = stage1b.head.eval()
    for p in ref.parameters():  # the bundle stores float16
        p.data = p.data.half().float()
    pi3_dim = head.pi3_dim
    with torch.no_grad():
        want = ref(*_head_inputs(ref, torch.zeros(1, 1, 1, pi3_dim)))
        for seed in (0, 1):
            token = torch.randn(1, 4, 4, pi3_dim, generator=torch.Generator().manual_seed(seed))
            got = head(*_head_inputs(head, token))
            for key in ("mask", "iou_pred"):
                torch.testing.assert_close(got[key], want[key], atol=1e-4, rtol=1e-4)
        # ... and the stage-1b proposer itself does depend on it (the check could fail).
        moved = ref(*_head_inputs(ref, token))["mask"]
        assert not torch.allclose(moved, want["mask"], atol=1e-3)


def test_wrong_inputs_are_named(tiny_model, tmp_path):
    fm = build_frame_model(tiny_model, "gmos_s", seed=1)
    gs = save_bundle(
        tmp_path / "s.safetensors", fm.pi3, fm.sam2.sam_model, fm.head, tiny_model, "gmos_s"
    )
    state = save_fp16_state(tmp_path / "st.safetensors", {"head": fm.head}, 1, {"stage": "x"})
    with pytest.raises(ValueError, match="Gmos proposer bundle"):
        objects_bundle(gs, state, tmp_path / "o.safetensors")
    g = build_frame_model(tiny_model, "gmos", seed=1)
    gb = save_bundle(
        tmp_path / "g.safetensors", g.pi3, g.sam2.sam_model, g.head, tiny_model, "gmos"
    )
    with pytest.raises(ValueError, match="not a stage-1b state"):
        objects_bundle(gb, state, tmp_path / "o.safetensors")
    assert main(["--bundle", str(gb), "--objects", str(state), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()
    assert read_bundle_info(gb).variant == "gmos"
