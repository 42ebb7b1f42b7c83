"""One figure with the loss curves of every micro training stage, across resumptions.

    python -m training.plot_stages --out docs/figures/train_stages_loss.png \
        out/train/pi3_micro out/train/objects_micro out/train/gmos_micro

Each run folder's ``log.csv`` is one panel (loss against the TOTAL step, a moving average over
the logged rows); a dashed line marks every step where a run was resumed (the
``run_start_step`` column the resumable stages write), and a stage-1b folder's ``val.jsonl``
(the gate metric, mean best-query IoU over all objects on validation frames) is drawn on a
second axis. Prints a JSON summary of what it drew.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["main", "plot_stages"]


def _read_log(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def plot_stages(runs: list[Path], out: Path) -> dict[str, object]:
    """Draw `out` from the run folders; returns {run: {rows, last_step, resumed_at, ...}}."""
    runs = [r for r in runs if (r / "log.csv").is_file()]
    if not runs:
        raise FileNotFoundError("none of the run folders has a log.csv")
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.4), squeeze=False)
    summary: dict[str, object] = {}
    for ax, run in zip(axes[0], runs):
        rows = _read_log(run / "log.csv")
        x = np.array([int(r["step"]) for r in rows])
        y = np.array([float(r["loss"]) for r in rows])
        ax.plot(x, y, lw=0.6, alpha=0.35, color="C0")
        if len(y) >= 5:
            win = max(3, len(y) // 25)
            ax.plot(x[win - 1 :], np.convolve(y, np.ones(win) / win, "valid"), color="C0")
        starts = sorted({int(r["run_start_step"]) for r in rows if r.get("run_start_step")} - {0})
        for s in starts:
            ax.axvline(s, ls="--", color="k", lw=0.8)
        if (y > 0).all() and y.max() > 10 * y.min():
            ax.set_yscale("log")  # stage 2's first steps are 10x the rest
        ax.set_title(run.name)
        ax.set_xlabel("step (total)")
        ax.set_ylabel("training loss")
        info: dict[str, object] = {"rows": len(rows), "last_step": int(x[-1]), "resumed_at": starts}
        val = run / "val.jsonl"
        if val.is_file():
            vals = [json.loads(line) for line in val.read_text().splitlines() if line.strip()]
            ax2 = ax.twinx()
            ax2.plot([v["step"] for v in vals], [v["best_iou"] for v in vals], "o-", color="C3")
            ax2.axhline(0.5, ls=":", color="C3")
            ax2.set_ylim(0, 1)
            ax2.set_ylabel("val. best-query IoU (gate 0.5)", color="C3")
            info["val_best_iou"] = [(v["step"], round(v["best_iou"], 4)) for v in vals]
        summary[run.name] = info
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="plot_stages", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders (with log.csv)")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = p.parse_args(argv)
    try:
        summary = plot_stages(args.runs, args.out)
    except FileNotFoundError as e:
        print(f"plot_stages: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(args.out), "runs": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
