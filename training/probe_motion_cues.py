"""Which motion evidence tells a moving object from a static one, given the object's mask?

Gmos decides per object (per query) whether it moves now. With the renderer's masks of EVERY
visible object (static, resting and moving alike), this tool scores each object of the validation
clips (seeds 800 000.., made like the held-out split) by the mean of a per-pixel motion cue over
its mask, and reports how well that score separates the objects moving now from the others (the
area under the ROC curve: 0.5 = chance, 1 = perfect). It isolates the motion decision from mask
quality, so a cue that fails here cannot be rescued by better masks.

Cues (each on a window of 5 consecutive frames around the scored frame, mean over the 4
neighbours of the per-pixel residual):

* ``homography``: the ego-motion residual baseline's map (one homography per neighbour; parallax
  of near static objects stays in it);
* ``warp_true``: a depth-and-pose warp (:func:`gmos_core.geometry.warp.warp_residual`) with the
  renderer's exact depth, intrinsics and camera poses: the ceiling of any geometric cue;
* ``warp_depth_vo``: the same warp with the renderer's depth (an RGB-D camera) and the camera
  motion estimated from the frames by the node's depth visual odometry
  (:class:`~gmos_core.geometry.visual_odometry.DepthVisualOdometry`, no masks given): what a
  robot with a depth camera and no odometry has;
* ``pi3_probe``: the stage-1 motion probe on π³'s window features (``--pi3-state``, a
  stage-1 state with its probe), sigmoid, upsampled: what the π³ features the Gmos heads read
  carry about motion (the heads see the same features, not this probe);
* ``gmos_s``: a Gmos-S bundle's foreground probability (``--gmos-s-bundle``), upsampled: what
  the trained model ends up telling apart (its masks aside);
* ``warp_pi3``: the same warp with π³'s own point maps and camera poses (the π³ heads of
  ``--bundle``, or of ``--pi3-state`` when that state has them; intrinsics fitted to its point
  map), at π³'s input size: what the model's geometry gives;
* ``warp_pi3_k``: the same with the camera's intrinsics given (as a ROS ``CameraInfo`` gives
  them) and π³'s depth (the z of its point map) instead of its fitted camera, so every frame
  has evidence; ``warp_pi3_depth`` / ``warp_pi3_pose`` use π³'s depth with the renderer's
  poses, or the renderer's depth with π³'s poses (each brought to the other's scale by the
  median depth ratio): which of π³'s outputs limits its warp.

    python -m training.probe_motion_cues --num-seqs 12 --out out/motion_cues \\
        [--pi3-state training/checkpoints/micro/pi3_stage1.safetensors] \\
        [--gmos-s-bundle gmos_core/assets/micro_gmos_s.safetensors] \\
        [--bundle <a bundle with π³ heads>]

Writes ``motion_cues.json`` (and prints it) and ``motion_cues.png`` (ROC curves).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy.stats import mannwhitneyu
from tqdm import tqdm

from gmos_core.baselines import EgoMotionResidualBaseline
from gmos_core.data.synthetic import SceneSample
from gmos_core.geometry.camera import (
    PinholeIntrinsics,
    backproject_depth,
    invert_transform,
    relative_pose,
)
from gmos_core.geometry.visual_odometry import DepthVisualOdometry
from gmos_core.geometry.warp import (
    fit_pinhole,
    mask_means,
    warp_grey,
    window_warp_residual,
)
from training.calibrate import VALIDATION_SEED
from training.splits import HELD_OUT_SEED, SplitSpec, iter_held_out_scenes

__all__ = [
    "CueScores",
    "NoEvidence",
    "auroc",
    "depth_vo_warp_cue",
    "homography_cue",
    "mask_means",
    "probe_motion_cues",
    "true_warp_cue",
    "write_report",
]

WINDOW = 5  # frames per window, the runtime's

# (scene, frame index t) -> (H', W') residual map of frame t, NaN where there is no evidence;
# raises NoEvidence when it has none for the whole frame.
CueFn = Callable[[SceneSample, int], np.ndarray]


class NoEvidence(Exception):
    """A cue has nothing to say about this frame (its geometry failed); counted, not fatal."""


@dataclass
class CueScores:
    """Per-object scores of every cue, and whether the object moves now (one entry per object)."""

    moving: list[bool] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)
    scores: dict[str, list[float]] = field(default_factory=dict)


def auroc(positive: np.ndarray, negative: np.ndarray) -> float | None:
    """P(score of a positive > score of a negative), ties counted half; None if a side is empty."""
    if len(positive) == 0 or len(negative) == 0:
        return None
    u = mannwhitneyu(positive, negative, alternative="two-sided").statistic
    return float(u) / (len(positive) * len(negative))


def _grey(frame: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W, 3) uint8 → (H', W') float32 grey, lightly blurred like the baselines' inputs."""
    return warp_grey(frame, size)


def _neighbours(t: int) -> list[int]:
    half = WINDOW // 2
    return [t + d for d in range(-half, half + 1) if d != 0]


def _window_warp(
    points: np.ndarray,
    s: SceneSample,
    t: int,
    k: PinholeIntrinsics,
    pose_to: Callable[[int], np.ndarray],
) -> np.ndarray:
    """Mean warp residual of frame t against its window neighbours j, at the size of `k`:
    (H', W', 3) camera-frame `points` of frame t, `pose_to(j)` the (4, 4) transform from frame
    t's camera to frame j's."""
    size = (k.width, k.height)
    return window_warp_residual(
        points,
        _grey(s.frames[t], size),
        [(_grey(s.frames[j], size), pose_to(j), None) for j in _neighbours(t)],
        k,
    )


def homography_cue(s: SceneSample, t: int) -> np.ndarray:
    """The ego-motion baseline's residual of frame t (one homography per neighbour)."""
    half = WINDOW // 2
    return EgoMotionResidualBaseline().residual(s.frames[t - half : t + half + 1], half)


def true_warp_cue(s: SceneSample, t: int) -> np.ndarray:
    """The warp residual of frame t with the renderer's exact depth, intrinsics and poses."""
    h, w = s.depth.shape[1:]
    k = PinholeIntrinsics.from_matrix(s.intrinsics, w, h)
    return _window_warp(
        backproject_depth(s.depth[t], k),
        s,
        t,
        k,
        lambda j: relative_pose(s.cam_to_world[t], s.cam_to_world[j]),
    )


def depth_vo_warp_cue(s: SceneSample, t: int) -> np.ndarray:
    """The warp with the renderer's depth and the camera motion of the depth visual odometry
    (chained over the window); raises NoEvidence when a step has no estimate."""
    h, w = s.depth.shape[1:]
    k = PinholeIntrinsics.from_matrix(s.intrinsics, w, h)
    half = WINDOW // 2
    vo = DepthVisualOdometry(k)
    from_first = [np.eye(4)]  # camera i from camera t − half
    for i in range(t - half, t + half + 1):
        ego = vo.step(s.frames[i], s.depth[i], None, int(s.stamps_ns[i]))
        if i == t - half:
            continue
        if ego is None:
            raise NoEvidence("the depth odometry found no motion estimate")
        from_first.append(ego.curr_from_prev @ from_first[-1])
    frame_to_first = invert_transform(from_first[half])
    return _window_warp(
        backproject_depth(s.depth[t], k),
        s,
        t,
        k,
        lambda j: from_first[j - t + half] @ frame_to_first,
    )


class _Pi3Window:
    """π³ on the window of (scene, t): features (and geometry, with heads), the last call kept,
    so that the probe and the warp cue of one state share one encoder and decoder pass."""

    def __init__(self, pi3: Any, limit: int) -> None:
        self.pi3, self.limit = pi3, limit
        self._last: tuple[tuple[int, int], tuple[Any, Any, tuple[int, int]]] | None = None

    def __call__(self, s: SceneSample, t: int) -> tuple[Any, Any, tuple[int, int]]:
        """(features (1, N, h, w, D), Pi3Geometry or None, (H', W') π³ input size)."""
        import torch

        from gmos_core.models.preprocess import pi3_preprocess

        key = (id(s), t)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        half = WINDOW // 2
        x = pi3_preprocess(s.frames[t - half : t + half + 1], pixel_limit=self.limit)[None]
        hh, ww = x.shape[-2:]
        gh, gw = self.pi3.grid_size(hh, ww)
        with torch.no_grad():
            tok = self.pi3.encode_frames(x.flatten(0, 1)).view(1, WINDOW, gh * gw, -1)
            if getattr(self.pi3, "with_heads", False):
                feats, geo = self.pi3.decode_window_geometry(tok, gh, gw)
            else:
                feats, geo = self.pi3.decode_window(tok, gh, gw), None
        self._last = (key, (feats, geo, (int(hh), int(ww))))
        return self._last[1]


def _pi3_warp(window: _Pi3Window, s: SceneSample, t: int) -> np.ndarray:
    """The warp cue on the point maps and poses of a π³ with heads, at its input size."""
    half = WINDOW // 2
    _, geo, (hh, ww) = window(s, t)
    pts = geo.local_points[0].double().numpy()  # (N, H', W', 3)
    poses = geo.camera_poses[0].double().numpy()  # (N, 4, 4)
    try:
        k = fit_pinhole(pts[half])
    except ValueError as exc:  # a weak π³'s point map need not look like a camera's
        raise NoEvidence(str(exc)) from exc
    return _window_warp(
        pts[half], s, t, k, lambda j: relative_pose(poses[half], poses[j - t + half])
    )


def _pi3_warp_given_k(
    window: _Pi3Window, s: SceneSample, t: int, pi3_depth: bool, pi3_pose: bool
) -> np.ndarray:
    """The warp at π³'s input size with the renderer's intrinsics, and depth / poses from π³
    or from the renderer (exact). π³ is scale-free: exact depth is brought to π³'s scale when
    the poses are π³'s, π³'s depth to metres when the poses are exact (median depth ratio)."""
    half = WINDOW // 2
    _, geo, (hh, ww) = window(s, t)
    h, w = s.frames.shape[1:3]
    k = PinholeIntrinsics.from_matrix(s.intrinsics, w, h).resized(ww, hh)
    z_pi3 = geo.local_points[0, half, ..., 2].double().numpy()
    z_pi3 = np.where(z_pi3 > 1e-6, z_pi3, np.nan)
    z_true = cv2.resize(s.depth[t].astype(np.float32), (ww, hh), interpolation=cv2.INTER_NEAREST)
    z_true = np.where(z_true > 0, z_true, np.nan).astype(np.float64)
    if pi3_depth and pi3_pose:
        z = z_pi3
    elif pi3_depth:
        z = z_pi3 * np.nanmedian(z_true / z_pi3)
    elif pi3_pose:
        z = z_true * np.nanmedian(z_pi3 / z_true)
    else:
        z = z_true
    if not np.isfinite(z).any():
        raise NoEvidence("no positive depth in the window's middle frame")
    poses = geo.camera_poses[0].double().numpy()  # (N, 4, 4)

    def pose_to(j: int) -> np.ndarray:
        if pi3_pose:
            return relative_pose(poses[half], poses[j - t + half])
        return relative_pose(s.cam_to_world[t], s.cam_to_world[j])

    return _window_warp(backproject_depth(z, k), s, t, k, pose_to)


def _pi3_geometry_cues(window: _Pi3Window) -> dict[str, CueFn]:
    """The four warp cues of a π³ with heads (module docstring)."""
    return {
        "warp_pi3": lambda s, t: _pi3_warp(window, s, t),
        "warp_pi3_k": lambda s, t: _pi3_warp_given_k(window, s, t, True, True),
        "warp_pi3_depth": lambda s, t: _pi3_warp_given_k(window, s, t, True, False),
        "warp_pi3_pose": lambda s, t: _pi3_warp_given_k(window, s, t, False, True),
    }


def pi3_warp_cues(bundle: str | Path) -> dict[str, CueFn]:
    """The warp cues from the π³ heads of a bundle (torch imported here)."""
    from gmos_core.models.build import build_frame_model_from_bundle

    fm = build_frame_model_from_bundle(bundle)
    pi3 = fm.pi3.eval()
    if not getattr(pi3, "with_heads", False):
        raise ValueError(
            f"{bundle}: its π³ has no heads (add them with `python -m training.add_pi3_heads`)"
        )
    return _pi3_geometry_cues(_Pi3Window(pi3, fm.config.pi3.pixel_limit))


def pi3_state_cues(state: str | Path, model: str = "micro") -> dict[str, CueFn]:
    """``pi3_probe`` from a stage-1 state, and ``warp_pi3`` too when the state has π³ heads
    (the stage-1 recipe's head sizes, `Pi3PretrainConfig`). Torch is imported here."""
    import torch
    import torch.nn.functional as F

    from gmos_core.models.build import build_frame_model
    from gmos_core.models.pi3_heads import HEAD_NAMES, Pi3HeadSizes
    from training.pretrain_pi3 import MotionProbe, Pi3PretrainConfig
    from training.resume import load_fp16_state, load_part

    st = load_fp16_state(state)
    if "probe" not in st.parts or "pi3" not in st.parts:
        raise ValueError(f"{state}: not a stage-1 state (needs its pi3 and probe parts)")
    has_heads = any(k.split(".", 1)[0] in HEAD_NAMES for k in st.parts["pi3"])
    d = Pi3PretrainConfig()
    sizes = Pi3HeadSizes(
        d.geometry_head_width, d.geometry_head_depth, d.geometry_head_heads,
        d.geometry_camera_width,
    )  # fmt: skip
    fm = build_frame_model(model, "gmos", pi3_heads=sizes if has_heads else None)
    pi3 = fm.pi3.eval()
    load_part(pi3, st.parts["pi3"], f"{state} [pi3]", strict=has_heads)
    w = st.parts["probe"]["proj.weight"]
    probe = MotionProbe(int(w.shape[1]), int(round(float(w.shape[0]) ** 0.5))).eval()
    load_part(probe, st.parts["probe"], f"{state} [probe]")
    window = _Pi3Window(pi3, fm.config.pi3.pixel_limit)

    @torch.no_grad()
    def probe_cue(s: SceneSample, t: int) -> np.ndarray:
        feats, _, size = window(s, t)
        half = WINDOW // 2
        logits = probe(feats)[:, half : half + 1]  # (1, 1, p·h, p·w)
        prob = F.interpolate(logits.sigmoid(), size=size, mode="bilinear")
        return prob[0, 0].numpy().astype(np.float32)

    cues: dict[str, CueFn] = {"pi3_probe": probe_cue}
    if has_heads:
        cues.update(_pi3_geometry_cues(window))
    return cues


def gmos_s_cue(bundle: str | Path) -> CueFn:
    """A Gmos-S bundle's foreground probability of the scored frame (torch imported here)."""
    import torch
    import torch.nn.functional as F

    from gmos_core.models.build import build_frame_model_from_bundle
    from gmos_core.models.preprocess import pi3_preprocess, sam2_preprocess
    from training.trainer import GmosTrainModule

    fm = build_frame_model_from_bundle(bundle)
    if fm.mode != "gmos_s":
        raise ValueError(f"{bundle} is a {fm.mode} bundle; --gmos-s-bundle needs Gmos-S")
    model = GmosTrainModule(fm, train_encoders=False, train_pi3=False).eval()
    cfg = fm.config

    @torch.no_grad()
    def cue(s: SceneSample, t: int) -> np.ndarray:
        half = WINDOW // 2
        x = pi3_preprocess(s.frames[t - half : t + half + 1], pixel_limit=cfg.pi3.pixel_limit)
        img = sam2_preprocess(s.frames[t], resolution=cfg.sam2.image_size)
        fg = model(x[None], img[None])["fg_mask"]  # (1, 1, R, R) logits
        prob = F.interpolate(fg.sigmoid(), size=s.frames.shape[1:3], mode="bilinear")
        return prob[0, 0].numpy().astype(np.float32)

    return cue


def _object_scores(
    residual: np.ndarray, labels: np.ndarray, ids: np.ndarray, min_pixels: int
) -> list[float]:
    """Mean finite residual under each object's mask (labels resized to the map); NaN if none."""
    if labels.shape != residual.shape:
        labels = cv2.resize(
            labels.astype(np.int32), residual.shape[::-1], interpolation=cv2.INTER_NEAREST
        )
    masks = labels[None] == np.asarray(ids).reshape(-1, 1, 1)
    return [float(v) for v in mask_means(residual, masks, min_pixels)]


def probe_motion_cues(
    num_seqs: int = 12,
    seed: int = VALIDATION_SEED,
    frame_stride: int = 3,
    bundle: str | Path | None = None,
    min_pixels: int = 20,
    pi3_state: str | Path | None = None,
    gmos_s_bundle: str | Path | None = None,
) -> tuple[CueScores, dict[str, object]]:
    """Score every visible object of the validation clips with each cue (module docstring).

    Returns:
        (per-object scores, report): the report has ``objects``, ``moving``, ``auroc`` per cue
        (in [0, 1]; None when a class is missing) overall and ``auroc_by_kind``. An object
        enters only if every cue has at least `min_pixels` finite pixels under its mask (map
        resolution; the masks are the renderer's), so all cues score the same objects.
    """
    if num_seqs <= 0:
        raise ValueError(f"num_seqs must be positive, got {num_seqs}")
    if frame_stride <= 0:
        raise ValueError(f"frame_stride must be positive, got {frame_stride}")
    if min_pixels <= 0:
        raise ValueError(f"min_pixels must be positive, got {min_pixels}")
    if seed + 10 * num_seqs > HELD_OUT_SEED:
        raise ValueError(f"seeds from {seed} may reach the held-out split ({HELD_OUT_SEED}..)")
    cues: dict[str, CueFn] = {
        "homography": homography_cue,
        "warp_true": true_warp_cue,
        "warp_depth_vo": depth_vo_warp_cue,
    }
    if pi3_state is not None:
        cues.update(pi3_state_cues(pi3_state))
    if gmos_s_bundle is not None:
        cues["gmos_s"] = gmos_s_cue(gmos_s_bundle)
    if bundle is not None:
        if "warp_pi3" in cues:
            raise ValueError("--pi3-state already has π³ heads; give --bundle or that state")
        cues.update(pi3_warp_cues(bundle))
    scenes = (s for _, s in iter_held_out_scenes(SplitSpec(num_seqs=num_seqs, seed=seed)))
    res = CueScores(scores={name: [] for name in cues})
    half = WINDOW // 2
    frames = 0
    no_evidence = dict.fromkeys(cues, 0)
    for s in tqdm(scenes, desc="motion cues", unit="clip", total=num_seqs):
        for t in range(half, s.num_frames - half, frame_stride):
            frames += 1
            per_cue = {}
            for name, fn in cues.items():
                try:
                    per_cue[name] = _object_scores(
                        fn(s, t), s.instance_masks[t], s.object_ids, min_pixels
                    )
                except NoEvidence:
                    # Counted; the frame's objects then drop out for every cue.
                    no_evidence[name] += 1
                    per_cue[name] = [float("nan")] * len(s.object_ids)
            for k in range(len(s.object_ids)):
                if not all(np.isfinite(v[k]) for v in per_cue.values()):
                    continue  # not visible enough for some cue: no object for any
                res.moving.append(bool(s.motion_state[t, k]))
                res.kind.append(s.scene_kind)
                for name, v in per_cue.items():
                    res.scores[name].append(v[k])
    report = _report(res)
    report["frames"] = frames
    report["frames_without_evidence"] = no_evidence
    return res, report


def _report(res: CueScores) -> dict[str, object]:
    mv = np.array(res.moving, dtype=bool)
    kinds = np.array(res.kind)

    def aurocs(sel: np.ndarray) -> dict[str, float | None]:
        return {
            n: auroc(np.array(v)[sel & mv], np.array(v)[sel & ~mv]) for n, v in res.scores.items()
        }

    everything = np.ones(len(mv), dtype=bool)
    return {
        "objects": int(len(mv)),
        "moving": int(mv.sum()),
        "auroc": aurocs(everything),
        "auroc_by_kind": {k: aurocs(kinds == k) for k in sorted(set(res.kind))},
    }


def write_report(report: dict[str, object], path: Path) -> None:
    """Write `report` as indented JSON to `path` (its folder created) and print it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=1)
    path.write_text(text + "\n")
    print(text)


def plot_roc(res: CueScores, path: Path) -> None:
    """ROC curve of each cue (false-positive rate on static objects vs recall of moving ones)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mv = np.array(res.moving, dtype=bool)
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    for name, vals in res.scores.items():
        v = np.array(vals)
        order = np.argsort(-v, kind="stable")
        hits = mv[order]
        tpr = np.concatenate([[0.0], np.cumsum(hits) / max(hits.sum(), 1)])
        fpr = np.concatenate([[0.0], np.cumsum(~hits) / max((~hits).sum(), 1)])
        a = auroc(v[mv], v[~mv])
        ax.plot(fpr, tpr, label=f"{name} (AUROC {a:.2f})" if a is not None else name)
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
    ax.set_xlabel("static objects called moving (FPR)")
    ax.set_ylabel("moving objects found (TPR)")
    ax.set_title(f"per-object motion cues, {len(mv)} objects ({int(mv.sum())} moving)", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--num-seqs", type=int, default=12, help="validation clips")
    ap.add_argument("--seed", type=int, default=VALIDATION_SEED)
    ap.add_argument("--frame-stride", type=int, default=3, help="score every k-th frame")
    ap.add_argument("--min-pixels", type=int, default=20)
    ap.add_argument("--bundle", default=None, help="a bundle with π³ heads (adds warp_pi3)")
    ap.add_argument("--pi3-state", default=None, help="a stage-1 state (adds pi3_probe)")
    ap.add_argument("--gmos-s-bundle", default=None, help="a Gmos-S bundle (adds gmos_s)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True, help="folder for the JSON and the plot")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    try:
        res, report = probe_motion_cues(
            args.num_seqs,
            args.seed,
            args.frame_stride,
            args.bundle,
            args.min_pixels,
            args.pi3_state,
            args.gmos_s_bundle,
        )
    except (ValueError, FileNotFoundError) as exc:
        ap.error(str(exc))
    if not res.moving:
        ap.error("no object was visible enough to score; raise --num-seqs or lower --min-pixels")
    write_report(report, args.out / "motion_cues.json")
    plot_roc(res, args.out / "motion_cues.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
