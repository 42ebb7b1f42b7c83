"""The Gmos / Gmos-S trainer (paper Sec. 4.3 "Training setup", App. B).

* AdamW, lr 1e-4, weight decay 0.01, gradient clipping at norm 1.0, cosine schedule with 2000
  linear warm-up steps. Short runs scale the warm-up: ``warmup = min(warmup_steps,
  ceil(warmup_fraction · max_steps))`` (default fraction 0.05, i.e. 2000 steps of a 40k-step run);
  the cosine then decays to ``min_lr_ratio · lr`` at ``max_steps``.
* Encoders frozen (paper recipe: pretrained π³ and SAM2 are loaded and kept in eval mode under
  ``torch.no_grad``) or trained with the head; ``train_pi3`` sets π³ apart (micro recipe: the
  π³ from `training.pretrain_pi3` stays frozen, SAM2 learns from scratch with the head).
* bf16 autocast on CUDA; plain float32 on CPU.
* DDP when started by ``torchrun`` (WORLD_SIZE > 1): NCCL on CUDA, gloo on CPU. Every rank reads
  its own slice of the item stream; the effective batch is batch_size · world_size.
* Resume: ``<out>/last.pt`` holds model, optimiser, scheduler, step and all RNG states; the
  item stream is a pure function of the step, so a resumed run sees the same data.
* A non-finite loss on any rank stops every rank before the update (the last good checkpoint is
  left untouched) with a message naming the step and the batch keys.
* Outputs (rank 0): ``log.csv`` (+ TensorBoard if installed), ``loss.png``, ``metrics.png``,
  ``head.pth`` (official ``{"model_state_dict": ...}``), ``bundle.safetensors`` (`save_bundle`:
  π³ + SAM2 features + head in one file) and ``last.pt``.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import matplotlib
import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from gmos_core.bundle import sam2_feature_state, save_bundle
from gmos_core.models.build import CONFIG_DIR, GmosModelConfig, GmosTorchModel, build_frame_model
from gmos_core.models.checkpoints import save_gmos_checkpoint
from gmos_core.models.gmos import GmosProposer, GmosS
from training.datasets import collate_windows
from training.losses import (
    GmosLossWeights,
    GmosSLossWeights,
    LossOutput,
    gmos_proposer_loss,
    gmos_s_loss,
)
from training.resume import load_fp16_state, load_part, rewarm_factor, save_fp16_state

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = [
    "GmosTrainModule",
    "NonFiniteLossError",
    "OptimConfig",
    "ResumableBatchSampler",
    "TrainConfig",
    "Trainer",
    "lr_lambda",
    "plot_log",
]

SAM2_FEATURE_PREFIXES = (
    "image_encoder.",
    "sam_mask_decoder.conv_s0.",
    "sam_mask_decoder.conv_s1.",
    "no_mem_embed",
)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN / inf; the run stopped and kept its last good checkpoint."""


C = TypeVar("C")


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and schedule (paper values by default)."""

    lr: float = 1e-4
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    warmup_steps: int = 2000
    warmup_fraction: float = 0.05
    min_lr_ratio: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)


def config_from_dict(cls: type[C], raw: dict[str, Any], what: str) -> C:
    """A typed run config (a dataclass with an ``optim: OptimConfig`` field: `TrainConfig`,
    the pretraining stages' configs) from a composed dict.

    Raises:
        ValueError: a key the config (or its ``optim`` section) does not have, naming `what`
            (e.g. "training config") and the known keys.
    """
    raw = dict(raw)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ValueError(f"unknown {what} keys {unknown} (known: {sorted(names)})")
    optim = dict(raw.pop("optim", {}) or {})
    o_names = {f.name for f in dataclasses.fields(OptimConfig)}
    if set(optim) - o_names:
        raise ValueError(f"unknown optim keys {sorted(set(optim) - o_names)}")
    if "betas" in optim:
        optim["betas"] = tuple(optim["betas"])
    return cls(**raw, optim=OptimConfig(**optim))


@dataclass(frozen=True)
class TrainConfig:
    """One training run (see `training/configs/*.yaml`).

    Attributes:
        model: model config name (`gmos_core/configs/<name>.yaml`) or path.
        variant: ``gmos_s`` or ``gmos``.
        train_encoders: train π³ and SAM2 with the head (micro) or keep them frozen (paper).
        train_pi3: override for π³ alone (None = follow `train_encoders`); the micro recipe
            trains SAM2 from scratch but keeps its motion-pretrained π³ frozen, as the paper
            keeps its pretrained π³ frozen (`training.pretrain_pi3`).
        pi3_checkpoint, sam2_checkpoint, head_checkpoint: optional initial weights.
        max_steps: optimiser steps.
        max_minutes: wall-clock budget; the run saves and stops early when it is spent
            (0 = none). The schedule still follows max_steps.
        batch_size: frames per rank per step.
        num_workers: DataLoader workers per rank.
        seed: global seed (model init, data order).
        amp: ``auto`` (bf16 on CUDA, off on CPU), ``bf16`` or ``off``.
        threads: torch CPU threads (0 = leave torch's default).
        log_every, ckpt_every, plot_every: in steps.
        out_dir: run folder.
        resume: ``auto`` (resume from out_dir/last.pt if present), ``never`` or a path.
        conf_max: c_max of the rescaled confidence (the heads are built with 5).
        loss: overrides of the loss weights (GmosLossWeights / GmosSLossWeights fields).
        optim: optimiser config.
        data: dataset section (``kind: synthetic | gmos2k`` + its fields).
        window: WindowSpec fields (sizes default to the model config).
        export_bundle: if set, rank 0 also writes a float16 bundle there at the end (the
            shipped-checkpoint format, `save_bundle(..., half=True)`).
        export_every: also write ``<export_bundle stem>_step<N>.safetensors`` every N steps
            (0 = never): snapshots to pick the checkpoint from on validation clips.
        init_objects: stage-1b state (`training.pretrain_objects`, ``state_fp16.safetensors``):
            SAM2's image-feature weights and the proposer start from it (with
            ``train_encoders: false`` SAM2 then stays frozen, as the paper's pretrained SAM2).
            Gmos-S reads its SAM2 part only, so a SAM2-only copy (`keep_parts`) also serves.
        head_dropout: p of the head's feature-projector dropout (None: the official 0.2).
        frozen_head: name prefixes of head parameters kept as initialised (e.g. the stage-1b
            proposer's ``trans_decoder`` / ``upsampling``: its object masks, which a stage 2
            on moving-only targets otherwise degrades). Empty: the whole head trains.
        head_lr_scale: head parameter prefix -> learning-rate multiplier (e.g. a fresh motion
            head learning faster than the stage-1b mask path it sits on). Empty: one rate.
        resume_fp16: committed float16 training state (`training.resume`) to continue from when
            out_dir has no last.pt: trained parts + step, a new optimiser, re-warmed.
        rewarm_steps: LR ramp after such a resume.
    """

    model: str = "micro"
    variant: str = "gmos_s"
    train_encoders: bool = True
    train_pi3: bool | None = None
    pi3_checkpoint: str | None = None
    sam2_checkpoint: str | None = None
    head_checkpoint: str | None = None
    max_steps: int = 1000
    max_minutes: float = 0.0
    batch_size: int = 2
    num_workers: int = 0
    seed: int = 0
    amp: str = "auto"
    threads: int = 0
    log_every: int = 10
    ckpt_every: int = 100
    plot_every: int = 100
    out_dir: str = "out/train"
    resume: str = "auto"
    loss: dict[str, float] = field(default_factory=dict)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: dict[str, Any] = field(default_factory=dict)
    window: dict[str, Any] = field(default_factory=dict)
    export_bundle: str = ""
    export_every: int = 0
    init_objects: str = ""
    head_dropout: float | None = None
    frozen_head: list[str] = field(default_factory=list)
    head_lr_scale: dict[str, float] = field(default_factory=dict)
    resume_fp16: str = ""
    rewarm_steps: int = 50


def _named_part(head: nn.Module, prefix: str, key: str) -> list[tuple[str, nn.Parameter]]:
    hits = [(n, p) for n, p in head.named_parameters() if n == prefix or n.startswith(prefix + ".")]
    if not hits:
        raise ValueError(f"{key}: {prefix!r} names no parameter of the head")
    return hits


def head_param_groups(
    module: nn.Module, head: nn.Module, lr: float, scale: dict[str, float]
) -> list[dict[str, Any]]:
    """AdamW parameter groups: everything that trains at `lr` (first group), except the
    trainable head parameters under a prefix of `scale`, at ``lr * scale[prefix]`` (one group
    per prefix, in `scale`'s order; empty groups are left out).

    Raises:
        ValueError: a prefix that names no head parameter, a multiplier <= 0, or two prefixes
            claiming the same parameter.
    """
    taken: dict[int, str] = {}
    scaled = []
    for pre, k in scale.items():
        if not float(k) > 0:
            raise ValueError(f"head_lr_scale: {pre!r} needs a multiplier > 0, got {k}")
        ps = [p for _, p in _named_part(head, pre, "head_lr_scale") if p.requires_grad]
        for p in ps:
            if id(p) in taken:
                raise ValueError(f"head_lr_scale: {pre!r} overlaps {taken[id(p)]!r}")
            taken[id(p)] = pre
        scaled.append({"params": ps, "lr": lr * float(k)})
    rest = [p for p in module.parameters() if p.requires_grad and id(p) not in taken]
    return [g for g in ({"params": rest, "lr": lr}, *scaled) if g["params"]]


def freeze_head_parts(head: nn.Module, prefixes: Sequence[str]) -> int:
    """Stop gradients to the head parameters whose names start with one of `prefixes`.

    Returns the number of frozen parameters (elements).

    Raises:
        ValueError: a prefix that names no parameter (a typo would silently train everything).
    """
    frozen = 0
    for pre in prefixes:
        for _, p in _named_part(head, pre, "frozen_head"):
            p.requires_grad_(False)
            frozen += p.numel()
    return frozen


def lr_lambda(step: int, max_steps: int, optim: OptimConfig) -> float:
    """LR multiplier at `step`: linear warm-up, then cosine to `min_lr_ratio`.

    The warm-up is ``min(warmup_steps, ceil(warmup_fraction · max_steps))`` so that a short run
    spends the same share of its steps warming up as a long one would with 2000 steps.
    """
    warm = min(optim.warmup_steps, max(1, math.ceil(optim.warmup_fraction * max_steps)))
    if step < warm:
        return (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, max_steps - warm))
    cos = 0.5 * (1 + math.cos(math.pi * progress))
    return optim.min_lr_ratio + (1 - optim.min_lr_ratio) * cos


class ResumableBatchSampler(Sampler[list[int]]):
    """Batches of item indices as a pure function of (step, rank): resumable and DDP-sharded.

    Global item ``(step · world + rank) · batch + j`` of an endless stream; with `shuffle` the
    stream walks a seeded permutation of the dataset, a new one each epoch.
    """

    def __init__(
        self,
        length: int,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
        max_steps: int = 1,
        shuffle: bool = False,
        seed: int = 0,
    ) -> None:
        self.length = length
        self.batch_size = batch_size
        self.rank = rank
        self.world = world_size
        self.start_step = start_step
        self.max_steps = max_steps
        self.shuffle = shuffle
        self.seed = seed
        self._perm: tuple[int, np.ndarray] | None = None

    def _index(self, g: int) -> int:
        epoch, pos = divmod(g, self.length)
        if not self.shuffle:
            return pos
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.length))
        return int(self._perm[1][pos])

    def indices(self, step: int) -> list[int]:
        """Item indices of this rank at `step`."""
        base = (step * self.world + self.rank) * self.batch_size
        return [self._index(base + j) for j in range(self.batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.max_steps):
            yield self.indices(step)

    def __len__(self) -> int:
        return max(0, self.max_steps - self.start_step)


class GmosTrainModule(nn.Module):
    """π³ + SAM2 feature extractor + head as one module (one DDP wrapper, one state dict).

    Args:
        frame_model: a `GmosTorchModel` built by `build_frame_model`.
        train_encoders: whether SAM2 (and π³, unless `train_pi3` says otherwise) get gradients.
        train_pi3: whether π³ gets gradients (None = `train_encoders`).
    """

    def __init__(
        self, frame_model: GmosTorchModel, train_encoders: bool, train_pi3: bool | None = None
    ) -> None:
        super().__init__()
        self.pi3 = frame_model.pi3
        self.sam2 = frame_model.sam2
        self.head = frame_model.head
        self.train_encoders = train_encoders
        self.train_pi3 = train_encoders if train_pi3 is None else train_pi3
        for p in self.pi3.parameters():
            p.requires_grad_(self.train_pi3)
        for name, p in self.sam2.sam_model.named_parameters():
            # Memory attention / encoder, prompt encoder etc. never run when extracting image
            # features: freezing them keeps DDP from waiting for gradients that never come.
            p.requires_grad_(train_encoders and name.startswith(SAM2_FEATURE_PREFIXES))

    def train(self, mode: bool = True) -> GmosTrainModule:
        """Frozen encoders stay in eval mode (no dropout / drop-path in pretrained features)."""
        super().train(mode)
        if not self.train_pi3:
            self.pi3.eval()
        if not self.train_encoders:
            self.sam2.eval()
        return self

    def forward(self, pi3_frames: Tensor, sam_img: Tensor) -> dict[str, Tensor]:
        """Head outputs for the middle frame of each window.

        Args:
            pi3_frames: (B, N, 3, H, W) in [0, 1], H, W multiples of 14.
            sam_img: (B, 3, S, S) ImageNet-normalised middle frames.

        Returns:
            The head's output dict (see `GmosS.forward` / `GmosProposer.forward`).
        """
        b, n = pi3_frames.shape[:2]
        h, w = self.pi3.grid_size(int(pi3_frames.shape[-2]), int(pi3_frames.shape[-1]))
        grad = torch.is_grad_enabled()
        with torch.set_grad_enabled(self.train_pi3 and grad):
            tok = self.pi3.encode_frames(pi3_frames.flatten(0, 1))  # (B·N, hw, D)
            feats = self.pi3.decode_window(tok.view(b, n, *tok.shape[1:]), h, w)  # (B,N,h,w,D)
        with torch.set_grad_enabled(self.train_encoders and grad):
            sam = self.sam2(sam_img)
        token = feats[:, n // 2]
        return self.head(token, sam.bottleneck, high_res_features=list(sam.high_res))


def snapshot_path(bundle: str | Path, step: int) -> Path:
    """Where `export_every` writes the bundle of `step`: next to `bundle`, step in the name."""
    b = Path(bundle)
    return b.with_name(f"{b.stem}_step{step}{b.suffix}")


def init_from_objects(fm: GmosTorchModel, path: str | Path) -> None:
    """Load a stage-1b state into a frame model: SAM2's image features, and the proposer
    when the model is Gmos (Gmos-S's head is not the proposer and starts fresh)."""
    st = load_fp16_state(path)
    if st.meta.get("stage") != "objects" or set(st.parts) not in ({"sam2", "head"}, {"sam2"}):
        raise ValueError(f"{path} is not a stage-1b object-pretraining state")
    load_part(fm.sam2.sam_model, st.parts["sam2"], f"{path} [sam2]", strict=False)
    # Gmos-S has its own head: it takes the object-pretrained SAM2 features only (a SAM2-only
    # copy of the state, `training.resume.keep_parts`, is enough for it).
    if isinstance(fm.head, GmosProposer):
        if "head" not in st.parts:
            raise ValueError(
                f"{path} holds stage 1b's SAM2 only; the Gmos proposer starts from its head too "
                "(use the full stage-1b state)"
            )
        load_part(fm.head, st.parts["head"], f"{path} [head]")


def _is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def _rank() -> int:
    return dist.get_rank() if _is_dist() else 0


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def plot_log(csv_path: Path, out_dir: Path) -> list[Path]:
    """Draw ``loss.png`` (total and parts, log scale) and ``metrics.png`` from ``log.csv``.

    No log yet (a finished stage resumed from its committed state on a fresh clone logs no
    step) draws nothing.
    """
    if not Path(csv_path).is_file():
        return []
    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return []

    def series(key: str) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for r in rows:
            v = r.get(key, "")
            if v not in ("", "nan"):
                xs.append(int(r["step"]))
                ys.append(float(v))
        return np.asarray(xs), np.asarray(ys)

    written = []
    loss_keys = [k for k in ("loss", "mask", "motion", "iou", "conf_reg") if k in rows[0]]
    fig, axes = plt.subplots(1, len(loss_keys), figsize=(3.2 * len(loss_keys), 3.0))
    for ax, k in zip(np.atleast_1d(axes), loss_keys):
        x, y = series(k)
        ax.plot(x, y, lw=0.6, alpha=0.4, color="C0")
        if len(y) >= 5:  # moving average: single batches of 2 frames are very noisy
            win = max(3, len(y) // 20)
            ax.plot(x[win - 1 :], np.convolve(y, np.ones(win) / win, mode="valid"), color="C1")
        ax.set_title(k)
        ax.set_xlabel("step")
        if k in ("loss", "mask") and len(y) and (y > 0).all():
            ax.set_yscale("log")
    fig.tight_layout()
    p = out_dir / "loss.png"
    fig.savefig(p, dpi=100)
    plt.close(fig)
    written.append(p)
    metric_keys = [
        k
        for k in ("fg_iou", "moving_iou", "motion_acc", "conf_mean", "lr", "s_per_step")
        if k in rows[0]
    ]
    fig, axes = plt.subplots(1, len(metric_keys), figsize=(3.2 * len(metric_keys), 3.0))
    for ax, k in zip(np.atleast_1d(axes), metric_keys):
        x, y = series(k)
        ax.plot(x, y, lw=0.6, alpha=0.4, color="C2")
        if len(y) >= 5:
            win = max(3, len(y) // 20)
            ax.plot(x[win - 1 :], np.convolve(y, np.ones(win) / win, mode="valid"), color="C3")
        ax.set_title(k)
        ax.set_xlabel("step")
    fig.tight_layout()
    p = out_dir / "metrics.png"
    fig.savefig(p, dpi=100)
    plt.close(fig)
    written.append(p)
    return written


class Trainer:
    """Runs one `TrainConfig`. Build with a dataset; call `fit()`.

    Args:
        cfg: run config.
        dataset: map-style dataset of window items (`training.datasets`).
        shuffle: walk the dataset in a seeded random order (Gmos-2K); synthetic scenes are
            already random per seed, and walking them in order lets consecutive windows reuse
            one rendered scene.
    """

    def __init__(self, cfg: TrainConfig, dataset: Dataset, shuffle: bool = False) -> None:
        self.cfg = cfg
        self.dataset = dataset
        self.shuffle = shuffle
        self.out = Path(cfg.out_dir)
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if self.world > 1 and not _is_dist():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend=backend)
        self.rank = _rank()
        if torch.cuda.is_available():
            self.device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.amp = cfg.amp == "bf16" or (cfg.amp == "auto" and self.device.type == "cuda")
        # Same seed on every rank: identical initial weights (DDP also broadcasts rank 0's).
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        random.seed(cfg.seed)
        self.model_cfg = GmosModelConfig.load(cfg.model)
        fm = build_frame_model(
            self.model_cfg,
            cfg.variant,  # type: ignore[arg-type]
            device=str(self.device),
            pi3_checkpoint=cfg.pi3_checkpoint,
            sam2_checkpoint=cfg.sam2_checkpoint,
            head_checkpoint=cfg.head_checkpoint,
            seed=cfg.seed,
        )
        if cfg.init_objects:
            init_from_objects(fm, cfg.init_objects)
        if cfg.head_dropout is not None:
            for m in fm.head.modules():
                if isinstance(m, nn.Dropout):
                    m.p = float(cfg.head_dropout)
        self.module = GmosTrainModule(fm, cfg.train_encoders, cfg.train_pi3).to(self.device)
        freeze_head_parts(self.module.head, cfg.frozen_head)
        if self.world > 1:
            self.model: nn.Module = nn.parallel.DistributedDataParallel(
                self.module,
                device_ids=[self.local_rank] if self.device.type == "cuda" else None,
            )
        else:
            self.model = self.module
        self.params = [p for p in self.module.parameters() if p.requires_grad]
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(
            head_param_groups(self.module, self.module.head, o.lr, cfg.head_lr_scale),
            lr=o.lr,
            weight_decay=o.weight_decay,
            betas=tuple(o.betas),
        )
        # The schedule is a function of the TOTAL step; after a resume without optimiser state
        # the first `rewarm_steps` ramp up again (`training.resume.rewarm_factor`).
        self.rewarm_at = -(10**9)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: (
                lr_lambda(s, cfg.max_steps, o) * rewarm_factor(s, self.rewarm_at, cfg.rewarm_steps)
            ),
        )
        if cfg.variant == "gmos_s":
            self.loss_weights: GmosSLossWeights | GmosLossWeights = GmosSLossWeights(**cfg.loss)
            if (
                self.loss_weights.static_penalty
                and cfg.data.get("kind", "synthetic") != "synthetic"
            ):
                # Only the renderer knows the objects that do not move; refuse before training.
                raise ValueError("loss.static_penalty > 0 needs data.kind synthetic")
        else:
            self.loss_weights = GmosLossWeights(**cfg.loss)
        self.step = 0
        self.skipped = 0
        self._tb: Any = None

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs (tensors, numbers, lists: loadable with weights_only)."""
        np_state = np.random.get_state()
        return {
            "model_state_dict": self.module.head.state_dict(),
            "pi3": self.module.pi3.state_dict(),
            # Image-feature part only: the memory modules never run here and are rebuilt from
            # the seed (this keeps last.pt small).
            "sam2": sam2_feature_state(self.module.sam2.sam_model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "skipped": self.skipped,
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
                "python": list(random.getstate()[1]),
                "python_version": random.getstate()[0],
                "python_gauss": random.getstate()[2],
            },
            "variant": self.cfg.variant,
            "rewarm_at": self.rewarm_at,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict()` (model, optimiser, scheduler, step, RNG)."""
        self.module.head.load_state_dict(state["model_state_dict"])
        self.module.pi3.load_state_dict(state["pi3"])
        missing, unexpected = self.module.sam2.sam_model.load_state_dict(
            state["sam2"], strict=False
        )
        if unexpected or any(k.startswith(SAM2_FEATURE_PREFIXES) for k in missing):
            raise ValueError(f"resume state does not fit SAM2: {unexpected[:3]} {missing[:3]}")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.skipped = int(state.get("skipped", 0))
        self.rewarm_at = int(state.get("rewarm_at", self.rewarm_at))
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        n = rng["numpy"]
        np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), *n[2:]))
        random.setstate((rng["python_version"], tuple(rng["python"]), rng["python_gauss"]))

    def save(self) -> None:
        """Rank 0 writes last.pt, head.pth (official) and bundle.safetensors (fp32)."""
        if self.rank != 0:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        _atomic_save(self.state_dict(), self.out / "last.pt")
        save_fp16_state(
            self.out / "state_fp16.safetensors",
            self.trained_parts(),
            self.step,
            {"stage": "stage2", "variant": self.cfg.variant, "trained_by": "training.train"},
        )
        save_gmos_checkpoint(self.module.head, self.out / "head.pth")
        self.export(self.out / "bundle.safetensors", half=False)

    def export(self, path: str | Path, half: bool) -> Path:
        """Write a one-file bundle of π³ + SAM2 features + head (`gmos_core.bundle`)."""
        return save_bundle(
            path,
            self.module.pi3,
            self.module.sam2.sam_model,
            self.module.head,
            config=self.model_cfg.name,
            variant=self.cfg.variant,  # type: ignore[arg-type]
            config_yaml=(CONFIG_DIR / f"{self.model_cfg.name}.yaml").read_text()
            if (CONFIG_DIR / f"{self.model_cfg.name}.yaml").is_file()
            else "",
            half=half,
            extra={"step": str(self.step), "trained_by": "training.train"},
        )

    def trained_parts(self) -> dict[str, Any]:
        """The parts this run trains (what a committable fp16 state must hold)."""
        parts: dict[str, Any] = {"head": self.module.head}
        if self.module.train_encoders:
            parts["sam2"] = sam2_feature_state(self.module.sam2.sam_model)
        if self.module.train_pi3:
            parts["pi3"] = self.module.pi3
        return parts

    def resume_from_fp16(self, path: str | Path) -> None:
        """Continue from a committed float16 state: weights + step, new optimiser, re-warm."""
        st = load_fp16_state(path)
        if st.meta.get("variant") != self.cfg.variant:
            raise ValueError(f"{path} is a {st.meta.get('variant')} state, not {self.cfg.variant}")
        own = self.trained_parts()
        if set(st.parts) != set(own):
            raise ValueError(f"{path} holds {sorted(st.parts)}, this run trains {sorted(own)}")
        load_part(self.module.head, st.parts["head"], f"{path} [head]")
        if "sam2" in st.parts:
            load_part(self.module.sam2.sam_model, st.parts["sam2"], f"{path} [sam2]", strict=False)
        if "pi3" in st.parts:
            load_part(self.module.pi3, st.parts["pi3"], f"{path} [pi3]")
        self.step = st.step
        self.rewarm_at = st.step
        self.scheduler.last_epoch = st.step
        for g, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
            g["lr"] = base * self.scheduler.lr_lambdas[0](st.step)

    def maybe_resume(self) -> bool:
        """Resume per `cfg.resume`; True if a checkpoint was loaded."""
        r = self.cfg.resume
        if r == "never":
            return False
        path = self.out / "last.pt" if r == "auto" else Path(r)
        if not path.is_file():
            if r != "auto":
                raise FileNotFoundError(f"resume checkpoint {path} does not exist")
            if self.cfg.resume_fp16 and Path(self.cfg.resume_fp16).is_file():
                self.resume_from_fp16(self.cfg.resume_fp16)
                return True
            return False
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state.get("variant") != self.cfg.variant:
            raise ValueError(f"{path} is a {state.get('variant')} run, not {self.cfg.variant}")
        self.load_state_dict(state)
        return True

    # ------------------------------------------------------------------ loop
    def compute_loss(self, batch: dict[str, Any]) -> LossOutput:
        """Forward + Eq. 2 / Eq. A1 on one batch."""
        dev = self.device
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.model(batch["pi3"].to(dev), batch["sam"].to(dev))
        # The losses run in float32 whatever the autocast dtype (they cast internally).
        if isinstance(self.module.head, GmosS):
            assert isinstance(self.loss_weights, GmosSLossWeights)
            # The middle frame's static objects, when the data has them (gmos_s_loss refuses a
            # static penalty without them).
            win = batch.get("gt_static_window")
            static = None if win is None else win[:, win.shape[1] // 2].to(dev)
            return gmos_s_loss(out, batch["gt_fg"].to(dev), self.loss_weights, static)
        assert isinstance(self.module.head, GmosProposer)
        assert isinstance(self.loss_weights, GmosLossWeights)
        return gmos_proposer_loss(
            out,
            [m.to(dev) for m in batch["gt_masks"]],
            [m.to(dev) for m in batch["gt_motion"]],
            self.loss_weights,
        )

    def _log(self, row: dict[str, Any]) -> None:
        path = self.out / "log.csv"
        new = not path.is_file()
        with path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.out / "tb"))
            except ImportError:  # TensorBoard is optional, never a dependency
                self._tb = False
        if self._tb:
            for k, v in row.items():
                if isinstance(v, float) and math.isfinite(v):
                    self._tb.add_scalar(k, v, row["step"])

    def fit(self) -> dict[str, Any]:
        """Train until max_steps (or the time budget); returns a summary dict."""
        cfg = self.cfg
        resumed = self.maybe_resume()
        run_start = self.step  # logged: resumptions are marked in the loss plots
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            if not resumed and (self.out / "log.csv").is_file():
                (self.out / "log.csv").unlink()  # a fresh run starts a fresh log
        sampler = ResumableBatchSampler(
            len(self.dataset),  # type: ignore[arg-type]
            cfg.batch_size,
            self.rank,
            self.world,
            start_step=self.step,
            max_steps=cfg.max_steps,
            shuffle=self.shuffle,
            seed=cfg.seed,
        )
        loader = DataLoader(
            self.dataset,
            batch_sampler=sampler,
            collate_fn=collate_windows,
            num_workers=cfg.num_workers,
            persistent_workers=False,
            # Its own generator: the loader draws a worker base seed when iterated, which must
            # not consume the global RNG (a resumed run would then differ from a straight one).
            generator=torch.Generator().manual_seed(cfg.seed + self.step),
        )
        self.model.train()
        t_start = time.perf_counter()
        t_last = t_start
        last: dict[str, Any] = {}
        bar = tqdm(
            total=cfg.max_steps, initial=self.step, desc=f"train {cfg.variant}", disable=self.rank
        )
        stopped_early = False
        # Parts are averaged over each logging interval: single 2-frame batches are noisy.
        acc: dict[str, list[float]] = {}
        for batch in loader:
            self.skipped += batch["skipped"]
            res = self.compute_loss(batch)
            bad = torch.tensor(0.0 if torch.isfinite(res.total) else 1.0, device=self.device)
            if _is_dist():
                dist.all_reduce(bad)
            if bad.item() > 0:
                msg = (
                    f"non-finite loss at step {self.step} (rank {self.rank}: "
                    f"{float(res.total.detach())}; batch {batch['keys']}); stopping without "
                    f"updating. The last good checkpoint is {self.out / 'last.pt'} "
                    "(resume from it with a lower lr or check the data)."
                )
                bar.close()
                raise NonFiniteLossError(msg)
            self.optimizer.zero_grad(set_to_none=True)
            res.total.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(self.params, cfg.optim.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{res.parts['loss']:.3f}")
            for k, v in {**res.parts, **res.metrics, "grad_norm": float(gnorm)}.items():
                if math.isfinite(v):
                    acc.setdefault(k, []).append(v)
            if self.rank == 0 and (self.step % cfg.log_every == 0 or self.step == cfg.max_steps):
                now = time.perf_counter()
                means = {
                    k: float(np.mean(acc[k])) if acc.get(k) else math.nan
                    for k in (*res.parts, *res.metrics, "grad_norm")
                }
                acc = {}
                row = {
                    "step": self.step,
                    "lr": self.scheduler.get_last_lr()[0],
                    **means,
                    "s_per_step": (now - t_last) / cfg.log_every,
                    "elapsed_s": now - t_start,
                    "skipped": self.skipped,
                    "run_start_step": run_start,
                }
                t_last = now
                self._log(row)
                last = row
            if self.step % cfg.ckpt_every == 0:
                self.save()
            if self.rank == 0 and self.step % cfg.plot_every == 0:
                plot_log(self.out / "log.csv", self.out)
            if self.rank == 0 and cfg.export_bundle and cfg.export_every > 0:
                if self.step % cfg.export_every == 0:
                    self.export(snapshot_path(cfg.export_bundle, self.step), half=True)
            if cfg.max_minutes > 0:
                over = torch.tensor(
                    float(time.perf_counter() - t_start > 60 * cfg.max_minutes), device=self.device
                )
                if _is_dist():
                    dist.all_reduce(over)  # every rank must stop at the same step
                if over.item() > 0:
                    stopped_early = True
                    break
        bar.close()
        self.save()
        if self.rank == 0 and (self.out / "log.csv").is_file():
            plot_log(self.out / "log.csv", self.out)
        if self.rank == 0 and cfg.export_bundle:
            self.export(cfg.export_bundle, half=True)
        return {
            "step": self.step,
            "stopped_early": stopped_early,
            "skipped": self.skipped,
            "seconds": time.perf_counter() - t_start,
            "last": last,
        }


def main_guard(fn: Any) -> int:
    """Run `fn()`; a NonFiniteLossError prints its message and returns exit status 3."""
    try:
        fn()
    except NonFiniteLossError as e:
        print(f"gmos-train: error: {e}", file=sys.stderr)
        return 3
    finally:
        if _is_dist():
            dist.destroy_process_group()
    return 0
