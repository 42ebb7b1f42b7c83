"""The resumable loop of the single-model pretraining stages (`pretrain_pi3`,
`pretrain_objects`): typed config, resumption, data order, the step, logging, checkpoint
cadence, stop rules, summary and command line.

Each stage keeps its own model, loss, checkpoint contents and validation and hands them to
`run_stage` as a `StageHooks`; everything around them lives here once, so the two resume,
log and stop alike. Resumption is bitwise: `max_steps` is the TOTAL schedule, the learning
rate and the data stream are functions of the total step, so runs cut by `stop_at_step` or
`max_minutes` add up to one long run (`training.resume`, `test/test_resume.py`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from training.resume import (
    Fp16State,
    ResumePoint,
    atomic_torch_save,
    finished_summary,
    load_fp16_state,
    rewarm_factor,
    save_fp16_state,
)
from training.train import CONFIG_DIR, compose_config
from training.trainer import (
    OptimConfig,
    ResumableBatchSampler,
    config_from_dict,
    lr_lambda,
    plot_log,
)

__all__ = [
    "NO_REWARM",
    "StageHooks",
    "StageSettings",
    "StepLog",
    "finished_stage",
    "resume_stage",
    "run_stage",
    "save_stage_state",
    "should_stop",
    "stage_config_from_dict",
    "stage_main",
]

#: `rewarm_at` of a run that needs no learning-rate re-warm (fresh, or resumed with its
#: optimiser state).
NO_REWARM = -(10**9)

C = TypeVar("C", bound="StageSettings")


@dataclass(frozen=True)
class StageSettings:
    """The settings every pretraining stage has; each stage's config extends it (and sets
    its own defaults of `max_steps`, `batch_size`, `ckpt_every`, `out_dir`).

    Attributes:
        model: model config name or path (`gmos_core/configs/<name>.yaml`).
        max_steps: TOTAL optimiser steps of the schedule (over all resumptions).
        max_minutes: wall-clock budget of THIS run; it saves and stops when spent (0 = none).
        batch_size: samples per step.
        num_workers: DataLoader workers (1 renders scenes on the second core).
        threads: torch CPU threads of the training process (0 = torch's default).
        seed: model init seed.
        log_every, ckpt_every, plot_every: in steps.
        out_dir: run folder.
        optim: optimiser / schedule (`OptimConfig`).
        data: synthetic dataset section (`SyntheticDataConfig` fields, ``kind: synthetic``).
        resume: ``auto``: continue from out_dir/last.pt (model, optimiser, schedule position,
            step; the data stream is a function of the step), else from `resume_fp16`;
            ``never``: start fresh. `max_steps` is the TOTAL schedule length, so runs cut by
            `max_minutes` add up to one long run (`training.resume`).
        resume_fp16: committed float16 state (`state_fp16.safetensors` of a run) to start from
            when out_dir has no last.pt; a fresh optimiser, re-warmed over `rewarm_steps`.
        rewarm_steps: LR ramp after a resume without optimiser state.
        stop_at_step: end this run once the TOTAL step reaches it (0 = run to max_steps);
            the schedule still follows max_steps (a run in chunks).
        val_seed: first validation scene seed (never the held-out benchmark's 900000..).
    """

    model: str = "micro"
    max_steps: int = 1000
    max_minutes: float = 0.0
    batch_size: int = 4
    num_workers: int = 0
    threads: int = 0
    seed: int = 0
    log_every: int = 10
    ckpt_every: int = 100
    plot_every: int = 100
    out_dir: str = "out/train/stage"
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: dict[str, Any] = field(default_factory=dict)
    resume: str = "auto"
    resume_fp16: str = ""
    rewarm_steps: int = 50
    stop_at_step: int = 0
    val_seed: int = 800_000


def stage_config_from_dict(cls: type[C], raw: dict[str, Any], what: str) -> C:
    """A typed stage config (a `StageSettings` subclass) from a composed dict
    (`training.trainer.config_from_dict`: unknown keys are an error naming `what`)."""
    return config_from_dict(cls, raw, what)


def finished_stage(cfg: StageSettings) -> dict[str, Any] | None:
    """The summary of a run already trained to `max_steps` (with ``resume: auto``; `make`
    reruns are no-ops), else None after setting torch's CPU threads for the new run."""
    done = finished_summary(cfg.out_dir, cfg.max_steps) if cfg.resume == "auto" else None
    if done is None and cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    return done


def resume_stage(
    cfg: StageSettings,
    optimizer: torch.optim.Optimizer,
    load_full: Callable[[dict[str, Any]], None],
    load_fp16: Callable[[Fp16State], None],
    map_location: torch.device | None = None,
) -> tuple[ResumePoint, int]:
    """Where this run starts, with the stage's parts loaded.

    ``resume: auto`` continues from ``out_dir/last.pt`` (the parts through `load_full`, then
    the optimiser, step and re-warm point), else from the committed float16 state
    `resume_fp16` (through `load_fp16`; a fresh optimiser re-warmed from its step);
    ``never`` (or neither file) starts fresh.

    Returns:
        (the `ResumePoint`, the step the learning rate re-warms from (`NO_REWARM`: none)).

    Raises:
        ValueError: `resume` is neither "auto" nor "never".
    """
    if cfg.resume not in ("auto", "never"):
        raise ValueError(f"resume must be 'auto' or 'never', got {cfg.resume!r}")
    last_pt = Path(cfg.out_dir) / "last.pt"
    if cfg.resume == "auto" and last_pt.is_file():
        st = torch.load(last_pt, map_location=map_location, weights_only=True)
        load_full(st)
        optimizer.load_state_dict(st["optimizer"])
        return ResumePoint("full", int(st["step"]), str(last_pt)), int(
            st.get("rewarm_at", NO_REWARM)
        )
    if cfg.resume == "auto" and cfg.resume_fp16 and Path(cfg.resume_fp16).is_file():
        st16 = load_fp16_state(cfg.resume_fp16)
        load_fp16(st16)
        return ResumePoint("fp16", st16.step, cfg.resume_fp16), st16.step
    return ResumePoint("fresh", 0), NO_REWARM


def save_stage_state(
    cfg: StageSettings,
    full: dict[str, dict[str, Tensor]],
    fp16: dict[str, nn.Module | dict[str, Tensor]],
    optimizer: torch.optim.Optimizer,
    step: int,
    rewarm_at: int,
    meta: dict[str, str],
) -> None:
    """``last.pt`` (the parts' full state dicts, optimiser, step, re-warm point) and the
    committable ``state_fp16.safetensors`` (parts in float16, step, `meta`)."""
    out = Path(cfg.out_dir)
    atomic_torch_save(
        {**full, "optimizer": optimizer.state_dict(), "step": step, "rewarm_at": rewarm_at},
        out / "last.pt",
    )
    save_fp16_state(out / "state_fp16.safetensors", fp16, step, meta)


class StepLog:
    """Per-step scalars averaged over `log_every` steps into one row of `log.csv`.

    Row columns: step, lr, the given keys (NaN when none was finite), s_per_step, elapsed_s,
    run_start_step (the total step this run resumed at, so resumptions show in the plots).

    Args:
        path: the CSV file (header written when the file is new).
        log_every: steps per row.
        run_start_step: the total step this run started at.
    """

    def __init__(self, path: Path, log_every: int, run_start_step: int) -> None:
        self.path = path
        self.log_every = log_every
        self.run_start_step = run_start_step
        self.t0 = self.t_last = time.perf_counter()
        self.acc: dict[str, list[float]] = {}
        self.last: dict[str, Any] = {}

    def add(self, parts: dict[str, float]) -> None:
        """One step's scalars (non-finite values are left out of the averages)."""
        for k, v in parts.items():
            if math.isfinite(v):
                self.acc.setdefault(k, []).append(v)

    def write_due(self, step: int, max_steps: int, lr: float, keys: Sequence[str]) -> None:
        """Write the averaged row if `step` ends a logging period (or the schedule)."""
        if step % self.log_every != 0 and step != max_steps:
            return
        now = time.perf_counter()
        acc = self.acc
        row = {
            "step": step,
            "lr": lr,
            **{k: float(np.mean(acc[k])) if acc.get(k) else math.nan for k in keys},
            "s_per_step": (now - self.t_last) / self.log_every,
            "elapsed_s": now - self.t0,
            "run_start_step": self.run_start_step,
        }
        self.acc, self.t_last, self.last = {}, now, row
        new = not self.path.is_file()
        with self.path.open("a") as f:
            if new:
                f.write(",".join(row) + "\n")
            f.write(",".join(str(v) for v in row.values()) + "\n")

    @property
    def seconds(self) -> float:
        """Wall time since this run's loop started, s."""
        return time.perf_counter() - self.t0


def should_stop(
    step: int, t0: float, max_minutes: float, stop_at_step: int, max_steps: int
) -> tuple[bool, bool]:
    """(end this run now, stopped early): the per-run time budget `max_minutes` (0 = none)
    or the chunk end `stop_at_step` (0 = none; early only if short of `max_steps`)."""
    if max_minutes > 0 and time.perf_counter() - t0 > 60 * max_minutes:
        return True, True
    if 0 < stop_at_step <= step:
        return True, step < max_steps
    return False, False


@dataclass(frozen=True)
class StageHooks:
    """What a stage plugs into `run_stage`.

    Attributes:
        desc: progress-bar label.
        loss: batch -> (scalar loss, per-step scalars incl. "loss" and `iou_key`): the
            stage's forward pass and loss, in training mode.
        log_keys: the per-step scalars averaged into log.csv (besides "grad_norm"-style
            keys listed there too).
        iou_key: the scalar shown next to the loss on the progress bar.
        save: step -> None: write the stage's checkpoint files for that total step.
        validate: step -> the summary's "validation" entry, run once at the end (None:
            no validation).
        after_step: step -> None, called after each step's logging and checkpointing
            (e.g. a periodic validation), or None.
        save_on_nonfinite: save before raising on a non-finite loss (the state is still
            the last finite one: the bad step is not applied).
    """

    desc: str
    loss: Callable[[dict[str, Any]], tuple[Tensor, dict[str, float]]]
    log_keys: Sequence[str]
    iou_key: str
    save: Callable[[int], None]
    validate: Callable[[int], dict[str, Any]] | None = None
    after_step: Callable[[int], None] | None = None
    save_on_nonfinite: bool = False


def run_stage(
    cfg: StageSettings,
    hooks: StageHooks,
    ds: Dataset,
    collate: Callable[[list[Any]], dict[str, Any]],
    optimizer: torch.optim.Optimizer,
    params: Sequence[Tensor],
    start: ResumePoint,
    rewarm_at: int,
) -> dict[str, Any]:
    """Train from `start` until `max_steps` or a stop rule fires; save, plot, validate and
    write ``summary.json``.

    Batches of `ds` (made by `collate`) come in the order of the TOTAL step
    (`ResumableBatchSampler`): a resumed run sees the batches the uninterrupted run would
    have seen; a short dataset repeats.

    Each step: the learning rate of the total step (cosine schedule over `max_steps`, times
    the re-warm ramp after an fp16 resume), the stage's loss, gradient clipping at
    `optim.grad_clip`, one optimiser step; then log.csv (every `log_every`), a checkpoint
    (every `ckpt_every`), the plots (every `plot_every`), `after_step`.

    Returns:
        The summary: out_dir, started_from, step, stopped_early, seconds (loop wall time),
        last (the last log row), validation.

    Raises:
        FloatingPointError: a non-finite loss (naming the step and the batch keys).
    """
    out = Path(cfg.out_dir)
    o = cfg.optim
    step = start.step
    loader = DataLoader(
        ds,
        batch_sampler=ResumableBatchSampler(
            len(ds), cfg.batch_size, start_step=step, max_steps=cfg.max_steps
        ),
        collate_fn=collate,
        num_workers=cfg.num_workers,
    )

    def lr_at(s: int) -> float:
        # The schedule is a function of the TOTAL step (several runs = one long run).
        return lr_lambda(s, cfg.max_steps, o) * rewarm_factor(s, rewarm_at, cfg.rewarm_steps)

    log_path = out / "log.csv"
    if start.kind == "fresh":
        log_path.unlink(missing_ok=True)  # a resumed run appends to its log
    log = StepLog(log_path, cfg.log_every, start.step)
    stopped_early = False
    bar = tqdm(total=cfg.max_steps, initial=step, desc=hooks.desc)
    for batch in loader:
        for g in optimizer.param_groups:
            g["lr"] = o.lr * lr_at(step)
        loss, parts = hooks.loss(batch)
        if not torch.isfinite(loss):
            bar.close()
            if hooks.save_on_nonfinite:
                hooks.save(step)
            raise FloatingPointError(f"non-finite loss at step {step} ({batch['keys']})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(params, o.grad_clip)
        optimizer.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{parts['loss']:.3f}", iou=f"{parts[hooks.iou_key]:.2f}")
        log.add({**parts, "grad_norm": float(gnorm)})
        log.write_due(step, cfg.max_steps, optimizer.param_groups[0]["lr"], hooks.log_keys)
        if step % cfg.ckpt_every == 0:
            hooks.save(step)
        if step % cfg.plot_every == 0:
            plot_log(log_path, out)
        if hooks.after_step is not None:
            hooks.after_step(step)
        stop, stopped_early = should_stop(
            step, log.t0, cfg.max_minutes, cfg.stop_at_step, cfg.max_steps
        )
        if stop:
            break
    bar.close()
    hooks.save(step)
    plot_log(log_path, out)  # draws nothing when no row was logged
    seconds = log.seconds
    summary = {
        "out_dir": str(out),
        "started_from": dataclasses.asdict(start),
        "step": step,
        "stopped_early": stopped_early,
        "seconds": seconds,
        "last": log.last,
        "validation": hooks.validate(step) if hooks.validate is not None else None,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def stage_main(
    argv: list[str] | None,
    prog: str,
    default_config: str,
    config_from_dict: Callable[[dict[str, Any]], Any],
    run: Callable[[Any], dict[str, Any]],
    description: str,
) -> int:
    """A stage's console entry point: compose the Hydra recipe, run, print the summary JSON.

    Returns the exit status (2: bad configuration).
    """
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--config-name", default=default_config, help="recipe in training/configs/")
    p.add_argument("--config-dir", type=Path, default=CONFIG_DIR)
    p.add_argument("overrides", nargs="*", help="key=value Hydra overrides")
    args = p.parse_args(argv)
    try:
        cfg = config_from_dict(
            compose_config(args.config_name, list(args.overrides), args.config_dir)
        )
    except Exception as e:  # hydra raises several types for bad overrides / missing files
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(run(cfg), default=str))
    return 0
