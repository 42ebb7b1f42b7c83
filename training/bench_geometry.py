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
masks as its dynamic mask). Objects are measured by depth back-projection
(``gmos_core.geometry``). Reported:

- position error, m (robust centroid vs the object's true alpha-centroid, both in the camera);
- speed of static objects, m/s (should be ~0) and velocity error of objects that moved during the
  whole velocity window, m/s;
- ego-motion RPE (translation m/frame, rotation deg/frame) and ATE (RMSE of camera positions of the
  chained odometry, first frame anchored), for ``depth_vo``.

Prints JSON (one record per method × ego source), writes it, a markdown table and a plot.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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
from gmos_core.geometry import (  # noqa: E402
    EgoMotion,
    ObjectStateEstimator,
    PinholeIntrinsics,
    apply_transform,
    backproject_depth,
    ego_motion_from_poses,
    invert_transform,
    measure_object,
)
from gmos_core.geometry.visual_odometry import DepthVisualOdometry  # noqa: E402
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


def _rot_deg(r: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0))))


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


def _assign(pred: np.ndarray, gt: np.ndarray) -> dict[int, int]:
    """Predicted id → GT object id (max IoU >= 0.3) for one frame."""
    out: dict[int, int] = {}
    for pid in np.unique(pred):
        if pid == 0:
            continue
        pm = pred == pid
        best, best_iou = 0, 0.3
        for gid in np.unique(gt[pm]):
            if gid == 0:
                continue
            gm = gt == gid
            iou = (pm & gm).sum() / (pm | gm).sum()
            if iou >= best_iou:
                best, best_iou = int(gid), iou
        if best:
            out[int(pid)] = best
    return out


def run_scene(
    s: SceneSample, masks: np.ndarray, dyn_masks: np.ndarray, ego_src: str, gt_ids: bool
) -> dict[str, Any]:
    """Per-object errors and ego errors for one scene, one mask source, one ego source."""
    t_len, h, w = masks.shape
    intr = PinholeIntrinsics.from_matrix(s.intrinsics, w, h)
    dt = 1.0 / s.config.fps
    est = ObjectStateEstimator(window_s=WINDOW_S)
    vo = DepthVisualOdometry(intr)
    pos_err, static_speed, moving_err, moving_true = [], [], [], []
    rpe_t, rpe_r, failures = [], [], 0
    chain = [np.eye(4)]  # estimated cam_to_world (first camera = world)
    first_from_world = invert_transform(s.cam_to_world[0])
    traj: list[tuple[float, ...]] = []  # (object, est x, est z, true x, true z), first camera
    n_meas = 0
    span = int(round(WINDOW_S / dt))
    for t in range(t_len):
        pts = backproject_depth(s.depth[t], intr)
        truth_ego = (
            ego_motion_from_poses(s.cam_to_world[t - 1], s.cam_to_world[t], dt, True, "truth")
            if t
            else None
        )
        vo_ego = vo.step(s.frames[t], s.depth[t], dyn_masks[t], int(s.stamps_ns[t]))
        ego: EgoMotion | None = truth_ego
        if ego_src == "depth_vo" and t:
            if vo_ego is None:
                failures += 1
                chain.append(chain[-1])
            else:
                rpe_t.append(
                    float(
                        np.linalg.norm(
                            vo_ego.curr_from_prev[:3, 3] - truth_ego.curr_from_prev[:3, 3]
                        )
                    )
                )
                rpe_r.append(
                    _rot_deg(vo_ego.curr_from_prev[:3, :3].T @ truth_ego.curr_from_prev[:3, :3])
                )
                chain.append(chain[-1] @ vo_ego.prev_from_curr)
            ego = vo_ego
        meas = {}
        assign = (
            {int(k): int(k) for k in np.unique(masks[t]) if k}
            if gt_ids
            else _assign(masks[t], s.instance_masks[t])
        )
        for pid in assign:
            m = measure_object(masks[t] == pid, pts, True)
            if m is not None:
                meas[pid] = m
        n_meas += len(meas)
        w2c = invert_transform(s.cam_to_world[t])
        for st in est.update(int(s.stamps_ns[t]), meas, ego):
            k = assign[st.object_id] - 1
            truth = apply_transform(w2c, s.object_centroid_world[t, k])
            pos_err.append(float(np.linalg.norm(st.position - truth)))
            # Top-down picture: both positions in the first camera's frame (estimated with the
            # ego-motion source's own camera path).
            c2w_est = chain[-1] if ego_src == "depth_vo" else first_from_world @ s.cam_to_world[t]
            est_first = apply_transform(c2w_est, st.position)
            true_first = apply_transform(first_from_world, s.object_centroid_world[t, k])
            traj.append((k, *est_first[[0, 2]], *true_first[[0, 2]]))
            if not st.velocity_valid or t < span:
                continue
            t0 = t - span
            v_true = w2c[:3, :3] @ (s.object_centroid_world[t, k] - s.object_centroid_world[t0, k])
            v_true = v_true / (span * dt)
            if not s.motion_state[t0:t, k].any():
                static_speed.append(st.speed)
            elif s.motion_state[t0:t, k].all():
                moving_err.append(float(np.linalg.norm(st.velocity - v_true)))
                moving_true.append(float(np.linalg.norm(v_true)))
    ate = []
    if ego_src == "depth_vo":
        c2w0 = s.cam_to_world[0]
        for t, est_c2w in enumerate(chain):
            true_rel = invert_transform(c2w0) @ s.cam_to_world[t]
            ate.append(float(np.sum((est_c2w[:3, 3] - true_rel[:3, 3]) ** 2)))
    return dict(
        pos=pos_err,
        static=static_speed,
        moving=moving_err,
        moving_true=moving_true,
        rpe_t=rpe_t,
        rpe_r=rpe_r,
        ate=ate,
        failures=failures,
        n=n_meas,
        traj=traj,
        cam=[(c[0, 3], c[2, 3]) for c in chain],
    )


def _plot_top_down(s: SceneSample, r: dict[str, Any], path: Path) -> None:
    """Top-down (x, z) view of one scene in the first camera's frame: estimated vs true."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    first_from_world = invert_transform(s.cam_to_world[0])
    true_cam = np.array([(first_from_world @ c)[[0, 2], 3] for c in s.cam_to_world])
    ax.plot(true_cam[:, 0], true_cam[:, 1], "k-", lw=2, label="camera (truth)")
    est_cam = np.array(r["cam"])
    ax.plot(est_cam[:, 0], est_cam[:, 1], "k--", lw=1, label="camera (depth odometry)")
    traj = np.array(r["traj"]) if r["traj"] else np.zeros((0, 5))
    for k in np.unique(traj[:, 0]).astype(int):
        rows = traj[traj[:, 0] == k]
        colour = "tab:red" if s.object_is_dynamic[k] else "tab:blue"
        ax.plot(rows[:, 3], rows[:, 4], "-", color=colour, lw=2, alpha=0.5)
        ax.plot(rows[:, 1], rows[:, 2], ".", color=colour, ms=4)
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


def _med(x: list[float]) -> float:
    return float(np.median(x)) if x else float("nan")


def _p90(x: list[float]) -> float:
    return float(np.percentile(x, 90)) if x else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", type=int, default=6)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", type=int, nargs=2, default=(192, 256), help="H W")
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--no-micro", action="store_true", help="skip the shipped micro Gmos")
    ap.add_argument("--out", type=Path, default=Path("out/bench_geometry"))
    args = ap.parse_args()
    acc: dict[tuple[str, str], dict[str, list]] = {}
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
            "oracle": (oracle, np.isin(oracle, s.object_ids[s.object_is_dynamic]), True),
            "frame_diff": (fd, fd > 0, False),
        }
        if not args.no_micro:
            sources["micro_gmos"] = (*_micro_masks(s), False)
        for name, (masks, dyn, gt_ids) in sources.items():
            for ego_src in ("truth", "depth_vo"):
                r = run_scene(s, masks, dyn, ego_src, gt_ids)
                if i == 0 and name == "oracle" and ego_src == "depth_vo":
                    args.out.mkdir(parents=True, exist_ok=True)
                    _plot_top_down(s, r, args.out / "bench_geometry_topdown.png")
                r = {k: v for k, v in r.items() if k not in ("traj", "cam")}
                a = acc.setdefault((name, ego_src), {})
                for k, v in r.items():
                    a.setdefault(k, [])
                    a[k].extend(v if isinstance(v, list) else [v])
    records = []
    for (name, ego_src), a in acc.items():
        records.append(
            Record(
                masks=name,
                ego=ego_src,
                objects_measured=int(sum(a["n"])),
                position_err_m_median=_med(a["pos"]),
                position_err_m_p90=_p90(a["pos"]),
                static_speed_mps_median=_med(a["static"]),
                static_speed_mps_p90=_p90(a["static"]),
                moving_velocity_err_mps_median=_med(a["moving"]),
                moving_speed_true_mps_median=_med(a["moving_true"]),
                velocity_samples_static=len(a["static"]),
                velocity_samples_moving=len(a["moving"]),
                ego_rpe_trans_m_median=_med(a["rpe_t"]),
                ego_rpe_rot_deg_median=_med(a["rpe_r"]),
                ego_ate_m_rmse=float(np.sqrt(np.mean(a["ate"]))) if a["ate"] else float("nan"),
                ego_failures=int(sum(a["failures"])),
            )
        )
    result = {
        "scenes": args.scenes,
        "frames": args.frames,
        "size_hw": list(args.size),
        "seed": args.seed,
        "velocity_window_s": WINDOW_S,
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
