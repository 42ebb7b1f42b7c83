"""Held-out synthetic benchmark: micro Gmos / Gmos-S against the non-learned baselines.

    python -m training.benchmark_synthetic --out out/benchmark \
        --gmos-s-bundle gmos_core/assets/micro_gmos_s.safetensors \
        --gmos-bundle gmos_core/assets/micro_gmos.safetensors

1. Writes the held-out split: `--num-seqs` scenes from seeds `--seed ..` (default 900000..;
   training draws seeds below 700000 and π³ validation 800000.., so the sets never overlap), 128x128, 24 frames at 10 fps,
   alternating dynamic / hard-parallax / dynamic scenes (fully static scenes have no moving
   object, so the official evaluators drop them), via `write_davis_style`. Nothing here is used
   for training or tuning.
2. Predicts with every method in the official output layout:
   * ``frame_diff`` (`FrameDifferencingBaseline`) and ``ego_residual``
     (`EgoMotionResidualBaseline`): per-frame connected components, linked into tracks by IoU
     (`link_instances`) -> ``mos-i_frame/``, ``mos_frame/`` and binary ``frame/``;
   * ``gmos_s``: `gmos-infer --model gmos-s` -> ``frame/``; its connected components linked the
     same way give a MOS-I row too;
   * ``gmos``: `gmos-infer --model gmos` -> ``mos-i_frame/`` (online) and ``mos_frame/``
     (offline second pass);
   * ``gmos_depth_warp`` and ``gmos_depth_vo`` (``--depth-warp``): the same Gmos with the
     "depth_warp" motion decision (`gmos_core.geometry.warp_decision`), the renderer's depth
     standing for an RGB-D camera and, for the camera motion, its exact poses (a robot's
     odometry) or the depth visual odometry on the frames (`DepthOdometryPoses`, the node's
     way: a camera alone). Not monocular methods, unlike the other rows;
   * ``gmos_flow_motion`` (``--flow-motion``): the same Gmos with the "flow_motion" decision
     (the flow motion net on the frames' optical flow, `gmos_core.models.flow_decision`):
     monocular, RGB only.
3. Scores with `gmos-eval`: MOS-I (``--dataset synthetic``, mtIoU / J_mov / FP), the binary
   MOS protocol (foreground J / F; ground truth = every object that moves at some point, at every
   frame it is visible, i.e. ``Annotations_unsupervised``) and DAVIS-2017 unsupervised.
4. Writes ``results.json``, ``results.md`` and ``results.png`` in `--out`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from tqdm import tqdm

from gmos_core.baselines import EgoMotionResidualBaseline
from gmos_core.baselines_extra import (
    FrameDifferencingBaseline,
    InstanceLinker,
    components_to_labels,
    link_instances,
    run_window_baseline,
)
from gmos_core.compute import apply_threads, default_threads
from gmos_core.data.palette import read_label_png, write_indexed_png
from gmos_core.data.synthetic import SceneSample
from gmos_core.geometry.warp_decision import DepthOdometryPoses, SensorFrame
from gmos_core.models.preprocess import stride_from_fps
from gmos_core.streaming.build import RuntimeSettings, load_frame_model
from training.evaluate import evaluate_protocol, write_outputs
from training.infer import infer_videos
from training.splits import (
    HELD_OUT_SEED,
    SplitSpec,
    jpeg_round_trip,
    sensor_frames,
    write_split,
)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def write_tracks(out: Path, seq: str, per_frame: Iterable[np.ndarray]) -> int:
    """Per-frame instance maps -> linked tracks in mos-i_frame/, mos_frame/ and binary frame/.

    Streams: each frame is linked (`InstanceLinker`) and written as it comes, so only the
    motion table (20 floats a frame) grows with the clip. Returns the number of frames.
    """
    linker = InstanceLinker()
    motion: list[np.ndarray] = []
    for t, labels in enumerate(per_frame):
        tracks, row = linker.step(labels)
        motion.append(row)
        name = f"{t:05d}.png"
        write_indexed_png(out / "mos-i_frame" / seq / name, tracks)
        write_indexed_png(out / "mos_frame" / seq / name, tracks)
        write_indexed_png(out / "frame" / seq / name, (tracks > 0).astype(np.uint8))
    if motion:  # an empty stream writes nothing (gmos-baseline refuses it)
        np.save(out / "mos-i_frame" / f"{seq}___motion.npy", np.stack(motion)[:, :, None])
    return len(motion)


def run_baselines(names: list[str], scenes: list[SceneSample], res: Path) -> list[str]:
    """Both baselines over every sequence; returns the method names."""
    methods = {
        "frame_diff": FrameDifferencingBaseline(),
        "ego_residual": EgoMotionResidualBaseline(),
    }
    for m, base in methods.items():
        for seq, s in tqdm(list(zip(names, scenes)), desc=m):
            per = run_window_baseline(s.frames, base.segment, stride_from_fps(s.config.fps))
            write_tracks(res / m, seq, per)
    return list(methods)


# Rows of a Gmos bundle run with another motion decision than its head, and that decision.
DECISION_OF = {
    "gmos_depth_warp": "depth_warp",
    "gmos_depth_vo": "depth_warp",
    "gmos_flow_motion": "flow_motion",
}


def run_learned(
    kind: str,
    bundle: Path,
    data: Path,
    names: list[str],
    out: Path,
    scenes: list[SceneSample] | None = None,
) -> None:
    """`gmos-infer` (its library form) over the held-out sequences; kinds "gmos_depth_warp" /
    "gmos_depth_vo" also hand it each frame's exact depth from `scenes` with their exact poses
    / the depth odometry's."""
    inputs = [data / "JPEGImages" / "480p" / n for n in names]
    decision = DECISION_OF.get(kind, "head")
    warp = decision == "depth_warp"
    settings = RuntimeSettings(
        variant="gmos_s" if kind == "gmos_s" else "gmos_online",
        bundle=str(bundle),
        motion_decision=decision,
    )
    sensors = None
    if warp:
        if scenes is None:
            raise ValueError("gmos_depth_warp needs the rendered scenes (their depth and poses)")
        sensors = {
            n: sensor_frames(s) if kind == "gmos_depth_warp" else depth_odometry_frames(s)
            for n, s in zip(names, scenes)
        }
    apply_threads(default_threads())  # what gmos-infer runs with by default
    model = load_frame_model(settings)
    infer_videos(
        settings, model, inputs, out, settings.variant, fps=10.0, save_mp4=False, sensors=sensors
    )
    if kind == "gmos_s":
        # Gmos-S has no instances: its foreground's connected components, linked, for MOS-I.
        for seq in names:
            frames = sorted((out / "frame" / seq).glob("*.png"))
            per = np.stack([components_to_labels(read_label_png(f) > 0) for f in frames])
            tracks, motion = link_instances(per)
            for t, f in enumerate(frames):
                write_indexed_png(out / "mos-i_frame" / seq / f.name, tracks[t])
            np.save(out / "mos-i_frame" / f"{seq}___motion.npy", motion[:, :, None])


def depth_odometry_frames(s: SceneSample) -> list[SensorFrame | None]:
    """A clip's `SensorFrame`s as the node builds them for a camera without odometry: the exact
    depth, the camera motion from the depth odometry on the frames as stored (JPEG)."""
    exact = sensor_frames(s)
    poses = DepthOdometryPoses()
    return [
        poses.step(jpeg_round_trip(f), e.depth_m, e.intrinsics, int(t))
        for f, e, t in zip(s.frames, exact, s.stamps_ns)
    ]


def evaluate(method_dir: Path, data: Path, eval_dir: Path) -> dict[str, Any]:
    """MOS-I, binary MOS and DAVIS-17 unsupervised scores of one method (`gmos-eval`'s library
    form; each protocol's results.csv / results.json / plot under `eval_dir/<protocol>`)."""
    out: dict[str, Any] = {}
    runs: dict[str, tuple[Path, Path, dict[str, Any]]] = {
        "mos-i": (
            method_dir / "mos-i_frame",
            data / "annotations",
            {"time_anno": data / "time_annotation.csv", "dataset": "synthetic"},
        ),
        "mos": (method_dir / "frame", data / "mos_gt", {"year": "2017"}),
        "davis17-unsup": (method_dir / "mos_frame", data, {}),
    }
    for proto, (results, gt, options) in runs.items():
        if not results.is_dir():
            continue
        d = eval_dir / proto
        report = evaluate_protocol(proto, results, gt, progress=False, **options)
        write_outputs(report, d)
        # Read back what was written, so the table is built from exactly the published file.
        out[proto] = json.loads((d / "results.json").read_text())
    return out


def summarise(scores: dict[str, Any]) -> dict[str, float]:
    """The headline numbers of one method (x100 except FP)."""
    row: dict[str, float] = {}
    if "mos-i" in scores:
        s = scores["mos-i"]["global"]["sequence_level"]
        row.update({"mtIoU": 100 * s["mtIoU"], "J_mov": 100 * s["J_mov"], "FP": s["FP"]})
    if "mos" in scores:
        g = scores["mos"]["global"]
        row.update({"MOS_J": 100 * g["J-Mean"], "MOS_F": 100 * g["F-Mean"]})
    if "davis17-unsup" in scores:
        row["UVOS_JF"] = 100 * scores["davis17-unsup"]["global"]["J&F-Mean"]
    return row


LABELS = {
    "frame_diff": "Frame differencing",
    "ego_residual": "Ego-motion residual (homography)",
    "gmos_s": "micro Gmos-S",
    "gmos": "micro Gmos (online MOS-I / offline MOS)",
    "gmos_depth_warp": "micro Gmos, depth-warp decision (RGB-D + odometry)",
    "gmos_depth_vo": "micro Gmos, depth-warp decision (RGB-D, depth odometry)",
    "gmos_flow_motion": "micro Gmos, flow-motion decision (RGB only)",
}


def markdown_table(rows: dict[str, dict[str, float]], spec: SplitSpec) -> str:
    """The README table."""
    cols = [("mtIoU", "mtIoU ↑"), ("J_mov", "J_mov ↑"), ("FP", "FP ↓")]
    cols += [("MOS_J", "MOS J ↑"), ("MOS_F", "MOS F ↑"), ("UVOS_JF", "DAVIS17-unsup J&F ↑")]
    head = "| Method | " + " | ".join(c[1] for c in cols) + " |"
    lines = [
        f"Held-out synthetic split: {spec.num_seqs} sequences (seeds from {spec.seed}, see "
        f"results.json), {spec.size}×{spec.size}, {spec.num_frames} frames at "
        f"{spec.fps:g} fps. MOS-I uses sequence-level matching; MOS is the binary foreground "
        "protocol.",
        "",
        head,
        "|" + "---|" * (len(cols) + 1),
    ]
    for m, r in rows.items():
        cells = []
        for k, _ in cols:
            v = r.get(k)
            cells.append("–" if v is None else (f"{v:.3f}" if k == "FP" else f"{v:.1f}"))
        lines.append(f"| {LABELS.get(m, m)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def bar_plot(rows: dict[str, dict[str, float]], path: Path) -> None:
    """Grouped bars of every metric per method."""
    keys = ["mtIoU", "J_mov", "FP", "MOS_J", "MOS_F", "UVOS_JF"]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.0 * len(keys), 3.2))
    methods = list(rows)
    for ax, k in zip(axes, keys):
        vals = [rows[m].get(k, np.nan) for m in methods]
        ax.bar(range(len(methods)), vals, color=[f"C{i}" for i in range(len(methods))])
        ax.set_xticks(range(len(methods)))
        ax.set_xticklabels(methods, rotation=45, ha="right", fontsize=7)
        ax.set_title(k + (" (lower is better)" if k == "FP" else ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 0 on success."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("out/benchmark"))
    ap.add_argument("--num-seqs", type=int, default=SplitSpec.num_seqs)
    ap.add_argument("--seed", type=int, default=HELD_OUT_SEED)
    ap.add_argument("--gmos-s-bundle", type=Path, default=None)
    ap.add_argument("--gmos-bundle", type=Path, default=None)
    ap.add_argument("--skip-baselines", action="store_true")
    ap.add_argument(
        "--depth-warp",
        action="store_true",
        help="also run --gmos-bundle with the depth_warp motion decision: exact depth with exact "
        "poses, and with the depth odometry's",
    )
    ap.add_argument(
        "--flow-motion",
        action="store_true",
        help="also run --gmos-bundle with the flow_motion motion decision (RGB only)",
    )
    args = ap.parse_args(argv)
    # Training draws seeds below 700000 (training/configs/*_micro.yaml: heads 0..99999, π³
    # pretraining 500000.., its curriculum 600000..); π³ validation uses 800000...
    if args.seed < 900_000:
        print(
            "benchmark: seeds below 900000 are training or validation seeds; pick --seed >= 900000",
            file=sys.stderr,
        )
        return 2
    spec = SplitSpec(num_seqs=args.num_seqs, seed=args.seed)
    data, res, ev = args.out / "data", args.out / "results", args.out / "eval"
    names, scenes = write_split(spec, data)
    methods: list[str] = []
    if not args.skip_baselines:
        methods += run_baselines(names, scenes, res)
    else:  # score earlier baseline outputs of the same split if they are there
        methods += [m for m in ("frame_diff", "ego_residual") if (res / m / "frame").is_dir()]
    if (args.depth_warp or args.flow_motion) and args.gmos_bundle is None:
        print("benchmark: --depth-warp and --flow-motion need --gmos-bundle", file=sys.stderr)
        return 2
    learned = [("gmos_s", args.gmos_s_bundle), ("gmos", args.gmos_bundle)]
    if args.depth_warp:
        learned += [("gmos_depth_warp", args.gmos_bundle), ("gmos_depth_vo", args.gmos_bundle)]
    if args.flow_motion:
        learned.append(("gmos_flow_motion", args.gmos_bundle))
    for kind, bundle in learned:
        if bundle is not None:
            run_learned(kind, bundle, data, names, res / kind, scenes)
            methods.append(kind)
    scores = {m: evaluate(res / m, data, ev / m) for m in methods}
    rows = {m: summarise(s) for m, s in scores.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(
        json.dumps({"split": spec.__dict__, "rows": rows, "raw": scores}, indent=1)
    )
    table = markdown_table(rows, spec)
    (args.out / "results.md").write_text(table)
    bar_plot(rows, args.out / "results.png")
    print(table)
    print(f"wrote {args.out / 'results.json'}, results.md, results.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
