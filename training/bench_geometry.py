"""3-D object states and ego-motion against the renderer's truth (metric, with depth).

    python -m training.bench_geometry [--scenes 6] [--frames 24] [--size 192 256] \
        [--out out/bench_geometry]

For every rendered scene (``gmos_core.data.synthetic``: exact depth, camera poses and object
trajectories), masks come from

- ``oracle``: the renderer's instance masks (what the geometry alone is worth), and
- ``micro_gmos``: the shipped micro Gmos (online proposer, ``gmos_core/assets``) streamed frame by
  frame as the node runs it (scored like ``frame_diff``),
- ``frame_diff``: the non-learned baseline (window frame differencing, components linked into
  tracks; a track is scored against the object it overlaps most, IoU >= 0.3),

and the ego-motion from ``truth`` or from the depth visual odometry (``depth_vo``, fed the method's
masks as its dynamic mask). Objects are measured by the node's metric path
(``gmos_core.geometry.depth_states.DepthObjectStates``: depth back-projection, velocity fit) and
scored by ``gmos_core.metrics.object_states``. Reported:

- position error, m (robust centroid vs the object's true alpha-centroid, both in the camera);
- speed of static objects, m/s (should be ~0) and velocity error of objects that moved during the
  whole velocity window, m/s;
- ego-motion RPE (translation m/frame, rotation deg/frame) and ATE (RMSE of camera positions of the
  chained odometry, first frame anchored; a failed frame keeps the previous pose), for
  ``depth_vo`` (the truth is not scored against itself).

Without depth (``--heads-bundle``: a micro Gmos bundle whose π³ carries trained heads,
``training.add_pi3_heads``), the node's up-to-scale path (``gmos_core.geometry.window_states.
Pi3ObjectStates`` on the π³ heads of each window, ego-motion from the camera head) is scored too,
with ``oracle`` and ``micro_gmos_heads`` masks (the bundle's own online proposer), ego source
``pi3_aligned``: its positions, velocities and ego translations are in π³ units, so each result
is first multiplied by its window's scale, the median ratio true depth / π³ depth over the
result frame's confident pixels (the per-window alignment of issue 16; the truth is used for the
scale only, never for the directions).

Prints JSON (one record per method × ego source), writes it, a markdown table and a plot.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from gmos_core.baselines_extra import (  # noqa: E402
    FrameDifferencingBaseline,
    link_instances,
    run_window_baseline,
)
from gmos_core.data.synthetic import SceneConfig, SceneSample, generate_scene  # noqa: E402
from gmos_core.geometry import PinholeIntrinsics, ego_motion_from_poses  # noqa: E402
from gmos_core.geometry.camera import invert_transform  # noqa: E402
from gmos_core.geometry.depth_states import DepthObjectStates  # noqa: E402
from gmos_core.geometry.ego_motion import EgoMotion, median_scale_ratio  # noqa: E402
from gmos_core.geometry.objects import ObjectState  # noqa: E402
from gmos_core.geometry.pi3_adapter import confident_points  # noqa: E402
from gmos_core.geometry.window_states import Pi3ObjectStates  # noqa: E402
from gmos_core.metrics.object_states import (  # noqa: E402
    EstimatedObject,
    FrameEstimate,
    ObjectStatesScore,
    StateSamples,
    match_objects,
    score_object_states,
)
from gmos_core.models.prediction import WindowGeometry  # noqa: E402
from gmos_core.streaming.build import RuntimeSettings, build_segmenter  # noqa: E402

WINDOW_S = 0.5


@dataclass
class Record:
    """Aggregates of one (masks, ego source) pair over all scenes."""

    masks: str
    ego: str
    objects_measured: int
    position_err_m_median: float
    position_err_m_p90: float
    static_speed_mps_median: float
    static_speed_mps_p90: float
    moving_velocity_err_mps_median: float
    moving_speed_true_mps_median: float
    velocity_samples_static: int
    velocity_samples_moving: int
    ego_rpe_trans_m_median: float
    ego_rpe_rot_deg_median: float
    ego_ate_m_rmse: float
    ego_failures: int

    @classmethod
    def of(cls, masks: str, ego: str, score: ObjectStatesScore) -> Record:
        """The pooled score of one pair; ego errors only for an estimated ego-motion."""
        scored = ego != "truth"
        nan = float("nan")
        return cls(
            masks=masks,
            ego=ego,
            objects_measured=score.objects_estimated,
            position_err_m_median=score.position_err_m_median,
            position_err_m_p90=score.position_err_m_p90,
            static_speed_mps_median=score.static_speed_mps_median,
            static_speed_mps_p90=score.static_speed_mps_p90,
            moving_velocity_err_mps_median=score.moving_velocity_err_mps_median,
            moving_speed_true_mps_median=score.moving_true_speed_mps_median,
            velocity_samples_static=score.static_samples,
            velocity_samples_moving=score.moving_samples,
            ego_rpe_trans_m_median=score.ego_rpe_trans_m_median if scored else nan,
            ego_rpe_rot_deg_median=score.ego_rpe_rot_deg_median if scored else nan,
            ego_ate_m_rmse=score.ego_ate_m_rmse if scored else nan,
            ego_failures=score.ego_missing,
        )


def _frame_diff_tracks(s: SceneSample) -> np.ndarray:
    labels = run_window_baseline(s.frames, FrameDifferencingBaseline().segment, stride=1)
    tracks, _ = link_instances(labels)
    return tracks


def _micro_masks(s: SceneSample) -> tuple[np.ndarray, np.ndarray]:
    """The shipped micro Gmos (online proposer) streamed over the scene: (instance ids, moving)."""
    seg = build_segmenter(RuntimeSettings(variant="gmos_online"))
    results = []
    for t in range(s.num_frames):
        results += seg.step(s.frames[t], int(s.stamps_ns[t]))
    results += seg.flush()
    by_stamp = {r.stamp_ns: r for r in results}
    ids = np.zeros(s.instance_masks.shape, np.int32)
    moving = np.zeros(s.instance_masks.shape, bool)
    for t in range(s.num_frames):
        r = by_stamp.get(int(s.stamps_ns[t]))
        if r is not None:
            ids[t] = r.instance_ids
            moving[t] = r.dynamic_mask
    return ids, moving


def run_scene(
    s: SceneSample, masks: np.ndarray, dyn_masks: np.ndarray, ego_src: str
) -> StateSamples:
    """One scene, one mask source, one ego source: states and their scores.

    Args:
        s: the rendered scene (exact depth, poses, trajectories).
        masks: (T, H, W) int instance ids of the mask source.
        dyn_masks: (T, H, W) bool, its moving pixels (kept out of the depth odometry).
        ego_src: ``truth`` (the renderer's camera motion) or ``depth_vo``.
    """
    t_len, h, w = masks.shape
    intr = PinholeIntrinsics.from_matrix(s.intrinsics, w, h)
    dt = 1.0 / s.config.fps
    states = DepthObjectStates(velocity_window_s=WINDOW_S)
    frames = []
    for t in range(t_len):
        truth = (
            ego_motion_from_poses(s.cam_to_world[t - 1], s.cam_to_world[t], dt, True, "truth")
            if t
            else None
        )
        # Only the objects matched to a true one are measured: the others are not scored,
        # and an object unmatched on some frames keeps a track of its matched frames only.
        ids = sorted(match_objects(masks[t], s.instance_masks[t]))
        vo = ego_src == "depth_vo"
        up = states.update(
            int(s.stamps_ns[t]),
            s.depth[t],
            intr,
            masks[t],
            ids,
            dyn_masks[t],
            s.frames[t] if vo else None,
            known_ego=None if vo else truth,
        )
        objs = [EstimatedObject.of_state(st) for st in up.states]
        frames.append(FrameEstimate(int(s.stamps_ns[t]), masks[t], objs, up.ego))
    return score_object_states(s, frames, WINDOW_S)[1]


def window_scale(geometry: WindowGeometry, true_depth: np.ndarray, min_conf: float) -> float:
    """Metres per π³ unit of one window: median of true depth / π³ depth on its result frame.

    Args:
        geometry: the window's π³ outputs (result frame ``geometry.center``).
        true_depth: (H, W) the renderer's z-depth of that frame, m (NaN / <= 0: no surface).
        min_conf: the runtime's confidence cut (`Pi3ObjectStates.min_conf`).

    Returns:
        The ratio, or NaN with fewer than 50 pixels valid in both.
    """
    pts = confident_points(
        geometry.local_points[geometry.center], geometry.conf[geometry.center], min_conf
    )
    h, w = true_depth.shape
    z = cv2.resize(pts[..., 2], (w, h), interpolation=cv2.INTER_NEAREST)
    return median_scale_ratio(true_depth, z, min_pixels=50)


def _scaled_state(st: ObjectState, k: float) -> EstimatedObject:
    return EstimatedObject(
        st.object_id, st.position * k, st.velocity * k if st.velocity_valid else None
    )


def _scaled_ego(ego: EgoMotion | None, k: float) -> EgoMotion | None:
    if ego is None or not np.isfinite(k):
        return None
    t = ego.curr_from_prev.copy()
    t[:3, 3] *= k
    return EgoMotion(t, ego.dt_s, True, ego.source)


def run_scene_pi3(s: SceneSample, model: object) -> dict[str, StateSamples]:
    """The no-depth path on one scene: the heads bundle streamed as the node runs it.

    Returns:
        {"oracle": samples with the renderer's masks, "micro_gmos_heads": with the bundle's
        own masks}, both measured on the π³ heads' point maps after per-window scale alignment.
    """
    seg = build_segmenter(RuntimeSettings(variant="gmos_online"), model=model)  # type: ignore[arg-type]
    if not seg.window_geometry:
        raise ValueError("the heads bundle's π³ does not run its heads (no pi3_heads?)")
    results = []
    for t in range(s.num_frames):
        results += seg.step(s.frames[t], int(s.stamps_ns[t]))
    results += seg.flush()
    index = {int(st): t for t, st in enumerate(s.stamps_ns)}
    trackers = {"oracle": Pi3ObjectStates(), "micro_gmos_heads": Pi3ObjectStates()}
    frames: dict[str, list[FrameEstimate]] = {k: [] for k in trackers}
    for r in sorted(results, key=lambda r: r.stamp_ns):
        t = index[int(r.stamp_ns)]
        g = r.geometry
        if g is None:
            continue
        k = window_scale(g, s.depth[t], trackers["oracle"].min_conf)
        oracle = s.instance_masks[t].astype(np.int32)
        for name, ids_map in (("oracle", oracle), ("micro_gmos_heads", r.instance_ids)):
            ids = sorted(match_objects(ids_map, s.instance_masks[t]))
            up = trackers[name].update(int(r.stamp_ns), g, ids_map, ids)
            objs = [_scaled_state(st, k) for st in up.states] if np.isfinite(k) else []
            frames[name].append(
                FrameEstimate(int(r.stamp_ns), ids_map, objs, _scaled_ego(up.ego, k))
            )
    return {name: score_object_states(s, f, WINDOW_S)[1] for name, f in frames.items()}


def _plot_top_down(s: SceneSample, r: StateSamples, path: Path) -> None:
    """Top-down (x, z) view of one scene in the first camera's frame: estimated vs true."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    first_from_world = invert_transform(s.cam_to_world[0])
    true_cam = np.array([(first_from_world @ c)[[0, 2], 3] for c in s.cam_to_world])
    ax.plot(true_cam[:, 0], true_cam[:, 1], "k-", lw=2, label="camera (truth)")
    est_cam = np.array([e[[0, 2]] for _, e, _ in r.camera_track])
    ax.plot(est_cam[:, 0], est_cam[:, 1], "k--", lw=1, label="camera (depth odometry)")
    for k in sorted({p.true_index for p in r.track}):
        est = np.array([p.estimated[[0, 2]] for p in r.track if p.true_index == k])
        true = np.array([p.truth[[0, 2]] for p in r.track if p.true_index == k])
        colour = "tab:red" if s.object_is_dynamic[k] else "tab:blue"
        ax.plot(true[:, 0], true[:, 1], "-", color=colour, lw=2, alpha=0.5)
        ax.plot(est[:, 0], est[:, 1], ".", color=colour, ms=4)
    ax.plot([], [], "-", color="tab:red", lw=2, alpha=0.5, label="moving object (truth)")
    ax.plot([], [], ".", color="tab:red", label="moving object (estimated)")
    ax.plot([], [], "-", color="tab:blue", lw=2, alpha=0.5, label="static object (truth)")
    ax.plot([], [], ".", color="tab:blue", label="static object (estimated)")
    ax.set_xlabel("x (m, first camera)")
    ax.set_ylabel("z (m, forward)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize=7, loc="best")
    ax.set_title(f"seed {s.config.seed}: oracle masks + depth, ego from depth odometry", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", type=int, default=6)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", type=int, nargs=2, default=(192, 256), help="H W")
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--no-micro", action="store_true", help="skip the shipped micro Gmos")
    ap.add_argument(
        "--heads-bundle",
        type=Path,
        default=None,
        help="a micro Gmos bundle with trained π³ heads: adds the no-depth rows (pi3_aligned)",
    )
    ap.add_argument("--out", type=Path, default=Path("out/bench_geometry"))
    args = ap.parse_args()
    pooled: dict[tuple[str, str], StateSamples] = {}
    heads_model = None
    if args.heads_bundle is not None:
        from gmos_core.models.build import build_frame_model_from_bundle

        heads_model = build_frame_model_from_bundle(args.heads_bundle).frame_model()
    for i in tqdm(range(args.scenes), desc="scenes"):
        cfg = SceneConfig(
            seed=args.seed + i,
            scene_kind="dynamic",
            num_frames=args.frames,
            height=args.size[0],
            width=args.size[1],
        )
        s = generate_scene(cfg)
        oracle = s.instance_masks.astype(np.int32)
        fd = _frame_diff_tracks(s).astype(np.int32)
        sources = {
            "oracle": (oracle, np.isin(oracle, s.object_ids[s.object_is_dynamic])),
            "frame_diff": (fd, fd > 0),
        }
        if not args.no_micro:
            sources["micro_gmos"] = _micro_masks(s)
        for name, (masks, dyn) in sources.items():
            for ego_src in ("truth", "depth_vo"):
                r = run_scene(s, masks, dyn, ego_src)
                if i == 0 and name == "oracle" and ego_src == "depth_vo":
                    args.out.mkdir(parents=True, exist_ok=True)
                    _plot_top_down(s, r, args.out / "bench_geometry_topdown.png")
                pooled.setdefault((name, ego_src), StateSamples()).extend(r)
        if heads_model is not None:
            for name, r in run_scene_pi3(s, heads_model).items():
                pooled.setdefault((name, "pi3_aligned"), StateSamples()).extend(r)
    records = [
        Record.of(name, ego_src, ObjectStatesScore.of(samples))
        for (name, ego_src), samples in pooled.items()
    ]
    result = {
        "scenes": args.scenes,
        "frames": args.frames,
        "size_hw": list(args.size),
        "seed": args.seed,
        "velocity_window_s": WINDOW_S,
        "heads_bundle": str(args.heads_bundle) if args.heads_bundle else None,
        "records": [asdict(r) for r in records],
    }
    print(json.dumps(result, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_geometry.json").write_text(json.dumps(result, indent=2) + "\n")
    cols = [
        "masks",
        "ego",
        "position_err_m_median",
        "static_speed_mps_median",
        "moving_velocity_err_mps_median",
        "moving_speed_true_mps_median",
        "ego_rpe_trans_m_median",
        "ego_ate_m_rmse",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in records:
        d = asdict(r)
        lines.append(
            "| "
            + " | ".join(f"{d[c]:.3f}" if isinstance(d[c], float) else str(d[c]) for c in cols)
            + " |"
        )
    (args.out / "bench_geometry.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    metrics = [
        ("position_err_m_median", "position err (m)"),
        ("static_speed_mps_median", "static speed (m/s)"),
        ("moving_velocity_err_mps_median", "moving vel. err (m/s)"),
        ("moving_speed_true_mps_median", "moving true speed (m/s)"),
    ]
    width = 0.8 / len(records)
    for j, r in enumerate(records):
        d = asdict(r)
        xs = np.arange(len(metrics)) + j * width
        ax.bar(xs, [d[m] for m, _ in metrics], width, label=f"{r.masks} / ego {r.ego}")
    ax.set_xticks(np.arange(len(metrics)) + 0.4 - width / 2)
    ax.set_xticklabels([lbl for _, lbl in metrics], fontsize=8)
    ax.legend(fontsize=7)
    ax.set_title(f"3-D object states vs renderer truth ({args.scenes} scenes, medians)")
    fig.tight_layout()
    fig.savefig(args.out / "bench_geometry.png", dpi=120)


if __name__ == "__main__":
    main()
