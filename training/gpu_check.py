"""``gmos-gpu-check``: does a model give the same answers on a GPU, and what do bf16 / fp16 cost?

Two checks, one JSON (``<out>/gpu_check.json``) and one plot (``<out>/gpu_check.png``):

* **Part parity** (any configuration, the paper's by default; random weights from a fixed seed:
  the architecture and the kernels are what is checked, not trained numbers). Each of the five
  parts (π³ per-frame encoder, π³ window decoder, SAM2 encoder, Gmos-S head, proposer head) runs
  on the CPU in fp32 (the reference) and on `--device` in every `--precisions` (fp32 with TF32
  off, bf16 / fp16 autocast), on the *same* inputs, so each part's own error is measured. Then
  the whole chain (5 frames -> π³ -> SAM2 -> heads) runs on the device feeding its own outputs
  forward: the error a deployment sees. Per output: max |diff|, max |diff| / max |ref|,
  rms(diff) / rms(ref), cosine similarity, and for mask logits the fraction of pixels whose
  decision (logit > 0) flips.
* **Stream parity** of the trained bundles (the shipped micro models by default): each runs
  through the streaming runtime (`build_segmenter`, its calibrated operating point) on the first
  held-out benchmark clips, on the CPU and on `--device`; reported: pixel agreement of the
  instance maps, agreement of the per-object motion states, and MOS-I of both runs.

    gmos-gpu-check --device cuda                      # paper-size parts + shipped micro bundles
    gmos-gpu-check --device cpu --config micro --precisions fp32 bf16   # runs anywhere

Random-weight activations are not trained ones: the reduced-precision figures bound the
kernels' rounding on realistic shapes, not the behaviour of a particular checkpoint (check a
trained checkpoint with ``--bundles``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch

from gmos_core.backends.base import BackendFrameModel
from gmos_core.backends.torch_backend import TorchBackend
from gmos_core.compute import add_threads_argument
from gmos_core.data.synthetic import SceneConfig, generate_scene
from gmos_core.models.build import build_frame_model_from_bundle
from gmos_core.streaming.build import DEFAULT_BUNDLES, RuntimeSettings, build_segmenter
from gmos_core.variants import variant_of_head
from training.bench import build_models, torch_backend
from training.scoring import run_clip, score_gmos
from training.splits import SplitSpec, as_sequence, held_out_scenes

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PARTS = ("pi3_encoder", "pi3_decoder", "sam2_encoder", "gmos_s_head", "gmos_head")
# Outputs whose sign is a decision (mask logits thresholded at 0 by the paper's rule).
DECISION_OUTPUTS = {("gmos_s_head", "fg_mask"), ("gmos_head", "mask")}


def compare(ref: np.ndarray, out: np.ndarray, decision: bool = False) -> dict[str, float]:
    """Error figures of `out` against the float32 reference `ref` (same shape)."""
    if ref.shape != out.shape:
        raise ValueError(f"shape mismatch: reference {ref.shape}, output {out.shape}")
    r = ref.astype(np.float64).ravel()
    o = out.astype(np.float64).ravel()
    d = o - r
    rms_ref = float(np.sqrt(np.mean(r**2)))
    norm = float(np.linalg.norm(r) * np.linalg.norm(o))
    res = {
        "max_abs": float(np.abs(d).max()),
        "max_ref": float(np.abs(r).max()),
        "rel_max": float(np.abs(d).max() / max(np.abs(r).max(), 1e-12)),
        "rel_rms": float(np.sqrt(np.mean(d**2)) / max(rms_ref, 1e-12)),
        "cosine": float(r @ o / norm) if norm > 0 else 1.0,
        "finite": bool(np.isfinite(o).all()),
    }
    if decision:
        res["decision_flip_fraction"] = float(np.mean((r > 0) != (o > 0)))
    return res


def _frames(hw: tuple[int, int], n: int, seed: int) -> list[np.ndarray]:
    """`n` consecutive frames of a synthetic parallax scene at `hw` (realistic image statistics
    instead of noise: textured planes, objects, a moving camera)."""
    scene = generate_scene(SceneConfig(height=hw[0], width=hw[1], num_frames=n, seed=seed))
    return [np.ascontiguousarray(f) for f in scene.frames[:n]]


def _chain(
    tb: TorchBackend, fm: Any, frames: Sequence[np.ndarray]
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, np.ndarray]]]:
    """Inputs and outputs of every part for one window, each part fed the previous ones'
    outputs as this backend computed them."""
    ins: dict[str, dict[str, np.ndarray]] = {}
    outs: dict[str, dict[str, np.ndarray]] = {}
    tokens = [tb.run("pi3_encoder", {"images": fm.pi3_input(f)})["tokens"] for f in frames]
    ins["pi3_encoder"] = {"images": fm.pi3_input(frames[-1])}
    outs["pi3_encoder"] = {"tokens": tokens[-1]}
    ins["pi3_decoder"] = {"tokens": np.stack(tokens, axis=1)}
    outs["pi3_decoder"] = tb.run("pi3_decoder", ins["pi3_decoder"])
    ins["sam2_encoder"] = {"image": fm.sam2_input(frames[-1])}
    outs["sam2_encoder"] = tb.run("sam2_encoder", ins["sam2_encoder"])
    head_in = {"token": outs["pi3_decoder"]["features"], **outs["sam2_encoder"]}
    for head in ("gmos_s_head", "gmos_head"):
        ins[head] = head_in
        outs[head] = tb.run(head, head_in)
    return ins, outs


def part_parity(
    config: str, device: str, precisions: Sequence[str], seed: int = 0, log: Any = print
) -> dict[str, Any]:
    """Per-part and whole-chain errors of `device` x `precisions` against CPU fp32."""
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    m = build_models(config, "cpu", None)
    frames = _frames(m.frame_hw, m.shapes.num_frames, seed)
    log(f"[parity/{config}] models built and frames rendered in {time.perf_counter() - t0:.1f} s")

    def backend(dev: str, precision: str) -> TorchBackend:
        # TorchBackend moves the (shared) modules to `dev`: the CPU reference runs first.
        return torch_backend(m, dev, precision)

    cpu = backend("cpu", "fp32")
    fm = BackendFrameModel(cpu, "gmos", m.cfg.pi3.pixel_limit, m.cfg.top_k)
    t0 = time.perf_counter()
    ref_in, ref_out = _chain(cpu, fm, frames)
    cpu_s = time.perf_counter() - t0
    log(f"[parity/{config}] CPU fp32 reference chain in {cpu_s:.1f} s")
    result: dict[str, Any] = {
        "config": config,
        "device": device,
        "seed": seed,
        "frame_hw": list(m.frame_hw),
        "shapes": m.shapes.to_dict(),
        "cpu_reference_chain_s": round(cpu_s, 2),
        "precisions": {},
    }
    # fp32 parity means IEEE fp32 kernels: TF32 (on by default for cuDNN convolutions) would
    # be a precision choice of its own, so it is off for this check and restored after.
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        for precision in precisions:
            fp32 = precision == "fp32"
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = not fp32
            dev = backend(device, precision)
            per_part = {
                part: {
                    k: compare(ref_out[part][k], v, (part, k) in DECISION_OUTPUTS)
                    for k, v in dev.run(part, ref_in[part]).items()
                }
                for part in PARTS
            }
            t0 = time.perf_counter()
            _, chain_out = _chain(dev, fm, frames)
            chain_s = time.perf_counter() - t0
            chain = {
                part: {
                    k: compare(ref_out[part][k], v, (part, k) in DECISION_OUTPUTS)
                    for k, v in chain_out[part].items()
                }
                for part in PARTS
            }
            result["precisions"][precision] = {
                "tf32": not fp32,
                "per_part": per_part,
                "chain": chain,
                "chain_s_first_call": round(chain_s, 3),
            }
            worst = max(e["rel_rms"] for p in chain.values() for e in p.values())
            log(f"[parity/{config}] {device} {precision}: worst chain rel_rms {worst:.2e}")
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        backend("cpu", "fp32")  # give the caller its modules back on the CPU
    return result


def stream_parity(
    bundles: Sequence[Path], device: str, num_clips: int, log: Any = print
) -> dict[str, Any]:
    """Each trained bundle streamed on the CPU and on `device` over held-out clips."""
    scenes, seeds = held_out_scenes(SplitSpec(num_seqs=num_clips))
    seqs = [as_sequence(f"heldout_{sd}", s) for sd, s in zip(seeds, scenes)]
    out: dict[str, Any] = {}
    for bundle in bundles:
        runs: dict[str, list[list[Any]]] = {}
        variant = ""
        for dev in ("cpu", device):
            model = build_frame_model_from_bundle(bundle, device=dev).frame_model()
            variant = variant_of_head(model.mode)
            runs[dev] = []
            for seq in seqs:
                seg = build_segmenter(
                    RuntimeSettings(variant=variant, span_s=4 / seq.fps, device=dev), model=model
                )
                runs[dev].append(run_clip(seg, seq))
        pix, states, n_states = [], 0, 0
        for a_seq, b_seq in zip(runs["cpu"], runs[device]):
            for a, b in zip(a_seq, b_seq):
                pix.append(float(np.mean(a.instance_ids == b.instance_ids)))
                sa = {o.obj_id: o.moving for o in a.objects}
                sb = {o.obj_id: o.moving for o in b.objects}
                for k in set(sa) | set(sb):
                    n_states += 1
                    states += int(sa.get(k) == sb.get(k))
        entry: dict[str, Any] = {
            "variant": variant,
            "clips": num_clips,
            "frames": len(pix),
            "pixel_agreement_mean": round(float(np.mean(pix)), 6),
            "pixel_agreement_min": round(float(np.min(pix)), 6),
            "motion_state_agreement": round(states / n_states, 6) if n_states else None,
        }
        if variant == "gmos_online":
            for dev in ("cpu", device):
                agg = score_gmos(runs[dev], seqs)
                entry[f"mos_i_{dev}"] = {
                    k: round(float(agg[k]), 4) for k in ("mtIoU", "J_mov", "FP")
                }
        out[bundle.name] = entry
        log(f"[stream/{bundle.name}] cpu vs {device}: {entry}")
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    """Bar chart: whole-chain rel_rms error of each part's main output, per precision."""
    par = result.get("parity")
    if not par:
        return
    main_out = {
        "pi3_encoder": "tokens",
        "pi3_decoder": "features",
        "sam2_encoder": "bottleneck",
        "gmos_s_head": "fg_mask",
        "gmos_head": "mask",
    }
    precs = list(par["precisions"])
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / max(len(precs), 1)
    for i, p in enumerate(precs):
        vals = [
            max(par["precisions"][p]["chain"][part][main_out[part]]["rel_rms"], 1e-9)
            for part in PARTS
        ]
        ax.bar(np.arange(len(PARTS)) + i * width, vals, width, label=p)
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(PARTS)) + width * (len(precs) - 1) / 2)
    ax.set_xticklabels([f"{p}\n({main_out[p]})" for p in PARTS], fontsize=8)
    ax.set_ylabel("rms error / rms of CPU fp32")
    ax.set_title(
        f"{par['config']} on {result.get('device_name', par['device'])} vs CPU fp32 "
        f"(whole chain, random weights, seed {par['seed']})",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gmos-gpu-check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="device compared with CPU fp32")
    ap.add_argument("--config", default="paper", help="configuration for the part parity")
    ap.add_argument(
        "--precisions",
        nargs="+",
        default=None,
        choices=["fp32", "bf16", "fp16"],
        help="default: fp32 bf16 fp16 on CUDA, fp32 bf16 on CPU",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--bundles",
        nargs="*",
        type=Path,
        default=[DEFAULT_BUNDLES["gmos_s"], DEFAULT_BUNDLES["gmos_online"]],
        help="trained bundles (default: the shipped micro bundles)",
    )
    ap.add_argument("--clips", type=int, default=2, help="held-out clips per bundle")
    ap.add_argument("--skip-parity", action="store_true")
    add_threads_argument(ap)  # CPU threads of the fp32 reference
    ap.add_argument("--out", type=Path, default=Path("out/gpu_check"))
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``gmos-gpu-check``; prints the JSON, returns the exit code."""
    args = build_parser().parse_args(argv)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("gmos-gpu-check: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    precisions = args.precisions or (["fp32", "bf16", "fp16"] if cuda else ["fp32", "bf16"])
    if "fp16" in precisions and not cuda:
        print("gmos-gpu-check: fp16 needs a CUDA device", file=sys.stderr)
        return 2
    missing = [str(b) for b in args.bundles if not b.is_file()]
    if missing:
        print(f"gmos-gpu-check: bundle(s) not found: {missing}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731 - progress on stderr
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpu_threads": torch.get_num_threads(),
    }
    if not args.skip_parity:
        result["parity"] = part_parity(args.config, args.device, precisions, args.seed, log)
    if args.bundles:
        result["stream"] = stream_parity(args.bundles, args.device, args.clips, log)
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / "gpu_check.png")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
