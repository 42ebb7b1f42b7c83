"""Stage 1 of the micro recipe: π³ motion pretraining (loss, probe, checkpoint hand-over)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from gmos_core.models.build import GmosModelConfig, build_frame_model
from training.pretrain_pi3 import (
    MotionProbe,
    Pi3PretrainConfig,
    _forward_geometry,
    cell_weights,
    main,
    motion_probe_loss,
    motion_stream,
    pretrain,
    pretrain_config_from_dict,
)
from training.train import compose_config
from training.trainer import OptimConfig


def test_probe_shapes_and_cell_order():
    probe = MotionProbe(dim=8, subdivide=2)
    with torch.no_grad():
        probe.proj.weight.zero_()
        probe.proj.bias.copy_(torch.tensor([0.0, 1.0, 2.0, 3.0]))
    out = probe(torch.zeros(2, 5, 3, 4, 8))
    assert out.shape == (2, 5, 6, 8)
    # Each token's 4 outputs fill its own 2x2 block, row-major (pixel_shuffle order).
    assert out[0, 0, :2, :2].tolist() == [[0.0, 1.0], [2.0, 3.0]]
    assert out[1, 4, 4:6, 6:8].tolist() == [[0.0, 1.0], [2.0, 3.0]]


def test_motion_probe_loss_prefers_the_right_answer():
    target = torch.zeros(2, 5, 6, 6)
    target[:, :, 1:4, 2:5] = 1.0
    target[1, 3] = 0.0  # an empty frame: excluded from the IoU
    good = (target * 2 - 1) * 8
    loss_good, parts = motion_probe_loss(good, target, pos_weight=3.0, dice_weight=1.0)
    loss_bad, bad_parts = motion_probe_loss(-good, target, pos_weight=3.0, dice_weight=1.0)
    assert parts["fg_iou"] == pytest.approx(1.0) and bad_parts["fg_iou"] == pytest.approx(0.0)
    assert float(loss_good) < 0.3 < float(loss_bad)


def test_static_objects_weigh_more_only_when_asked():
    static = torch.zeros(1, 5, 12, 12)
    static[0, :, :6, :6] = 1.0  # a static object on the top-left quarter of every frame
    batch = {"gt_static_window": static}
    shape = torch.Size((1, 5, 6, 6))
    assert cell_weights(batch, shape, 1.0) is None  # the committed recipe: plain BCE
    w = cell_weights(batch, shape, 4.0)
    assert w.shape == shape
    assert torch.equal(w[0, :, :3, :3], torch.full((5, 3, 3), 4.0))
    assert torch.equal(w[0, :, 3:, :], torch.ones(5, 3, 6))
    # A probe that fires on the static object costs more with the weight than without.
    target = torch.zeros(shape)
    fires = torch.full(shape, -4.0)
    fires[0, :, :3, :3] = 4.0
    plain, _ = motion_probe_loss(fires, target, 3.0, 0.0)
    heavy, _ = motion_probe_loss(fires, target, 3.0, 0.0, w)
    assert float(heavy) > 2 * float(plain)
    with pytest.raises(ValueError, match="static_weight"):
        pretrain_config_from_dict(compose_config("pi3_micro", ["+static_weight=0"]))


def test_geometry_alone_keeps_the_probe_gradient_out_of_pi3(tiny_model):
    pi3 = build_frame_model(tiny_model, "gmos", with_pi3_heads=False).pi3
    probe = MotionProbe(pi3.embed_dim, 2)
    frames = torch.rand(1, 5, 3, 28, 28)
    for detach in (False, True):
        pi3.zero_grad(set_to_none=True)
        probe.zero_grad(set_to_none=True)
        logits, _ = _forward_geometry(pi3, probe, frames, detach_probe=detach)
        logits.square().mean().backward()
        pi3_grad = sum(float(p.grad.abs().sum()) for p in pi3.parameters() if p.grad is not None)
        assert float(probe.proj.weight.grad.abs().sum()) > 0  # the probe learns either way
        assert (pi3_grad == 0.0) == detach
    with pytest.raises(ValueError, match="motion_weight"):
        pretrain_config_from_dict(compose_config("pi3_micro", ["+motion_weight=0"]))
    cfg = pretrain_config_from_dict(
        compose_config("pi3_micro", ["+motion_weight=0", "+geometry_weight=1"])
    )
    assert cfg.motion_weight == 0.0


def test_pretraining_learns_and_hands_pi3_to_stage_two(tiny_model, tmp_path):
    torch.set_num_threads(1)
    model = Path(tiny_model)
    data = {"kind": "synthetic", "height": 64, "width": 64, "duration_s": 1.0,
            "windows_per_scene": 4, "num_scenes": 1}  # fmt: skip
    cfg = Pi3PretrainConfig(
        model=str(model),
        max_steps=40,
        batch_size=4,
        threads=1,
        log_every=10,
        ckpt_every=100,
        plot_every=20,
        out_dir=str(tmp_path / "pt"),
        optim=OptimConfig(lr=2e-3, warmup_fraction=0.1),
        data=data,
        curriculum_steps=2,
        curriculum_scene={"camera_speed_mps": (0.01, 0.02)},
        val_windows=4,
    )
    summary = pretrain(cfg)
    val = summary["validation"]
    assert val["windows"] == 4 and math.isfinite(val["loss"])
    # The pixel-level IoU (probe logits upsampled to the label masks) is a proper IoU.
    assert 0.0 <= val["pooled_iou_px"] <= 1.0
    out = Path(cfg.out_dir)
    rows = (out / "log.csv").read_text().strip().splitlines()
    assert rows[0].split(",")[:6] == ["step", "lr", "loss", "bce", "dice", "fg_iou"]
    losses = [float(r.split(",")[2]) for r in rows[1:]]
    # One scene, 4 windows seen 10 times: the probe loss must fall (it learns, not just runs).
    assert summary["step"] == 40 and losses[-1] < 0.8 * losses[0]
    assert (out / "loss.png").stat().st_size > 0
    # Stage 2 loads the file through the official π³ loader: identical weights.
    fm = build_frame_model(
        GmosModelConfig.load(str(model)), "gmos_s", pi3_checkpoint=out / "pi3.safetensors"
    )
    from safetensors.torch import load_file

    saved = load_file(str(out / "pi3.safetensors"))
    assert saved and all(torch.equal(saved[k], v) for k, v in fm.pi3.state_dict().items())


def test_config_composes_and_rejects_unknown_keys():
    cfg = pretrain_config_from_dict(compose_config("pi3_micro", ["max_steps=5"]))
    assert cfg.max_steps == 5 and cfg.data["seed_start"] == 500000
    assert cfg.optim.grad_clip == 1.0
    with pytest.raises(ValueError, match="unknown pi3 pretraining keys"):
        pretrain_config_from_dict({"not_a_key": 1})
    assert main(["--config-name", "pi3_micro", "not_a_key=1"]) == 2
    # Stage 2 recipes point at the stage 1 output and keep that π³ frozen.
    for name in ("gmos_s_micro", "gmos_micro"):
        raw = compose_config(name, [])
        assert raw["pi3_checkpoint"] == "out/train/pi3_micro/pi3.safetensors"
        assert raw["train_pi3"] is False
    # Both start from a committed stage-1b state with its SAM2 frozen (Gmos also takes the
    # proposer from it): Gmos-S from step 6000 (its SAM2 part only, session 10), Gmos from
    # step 14000 (session 9).
    root = Path(__file__).resolve().parents[1]
    for name, state in (
        ("gmos_s_micro", "objects_stage1b_step6000_sam2.safetensors"),
        ("gmos_micro", "objects_stage1b_step14000.safetensors"),
    ):
        raw = compose_config(name, [])
        assert raw["train_encoders"] is False
        assert raw["init_objects"] == f"training/checkpoints/micro/{state}"
        assert (root / raw["init_objects"]).is_file()


def test_composing_a_recipe_leaves_sam2_buildable():
    import sam2  # noqa: F401  (registers its Hydra config module on import)
    from hydra.core.global_hydra import GlobalHydra

    compose_config("pi3_micro", [])
    # SAM2's own builders (used directly by the SAM2 tracker) compose from the global module.
    assert GlobalHydra.instance().is_initialized()
    from hydra import compose

    assert compose(config_name="configs/sam2.1/sam2.1_hiera_t.yaml").model is not None


def test_device_is_checked_when_the_config_is_read():
    raw = compose_config("pi3_micro", ["device=cuda"])
    if torch.cuda.is_available():
        assert pretrain_config_from_dict(raw).device == "cuda"
        return
    with pytest.raises(ValueError, match="no CUDA device"):
        pretrain_config_from_dict(raw)
    assert main(["--config-name", "pi3_micro", "device=cuda"]) == 2
    with pytest.raises(RuntimeError):
        pretrain_config_from_dict(compose_config("pi3_micro", ["device=not_a_device"]))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none)")
def test_pretraining_on_cuda_follows_the_cpu_run(tiny_model, tmp_path):
    torch.set_num_threads(1)
    data = {"kind": "synthetic", "height": 64, "width": 64, "duration_s": 1.0,
            "windows_per_scene": 2, "num_scenes": 2}  # fmt: skip
    runs = {}
    for device in ("cpu", "cuda"):
        cfg = Pi3PretrainConfig(
            model=str(tiny_model), max_steps=3, batch_size=2, threads=1, log_every=1,
            ckpt_every=100, plot_every=100, out_dir=str(tmp_path / device), data=data,
            val_windows=2, device=device,
        )  # fmt: skip
        runs[device] = pretrain(cfg)
    # Same float32 recipe, same data: the first step's loss agrees (later steps drift apart
    # by float rounding only); the saved π³ is a CPU file either way.
    first = {d: float((tmp_path / d / "log.csv").read_text().splitlines()[1].split(",")[2])
             for d in runs}  # fmt: skip
    assert first["cuda"] == pytest.approx(first["cpu"], rel=1e-3)
    from safetensors.torch import load_file

    assert load_file(str(tmp_path / "cuda" / "pi3.safetensors"))


def _heads_run(model: str, out: Path, body: str, **kw) -> Pi3PretrainConfig:
    data = {"kind": "synthetic", "height": 64, "width": 64, "duration_s": 1.0,
            "windows_per_scene": 2, "num_scenes": 2}  # fmt: skip
    base = dict(
        model=model, max_steps=6, batch_size=2, threads=1, log_every=2, ckpt_every=100,
        plot_every=100, out_dir=str(out), optim=OptimConfig(lr=2e-3, warmup_fraction=0.1),
        data=data, val_windows=0, geometry_weight=1.0, train_body=False, body_fp16=body,
    )  # fmt: skip
    return Pi3PretrainConfig(**{**base, **kw})


def test_heads_only_stage_keeps_body_and_probe_bitwise(tiny_model, tmp_path):
    from safetensors.torch import load_file

    from gmos_core.models.build import build_pi3
    from gmos_core.models.pi3_heads import HEAD_NAMES
    from training.pretrain_pi3 import _add_heads
    from training.resume import load_fp16_state

    torch.set_num_threads(1)
    # A motion-only stage 1 (2 steps) gives the body the heads-only stage freezes.
    s1 = dataclasses.replace(
        _heads_run(tiny_model, tmp_path / "s1", ""),
        train_body=True, geometry_weight=0.0, max_steps=2,
    )  # fmt: skip
    pretrain(s1)
    body_state = str(tmp_path / "s1" / "state_fp16.safetensors")
    body16 = load_fp16_state(body_state)

    cfg = _heads_run(tiny_model, tmp_path / "h", body_state)
    summary = pretrain(cfg)
    assert summary["step"] == 6
    saved = load_file(str(tmp_path / "h" / "pi3.safetensors"))
    probe = load_file(str(tmp_path / "h" / "probe.safetensors"))
    body = {k: v for k, v in saved.items() if k.split(".", 1)[0] not in HEAD_NAMES}
    heads = {k: v for k, v in saved.items() if k.split(".", 1)[0] in HEAD_NAMES}
    # Body and probe: exactly the stage-1 float16 values (cast to float32), after 6 steps.
    assert set(body) == set(body16.parts["pi3"]) and heads
    assert all(torch.equal(v, body16.parts["pi3"][k].float()) for k, v in body.items())
    assert all(torch.equal(v, body16.parts["probe"][k].float()) for k, v in probe.items())
    # Heads: moved away from their initialisation (same seed, same construction order).
    torch.manual_seed(cfg.seed)
    init = build_pi3(GmosModelConfig.load(tiny_model))
    _add_heads(init, cfg)
    init_sd = init.state_dict()
    changed = [k for k, v in heads.items() if not torch.equal(v, init_sd[k])]
    assert len(changed) == len(heads)
    # The committed state holds the heads alone.
    st = load_fp16_state(tmp_path / "h" / "state_fp16.safetensors")
    assert set(st.parts) == {"pi3_heads"} and set(st.parts["pi3_heads"]) == set(heads)
    rows = (tmp_path / "h" / "log.csv").read_text().strip().splitlines()
    assert "geo_depth" in rows[0].split(",") and "geo_scale_err" in rows[0].split(",")

    # Resumable: 3 + 3 steps in two runs equal the 6-step run bit for bit.
    chunk = _heads_run(tiny_model, tmp_path / "c", body_state, stop_at_step=3)
    assert pretrain(chunk)["step"] == 3
    assert pretrain(dataclasses.replace(chunk, stop_at_step=0))["step"] == 6
    again = load_file(str(tmp_path / "c" / "pi3.safetensors"))
    assert all(torch.equal(again[k], v) for k, v in saved.items())

    # A fresh clone continues from the committed heads-only state; a full state is refused.
    cont = _heads_run(tiny_model, tmp_path / "f", body_state, max_steps=8,
                      resume_fp16=str(tmp_path / "h" / "state_fp16.safetensors"))  # fmt: skip
    assert pretrain(cont)["started_from"]["step"] == 6
    bad = _heads_run(tiny_model, tmp_path / "b", body_state, resume_fp16=body_state)
    with pytest.raises(ValueError, match="not a heads-only state"):
        pretrain(bad)


def test_heads_only_config_is_checked():
    cfg = pretrain_config_from_dict(compose_config("pi3_heads_micro", []))
    assert not cfg.train_body and cfg.geometry_weight > 0 and Path(cfg.body_fp16).is_file()
    with pytest.raises(ValueError, match="geometry_weight must be > 0"):
        pretrain_config_from_dict(compose_config("pi3_heads_micro", ["geometry_weight=0.0"]))
    with pytest.raises(ValueError, match="needs body_fp16"):
        pretrain_config_from_dict(compose_config("pi3_heads_micro", ["body_fp16=nope.st"]))


def test_late_phase_switches_the_mix_at_its_step_and_keeps_the_seeds():
    from training.datasets import SyntheticWindowDataset, WindowSpec, synthetic_config_from_dict

    spec = WindowSpec(num_frames=5, pi3_pixel_limit=32 * 32, sam_size=32, mask_size=16)
    data = {"kind": "synthetic", "height": 32, "width": 32, "duration_s": 1.0,
            "windows_per_scene": 1, "num_scenes": 50, "seed_start": 1000,
            "scene": {"camera_speed_mps": (0.1, 0.2)}}  # fmt: skip
    late = {"camera_speed_mps": (0.9, 1.0), "p_hard_parallax": 0.5}
    cfg = Pi3PretrainConfig(batch_size=2, curriculum_steps=3, late_from_step=5, late_scene=late)
    data.pop("kind")
    stream = motion_stream(cfg, data, spec)
    assert len(stream) == 50
    regular = SyntheticWindowDataset(synthetic_config_from_dict(data), spec)
    broad = SyntheticWindowDataset(
        synthetic_config_from_dict({**data, "scene": {**data["scene"], **late}}), spec
    )
    # Global step 5 of batch 2 is global item 10, stream item 10 - 3 * 2 = 4.
    for k, ref in ((0, regular), (3, regular), (4, broad), (7, broad)):
        a, b = stream[k], ref[k]
        assert torch.equal(torch.as_tensor(a["pi3"]), torch.as_tensor(b["pi3"])), k
    assert not torch.equal(torch.as_tensor(stream[4]["pi3"]), torch.as_tensor(regular[4]["pi3"]))
    # Without a late phase the stream is the regular one.
    plain = motion_stream(Pi3PretrainConfig(batch_size=2), data, spec)
    assert torch.equal(torch.as_tensor(plain[4]["pi3"]), torch.as_tensor(regular[4]["pi3"]))
    with pytest.raises(ValueError, match="after the curriculum"):
        motion_stream(dataclasses.replace(cfg, late_from_step=2), data, spec)
    with pytest.raises(ValueError, match="past data.num_scenes"):
        motion_stream(dataclasses.replace(cfg, late_from_step=40), data, spec)
