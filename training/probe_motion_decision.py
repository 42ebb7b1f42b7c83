"""How far do a Gmos proposer's own masks go with a better motion decision?

`training.probe_motion_cues` asks which evidence ranks moving objects above static ones given
the renderer's masks. This tool keeps the proposer's masks and swaps only the decision "which
queries move": per frame of the validation clips (seeds 800 000.., the held-out generator), the
foreground is the union of the masks (logit > 0, at least `min_pixels` px) of the queries
called moving, scored by its IoU with the objects moving now (frames where something moves;
mean over frames, ×100). Decisions:

* ``motion_head@τ``: the proposer's own motion probability > τ (what the runtime uses);
* ``homography@τ``: the mean of the ego-motion baseline's homography residual over the query's
  mask > τ grey levels (RGB only, what the runtime could compute without depth);
* ``warp_true@τ`` / ``warp_depth_vo@τ``: the mean depth-and-pose warp residual over the query's
  mask > τ grey levels, with the renderer's exact geometry, or with the renderer's depth and the
  depth odometry's camera motion (an RGB-D robot; :mod:`training.probe_motion_cues`);
* ``oracle``: the query's mask matches an object moving now at IoU ≥ 0.5 (the masks' ceiling
  with a perfect per-query decision at that match rule);
* ``all_queries``: every non-empty query (no decision at all).

The τ grids are swept on the same clips, so the best τ of a decision reads high: compare
decisions with each other, not with the held-out benchmark.

``--mos-i CUE`` asks the same of the benchmark's own metric: the online propagator runs on the
recorded head outputs with every query's motion logit replaced by ``4 · (residual − τ)`` of the
cue (``motion_head`` keeps the head and sweeps τ_m; ``oracle`` scores a query 10 × its best IoU
with an object moving at that frame, so τ = 5 is a perfect decision at IoU 0.5: the ceiling of
the proposer's masks under the propagator), the thresholds (mask logit, τ, τ_u) and the
weight-free tracker's (snap IoU, velocity) are chosen on the calibration clips as
`gmos-calibrate` does (best mtIoU + J_mov with FP at most the baselines' lower FP), and the
chosen point is scored on the check clips (seeds 810 000..) next to both baselines there.
Frames within 2 of a clip's ends use the nearest full window's residual.

    python -m training.probe_motion_decision --bundle gmos_core/assets/micro_gmos.safetensors \\
        --num-seqs 20 --out out/motion_decision
    python -m training.probe_motion_decision --bundle ... --mos-i warp_true --out out/mos_i

Writes ``motion_decision.json`` (and prints it) and ``motion_decision.png``, or
``mos_i_<cue>.json``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from training.calibrate import VALIDATION_SEED, tracker_setting
from training.probe_motion_cues import (
    NoEvidence,
    depth_vo_warp_cue,
    homography_cue,
    mask_means,
    true_warp_cue,
    write_report,
)
from training.splits import HELD_OUT_SEED, SplitSpec, held_out_scenes

__all__ = ["probe_motion_decision"]

HALF = 2  # 5-frame windows, the runtime's


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 1.0


def _j(masks: np.ndarray, called: np.ndarray, gt: np.ndarray) -> float:
    """×100 IoU of the union of the called (Q,) masks (Q, H, W) with the moving objects (H, W)."""
    fg = masks[called].any(0) if called.any() else np.zeros_like(gt)
    return 100.0 * _iou(fg, gt)


def _query_means(residual: np.ndarray, masks: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """(Q,) mean finite residual under each kept query mask; −inf where there is none (a query
    without evidence is never called moving)."""
    means = mask_means(residual, masks & keep[:, None, None])
    return np.where(np.isnan(means), -np.inf, means)


def _best_moving_iou(s: Any, t: int, masks: np.ndarray) -> np.ndarray:
    """(Q,) best IoU of each (Q, H, W) query mask with an object moving at frame `t` (0 where
    nothing moves or the mask is empty)."""
    moving = [int(o) for o, mv in zip(s.object_ids, s.motion_state[t]) if mv]
    objects = [s.instance_masks[t] == o for o in moving]
    return np.array(
        [max((_iou(m, g) for g in objects), default=0.0) if m.any() else 0.0 for m in masks]
    )


def _oracle_score(s: Any, t: int, masks: np.ndarray) -> np.ndarray:
    """(Q,) 10 × `_best_moving_iou`: the truth as a residual-like score, so that τ = 5 is
    "matches a moving object at IoU ≥ 0.5"."""
    return 10.0 * _best_moving_iou(s, t, masks)


def probe_motion_decision(
    bundle: str | Path,
    num_seqs: int = 20,
    seed: int = VALIDATION_SEED,
    frame_stride: int = 2,
    motion_thresholds: Sequence[float] = (0.3, 0.5),
    residual_thresholds: Sequence[float] = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0),
    min_pixels: int = 20,
) -> dict[str, object]:
    """The per-frame J of every decision (module docstring); values ×100 in [0, 100]."""
    import torch
    import torch.nn.functional as F

    from gmos_core.models.build import build_frame_model_from_bundle
    from gmos_core.models.preprocess import pi3_preprocess, sam2_preprocess
    from training.trainer import GmosTrainModule

    if num_seqs <= 0 or frame_stride <= 0 or min_pixels <= 0:
        raise ValueError(
            f"num_seqs, frame_stride and min_pixels must be positive, got {num_seqs}, "
            f"{frame_stride}, {min_pixels}"
        )
    if seed + 10 * num_seqs > HELD_OUT_SEED:
        raise ValueError(f"seeds from {seed} may reach the held-out split ({HELD_OUT_SEED}..)")
    if not motion_thresholds or any(not 0.0 <= t <= 1.0 for t in motion_thresholds):
        raise ValueError(f"motion thresholds must be probabilities, got {motion_thresholds}")
    if not residual_thresholds or any(not t >= 0.0 for t in residual_thresholds):
        raise ValueError(f"residual thresholds must be >= 0 grey levels, got {residual_thresholds}")
    fm = build_frame_model_from_bundle(bundle)
    if fm.mode != "gmos":
        raise ValueError(f"{bundle} is a {fm.mode} bundle; the decision needs a Gmos proposer")
    model = GmosTrainModule(fm, train_encoders=False, train_pi3=False).eval()
    cfg = fm.config
    scores: dict[str, list[float]] = {f"motion_head@{t:g}": [] for t in motion_thresholds}
    for cue in ("homography", "warp_true", "warp_depth_vo"):
        scores.update({f"{cue}@{t:g}": [] for t in residual_thresholds})
    scores.update({"oracle": [], "all_queries": []})
    no_vo = 0
    scenes, _ = held_out_scenes(SplitSpec(num_seqs=num_seqs, seed=seed))
    for s in tqdm(scenes, desc="motion decision", unit="clip"):
        for t in range(HALF, s.num_frames - HALF, frame_stride):
            moving_ids = [int(o) for o, mv in zip(s.object_ids, s.motion_state[t]) if mv]
            gt = np.isin(s.instance_masks[t], moving_ids)
            if gt.sum() < min_pixels:
                continue  # nothing moves visibly: J is not defined on this frame
            x = pi3_preprocess(s.frames[t - HALF : t + HALF + 1], pixel_limit=cfg.pi3.pixel_limit)
            img = sam2_preprocess(s.frames[t], resolution=cfg.sam2.image_size)
            with torch.no_grad():
                out = model(x[None], img[None])
                logits = F.interpolate(out["mask"], size=gt.shape, mode="bilinear")[0]
            masks = (logits > 0).numpy()  # (Q, H, W)
            keep = masks.reshape(len(masks), -1).sum(1) >= min_pixels
            motion = out["motion_logits"][0, :, 0].sigmoid().numpy()
            matches = keep & (_best_moving_iou(s, t, masks) >= 0.5)

            for th in motion_thresholds:
                scores[f"motion_head@{th:g}"].append(_j(masks, keep & (motion > th), gt))
            per_cue = {
                "homography": _query_means(homography_cue(s, t), masks, keep),
                "warp_true": _query_means(true_warp_cue(s, t), masks, keep),
            }
            try:
                per_cue["warp_depth_vo"] = _query_means(depth_vo_warp_cue(s, t), masks, keep)
            except NoEvidence:
                no_vo += 1  # no camera motion: nothing is called moving on this frame
                per_cue["warp_depth_vo"] = np.full(len(masks), -np.inf)
            for cue, mean in per_cue.items():
                for th in residual_thresholds:
                    scores[f"{cue}@{th:g}"].append(_j(masks, mean > th, gt))
            scores["oracle"].append(_j(masks, matches, gt))
            scores["all_queries"].append(_j(masks, keep, gt))
    frames = len(scores["oracle"])
    if frames == 0:
        raise ValueError("no frame with a visibly moving object; raise num_seqs")
    return {
        "bundle": str(bundle),
        "frames": frames,
        "frames_without_depth_odometry": no_vo,
        "J": {k: float(np.mean(v)) for k, v in scores.items()},
    }


MOS_I_CUES = ("motion_head", "homography", "warp_true", "warp_depth_vo", "oracle")


def mos_i_with_decision(
    bundle: str | Path,
    cue: str,
    work_dir: Path,
    cal_seqs: int = 30,
    check_seqs: int = 30,
    mask_grid: Sequence[float] = (-1.0, 0.0, 1.0),
    tau_grid: Sequence[float] | None = None,
    iou_grid: Sequence[float] = (0.0, 0.5),
    tracker_grid: Sequence[tuple[float, bool]] | None = None,
) -> dict[str, object]:
    """MOS-I of the online propagator with `cue` deciding which queries move (docstring).

    Returns:
        ``calibration`` (the chosen row, metrics ×100, FP per frame), ``budget`` (the FP limit),
        ``check`` (the chosen point on the check clips, ×100) and ``check_baselines``.
    """
    import torch
    import torch.nn.functional as F

    from gmos_core.models.build import build_frame_model_from_bundle
    from gmos_core.operating_point import OperatingPoint
    from gmos_core.streaming.build import build_segmenter
    from training.calibrate import (
        CHECK_SEED,
        DEFAULT_TRACKER_GRID,
        RecordingModel,
        choose_point,
        clip_settings,
        fp_budget_from_baselines,
        validation_baselines,
    )
    from training.probe_motion_cues import homography_cue
    from training.scoring import run_clip, score_gmos
    from training.splits import as_sequence

    if cue not in MOS_I_CUES:
        raise ValueError(f"--mos-i must be one of {MOS_I_CUES}, got {cue!r}")
    if cal_seqs <= 0 or check_seqs <= 0:
        raise ValueError(f"cal_seqs and check_seqs must be positive, got {cal_seqs}, {check_seqs}")
    if CHECK_SEED + 10 * check_seqs > HELD_OUT_SEED:
        raise ValueError(f"{check_seqs} check clips from {CHECK_SEED} may reach the held-out split")
    fm = build_frame_model_from_bundle(bundle)
    if fm.mode != "gmos":
        raise ValueError(f"{bundle} is a {fm.mode} bundle; the decision needs a Gmos proposer")
    model = fm.frame_model()
    residual_of = {
        "homography": homography_cue,
        "warp_true": true_warp_cue,
        "warp_depth_vo": depth_vo_warp_cue,
    }.get(cue)
    replaces_head = cue != "motion_head"
    taus = tuple(tau_grid) if tau_grid else (
        (0.3, 0.4, 0.5, 0.6) if not replaces_head
        else (3.0, 5.0) if cue == "oracle"
        else (2.0, 3.0, 4.0, 5.0, 6.0)
    )  # fmt: skip

    def prepare(seed: int, n: int) -> list[tuple[Any, Any, list[np.ndarray]]]:
        scenes, seeds = held_out_scenes(SplitSpec(num_seqs=n, seed=seed))
        clips = []
        for sd, s in tqdm(list(zip(seeds, scenes)), desc=f"record {seed}", unit="clip"):
            seq = as_sequence(f"val_{sd}_{s.scene_kind}", s)
            rec = RecordingModel(model)
            run_clip(build_segmenter(clip_settings("gmos_online", seq, {}), model=rec), seq)
            scores = []
            for i, out in enumerate(rec.outputs):  # one output per frame, in order
                if not replaces_head:
                    break
                logits = F.interpolate(
                    torch.as_tensor(out["mask"]).float(), size=s.frames.shape[1:3], mode="bilinear"
                )
                masks = (logits[0] > 0).numpy()
                if cue == "oracle":  # the frame itself: the truth has no window to clamp to
                    scores.append(_oracle_score(s, i, masks))
                    continue
                t = min(max(i, HALF), s.num_frames - 1 - HALF)
                try:
                    res = residual_of(s, t)
                except NoEvidence:
                    res = np.full(s.frames.shape[1:3], np.nan, np.float32)
                scores.append(_query_means(res, masks, masks.reshape(len(masks), -1).any(1)))
            clips.append((rec, seq, scores))
        return clips

    trackers = tuple(tracker_grid) if tracker_grid else DEFAULT_TRACKER_GRID

    def score(
        clips: list[tuple[Any, Any, list[np.ndarray]]],
        m: float,
        tau: float,
        u: float,
        tracker: tuple[float, bool],
    ):
        results = []
        for rec, seq, scores in clips:
            recorded = rec.outputs
            if replaces_head:
                # −inf (no evidence) → a very negative logit: never moving.
                rec.outputs = [
                    {**o, "motion_logits": torch.from_numpy(
                        np.clip(4.0 * (sc - tau), -50.0, 50.0).astype(np.float32)
                    )[None, :, None]}
                    for o, sc in zip(recorded, scores)
                ]  # fmt: skip
            # A replaced logit is moving above 0 (probability 0.5); the head's sweeps τ_m.
            rec.replay(
                OperatingPoint(
                    mask_logit_threshold=m,
                    motion_threshold=0.5 if replaces_head else tau,
                    iou_threshold=u,
                    snap_iou=tracker[0],
                    use_velocity=tracker[1],
                )
            )
            results.append(
                run_clip(build_segmenter(clip_settings("gmos_online", seq, {}), model=rec), seq)
            )
            rec.outputs = recorded
        return results

    cal = prepare(VALIDATION_SEED, cal_seqs)
    cal_list = [c[1] for c in cal]
    baselines = validation_baselines(cal_seqs, VALIDATION_SEED, work_dir / "baselines")
    budget = fp_budget_from_baselines(baselines)
    rows = []
    for tracker in trackers:
        for m in mask_grid:
            for tau in taus:
                for u in iou_grid:
                    got = score_gmos(score(cal, m, tau, u, tracker), cal_list)
                    rows.append(
                        {
                            "mask_logit_threshold": m,
                            "tau": tau,
                            "iou_threshold": u,
                            "tracker": list(tracker),
                            **got,
                        }
                    )
    best, _ = choose_point(rows, budget, baselines)
    chk = prepare(CHECK_SEED, check_seqs)
    got = score_gmos(
        score(
            chk,
            best["mask_logit_threshold"],
            best["tau"],
            best["iou_threshold"],
            tuple(best["tracker"]),
        ),
        [c[1] for c in chk],
    )

    def pct(r: dict[str, float]) -> dict[str, float]:
        return {**r, "mtIoU": 100 * r["mtIoU"], "J_mov": 100 * r["J_mov"]}

    return {
        "bundle": str(bundle),
        "cue": cue,
        "calibration": {"num_seqs": cal_seqs, "chosen": pct(best), "budget_fp": budget},
        "check": {"num_seqs": check_seqs, "chosen": pct(got)},
        "check_baselines": validation_baselines(check_seqs, CHECK_SEED, work_dir / "check_base"),
    }


def plot(report: dict[str, object], path: Path) -> None:
    """One bar per decision (its best threshold for the swept ones)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    j: dict[str, float] = report["J"]  # type: ignore[assignment]
    best: dict[str, tuple[str, float]] = {}
    for key, value in j.items():
        name = key.split("@")[0]
        if name not in best or value > best[name][1]:
            best[name] = (key, value)
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    names = list(best)
    ax.bar(range(len(names)), [best[n][1] for n in names], color="tab:blue")
    ax.set_xticks(range(len(names)), [best[n][0] for n in names], rotation=20, fontsize=8)
    ax.set_ylabel("per-frame J of moving objects (×100)")
    where = "/".join(Path(str(report["bundle"])).parts[-2:])
    ax.set_title(f"{where}: {report['frames']} frames (best threshold each)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_mos_i(reports: Sequence[dict[str, Any]], path: Path) -> None:
    """Check-clip J_mov and FP of each `mos_i_with_decision` report, the baselines as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.2))
    names = [str(r["cue"]) for r in reports]
    for ax, key, label in zip(axes, ("J_mov", "FP"), ("J_mov (×100) ↑", "FP per frame ↓")):
        ax.bar(range(len(names)), [r["check"]["chosen"][key] for r in reports], color="tab:blue")
        ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
        ax.set_ylabel(label)
        for (base, b), style in zip(reports[0]["check_baselines"].items(), ("--", ":")):
            ax.axhline(b[key], color="k", ls=style, lw=1, label=base)
        ax.legend(fontsize=7)
    fig.suptitle(f"MOS-I on {reports[0]['check']['num_seqs']} check clips", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", required=True, help="a Gmos (proposer) bundle")
    ap.add_argument("--num-seqs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=VALIDATION_SEED)
    ap.add_argument("--frame-stride", type=int, default=2)
    ap.add_argument("--mos-i", default=None, choices=MOS_I_CUES, help="MOS-I of one decision")
    ap.add_argument("--cal-seqs", type=int, default=30, help="--mos-i: calibration clips")
    ap.add_argument("--check-seqs", type=int, default=30, help="--mos-i: check clips")
    ap.add_argument(
        "--tracker",
        action="append",
        type=tracker_setting,
        help="--mos-i: a tracker setting to search, SNAP:velocity or SNAP:in_place (repeat; "
        "default: gmos-calibrate's grid)",
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True, help="folder for the JSON and the plot")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.mos_i is not None:
        try:
            rep = mos_i_with_decision(
                args.bundle,
                args.mos_i,
                args.out,
                args.cal_seqs,
                args.check_seqs,
                tracker_grid=args.tracker,
            )
        except (ValueError, FileNotFoundError) as exc:
            ap.error(str(exc))
        write_report(rep, args.out / f"mos_i_{args.mos_i}.json")
        # Every decision measured into this folder so far, in the order of MOS_I_CUES.
        done = [args.out / f"mos_i_{c}.json" for c in MOS_I_CUES]
        plot_mos_i([json.loads(f.read_text()) for f in done if f.exists()], args.out / "mos_i.png")
        return 0
    try:
        report = probe_motion_decision(args.bundle, args.num_seqs, args.seed, args.frame_stride)
    except (ValueError, FileNotFoundError) as exc:
        ap.error(str(exc))
    write_report(report, args.out / "motion_decision.json")
    plot(report, args.out / "motion_decision.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
