"""How good are a Gmos proposer's masks of the objects that move now, before any propagation?

MOS-I's J_mov can only be as good as the proposer's masks of the moving objects: the online
propagator seeds and snaps tracks to them. This probe renders validation windows (seeds
800 000.., the held-out generator's scene mix, 5 frames over 0.5 s at 10 fps, exactly the
runtime's window) and, for every object that moves at the window's middle frame, reports

* ``best_iou_any``: the best IoU over all queries of (mask logit > `mask_threshold`), what the
  masks could give if the motion head picked perfectly;
* ``best_iou_moving``: the same over the queries the motion head calls moving
  (probability > `motion_threshold`), what the runtime can use;
* ``false_moving_per_frame``: queries called moving whose mask matches no moving object at
  IoU ≥ 0.5, per window.

With ``--objects`` (a stage-1b state, `training.pretrain_objects`) the stage-1b proposer is
scored on the same objects (``stage1b_best_iou_any``, a zero π³ token, as it was trained):
the mask quality stage 2 started from.

    python -m training.probe_proposer --bundle gmos_core/assets/micro_gmos.safetensors \\
        --objects training/checkpoints/micro/objects_stage1b_step14000.safetensors --out out/probe.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from gmos_core.models.build import (
    GmosModelConfig,
    build_frame_model,
    build_frame_model_from_bundle,
)
from training.calibrate import VALIDATION_SEED
from training.datasets import SyntheticDataConfig, SyntheticWindowDataset, WindowSpec
from training.pretrain_objects import best_query_iou, proposer_on_frames, query_ious
from training.resume import load_fp16_state, load_part
from training.splits import HELD_OUT_SEED
from training.trainer import GmosTrainModule

__all__ = ["probe_proposer"]


def _check_split(num_windows: int, seed: int) -> None:
    if num_windows <= 0:
        raise ValueError(f"--num-windows must be positive, got {num_windows}")
    if seed + num_windows > HELD_OUT_SEED:
        raise ValueError(f"seeds {seed}..{seed + num_windows - 1} reach the held-out split")


def _windows(num_windows: int, seed: int, cfg: GmosModelConfig) -> SyntheticWindowDataset:
    data = SyntheticDataConfig(
        seed_start=seed,
        num_scenes=num_windows,
        windows_per_scene=1,
        fps_choices=(10.0,),
        duration_s=2.4,
        height=128,
        width=128,
    )
    spec = WindowSpec(
        min_span_s=0.5,
        max_span_s=0.5,
        pi3_pixel_limit=cfg.pi3.pixel_limit,
        sam_size=cfg.sam2.image_size,
        mask_size=4 * cfg.head.grid,
    )
    return SyntheticWindowDataset(data, spec)


@torch.no_grad()
def probe_proposer(
    bundle: str | Path,
    objects: str | Path | None = None,
    num_windows: int = 48,
    seed: int = VALIDATION_SEED,
    mask_threshold: float = 0.0,
    motion_threshold: float = 0.5,
) -> dict[str, float]:
    """The figures of the module docstring; IoUs in [0, 1] (NaN: no moving object seen)."""
    _check_split(num_windows, seed)
    fm = build_frame_model_from_bundle(bundle)
    if fm.mode != "gmos":
        raise ValueError(f"{bundle} is a {fm.mode} bundle; the probe needs a Gmos proposer")
    model = GmosTrainModule(fm, train_encoders=False, train_pi3=False).eval()
    stage1b = None
    if objects is not None:
        stage1b = build_frame_model(fm.config, "gmos", seed=0)
        st = load_fp16_state(objects)
        load_part(stage1b.sam2.sam_model, st.parts["sam2"], "sam2", strict=False)
        load_part(stage1b.head, st.parts["head"], "head")
    ds = _windows(num_windows, seed, fm.config)
    any_q: list[torch.Tensor] = []
    moving_q: list[torch.Tensor] = []
    first: list[torch.Tensor] = []
    false_moving = 0
    for i in tqdm(range(len(ds)), desc="probe", unit="window"):
        item = ds[i]
        gt = item["gt_masks"][item["gt_motion"] > 0]  # (G, R, R) objects moving now
        out = model(item["pi3"][None], item["sam"][None])
        masks = out["mask"][0]  # (Q, R, R) logits
        called = torch.sigmoid(out["motion_logits"][0, :, 0]) > motion_threshold
        iou = query_ious(masks, gt, mask_threshold)  # (G, Q)
        # A query called moving is false when its mask matches no object moving now.
        best_per_query = iou.max(dim=0).values if len(gt) else torch.zeros(len(masks))
        false_moving += int((called & (best_per_query < 0.5)).sum())
        if len(gt) == 0:
            continue
        any_q.append(iou.max(dim=1).values)
        moving_q.append(iou[:, called].max(dim=1).values if called.any() else torch.zeros(len(gt)))
        if stage1b is not None:
            o = proposer_on_frames(stage1b.sam2, stage1b.head, item["sam"][None])
            first.append(best_query_iou(o["mask"][0], gt, mask_threshold))

    def mean(xs: Sequence[torch.Tensor]) -> float:
        x = torch.cat(list(xs)) if xs else torch.zeros(0)
        return float(x.mean()) if x.numel() else float("nan")

    report = {
        "windows": float(len(ds)),
        "moving_objects": float(sum(len(x) for x in any_q)),
        "best_iou_any": mean(any_q),
        "best_iou_moving": mean(moving_q),
        "false_moving_per_frame": false_moving / len(ds),
    }
    if stage1b is not None:
        report["stage1b_best_iou_any"] = mean(first)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", required=True, help="a Gmos (proposer) bundle")
    ap.add_argument("--objects", default=None, help="a stage-1b state to compare with")
    ap.add_argument("--num-windows", type=int, default=48)
    ap.add_argument("--seed", type=int, default=VALIDATION_SEED)
    ap.add_argument("--mask-threshold", type=float, default=0.0)
    ap.add_argument("--motion-threshold", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    if not 0.0 <= args.motion_threshold <= 1.0:
        ap.error(f"--motion-threshold must be in [0, 1], got {args.motion_threshold}")
    torch.set_num_threads(args.threads)
    try:
        report = probe_proposer(
            args.bundle,
            args.objects,
            args.num_windows,
            args.seed,
            args.mask_threshold,
            args.motion_threshold,
        )
    except ValueError as exc:
        ap.error(str(exc))
    text = json.dumps(report, indent=1)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
