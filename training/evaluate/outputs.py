"""`gmos-eval`'s files: results.csv, results.json and the per-sequence bar plot."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from training.evaluate.report import EvalReport

__all__ = ["default_out_dir", "write_outputs"]


def default_out_dir(results: Path, protocol: str) -> Path:
    """`<results>_eval/<protocol>`: a folder of its own next to `--results`."""
    res = results.resolve()
    return res.parent / f"{res.name}_eval" / protocol


def write_outputs(report: EvalReport, out_dir: Path) -> dict[str, Path]:
    """Write `results.csv`, `results.json` and `per_sequence.png` into `out_dir`.

    Returns:
        {"csv": path, "json": path, "plot": path}.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": out_dir / "results.csv",
        "json": out_dir / "results.json",
        "plot": out_dir / "per_sequence.png",
    }
    fields: list[str] = []
    for r in report.rows:
        fields += [k for k in r if k not in fields]
    with paths["csv"].open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in report.rows:
            w.writerow({k: _csv_cell(v) for k, v in r.items()})
    payload = {
        "protocol": report.protocol,
        "results_dir": str(report.results_dir),
        **report.meta,
        "num_sequences": len(report.per_sequence),
        "global": report.summary,
    }
    paths["json"].write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")
    _bar_plot(report, paths["plot"])
    return paths


def _csv_cell(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v)  # full precision: the CSV is used for cross-checks, not just reading
    return v


def _bar_plot(report: EvalReport, path: Path) -> None:
    # The object-oriented API with the Agg canvas: no pyplot global state, no display needed.
    names = list(report.per_sequence)
    vals = [report.per_sequence[n] for n in names]
    fig = Figure(figsize=(max(6.0, 0.3 * len(names) + 2), 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(range(len(names)), vals, color="#3070b0")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel(report.plot_label)
    ax.set_title(f"{report.protocol}: per-sequence {report.plot_label}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
