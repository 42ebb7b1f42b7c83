"""Training that accumulates: resumable state of every stage, full and committable.

Two files per run folder, written at every checkpoint:

* ``last.pt`` (full, float32): model parts, optimiser, step. A run that is resumed from it
  continues exactly where it stopped (the schedule is a function of the TOTAL step, the data
  stream a function of the step), so several runs one after another equal one long run, bit
  for bit on the CPU (`test/test_resume.py`). Not committed (optimiser moments double its size).
* ``state_fp16.safetensors`` (committable): the trained parts in float16 plus the step in the
  metadata. A fresh clone resumes from it with a new optimiser; the first `rewarm_steps` after
  such a resume ramp the learning rate up linearly again (Adam's moments start at zero, and a
  full-size first update would throw away part of what was learned). Measured in
  docs/training.md.

Loading never unpickles: ``last.pt`` goes through ``torch.load(weights_only=True)``, the fp16
state through safetensors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

__all__ = [
    "Fp16State",
    "ResumePoint",
    "atomic_torch_save",
    "finished_summary",
    "keep_parts",
    "load_fp16_state",
    "rewarm_factor",
    "save_fp16_state",
]

FP16_FORMAT = "gmos-train-state-v1"


@dataclass
class Fp16State:
    """A committable training state.

    Attributes:
        parts: part name -> state dict (float tensors as stored, float16).
        step: optimiser steps done when it was written.
        meta: the remaining metadata (str -> str).
    """

    parts: dict[str, dict[str, Tensor]]
    step: int
    meta: dict[str, str]


@dataclass(frozen=True)
class ResumePoint:
    """Where a run started from: ``fresh``, ``full`` (last.pt) or ``fp16`` (rewarm needed)."""

    kind: str
    step: int
    path: str = ""


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save through a temporary file: a killed run never leaves half a checkpoint."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_fp16_state(
    path: str | Path,
    parts: dict[str, nn.Module | dict[str, Tensor]],
    step: int,
    meta: dict[str, str] | None = None,
) -> Path:
    """Write the trained parts in float16 with the step (safetensors, atomic).

    Args:
        path: output file.
        parts: name -> module or state dict; keys become ``<name>.<param>``.
        step: optimiser steps done.
        meta: extra string metadata.
    """
    tensors: dict[str, Tensor] = {}
    for name, part in parts.items():
        sd = part.state_dict() if isinstance(part, nn.Module) else part
        for k, v in sd.items():
            t = v.detach().cpu().contiguous()
            tensors[f"{name}.{k}"] = t.to(torch.float16) if t.is_floating_point() else t
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(
        tensors,
        str(tmp),
        metadata={"format": FP16_FORMAT, "step": str(int(step)), **(meta or {})},
    )
    os.replace(tmp, path)
    return path


def load_fp16_state(path: str | Path) -> Fp16State:
    """Read a `save_fp16_state` file; ValueError names a file of another format."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training state {path} does not exist")
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
        if meta.get("format") != FP16_FORMAT:
            raise ValueError(
                f"{path} is not a training state (format={meta.get('format')!r}, "
                f"expected {FP16_FORMAT!r})"
            )
        parts: dict[str, dict[str, Tensor]] = {}
        for key in f.keys():  # noqa: SIM118 (safe_open API)
            name, _, rest = key.partition(".")
            parts.setdefault(name, {})[rest] = f.get_tensor(key)
    step = int(meta.pop("step"))
    meta.pop("format")
    return Fp16State(parts=parts, step=step, meta=meta)


def keep_parts(src: str | Path, dst: str | Path, parts: Sequence[str]) -> Path:
    """Copy the training state `src` to `dst` keeping only the named parts (bit for bit).

    Why: a later stage that reads only some parts of a finished state (Gmos-S takes stage
    1b's SAM2, not its proposer) can pin a smaller committed file; the step and metadata are
    kept, with ``parts_kept`` naming what is left.
    """
    st = load_fp16_state(src)
    missing = [p for p in parts if p not in st.parts]
    if missing or not parts:
        raise ValueError(f"{src}: no part(s) {missing or list(parts)} (has {sorted(st.parts)})")
    meta = {**st.meta, "parts_kept": ",".join(parts)}
    return save_fp16_state(dst, {p: st.parts[p] for p in parts}, st.step, meta)


def load_part(module: nn.Module, state: dict[str, Tensor], what: str, strict: bool = True) -> None:
    """Load a (float16) state dict into `module`, casting to the module's dtypes."""
    own = module.state_dict()
    unexpected = [k for k in state if k not in own]
    missing = [k for k in own if k not in state]
    if unexpected or (strict and missing):
        raise ValueError(
            f"{what}: {len(missing)} missing {missing[:3]}, {len(unexpected)} unexpected "
            f"{unexpected[:3]}"
        )
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=False)


def finished_summary(out_dir: str | Path, max_steps: int) -> dict[str, Any] | None:
    """The run's summary.json if it already reached `max_steps`, else None."""
    path = Path(out_dir) / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    return summary if int(summary.get("step", 0)) >= max_steps else None


def rewarm_factor(step: int, resumed_at: int, rewarm_steps: int) -> float:
    """LR multiplier after a resume without optimiser state: linear 1/n .. 1 over n steps."""
    if rewarm_steps <= 0 or step >= resumed_at + rewarm_steps:
        return 1.0
    return (step - resumed_at + 1) / rewarm_steps
