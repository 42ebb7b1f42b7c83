"""``gmos-fp16-check``: the fp16 ONNX graph (onnxruntime, CPU) against torch fp32 and torch
autocast, per part and chained, with mask pixel flips counted (as ``gmos-gpu-check`` does).

The five parts of one configuration (random weights from a fixed seed, as ``gmos-gpu-check``:
the graph's rounding on realistic shapes is measured, not a checkpoint) are exported as fp16
graphs (`training.export.fp16`: LayerNorm, softmax, reductions, pow/sqrt and RoPE in fp32 by
explicit casts) and run in onnxruntime's CPU provider. Three comparisons, each per part (same
inputs: the part's own error) and chained (5 frames -> π³ -> SAM2 -> heads, each backend
feeding its own outputs forward: what a deployment sees):

- ``ort_fp16_vs_fp32``: the fp16 graph against torch fp32 (the reference);
- ``autocast_vs_fp32``: torch autocast (bf16: the CPU's autocast precision; fp16 autocast
  needs CUDA, see ``gmos-gpu-check``) against fp32;
- ``ort_fp16_vs_autocast``: the fp16 graph against torch autocast.

    python -m training.fp16_check --config micro --out out/fp16_check
    python -m training.fp16_check --config paper --out out/fp16_check_paper   # slow on a CPU

Writes ``<out>/fp16_check_<config>.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch

from gmos_core.backends.base import BackendFrameModel
from gmos_core.backends.ort_backend import OrtBackend
from training.bench import build_models, export_onnx, torch_backend
from training.gpu_check import DECISION_OUTPUTS, PARTS, _chain, _frames, compare

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["fp16_parity", "main"]


def _errors(
    ref: dict[str, dict[str, np.ndarray]], got: dict[str, dict[str, np.ndarray]]
) -> dict[str, dict[str, dict[str, float]]]:
    return {
        part: {
            k: compare(ref[part][k], v, (part, k) in DECISION_OUTPUTS) for k, v in got[part].items()
        }
        for part in PARTS
    }


def fp16_parity(
    config: str,
    out_dir: Path,
    seed: int = 0,
    autocast: str = "bf16",
    log: Any = print,
    decoder_blocks: int | None = None,
) -> dict[str, Any]:
    """Export the fp16 graphs of `config` and compare (see the module docstring).

    `autocast` "none" skips the autocast runs (bf16 matmuls are ~80x slower than fp32 on this
    CPU: at paper size they take hours); `decoder_blocks` builds only the first π³ decoder
    blocks (paper size on a CPU, as ``gmos-bench`` does; the rest of the chain is full size).
    """
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    m = build_models(config, "cpu", None, decoder_blocks)
    frames = _frames(m.frame_hw, m.shapes.num_frames, seed)
    log(f"[fp16/{config}] models built in {time.perf_counter() - t0:.1f} s")
    onnx_dir = out_dir / f"onnx16_{config}"
    t0 = time.perf_counter()
    export_onnx(m, onnx_dir, "fp16")
    export_s = time.perf_counter() - t0
    log(f"[fp16/{config}] fp16 graphs exported in {export_s:.1f} s")
    graphs = {p: json.loads((onnx_dir / f"{p}.json").read_text())["fp16_graph"] for p in PARTS}
    cpu = torch_backend(m, "cpu", "fp32")
    fm = BackendFrameModel(cpu, "gmos", m.cfg.pi3.pixel_limit, m.cfg.top_k)
    t0 = time.perf_counter()
    ref_in, ref_out = _chain(cpu, fm, frames)
    times = {"torch_fp32_chain_s": time.perf_counter() - t0}
    runs: dict[str, Any] = {
        "ort_fp16": OrtBackend(onnx_dir, provider="cpu", threads=torch.get_num_threads())
    }
    if autocast != "none":
        runs["autocast"] = torch_backend(m, "cpu", autocast)
    per_part: dict[str, Any] = {}
    chain: dict[str, Any] = {}
    for name, b in runs.items():
        per_part[name] = {p: b.run(p, ref_in[p]) for p in PARTS}
        t0 = time.perf_counter()
        chain[name] = _chain(b, fm, frames)[1]
        times[f"{name}_chain_s"] = time.perf_counter() - t0
        log(f"[fp16/{config}] {name}: chain in {times[f'{name}_chain_s']:.1f} s")
    result = {
        "config": config,
        "seed": seed,
        "frame_hw": list(m.frame_hw),
        "autocast": autocast,
        "fp16_graphs": graphs,
        "export_s": round(export_s, 1),
        "times_s": {k: round(v, 2) for k, v in times.items()},
        "decoder_blocks": decoder_blocks,
        "per_part": {"ort_fp16_vs_fp32": _errors(ref_out, per_part["ort_fp16"])},
        "chain": {"ort_fp16_vs_fp32": _errors(ref_out, chain["ort_fp16"])},
    }
    if "autocast" in runs:
        for mode, got in (("per_part", per_part), ("chain", chain)):
            result[mode]["autocast_vs_fp32"] = _errors(ref_out, got["autocast"])
            result[mode]["ort_fp16_vs_autocast"] = _errors(got["autocast"], got["ort_fp16"])
    return result


def _plot(result: dict[str, Any], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for ax, mode in zip(axes, ("per_part", "chain")):
        for i, (cmp, errs) in enumerate(result[mode].items()):
            worst = [max(e["rel_rms"] for e in errs[p].values()) for p in PARTS]
            ax.bar(np.arange(len(PARTS)) + 0.27 * (i - 1), worst, 0.27, label=cmp)
        ax.set_xticks(range(len(PARTS)), PARTS, rotation=20)
        ax.set_yscale("log")
        ax.set_title(f"{result['config']}: {mode.replace('_', ' ')}")
    axes[0].set_ylabel("worst rel. rms error per part")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gmos-fp16-check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="micro", help="micro | paper | a YAML path")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--autocast", default="bf16", choices=["bf16", "none"])
    ap.add_argument("--decoder-blocks", type=int, default=None, help="first π³ decoder blocks only")
    ap.add_argument("--threads", type=int, default=1, help="torch / onnxruntime CPU threads")
    ap.add_argument("--out", type=Path, default=Path("out/fp16_check"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    res = fp16_parity(
        args.config, args.out, args.seed, args.autocast, decoder_blocks=args.decoder_blocks
    )
    name = Path(args.config).stem
    (args.out / f"fp16_check_{name}.json").write_text(json.dumps(res, indent=1) + "\n")
    _plot(res, args.out / f"fp16_check_{name}.png")
    short = {
        mode: {
            cmp: {
                p: {
                    k: {
                        "rel_rms": round(e["rel_rms"], 5),
                        **(
                            {"flips": round(e["decision_flip_fraction"], 5)}
                            if "decision_flip_fraction" in e
                            else {}
                        ),
                    }
                    for k, e in errs[p].items()
                }
                for p in PARTS
            }
            for cmp, errs in res[mode].items()
        }
        for mode in ("per_part", "chain")
    }
    print(json.dumps({"config": res["config"], "times_s": res["times_s"], **short}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
