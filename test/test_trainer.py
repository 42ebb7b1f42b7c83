"""The trainer: schedule, resumable data order, checkpoints, resume, NaN stop, DDP on gloo."""

from __future__ import annotations

import dataclasses
import math
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from gmos_core.bundle import load_into, read_bundle
from gmos_core.models.checkpoints import load_gmos_checkpoint
from training.datasets import SyntheticDataConfig, SyntheticWindowDataset, collate_windows
from training.train import compose_config, main, train_config_from_dict, window_spec
from training.trainer import (
    NonFiniteLossError,
    OptimConfig,
    ResumableBatchSampler,
    TrainConfig,
    Trainer,
    lr_lambda,
)


def _cfg(tiny_model: str, out: Path, variant: str = "gmos", **kw) -> TrainConfig:
    base = dict(
        model=tiny_model,
        variant=variant,
        max_steps=3,
        batch_size=1,
        threads=1,
        log_every=1,
        ckpt_every=1,
        plot_every=2,
        out_dir=str(out),
        optim=OptimConfig(lr=1e-3),
        data={"kind": "synthetic", "height": 64, "width": 64, "duration_s": 1.0},
    )
    base.update(kw)
    return TrainConfig(**base)


def _dataset(cfg: TrainConfig) -> SyntheticWindowDataset:
    d = dict(cfg.data)
    d.pop("kind")
    return SyntheticWindowDataset(SyntheticDataConfig(**d), window_spec(cfg))


def _params(trainer: Trainer) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in trainer.module.parameters()])


def test_lr_schedule_warmup_and_cosine():
    o = OptimConfig()
    # Long run: the paper's 2000 warm-up steps.
    assert lr_lambda(0, 100_000, o) == pytest.approx(1 / 2000)
    assert lr_lambda(1999, 100_000, o) == pytest.approx(1.0)
    # Short run: warm-up scaled to 5 % of the steps, cosine to 0 at the end.
    assert lr_lambda(49, 1000, o) == pytest.approx(1.0)
    assert lr_lambda(50 + 475, 1000, o) == pytest.approx(0.5, abs=1e-3)
    assert lr_lambda(1000, 1000, o) == pytest.approx(0.0, abs=1e-9)
    vals = [lr_lambda(s, 1000, o) for s in range(50, 1000)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))


def test_batch_sampler_shards_and_resumes():
    full = ResumableBatchSampler(50, 3, rank=0, world_size=1, max_steps=10, shuffle=True, seed=3)
    r0 = ResumableBatchSampler(50, 3, rank=0, world_size=2, max_steps=10, shuffle=True, seed=3)
    r1 = ResumableBatchSampler(50, 3, rank=1, world_size=2, max_steps=10, shuffle=True, seed=3)
    for s in range(5):
        assert not set(r0.indices(s)) & set(r1.indices(s))
    resumed = ResumableBatchSampler(50, 3, start_step=4, max_steps=10, shuffle=True, seed=3)
    assert list(resumed) == list(full)[4:]


def test_train_checkpoint_formats_and_resume(tiny_model, tmp_path):
    torch.set_num_threads(1)
    cfg = _cfg(tiny_model, tmp_path / "a", max_steps=3, ckpt_every=100)
    straight = Trainer(cfg, _dataset(cfg))
    summary = straight.fit()
    assert summary["step"] == 3
    out = Path(cfg.out_dir)
    rows = (out / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 4 and rows[0].startswith("step,lr,loss,mask,motion")
    assert all(math.isfinite(float(r.split(",")[2])) for r in rows[1:])
    assert (out / "loss.png").stat().st_size > 0 and (out / "metrics.png").is_file()
    # Official head format, loadable by the strict loader.
    load_gmos_checkpoint(straight.module.head, out / "head.pth")
    raw = torch.load(out / "head.pth", weights_only=True)
    assert set(raw) == {"model_state_dict"}
    # One-file bundle with all trained parts.
    info, parts = read_bundle(out / "bundle.safetensors")
    assert info.variant == "gmos" and parts["pi3"] and parts["sam2"] and parts["head"]
    load_into(straight.module.head, parts["head"], "head", strict=True)

    # Same run interrupted after 2 steps and resumed: identical weights at step 3.
    cfg_b = _cfg(tiny_model, tmp_path / "b", max_steps=3, ckpt_every=100)
    first = Trainer(cfg_b, _dataset(cfg_b))
    # Interrupt after 2 steps: the data stream stops at 2 while the schedule (built in
    # __init__) keeps its 3-step length, as a killed run's would.
    first.cfg = dataclasses.replace(cfg_b, max_steps=2)
    first.fit()
    assert torch.load(Path(cfg_b.out_dir) / "last.pt", weights_only=True)["step"] == 2
    second = Trainer(cfg_b, _dataset(cfg_b))
    second.fit()
    assert second.step == 3
    assert torch.equal(_params(second), _params(straight))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_model, tmp_path):
    torch.set_num_threads(1)
    cfg = _cfg(tiny_model, tmp_path / "nan", variant="gmos_s", max_steps=3, ckpt_every=2)
    tr = Trainer(cfg, _dataset(cfg))
    real = tr.compute_loss

    def poisoned(batch):
        res = real(batch)
        if tr.step == 2:
            res.total = res.total * float("nan")
        return res

    tr.compute_loss = poisoned  # type: ignore[method-assign]
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 2"):
        tr.fit()
    state = torch.load(Path(cfg.out_dir) / "last.pt", weights_only=True)
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model_state_dict"].values())


def test_frozen_pi3_stays_fixed_while_sam2_and_head_train(tiny_model, tmp_path):
    torch.set_num_threads(1)
    cfg = _cfg(tiny_model, tmp_path / "frozen", variant="gmos_s", max_steps=2, train_pi3=False)
    tr = Trainer(cfg, _dataset(cfg))
    pi3_before = [p.detach().clone() for p in tr.module.pi3.parameters()]
    head_before = [p.detach().clone() for p in tr.module.head.parameters()]
    sam_before = [p.detach().clone() for p in tr.module.sam2.parameters() if p.requires_grad]
    tr.fit()
    assert not any(p.requires_grad for p in tr.module.pi3.parameters())
    assert not tr.module.pi3.training  # frozen part stays in eval mode
    assert all(torch.equal(a, b) for a, b in zip(pi3_before, tr.module.pi3.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(head_before, tr.module.head.parameters()))
    sam_after = [p for p in tr.module.sam2.parameters() if p.requires_grad]
    assert sam_before and any(not torch.equal(a, b) for a, b in zip(sam_before, sam_after))


def test_hydra_configs_compose_with_overrides():
    for name in ("gmos_s_micro", "gmos_micro", "gmos_s_paper", "gmos_paper"):
        raw = compose_config(name, [])
        cfg = train_config_from_dict(
            {**raw, "pi3_checkpoint": None, "sam2_checkpoint": None} if "paper" in name else raw
        )
        assert cfg.optim.weight_decay == 0.01 and cfg.optim.grad_clip == 1.0
        assert cfg.optim.warmup_steps == 2000
        assert cfg.variant == ("gmos_s" if "gmos_s" in name else "gmos")
    paper = train_config_from_dict(
        {**compose_config("gmos_paper", []), "pi3_checkpoint": "x", "sam2_checkpoint": "y"}
    )
    assert paper.optim.lr == 1e-4 and not paper.train_encoders and paper.model == "paper"
    cfg = train_config_from_dict(compose_config("gmos_micro", ["max_steps=7", "optim.lr=0.5"]))
    assert cfg.max_steps == 7 and cfg.optim.lr == 0.5
    assert window_spec(cfg).mask_size == 64 and window_spec(cfg).sam_size == 256
    assert main(["--config-name", "gmos_micro", "not_a_key=1"]) == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, tiny_model: str, out: str) -> None:
    os.environ.update(
        {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "WORLD_SIZE": str(world),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
        }
    )
    torch.set_num_threads(1)
    cfg = _cfg(tiny_model, Path(out), max_steps=2, ckpt_every=100, plot_every=100)
    tr = Trainer(cfg, _dataset(cfg))
    before = _params(tr).clone()
    tr.fit()
    after = _params(tr)
    np.save(Path(out) / f"params_rank{rank}.npy", after.numpy())
    np.save(Path(out) / f"moved_rank{rank}.npy", np.array(float((after - before).abs().sum())))
    torch.distributed.destroy_process_group()


def test_ddp_two_cpu_processes_gloo_stay_identical(tiny_model, tmp_path):
    out = tmp_path / "ddp"
    out.mkdir()
    mp.spawn(_ddp_worker, args=(2, _free_port(), tiny_model, str(out)), nprocs=2, join=True)
    p0, p1 = np.load(out / "params_rank0.npy"), np.load(out / "params_rank1.npy")
    assert float(np.load(out / "moved_rank0.npy")) > 0  # they trained
    np.testing.assert_array_equal(p0, p1)


def test_gmos_s_static_penalty_reads_the_static_objects_of_the_middle_frame(tiny_model, tmp_path):
    torch.set_num_threads(1)
    cfg = _cfg(tiny_model, tmp_path / "sp", variant="gmos_s", loss={"static_penalty": 2.0})
    tr = Trainer(cfg, _dataset(cfg))
    batch = collate_windows([_dataset(cfg)[i] for i in range(2)])
    r = tr.compute_loss(batch)
    assert "static" in r.parts and r.parts["static"] >= 0.0
    # The same batch scored with the penalty off: the difference is the weighted term.
    plain = Trainer(_cfg(tiny_model, tmp_path / "plain", variant="gmos_s"), _dataset(cfg))
    plain.module.load_state_dict(tr.module.state_dict())
    p = plain.compute_loss(batch)
    assert r.total.item() == pytest.approx(p.total.item() + 2.0 * r.parts["static"], rel=1e-4)
    del batch["gt_static_window"]  # data without the renderer's static masks (Gmos-2K)
    with pytest.raises(ValueError, match="static_penalty"):
        tr.compute_loss(batch)
    gmos2k = _cfg(tiny_model, tmp_path / "g", variant="gmos_s", loss={"static_penalty": 2.0})
    gmos2k = dataclasses.replace(gmos2k, data={"kind": "gmos2k", "root": str(tmp_path)})
    with pytest.raises(ValueError, match="data.kind synthetic"):
        Trainer(gmos2k, _dataset(cfg))
