"""3-D object states and ego-motion against a rendered scene's truth (exact trajectories, poses).

Each estimated object of a frame is matched to the true object its mask overlaps most (IoU >= 0.3
against the renderer's visible instance masks, static objects included); an unmatched estimate
is counted, not scored. Per matched object-frame:

- position error: |estimated position - true alpha-centroid|, both in that frame's camera, m;
- velocity (when the estimate has one): an object that did not move during the velocity window
  before the frame is *static* and its estimated speed is reported (should be ~0); one that moved
  during the whole window is *moving* and |estimated - true velocity| is reported, the true
  velocity being its world displacement over the window in the current camera's axes.

Ego-motion (when given): translation and rotation error of each frame-to-previous-frame motion
(RPE), and the ATE: the estimated motions are chained from the first frame (a frame with no
estimate keeps the previous pose, so a failure counts as "no motion" instead of shortening the
trajectory) and the RMSE of the camera positions against the true ones, both in the first
camera's frame. Estimates must be metric: callers leave up-to-scale states out (no metres to
compare).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from gmos_core.geometry.camera import apply_transform, invert_transform
from gmos_core.geometry.ego_motion import EgoMotion
from gmos_core.geometry.objects import ObjectState

__all__ = [
    "EstimatedObject",
    "FrameEstimate",
    "ObjectStatesScore",
    "StateSamples",
    "TrackPoint",
    "match_objects",
    "score_object_states",
]


@dataclass(frozen=True)
class EstimatedObject:
    """One estimated object state (camera frame of its frame, metres).

    Attributes:
        obj_id: the id in the frame's instance map.
        position: (3,) metres.
        velocity: (3,) m/s, or None when the estimate has no velocity.
    """

    obj_id: int
    position: np.ndarray
    velocity: np.ndarray | None

    @classmethod
    def of_state(cls, state: ObjectState) -> EstimatedObject:
        """A state of `gmos_core.geometry` (velocity None where it is not valid)."""
        return cls(
            state.object_id, state.position, state.velocity if state.velocity_valid else None
        )


@dataclass(frozen=True)
class FrameEstimate:
    """The estimates of one frame: its stamp, (H, W) instance map, objects and ego-motion
    from the previous frame (None: unknown)."""

    stamp_ns: int
    instance_ids: np.ndarray
    objects: Sequence[EstimatedObject]
    ego: EgoMotion | None = None


@dataclass(frozen=True)
class TrackPoint:
    """One matched object-frame for a top-down picture: the true object (0-based index), the
    frame index, and the estimated and true positions in the FIRST camera's frame (the estimate
    carried there with the estimated ego-motion chain, the truth with the true poses)."""

    true_index: int
    frame: int
    estimated: np.ndarray
    truth: np.ndarray


@dataclass
class StateSamples:
    """The per object-frame numbers behind a score (pooled over scenes with :meth:`extend`).

    Lists of: position errors (m), static objects' speeds (m/s), moving objects' estimated
    speeds, true speeds and velocity errors (m/s, same order), ego translation (m) and rotation
    (deg) errors, the chained camera's position error per frame (m, first camera's frame, for
    the ATE); counts of frames, estimated and matched object-frames, and frames after the
    first with no ego-motion (both ego entries only where some frame has one); and the
    top-down track points (`TrackPoint`).
    """

    frames: int = 0
    objects_estimated: int = 0
    objects_matched: int = 0
    ego_missing: int = 0
    position_err_m: list[float] = field(default_factory=list)
    static_speed_mps: list[float] = field(default_factory=list)
    moving_speed_mps: list[float] = field(default_factory=list)
    moving_true_speed_mps: list[float] = field(default_factory=list)
    moving_velocity_err_mps: list[float] = field(default_factory=list)
    ego_trans_err_m: list[float] = field(default_factory=list)
    ego_rot_err_deg: list[float] = field(default_factory=list)
    camera_pos_err_m: list[float] = field(default_factory=list)
    track: list[TrackPoint] = field(default_factory=list)
    # (frame, estimated, true) camera positions in the first camera's frame.
    camera_track: list[tuple[int, np.ndarray, np.ndarray]] = field(default_factory=list)

    def extend(self, other: StateSamples) -> None:
        """Pool another scene's samples into these (the tracks are not pooled)."""
        for f in fields(self):
            if f.name in ("track", "camera_track"):
                continue
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass(frozen=True)
class ObjectStatesScore:
    """Aggregates of `StateSamples` (medians unless said; NaN where nothing was measured)."""

    frames: int
    objects_estimated: int
    objects_matched: int
    position_err_m_median: float
    position_err_m_p90: float
    static_speed_mps_median: float
    static_speed_mps_p90: float
    static_samples: int
    moving_speed_mps_median: float
    moving_true_speed_mps_median: float
    moving_velocity_err_mps_median: float
    moving_samples: int
    ego_rpe_trans_m_median: float
    ego_rpe_rot_deg_median: float
    ego_frames: int
    ego_ate_m_rmse: float
    ego_missing: int

    @classmethod
    def of(cls, s: StateSamples) -> ObjectStatesScore:
        return cls(
            frames=s.frames,
            objects_estimated=s.objects_estimated,
            objects_matched=s.objects_matched,
            position_err_m_median=_med(s.position_err_m),
            position_err_m_p90=_p90(s.position_err_m),
            static_speed_mps_median=_med(s.static_speed_mps),
            static_speed_mps_p90=_p90(s.static_speed_mps),
            static_samples=len(s.static_speed_mps),
            moving_speed_mps_median=_med(s.moving_speed_mps),
            moving_true_speed_mps_median=_med(s.moving_true_speed_mps),
            moving_velocity_err_mps_median=_med(s.moving_velocity_err_mps),
            moving_samples=len(s.moving_velocity_err_mps),
            ego_rpe_trans_m_median=_med(s.ego_trans_err_m),
            ego_rpe_rot_deg_median=_med(s.ego_rot_err_deg),
            ego_frames=len(s.ego_trans_err_m),
            ego_ate_m_rmse=_rms(s.camera_pos_err_m),
            ego_missing=s.ego_missing,
        )

    def to_json(self) -> dict[str, Any]:
        """The numbers, NaN as None."""
        return {
            k: (None if isinstance(v, float) and not np.isfinite(v) else v)
            for k, v in asdict(self).items()
        }


def match_objects(pred: np.ndarray, truth: np.ndarray, min_iou: float = 0.3) -> dict[int, int]:
    """Predicted id → true id of the true object it overlaps most (IoU >= `min_iou`)."""
    out: dict[int, int] = {}
    for pid in np.unique(pred):
        if pid == 0:
            continue
        pm = pred == pid
        best, best_iou = 0, min_iou
        for gid in np.unique(truth[pm]):
            if gid == 0:
                continue
            gm = truth == gid
            iou = float((pm & gm).sum() / (pm | gm).sum())
            if iou >= best_iou:
                best, best_iou = int(gid), iou
        if best:
            out[int(pid)] = best
    return out


def _rot_deg(r: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0))))


def _med(x: list[float]) -> float:
    return float(np.median(x)) if x else float("nan")


def _p90(x: list[float]) -> float:
    return float(np.percentile(x, 90)) if x else float("nan")


def _rms(x: list[float]) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if x else float("nan")


def score_object_states(
    scene: Any,
    frames: Sequence[FrameEstimate],
    velocity_window_s: float = 0.5,
    min_iou: float = 0.3,
) -> tuple[ObjectStatesScore, StateSamples]:
    """Score estimates against a `gmos_core.data.synthetic.SceneSample` (module docstring).

    Args:
        scene: the rendered scene (``stamps_ns``, ``instance_masks``, ``cam_to_world``,
            ``object_centroid_world``, ``motion_state``, ``config.fps``).
        frames: estimates by frame; stamps not in the scene are an error.
        velocity_window_s: the window the velocities were fitted on (static / moving split).
        min_iou: matching threshold.

    Returns:
        ``(score, samples)``; pool several scenes' samples with `StateSamples.extend` and
        `ObjectStatesScore.of`.

    Raises:
        ValueError: a stamp that is not one of the scene's, or an instance map of another size.
    """
    index: Mapping[int, int] = {int(s): t for t, s in enumerate(scene.stamps_ns)}
    dt = 1.0 / float(scene.config.fps)
    span = max(1, int(round(velocity_window_s / dt)))
    out = StateSamples()
    first_from_world = invert_transform(scene.cam_to_world[0])
    chain: dict[int, np.ndarray] = {0: np.eye(4)}  # estimated first-camera-from-camera
    # Estimates without any ego-motion (none estimated) have no ATE and no missing frames.
    with_ego = any(f.ego is not None for f in frames)
    for f in sorted(frames, key=lambda f: f.stamp_ns):
        t = index.get(int(f.stamp_ns))
        if t is None:
            raise ValueError(f"frame stamp {f.stamp_ns} is not one of the scene's")
        if f.instance_ids.shape != scene.instance_masks[t].shape:
            raise ValueError(
                f"instance map {f.instance_ids.shape} at frame {t} vs truth "
                f"{scene.instance_masks[t].shape}"
            )
        out.frames += 1
        if t and f.ego is None and with_ego:
            out.ego_missing += 1
            if t - 1 in chain:
                chain[t] = chain[t - 1]  # no estimate: no motion (the ATE counts the failure)
        elif t and f.ego is not None:
            truth = invert_transform(scene.cam_to_world[t]) @ scene.cam_to_world[t - 1]
            if f.ego.metric:
                err = f.ego.curr_from_prev[:3, 3] - truth[:3, 3]
                out.ego_trans_err_m.append(float(np.linalg.norm(err)))
                out.ego_rot_err_deg.append(_rot_deg(f.ego.curr_from_prev[:3, :3].T @ truth[:3, :3]))
            if t - 1 in chain:
                chain[t] = chain[t - 1] @ f.ego.prev_from_curr
        if t in chain:
            true_cam = first_from_world @ scene.cam_to_world[t]
            out.camera_track.append((t, chain[t][:3, 3].copy(), true_cam[:3, 3].copy()))
            if with_ego:
                err_cam = chain[t][:3, 3] - true_cam[:3, 3]
                out.camera_pos_err_m.append(float(np.linalg.norm(err_cam)))
        assign = match_objects(f.instance_ids, scene.instance_masks[t], min_iou)
        w2c = invert_transform(scene.cam_to_world[t])
        for o in f.objects:
            out.objects_estimated += 1
            gid = assign.get(int(o.obj_id))
            if gid is None:
                continue
            out.objects_matched += 1
            k = gid - 1
            p_est = np.asarray(o.position, np.float64)
            p_true = apply_transform(w2c, scene.object_centroid_world[t, k])
            out.position_err_m.append(float(np.linalg.norm(p_est - p_true)))
            if t in chain:
                true_first = apply_transform(first_from_world, scene.object_centroid_world[t, k])
                out.track.append(TrackPoint(k, t, apply_transform(chain[t], p_est), true_first))
            if o.velocity is None or t < span:
                continue
            t0 = t - span
            states = scene.motion_state[t0:t, k]
            v = np.asarray(o.velocity, np.float64)
            if not states.any():
                out.static_speed_mps.append(float(np.linalg.norm(v)))
            elif states.all():
                c = scene.object_centroid_world
                v_true = w2c[:3, :3] @ (c[t, k] - c[t0, k]) / (span * dt)
                out.moving_velocity_err_mps.append(float(np.linalg.norm(v - v_true)))
                out.moving_speed_mps.append(float(np.linalg.norm(v)))
                out.moving_true_speed_mps.append(float(np.linalg.norm(v_true)))
    return ObjectStatesScore.of(out), out
