"""What one `gmos-eval` run produced (`EvalReport`), its text table and its range check."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gmos_core.metrics.ranges import check_metric_ranges as check_metric_ranges_in

__all__ = ["EvalInputError", "EvalReport", "check_metric_ranges", "fmt", "plain", "text_table"]


class EvalInputError(Exception):
    """A user error not covered by the data readers (bad flag combination, bad motion file)."""


@dataclass
class EvalReport:
    """What one evaluation produced.

    Attributes:
        protocol: protocol name.
        results_dir: the folder of sequences that was scored.
        summary: global numbers, unscaled (fractions); nested dicts for several match modes.
        rows: `results.csv` rows (per object or per sequence).
        per_sequence: sequence -> the main per-sequence score, for the bar plot.
        plot_label: y-axis label of the bar plot.
        table: the paper-style text table printed to stdout.
        meta: protocol settings and extra listings written into results.json.
    """

    protocol: str
    results_dir: Path
    summary: dict[str, Any]
    rows: list[dict[str, Any]]
    per_sequence: dict[str, float]
    plot_label: str
    table: str
    meta: dict[str, Any] = field(default_factory=dict)


def fmt(v: float | None, scale: float = 100.0) -> str:
    """One table cell: `v * scale` with one decimal, `nan` for a missing or NaN value."""
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v * scale:.1f}"


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Right-aligned columns, two spaces apart, header first."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def plain(d: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-safe copy: numpy scalars/arrays to Python floats/lists."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, np.ndarray):
            out[k] = v.tolist()
        elif isinstance(v, np.generic):
            out[k] = v.item()
        else:
            out[k] = v
    return out


def check_metric_ranges(report: EvalReport) -> None:
    """Refuse to report a metric outside its range (`gmos_core.metrics.ranges`): the global
    numbers and every per-sequence / per-object row.

    Raises:
        MetricRangeError: naming the number, its value and where it came from.
    """
    check_metric_ranges_in(report.summary, f"{report.protocol} global")
    for row in report.rows:
        name = row.get("sequence", row.get("Sequence", row.get("seq", "?")))
        check_metric_ranges_in(row, f"{report.protocol} sequence {name}")
