"""A Gmos bundle whose proposer is stage 1b's (every object as a target) instead of stage 2's.

    python -m training.objects_bundle --bundle gmos_core/assets/micro_gmos.safetensors \\
        --objects training/checkpoints/micro/objects_stage1b_step14000.safetensors \\
        --out out/objects_gmos/micro_gmos.safetensors
    gmos-calibrate --bundle out/objects_gmos/micro_gmos.safetensors --decision flow_motion ...

Why. With a motion decision other than the head (``flow_motion``, ``depth_warp``) the proposer
only has to find and segment objects: which of them move is decided elsewhere. Stage 1b
(`training.pretrain_objects`) trains exactly that, every object of single frames a target,
while stage 2 trains the proposer to leave static objects empty, the motion head's job. This
tool asks whether the stage-1b proposer serves such a decision better (docs/training.md,
session 16: it does not, measurably).

What the bundle holds: π³ from ``--bundle``; the SAM2 image encoder and the proposer from the
stage-1b state (stage 2 froze that SAM2, so it is normally the bundle's own); the proposer's π³
projector weight set to zero. Stage 1b fed the π³ slot a zero token, so its projector always
gave the same output (``Linear(0) = bias``, then GELU and LayerNorm); with the weight zeroed it
gives that output for any π³ feature, and the proposer sees what it was trained with. Its
motion head is untrained (stage 1b has no motion term) and no operating point is copied:
calibrate it with ``gmos-calibrate --decision flow_motion`` (or ``depth_warp``) before use.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from gmos_core.bundle import read_bundle_info, save_bundle
from gmos_core.models.build import build_frame_model_from_bundle
from training.resume import load_fp16_state, load_part


def objects_bundle(bundle: str | Path, objects: str | Path, out: str | Path) -> Path:
    """Write the bundle described in the module doc; returns `out`.

    Raises:
        ValueError: `bundle` is not a Gmos proposer bundle, or the stage-1b state's parts do
            not fit its configuration (another decoder depth, say).
    """
    info = read_bundle_info(bundle)
    if info.variant != "gmos":
        raise ValueError(f"{bundle}: a Gmos proposer bundle is needed, got variant {info.variant}")
    state = load_fp16_state(objects)
    if state.meta.get("stage") != "objects" or not {"sam2", "head"} <= set(state.parts):
        raise ValueError(
            f"{objects}: not a stage-1b state (training.pretrain_objects: stage 'objects' with "
            f"parts sam2 and head; got stage {state.meta.get('stage')!r}, parts "
            f"{sorted(state.parts)})"
        )
    model = build_frame_model_from_bundle(bundle)
    load_part(model.head, state.parts["head"], f"{objects} [head]")
    load_part(model.sam2.sam_model, state.parts["sam2"], f"{objects} [sam2]", strict=False)
    with torch.no_grad():
        model.head.pi3_projector.proj.weight.zero_()
    return save_bundle(
        out,
        model.pi3,
        model.sam2.sam_model,
        model.head,
        config=info.config,
        variant="gmos",
        config_yaml=info.config_yaml,
        half=True,
        extra={
            "trained_by": "training.pretrain_objects (stage-1b proposer; training.objects_bundle)",
            "step": str(state.step),
            "motion_head": "untrained: calibrate a flow_motion or depth_warp decision",
        },
    )


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status (2: bad input)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bundle", required=True, help="a Gmos bundle: π³ and the configuration")
    ap.add_argument("--objects", required=True, help="a stage-1b state (pretrain_objects)")
    ap.add_argument("--out", required=True, type=Path, help="the bundle to write")
    args = ap.parse_args(argv)
    try:
        path = objects_bundle(args.bundle, args.objects, args.out)
    except (OSError, ValueError) as exc:
        print(f"objects_bundle: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
