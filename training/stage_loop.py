"""What the single-model pretraining stages share (`pretrain_pi3`, `pretrain_objects`): the
averaged log rows of `log.csv`, the rules that end a run, and the command line.

Each stage keeps its own model, loss and checkpoint contents; this module only holds the
bookkeeping around the loop so that the two write the same log format and stop alike.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["StepLog", "should_stop", "stage_main"]


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
    from training.train import CONFIG_DIR, compose_config

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
