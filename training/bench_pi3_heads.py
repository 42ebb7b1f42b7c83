"""What the π³ heads add per frame: decoder-only vs decoder + heads on the same window.

    python -m training.bench_pi3_heads [--grid 9 16] [--frames 5] [--decoder-depth 4] \
        [--head-depth 5] [--repeats 3] [--out out/bench_pi3_heads]

Paper widths (1024-d decoder, 1024-d head transformers, 512-d camera), random weights (time does not
depend on their values), one CPU thread unless ``--threads``. The decoder is run at
``--decoder-depth`` blocks (36 in π³; CPU time grows linearly with it, so the JSON also gives the
time per decoder block and a 36-block extrapolation). The heads run on every frame of the window,
as the official ``Pi3.forward`` does. Prints JSON, writes it and a bar plot.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from gmos_core.models.pi3 import Pi3Encoder  # noqa: E402


def _best_of(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grid", type=int, nargs=2, default=(9, 16), help="patch grid h w")
    ap.add_argument("--frames", type=int, default=5, help="frames per window N")
    ap.add_argument("--decoder-depth", type=int, default=4)
    ap.add_argument("--head-depth", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("out/bench_pi3_heads"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    h, w = args.grid
    n = args.frames
    model = Pi3Encoder(
        encoder_depth=1,
        decoder_depth=args.decoder_depth,
        with_heads=True,
        head_depth=args.head_depth,
    ).eval()
    tokens = torch.randn(1, n, h * w, model.embed_dim)
    with torch.inference_mode():
        model.decode_window_geometry(tokens, h, w)  # warm-up
        t_dec = _best_of(lambda: model.decode_window(tokens, h, w), args.repeats)
        t_all = _best_of(lambda: model.decode_window_geometry(tokens, h, w), args.repeats)
    heads_ms_per_frame = (t_all - t_dec) / n * 1e3
    per_block_ms = t_dec / args.decoder_depth * 1e3
    result = {
        "device": "cpu",
        "threads": args.threads,
        "grid_hw": [h, w],
        "pixels_hw": [h * 14, w * 14],
        "frames_per_window": n,
        "decoder_depth_run": args.decoder_depth,
        "head_depth": args.head_depth,
        "decoder_window_ms": round(t_dec * 1e3, 2),
        "decoder_plus_heads_window_ms": round(t_all * 1e3, 2),
        "heads_ms_per_frame": round(heads_ms_per_frame, 2),
        "heads_ms_per_window": round((t_all - t_dec) * 1e3, 2),
        "decoder_ms_per_block_per_window": round(per_block_ms, 2),
        "decoder36_window_ms_extrapolated": round(per_block_ms * 36, 1),
        "heads_over_decoder36": round((t_all - t_dec) / (t_dec / args.decoder_depth * 36), 3),
        "head_params_m": round(
            sum(
                p.numel()
                for name, p in model.named_parameters()
                if name.split(".")[0].endswith(("_decoder", "_head"))
            )
            / 1e6,
            1,
        ),
    }
    print(json.dumps(result, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_pi3_heads.json").write_text(json.dumps(result, indent=2) + "\n")
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(
        ["decoder (36 blk,\nextrapolated)", "heads\n(all N frames)"],
        [result["decoder36_window_ms_extrapolated"], result["heads_ms_per_window"]],
        color=["tab:gray", "tab:blue"],
    )
    ax.set_ylabel(f"ms per window (N={n}, {h}x{w} grid, CPU {args.threads} thr)")
    ax.set_title("π³ heads vs decoder")
    fig.tight_layout()
    fig.savefig(args.out / "bench_pi3_heads.png", dpi=120)


if __name__ == "__main__":
    main()
