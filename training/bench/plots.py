"""Plots of the benchmark: the per-frame budget breakdown and the stride curve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from training.bench.stages import FRAME_STAGES

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_breakdown(summary: dict[str, Any], path: Path) -> None:
    """Stacked bars of the per-frame budget: one subplot per configuration."""
    configs = list(summary["configs"])
    fig, axes = plt.subplots(1, len(configs), figsize=(6.5 * len(configs), 4.8), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, cname in zip(axes[0], configs):
        labels, rows = [], []
        for bname, b in summary["configs"][cname]["backends"].items():
            for variant, pf in b["per_frame"].items():
                labels.append(f"{variant}\n{bname}")
                rows.append(pf["stages_ms"])
        bottom = np.zeros(len(rows))
        for i, stage in enumerate(FRAME_STAGES):
            vals = np.array([r.get(stage) or 0.0 for r in rows])
            if not vals.any():
                continue
            ax.bar(labels, vals, bottom=bottom, label=stage, color=colours(i))
            bottom += vals
        for x, total in enumerate(bottom):
            ax.text(
                x,
                total,
                f"{total:.0f} ms\n{1e3 / total:.3g} fps",
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.set_ylabel("ms per frame (median per stage)")
        prec = summary.get("torch_precision", "fp32")
        ax.set_title(
            f"{cname}: per-frame breakdown ({summary['machine']['device']}, torch {prec})",
            fontsize=10,
        )
        ax.set_ylim(0, bottom.max() * 1.25 if len(bottom) else 1)
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_stride_curve(curve: dict[str, Any], path: Path) -> None:
    """Two panels against the proposer stride k: end-to-end fps, and MOS-I (x100) with FP."""
    pts = curve["points"]
    k = [p["stride"] for p in pts]
    fig, (ax_f, ax_m) = plt.subplots(1, 2, figsize=(9, 3.6))
    ax_f.plot(k, [p["fps"] for p in pts], marker="o", color="k")
    for p in pts:
        ax_f.annotate(
            f"{p['fps']:.1f}",
            (p["stride"], p["fps"]),
            fontsize=8,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax_f.set_xlabel("proposer stride k")
    ax_f.set_ylabel("frames / s (end to end)")
    ax_f.set_xticks(k)
    for key, marker in (("mtIoU", "o"), ("J_mov", "s")):
        ax_m.plot(k, [100 * p[key] for p in pts], marker=marker, label=key)
    ax_m.set_xlabel("proposer stride k")
    ax_m.set_ylabel("MOS-I (x100)")
    ax_m.set_xticks(k)
    ax_fp = ax_m.twinx()
    ax_fp.plot(k, [p["FP"] for p in pts], marker="^", color="tab:red", ls="--", label="FP")
    ax_fp.set_ylabel("FP (objects / frame)", color="tab:red")
    lines = ax_m.get_lines() + ax_fp.get_lines()
    ax_m.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="best")
    fig.suptitle(
        f"proposer stride: {curve.get('scenes')} held-out clips, {Path(curve.get('bundle', '')).name}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
