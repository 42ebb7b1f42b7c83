"""Can the flow motion net lift Gmos-S's binary MOS J?  A probe on tuning clips.

    python -m training.probe_gmos_s_fusion --out out/probe_gmos_s_fusion [--num-seqs 30]

Gmos-S's foreground marks objects, not moving objects (docs/training.md, session 11: per-object
AUROC 0.48), and the flow motion net (`gmos_core.models.flow_decision`) says which pixels move
in the world now. This probe scores, with the binary MOS protocol (`evaluate_mos_binary`: the
ground truth is every object that moves at some point, at every frame it is visible), ways of
combining them on clips of the held-out generator from seed 830 000 (no training, calibration,
validation or held-out split draws there):

* ``gmos_s``: Gmos-S at its bundle's operating point (what ships);
* ``flow>t``: the net's per-pixel probability above t;
* ``gmos_s&flow>t``: both;
* ``gmos_s_components``: Gmos-S's connected components, linked into tracks (`InstanceLinker`),
  kept where the net's mean probability under the component exceeds t, once (``_memory``:
  from the first frame the track was seen moving on, as the MOS ground truth counts it);
* ``exact_objects_memory``: the renderer's exact object masks, decided the same way: a bound on
  what any mask model reaches with this decision;
* two references without the net: ``exact_objects_all`` (every exact object mask, no motion
  decision at all) and ``exact_objects_exact_motion_memory`` (exact masks, and each object
  marked from the first frame it moves on: the best any online method can do).

Writes ``results.json`` (the best threshold of each rule and every row) and ``results.png``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from tqdm import tqdm

from gmos_core.baselines_extra import InstanceLinker, components_to_labels
from gmos_core.compute import apply_threads
from gmos_core.data.synthetic import SceneSample
from gmos_core.metrics.davis import evaluate_mos_binary
from gmos_core.models.flow_decision import FlowMotionDecision, clip_motion_maps
from gmos_core.streaming.build import RuntimeSettings, build_segmenter, load_frame_model
from gmos_core.streaming.segmenter import FrameModel
from training.splits import HELD_OUT_SEED, SplitSpec, iter_held_out_scenes, jpeg_round_trip

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

#: Tuning seeds: above calibration's validation / check clips (800 000.., 810 000..), below
#: the held-out split (900 000..).
PROBE_SEED = 830_000
THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
#: Rules with nothing to threshold (scored once).
FIXED = ("exact_objects_all", "exact_objects_exact_motion_memory")


@dataclass
class Clip:
    """One clip's maps, all (T, H, W)."""

    fg_prob: np.ndarray  # Gmos-S foreground probability
    flow_prob: np.ndarray  # the flow net's probability of moving now, resized to the frame
    gt: np.ndarray  # bool: objects that move at some point (binary MOS ground truth)
    objects: np.ndarray  # the renderer's instance ids (0 = background)
    moving_now: np.ndarray  # (T, H, W) bool: the objects moving in the world at each frame


def clip_maps(
    scene: SceneSample, model: FrameModel, settings: RuntimeSettings, decision: FlowMotionDecision
) -> Clip:
    """Gmos-S (streamed as the node runs it) and the flow net over one rendered clip."""
    frames = [jpeg_round_trip(f) for f in scene.frames]
    seg = build_segmenter(settings, model)
    results = []
    for f, t in zip(frames, scene.stamps_ns):
        results += seg.step(f, int(t))
    results += seg.flush()
    fg = np.stack([r.fg_prob for r in results])
    flow = [prob for _, prob in clip_motion_maps(decision, frames)]
    gt = np.isin(scene.instance_masks, scene.object_ids[scene.object_is_dynamic])
    now = np.zeros_like(gt)
    for k, oid in enumerate(scene.object_ids):
        now |= (scene.instance_masks == oid) & scene.motion_state[:, k, None, None]
    return Clip(fg, np.stack(flow), gt, scene.instance_masks, now)


def gated(
    labels_of: Callable[[int], np.ndarray], flow: np.ndarray, t: float, memory: bool, link: bool
) -> np.ndarray:
    """Per frame, the union of the components whose mean flow probability exceeds t (with
    `memory`: exceeded it at this frame or any earlier one of the same track)."""
    linker = InstanceLinker() if link else None
    moved: dict[int, bool] = {}
    out = []
    for k in range(len(flow)):
        labels = labels_of(k)
        if linker is not None:
            labels, _ = linker.step(labels)
        keep = np.zeros(labels.shape, bool)
        for i in np.unique(labels[labels > 0]):
            m = labels == i
            now = float(flow[k][m].mean()) > t
            moved[int(i)] = moved.get(int(i), False) or now
            if moved[int(i)] if memory else now:
                keep |= m
        out.append(keep)
    return np.stack(out)


def rules(fg_threshold: float) -> dict[str, Callable[[Clip, float], np.ndarray]]:
    """Each rule: (clip, threshold t) -> (T, H, W) bool prediction."""

    def comps(c: Clip, t: float, memory: bool) -> np.ndarray:
        def labels_of(k: int) -> np.ndarray:
            return components_to_labels(c.fg_prob[k] > fg_threshold)

        return gated(labels_of, c.flow_prob, t, memory, link=True)

    return {
        "gmos_s": lambda c, t: c.fg_prob > fg_threshold,
        "flow>t": lambda c, t: c.flow_prob > t,
        "gmos_s&flow>t": lambda c, t: (c.fg_prob > fg_threshold) & (c.flow_prob > t),
        "gmos_s_components": lambda c, t: comps(c, t, False),
        "gmos_s_components_memory": lambda c, t: comps(c, t, True),
        "exact_objects_memory": lambda c, t: gated(
            lambda k: c.objects[k], c.flow_prob, t, memory=True, link=False
        ),
        "exact_objects_all": lambda c, t: c.objects > 0,
        "exact_objects_exact_motion_memory": lambda c, t: gated(
            lambda k: c.objects[k], c.moving_now.astype(np.float32), 0.5, memory=True, link=False
        ),
    }


def clip_mos_j(clip: Clip, rule: Callable[[Clip, float], np.ndarray], t: float) -> float:
    """Binary MOS J of one clip (mean over its frames)."""
    return float(evaluate_mos_binary("probe", clip.gt, rule(clip, t)).J.mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--num-seqs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=PROBE_SEED)
    ap.add_argument("--gmos-s-bundle", default="gmos_core/assets/micro_gmos_s.safetensors")
    ap.add_argument("--flow-motion-weights", default="")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if args.num_seqs < 1:
        ap.error(f"--num-seqs must be >= 1, got {args.num_seqs}")
    if args.seed >= HELD_OUT_SEED:
        ap.error(f"--seed {args.seed}: seeds from {HELD_OUT_SEED} are the held-out split's")
    apply_threads(args.threads)
    settings = RuntimeSettings(variant="gmos_s", bundle=args.gmos_s_bundle)
    model = load_frame_model(settings)
    fg_threshold = model.operating_point.fg_threshold
    decision = (
        FlowMotionDecision(weights=args.flow_motion_weights)
        if args.flow_motion_weights
        else FlowMotionDecision()
    )
    grids = {
        name: (fg_threshold,) if name == "gmos_s" else (0.5,) if name in FIXED else THRESHOLDS
        for name in rules(fg_threshold)
    }
    per: dict[str, dict[float, list[float]]] = {n: {t: [] for t in g} for n, g in grids.items()}
    spec = SplitSpec(num_seqs=args.num_seqs, seed=args.seed)
    scenes = (s for _, s in iter_held_out_scenes(spec))  # rendered one at a time
    for scene in tqdm(scenes, desc="gmos-s + flow net", total=args.num_seqs):
        clip = clip_maps(scene, model, settings, decision)  # one clip's maps at a time
        for name, rule in rules(fg_threshold).items():
            for t in grids[name]:
                per[name][t].append(clip_mos_j(clip, rule, t))
    # MOS J x100: the mean over clips of each clip's mean over frames.
    table = {
        n: {f"{t:g}": 100.0 * float(np.mean(v)) for t, v in row.items()} for n, row in per.items()
    }
    best = {name: max(row.values()) for name, row in table.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "clips": {"num_seqs": args.num_seqs, "seed": args.seed},
        "gmos_s_fg_threshold": fg_threshold,
        "best_mos_j": best,
        "mos_j_by_threshold": table,
    }
    (args.out / "results.json").write_text(json.dumps(report, indent=1))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.barh(list(best), list(best.values()), color="tab:blue")
    ax.axvline(30, color="tab:red", ls="--", label="target MOS J 30")
    ax.set_xlabel("binary MOS J x100 (best threshold)")
    ax.set_title(f"Gmos-S and the flow motion net, {args.num_seqs} clips from seed {args.seed}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(args.out / "results.png", dpi=110)
    print(json.dumps(best, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
