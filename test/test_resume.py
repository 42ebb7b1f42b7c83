"""Training that accumulates: stages 1 and 1b resumed in chunks equal one straight run.

Stage 2's trainer has the same property (`test_trainer.py::test_train_checkpoint_formats_and_resume`).
"""

from __future__ import annotations

import csv
import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from gmos_core.models.pi3_heads import HEAD_NAMES
from training.pretrain_objects import (
    ObjectFrameDataset,
    ObjectLossWeights,
    ObjectPretrainConfig,
    best_query_iou,
    object_loss,
    pretrain_objects,
)
from training.pretrain_pi3 import Pi3PretrainConfig, pretrain
from training.resume import load_fp16_state, rewarm_factor
from training.trainer import OptimConfig, lr_lambda

DATA = {"kind": "synthetic", "height": 64, "width": 64, "duration_s": 1.0, "num_scenes": 50}
# One frame or window per step, every step logged: the run settings of every test stage here.
QUICK = dict(batch_size=1, threads=1, log_every=1, plot_every=100)


def _objects_cfg(tiny_model: str, out: Path, **kw) -> ObjectPretrainConfig:
    base = dict(
        model=tiny_model,
        max_steps=4,
        ckpt_every=1,
        val_every=0,
        val_clips=1,
        val_frames_per_clip=1,
        out_dir=str(out),
        resume_fp16="",
        optim=OptimConfig(lr=1e-3, warmup_fraction=0.25),
        data=DATA,
        **QUICK,
    )
    base.update(kw)
    return ObjectPretrainConfig(**base)


def _losses(out: Path) -> list[float]:
    with (out / "log.csv").open() as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def _state(out: Path) -> dict[str, torch.Tensor]:
    st = torch.load(out / "last.pt", weights_only=True)
    flat = {}
    for part in ("sam2", "head", "pi3", "probe"):
        for k, v in st.get(part, {}).items():
            flat[f"{part}.{k}"] = v
    return flat


def test_object_pretraining_two_chunks_equal_one_run_bitwise(tiny_model, tmp_path):
    torch.set_num_threads(1)
    straight = pretrain_objects(_objects_cfg(tiny_model, tmp_path / "a"))
    assert straight["step"] == 4 and straight["started_from"]["kind"] == "fresh"
    cfg_b = _objects_cfg(tiny_model, tmp_path / "b")
    first = pretrain_objects(dataclasses.replace(cfg_b, stop_at_step=2))
    assert first["step"] == 2 and first["stopped_early"]
    second = pretrain_objects(cfg_b)
    assert second["started_from"] == {
        "kind": "full",
        "step": 2,
        "path": str(tmp_path / "b/last.pt"),
    }
    a, b = _state(tmp_path / "a"), _state(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # The log continues across the resumption: the same loss curve, step for step.
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")

    # A fresh clone has only the committed float16 state: it resumes at its step with a new
    # optimiser and a re-warmed learning rate.
    committed = tmp_path / "objects_fp16.safetensors"
    shutil.copy(tmp_path / "b" / "state_fp16.safetensors", committed)
    st = load_fp16_state(committed)
    assert st.step == 4 and set(st.parts) == {"sam2", "head"}
    assert all(v.dtype == torch.float16 for v in st.parts["head"].values() if v.is_floating_point())
    cfg_c = _objects_cfg(
        tiny_model, tmp_path / "c", max_steps=6, resume_fp16=str(committed), rewarm_steps=2
    )
    third = pretrain_objects(cfg_c)
    assert third["started_from"]["kind"] == "fp16" and third["step"] == 6
    with (tmp_path / "c" / "log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [5, 6]
    # Re-warm: the first step after the fp16 resume runs at half the scheduled rate, the
    # second at the full one (the schedule is over the TOTAL steps).
    o = cfg_c.optim
    assert float(rows[0]["lr"]) == pytest.approx(o.lr * lr_lambda(4, 6, o) / 2)
    assert float(rows[1]["lr"]) == pytest.approx(o.lr * lr_lambda(5, 6, o))


def test_pi3_pretraining_two_chunks_equal_one_run_bitwise(tiny_model, tmp_path):
    torch.set_num_threads(1)

    def cfg(out: Path, **kw) -> Pi3PretrainConfig:
        return Pi3PretrainConfig(
            model=tiny_model,
            max_steps=4,
            batch_size=1,
            threads=1,
            log_every=1,
            ckpt_every=1,
            plot_every=100,
            out_dir=str(out),
            val_windows=0,
            data={**DATA, "windows_per_scene": 1},
            optim=OptimConfig(lr=1e-3, warmup_fraction=0.25),
            **kw,
        )

    pretrain(cfg(tmp_path / "a"))
    first = pretrain(cfg(tmp_path / "b", stop_at_step=2))
    assert first["step"] == 2
    second = pretrain(cfg(tmp_path / "b"))
    assert second["started_from"]["kind"] == "full" and second["step"] == 4
    a, b = _state(tmp_path / "a"), _state(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")
    assert set(load_fp16_state(tmp_path / "b" / "state_fp16.safetensors").parts) == {
        "pi3",
        "probe",
    }


def test_motion_only_pi3_state_continues_with_geometry_heads(tiny_model, tmp_path):
    # The committed stage 1 has no heads; continuing it with geometry targets keeps its
    # encoder, decoder and probe and starts the heads fresh (issue 16's comparison).
    torch.set_num_threads(1)
    base = dict(
        model=tiny_model,
        batch_size=1,
        threads=1,
        log_every=1,
        ckpt_every=1,
        plot_every=100,
        val_windows=0,
        data={**DATA, "windows_per_scene": 1},
        optim=OptimConfig(lr=1e-3, warmup_fraction=0.25),
    )
    pretrain(Pi3PretrainConfig(**base, max_steps=2, out_dir=str(tmp_path / "a")))
    committed = tmp_path / "pi3_stage1.safetensors"
    shutil.copy(tmp_path / "a" / "state_fp16.safetensors", committed)
    motion_only = load_fp16_state(committed).parts["pi3"]
    geo = Pi3PretrainConfig(
        **base,
        max_steps=3,
        out_dir=str(tmp_path / "g"),
        resume_fp16=str(committed),
        geometry_weight=1.0,
    )
    summary = pretrain(geo)
    assert summary["started_from"]["kind"] == "fp16" and summary["step"] == 3
    parts = load_fp16_state(tmp_path / "g" / "state_fp16.safetensors").parts["pi3"]
    heads = [k for k in parts if k not in motion_only]
    assert heads and all(k.split(".")[0] in HEAD_NAMES for k in heads)


def test_rewarm_factor_ramps_after_an_fp16_resume():
    assert rewarm_factor(100, 100, 4) == 0.25
    assert rewarm_factor(103, 100, 4) == 1.0
    assert rewarm_factor(50, -(10**9), 4) == 1.0
    assert rewarm_factor(7, 5, 0) == 1.0


def test_object_frames_target_every_object_and_best_query_iou():
    ds = ObjectFrameDataset({}, 800_000, 3, 64, 64, 8, 10.0, 256, 32, 2, frames_per_scene=2)
    item = ds[0]
    g = item["gt_masks"]
    # Static objects are targets too (the point of this stage).
    assert g.shape[0] >= 2 and not bool(item["is_dynamic"].all())
    assert item["sam"].shape == (3, 256, 256) and g.shape[1:] == (32, 32)
    # A query equal to target 0 scores 1 for it; a query of nothing scores 0.
    logits = torch.full((3, 32, 32), -12.0)
    logits[1][g[0] > 0.5] = 12.0
    iou = best_query_iou(logits, g)
    assert iou[0] == 1.0 and iou.shape == (g.shape[0],)
    # The loss matches query 1 to target 0 and gives it ~zero mask loss.
    out = {"mask": logits[None], "iou_pred": torch.zeros(1, 3, 1)}
    loss, parts = object_loss(out, [g[:1]], ObjectLossWeights())
    assert parts["matched_iou"] == 1.0 and parts["mask"] < 0.05


def _stage2_trainer(tiny_model: str, out: Path, objects: Path, **kw):
    """A stage-2 Trainer on 64x64 synthetic windows, SAM2 and the head from stage 1b."""
    from training.datasets import SyntheticDataConfig, SyntheticWindowDataset
    from training.train import window_spec
    from training.trainer import TrainConfig, Trainer

    base = dict(
        model=tiny_model,
        train_encoders=False,
        init_objects=str(objects),
        max_steps=2,
        out_dir=str(out),
        data={"kind": "synthetic", "height": 64, "width": 64, "duration_s": 1.0},
        **QUICK,
    )
    c = TrainConfig(**(base | kw))
    d = dict(c.data)
    d.pop("kind")
    return Trainer(c, SyntheticWindowDataset(SyntheticDataConfig(**d), window_spec(c)))


def test_stage2_starts_from_stage1b_and_resumes_from_its_fp16_state(tiny_model, tmp_path):
    torch.set_num_threads(1)
    pretrain_objects(_objects_cfg(tiny_model, tmp_path / "objects", max_steps=1))
    objects = tmp_path / "objects" / "state_fp16.safetensors"
    kw = dict(
        variant="gmos", head_dropout=0.0, max_steps=4, ckpt_every=1, optim=OptimConfig(lr=1e-3)
    )
    tr = _stage2_trainer(tiny_model, tmp_path / "s2", objects, **kw)
    st = load_fp16_state(objects)
    head = tr.module.head.state_dict()
    assert all(torch.equal(head[k], v.float()) for k, v in st.parts["head"].items())
    assert all(m.p == 0.0 for m in tr.module.head.modules() if isinstance(m, torch.nn.Dropout))
    sam_before = {k: v.clone() for k, v in tr.module.sam2.sam_model.state_dict().items()}
    tr.cfg = dataclasses.replace(tr.cfg, max_steps=2)  # interrupted after 2 of 4 steps
    tr.fit()
    # SAM2 from stage 1b stays frozen; the committable state holds the head only.
    assert all(
        torch.equal(v, sam_before[k]) for k, v in tr.module.sam2.sam_model.state_dict().items()
    )
    st2 = load_fp16_state(tmp_path / "s2" / "state_fp16.safetensors")
    assert set(st2.parts) == {"head"} and st2.step == 2
    committed = tmp_path / "gmos_stage2.safetensors"
    shutil.copy(tmp_path / "s2" / "state_fp16.safetensors", committed)
    tr3 = _stage2_trainer(
        tiny_model,
        tmp_path / "clone",
        objects,
        resume_fp16=str(committed),
        rewarm_steps=2,
        **kw,
    )
    summary = tr3.fit()
    assert summary["step"] == 4 and tr3.rewarm_at == 2
    with (tmp_path / "clone" / "log.csv").open() as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [3, 4]


def _gmos_stage2_after_stage1b(tiny_model: str, tmp_path: Path, **kw):
    """A Gmos stage-2 Trainer (one thread) starting from a 1-step stage 1b run in tmp_path."""
    torch.set_num_threads(1)
    pretrain_objects(_objects_cfg(tiny_model, tmp_path / "objects", max_steps=1))
    objects = tmp_path / "objects" / "state_fp16.safetensors"
    return _stage2_trainer(
        tiny_model, tmp_path / "s2", objects, variant="gmos", ckpt_every=100, **kw
    )


def test_frozen_head_parts_keep_their_stage1b_values_while_the_rest_trains(tiny_model, tmp_path):
    from training.trainer import freeze_head_parts

    tr = _gmos_stage2_after_stage1b(
        tiny_model,
        tmp_path,
        frozen_head=["trans_decoder", "upsampling"],
        optim=OptimConfig(lr=1e-2, warmup_fraction=0.01),
    )
    before = {k: v.clone() for k, v in tr.module.head.state_dict().items()}
    tr.fit()
    after = tr.module.head.state_dict()
    frozen = [k for k in before if k.startswith(("trans_decoder.", "upsampling."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    trained = [k for k in before if k.startswith(("motion_head.", "trans_encoder."))]
    assert any(not torch.equal(before[k], after[k]) for k in trained)
    with pytest.raises(ValueError, match="trans_decodr"):
        freeze_head_parts(tr.module.head, ["trans_decodr"])


def test_head_lr_scale_gives_a_head_part_its_own_rate_through_the_schedule(tiny_model, tmp_path):
    from training.trainer import head_param_groups

    tr = _gmos_stage2_after_stage1b(
        tiny_model,
        tmp_path,
        head_lr_scale={"motion_head": 10.0},
        optim=OptimConfig(lr=1e-3, warmup_fraction=0.01),
    )
    groups = tr.optimizer.param_groups
    motion = {id(p) for p in tr.module.head.motion_head.parameters()}
    assert [len(g["params"]) for g in groups][1] == len(motion)
    assert {id(p) for p in groups[1]["params"]} == motion
    assert not motion & {id(p) for p in groups[0]["params"]}
    # Every trainable parameter is in exactly one group.
    n_train = sum(1 for p in tr.module.parameters() if p.requires_grad)
    assert sum(len(g["params"]) for g in groups) == n_train
    assert tr.scheduler.base_lrs == pytest.approx([1e-3, 1e-2])
    tr.cfg = dataclasses.replace(tr.cfg, max_steps=1)  # stopped after 1 of 2 steps
    tr.fit()
    assert groups[0]["lr"] > 0 and groups[1]["lr"] == pytest.approx(10 * groups[0]["lr"])
    head = tr.module.head
    with pytest.raises(ValueError, match="motion_hed"):
        head_param_groups(tr.module, head, 1e-3, {"motion_hed": 2.0})
    with pytest.raises(ValueError, match="overlaps"):
        head_param_groups(tr.module, head, 1e-3, {"motion_head": 2.0, "motion_head.layers": 3.0})
    with pytest.raises(ValueError, match="> 0"):
        head_param_groups(tr.module, head, 1e-3, {"motion_head": 0.0})


def test_gmos_s_takes_stage1b_sam2_frozen_and_exports_snapshots(tiny_model, tmp_path):
    from gmos_core.bundle import read_bundle
    from training.trainer import snapshot_path

    torch.set_num_threads(1)
    pretrain_objects(_objects_cfg(tiny_model, tmp_path / "objects", max_steps=1))
    objects = tmp_path / "objects" / "state_fp16.safetensors"
    bundle = tmp_path / "s" / "gs.safetensors"
    tr = _stage2_trainer(
        tiny_model,
        tmp_path / "s",
        objects,
        variant="gmos_s",
        ckpt_every=1,
        export_bundle=str(bundle),
        export_every=1,
        optim=OptimConfig(lr=1e-3),
    )
    st = load_fp16_state(objects)
    sam = tr.module.sam2.sam_model.state_dict()
    assert all(torch.equal(sam[k], v.float()) for k, v in st.parts["sam2"].items())
    sam_before = {k: v.clone() for k, v in sam.items()}
    tr.fit()
    after = tr.module.sam2.sam_model.state_dict()
    assert all(torch.equal(v, sam_before[k]) for k, v in after.items())
    assert set(load_fp16_state(tmp_path / "s" / "state_fp16.safetensors").parts) == {"head"}
    # One bundle per export_every steps next to the final one.
    assert snapshot_path(bundle, 1).name == "gs_step1.safetensors"
    for p in (snapshot_path(bundle, 1), snapshot_path(bundle, 2), bundle):
        assert p.is_file() and read_bundle(p) is not None


def test_gmos_s_from_a_sam2_only_copy_of_stage1b_gets_the_same_sam2(tiny_model, tmp_path):
    from training.resume import keep_parts

    torch.set_num_threads(1)
    pretrain_objects(_objects_cfg(tiny_model, tmp_path / "objects", max_steps=1))
    full = tmp_path / "objects" / "state_fp16.safetensors"
    slim = keep_parts(full, tmp_path / "objects_sam2.safetensors", ["sam2"])
    st, st_slim = load_fp16_state(full), load_fp16_state(slim)
    assert set(st_slim.parts) == {"sam2"} and st_slim.step == st.step
    assert st_slim.meta["stage"] == "objects" and st_slim.meta["parts_kept"] == "sam2"
    assert all(torch.equal(st.parts["sam2"][k], v) for k, v in st_slim.parts["sam2"].items())
    assert slim.stat().st_size < full.stat().st_size
    kw = dict(variant="gmos_s", ckpt_every=100)
    a = _stage2_trainer(tiny_model, tmp_path / "a", full, **kw).module.sam2.sam_model
    b = _stage2_trainer(tiny_model, tmp_path / "b", slim, **kw).module.sam2.sam_model
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # The proposer starts from stage 1b's head too: a SAM2-only copy is refused, by name.
    with pytest.raises(ValueError, match="SAM2 only"):
        _stage2_trainer(tiny_model, tmp_path / "c", slim, variant="gmos", ckpt_every=100)
    with pytest.raises(ValueError, match="no part"):
        keep_parts(full, tmp_path / "x.safetensors", ["trunk"])


def test_a_finished_stage_resumed_from_its_committed_state_is_a_no_op(tiny_model, tmp_path):
    # A fresh clone has the committed state of a finished stage and no log yet: rerunning the
    # stage (make train-gmos runs stage 1 first) must export and stop, not fail on the log.
    first = _objects_cfg(tiny_model, tmp_path / "a", max_steps=2)
    pretrain_objects(first)
    committed = tmp_path / "objects_stage1b.safetensors"
    shutil.copy(tmp_path / "a" / "state_fp16.safetensors", committed)
    again = dataclasses.replace(first, out_dir=str(tmp_path / "clone"), resume_fp16=str(committed))
    summary = pretrain_objects(again)
    assert summary["step"] == 2
    assert not (tmp_path / "clone" / "log.csv").exists()


def test_rendering_only_some_frames_equals_the_whole_scene():
    from gmos_core.data.synthetic import SceneConfig, generate_scene, render_layout, sample_layout

    cfg = SceneConfig(height=48, width=48, num_frames=10, seed=7)
    full = generate_scene(cfg)
    part = render_layout(sample_layout(cfg), frames=[2, 7])
    assert np.array_equal(part.frames, full.frames[[2, 7]])
    assert np.array_equal(part.instance_masks, full.instance_masks[[2, 7]])
    assert np.array_equal(part.motion_state, full.motion_state[[2, 7]])
    assert np.array_equal(part.stamps_ns, full.stamps_ns[[2, 7]])
    with pytest.raises(ValueError, match="frames must be indices"):
        render_layout(sample_layout(cfg), frames=[10])
