"""Metric 3-D object states of the node on demo bags with a depth topic, against the truth.

    python -m training.bench_bag_states [--seeds 900001 ... ] [--frames 24] \
        [--out out/bench_bag_states] [--name bag_states]

For every seed (the first is `make demo`'s scene), a synthetic bag is written the way the demo
writes it (`write_synthetic_bag`: 128×128 at 10 fps, the renderer's exact depth as 16UC1 mm on
an aligned topic, camera_info), then the node's own code runs over it (`gmos-bag eval
--depth-topic`, `run_eval`: the segmenter, the masks, `depth_states_from_messages` with the
depth odometry) with two mask sources the node can run:

- ``micro_gmos``: the shipped micro Gmos online bundle (its masks are weak, issue 15);
- ``frame_diff``: the non-learned frame-differencing baseline variant;

and, to separate mask quality from geometry, ``oracle``: the renderer's instance masks through the
same per-camera geometry code (`depth_states_from_messages`, depth messages of the bag).
Scored with `gmos_core.metrics.object_states` (matching IoU >= 0.3; static = did not move over
the 0.5 s velocity window, moving = moved over all of it), pooled over the seeds.

Writes ``<out>/<name>.json`` (pooled and per-seed scores), ``<out>/<name>.md`` (the table) and
``<out>/<name>_topdown.png`` (top-down view of the first seed, one panel per mask source).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, Image

from gmos_core.geometry import apply_transform, invert_transform
from gmos_core.geometry.depth_states import DepthObjectStates
from gmos_core.metrics.object_states import (
    EstimatedObject,
    FrameEstimate,
    ObjectStatesScore,
    StateSamples,
    score_object_states,
)
from gmos_ros.bag import (
    default_params_file,
    iter_messages,
    load_params_file,
    run_eval,
    write_synthetic_bag,
)
from gmos_ros.bag.ground_truth import read_scene_truth
from gmos_ros.demo import loopback_env
from gmos_ros.geometry_outputs import depth_states_from_messages
from gmos_ros.messages import ResultMasks, stamp_to_ns
from gmos_ros.params import GeometrySettings, params_from_values

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DEPTH = "/camera/depth"
SOURCES = ("micro_gmos", "frame_diff", "oracle")
VARIANTS = {"micro_gmos": "gmos_online", "frame_diff": "frame_diff"}
LABELS = {
    "micro_gmos": "shipped micro Gmos (node)",
    "frame_diff": "frame differencing (node)",
    "oracle": "renderer's masks (oracle)",
}


def oracle_samples(bag: Path, scene: Any) -> StateSamples:
    """The renderer's masks through the node's per-camera depth path on the bag's messages."""
    depth: dict[int, Any] = {}
    info: dict[int, Any] = {}
    for topic, _, _, raw in iter_messages(bag, [DEPTH, "/camera/camera_info"]):
        if topic == DEPTH:
            m = deserialize_message(raw, Image)
            depth[stamp_to_ns(m.header)] = m
        else:
            m = deserialize_message(raw, CameraInfo)
            info[stamp_to_ns(m.header)] = m
    geo = GeometrySettings()
    states = DepthObjectStates(geo.min_points, geo.velocity_window_s)
    frames = []
    for t, stamp in enumerate(int(s) for s in scene.stamps_ns):
        ids = scene.instance_masks[t].astype(np.uint16)
        present = [int(k) for k in np.unique(ids) if k]
        moving = frozenset(k for k in present if scene.motion_state[t, k - 1])
        dyn = np.isin(ids, list(moving)) if moving else np.zeros(ids.shape, bool)
        masks = ResultMasks(ids, dyn.astype(np.uint8) * 255, moving)
        up = depth_states_from_messages(
            states, stamp, depth[stamp], info[stamp], masks, present, scene.frames[t]
        )
        objs = [EstimatedObject.of_state(st) for st in up.states]
        frames.append(FrameEstimate(stamp, ids, objs, up.ego))
    return score_object_states(scene, frames, geo.velocity_window_s)[1]


def run(seeds: list[int], frames: int, work: Path) -> dict[str, Any]:
    """Per seed and source: samples and scores (see the module docstring)."""
    pooled = {k: StateSamples() for k in SOURCES}
    first: dict[str, StateSamples] = {}
    per_seed: dict[str, dict[str, Any]] = {}
    scene0 = None
    for seed in seeds:
        bag = work / f"scene_{seed}"
        write_synthetic_bag(
            bag, "mcap", seed=seed, num_frames=frames, depth_topic=DEPTH, depth_encoding="16UC1"
        )
        scene = read_scene_truth(bag)
        scene0 = scene0 or scene
        per_seed[str(seed)] = {}
        for src in SOURCES:
            if src == "oracle":
                samples = oracle_samples(bag, scene)
            else:
                values = load_params_file(default_params_file())
                values.update(variant=VARIANTS[src], torch_threads=1)
                rep = run_eval(bag, None, params_from_values(values), depth_topic=DEPTH)
                assert rep.states_3d_samples is not None
                samples = rep.states_3d_samples
            if seed == seeds[0]:
                first[src] = samples
            pooled[src].extend(samples)
            per_seed[str(seed)][src] = ObjectStatesScore.of(samples).to_json()
    return {"pooled": pooled, "first": first, "per_seed": per_seed, "scene0": scene0}


def _fmt(x: float | None, digits: int = 2) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def table(scores: dict[str, ObjectStatesScore]) -> str:
    """The markdown table of pooled scores."""
    lines = [
        "| masks | matched / estimated object-frames | position err. (m), median / p90 | "
        "static objects' speed (m/s), median (n) | moving objects' speed, est. / true (m/s) | "
        "moving velocity err. (m/s), median (n) | ego RPE (m/frame) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for src, s in scores.items():
        lines.append(
            f"| {LABELS[src]} | {s.objects_matched} / {s.objects_estimated} "
            f"| {_fmt(s.position_err_m_median)} / {_fmt(s.position_err_m_p90)} "
            f"| {_fmt(s.static_speed_mps_median)} ({s.static_samples}) "
            f"| {_fmt(s.moving_speed_mps_median)} / {_fmt(s.moving_true_speed_mps_median)} "
            f"| {_fmt(s.moving_velocity_err_mps_median)} ({s.moving_samples}) "
            f"| {_fmt(s.ego_rpe_trans_m_median, 3)} |"
        )
    return "\n".join(lines) + "\n"


def topdown(scene: Any, first: dict[str, StateSamples], path: Path) -> None:
    """Top-down (x right, z forward) view of one scene in its first camera's frame: the true
    trajectories of the objects each source matched (lines), its estimates carried there with
    its own ego-motion chain (dots), the true and estimated camera paths."""
    fig, axes = plt.subplots(1, len(first), figsize=(4.2 * len(first), 4.4), sharey=True)
    first_from_world = invert_transform(scene.cam_to_world[0])
    for ax, (src, s) in zip(np.atleast_1d(axes), first.items()):
        cam_true = np.array([(first_from_world @ c)[:3, 3] for c in scene.cam_to_world])
        ax.plot(cam_true[:, 0], cam_true[:, 2], "k-", lw=2, label="camera (truth)")
        if s.camera_track:
            est = np.array([e for _, e, _ in s.camera_track])
            ax.plot(est[:, 0], est[:, 2], "k--", lw=1, label="camera (depth odometry)")
        for k in sorted({p.true_index for p in s.track}):
            moving = bool(scene.object_is_dynamic[k])
            colour = "tab:red" if moving else "tab:blue"
            traj = np.array(
                [apply_transform(first_from_world, c) for c in scene.object_centroid_world[:, k]]
            )
            ax.plot(traj[:, 0], traj[:, 2], "-", color=colour, lw=2, alpha=0.45)
            pts = np.array([p.estimated for p in s.track if p.true_index == k])
            ax.plot(pts[:, 0], pts[:, 2], ".", color=colour, ms=5)
        ax.set_title(f"{LABELS[src]}\n{len(s.track)} matched object-frames", fontsize=9)
        ax.set_xlabel("x (m, first camera)")
        ax.set_aspect("equal", adjustable="datalim")
        ax.grid(alpha=0.3)
    ax0 = np.atleast_1d(axes)[0]
    ax0.set_ylabel("z (m, forward)")
    ax0.plot([], [], "-", color="tab:red", lw=2, alpha=0.45, label="moving object (truth)")
    ax0.plot([], [], ".", color="tab:red", label="moving object (node estimate)")
    ax0.plot([], [], "-", color="tab:blue", lw=2, alpha=0.45, label="static object (truth)")
    ax0.plot([], [], ".", color="tab:blue", label="static object (node estimate)")
    ax0.legend(fontsize=6, loc="best")
    fig.suptitle(
        f"demo bag (seed {scene.config.seed}, {scene.num_frames} frames, depth 16UC1): "
        "metric 3-D object states vs the renderer's truth",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(900_001, 900_007)))
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--out", type=Path, default=Path("out/bench_bag_states"))
    ap.add_argument("--name", default="bag_states")
    a = ap.parse_args(argv)

    loopback_env()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        r = run(a.seeds, a.frames, Path(tmp))
    scores = {k: ObjectStatesScore.of(v) for k, v in r["pooled"].items()}
    result = {
        "seeds": a.seeds,
        "frames": a.frames,
        "size_hw": [128, 128],
        "depth_encoding": "16UC1",
        "velocity_window_s": 0.5,
        "match_iou": 0.3,
        "pooled": {k: v.to_json() for k, v in scores.items()},
        "per_seed": r["per_seed"],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"{a.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    md = table(scores)
    (a.out / f"{a.name}.md").write_text(md)
    topdown(r["scene0"], r["first"], a.out / f"{a.name}_topdown.png")
    print(json.dumps(result["pooled"], indent=1))
    print(md)
    print(f"wrote {a.out}/{a.name}.json, .md, _topdown.png in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
