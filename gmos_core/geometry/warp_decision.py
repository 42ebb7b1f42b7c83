"""Which proposals move, decided by 3-D geometry: an RGB-D camera with the robot's odometry.

The learned motion head of a micro model trained on a CPU does not tell moving from static
objects (per-object AUROC ~0.5, docs/training.md), while a warp with the camera's depth and
pose does (0.91): a static surface, back-projected with its depth and carried by the camera's
motion into a neighbour frame, lands on its own grey value; an object that moves in the world
does not. With this decision the proposer still finds and segments the objects and the
propagator still tracks them; only each proposal's motion probability comes from the mean warp
residual under its mask (the other frames of its window as neighbours) instead of the head.

What it needs per frame (:class:`SensorFrame`): the depth image aligned to the RGB frame and
the camera's pose in a fixed frame: the robot's odometry (good over the window's ~0.5 s), or,
for a camera alone, :class:`DepthOdometryPoses`, the frame-to-frame depth visual odometry
chained (weaker: J_mov 13.1 against 18.3 with exact poses on 30 check clips, docs/training.md).

Pure numpy/OpenCV (no torch, no ROS).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from gmos_core.geometry.camera import (
    PinholeIntrinsics,
    backproject_depth,
    invert_transform,
)
from gmos_core.geometry.visual_odometry import DepthVisualOdometry
from gmos_core.geometry.warp import mask_means, warp_grey, window_warp_residual
from gmos_core.models.prediction import ProposalPrediction

__all__ = [
    "DepthOdometryPoses",
    "RESIDUAL_AT_HALF",
    "SensorFrame",
    "WarpMotionDecision",
    "residual_to_motion_prob",
]

#: Mean warp residual (grey levels, 0..255) at which a proposal's motion probability is 0.5;
#: one grey level is one logit, so a motion threshold τ_m calls a proposal moving above
#: ``RESIDUAL_AT_HALF + logit(τ_m)`` grey levels (0.27 → 3, 0.73 → 5).
RESIDUAL_AT_HALF = 4.0


@dataclass(frozen=True)
class SensorFrame:
    """What an RGB-D camera and the robot's odometry add to one RGB frame.

    Attributes:
        depth_m: (H, W) z-depth in metres, aligned to the RGB frame (same size); NaN or ≤ 0
            where invalid (stored as float32 with NaN there, once, for every window it is in).
        cam_to_world: (4, 4) pose of the camera (OpenCV axes: x right, y down, z forward) in a
            fixed frame (odometry), metres.
        intrinsics: the RGB camera, for W × H.
        world: frames whose poses share one fixed frame have the same value; a pose source
            that lost track starts a new one (frames of different worlds are not compared).
    """

    depth_m: np.ndarray
    cam_to_world: np.ndarray
    intrinsics: PinholeIntrinsics
    world: int = 0

    def __post_init__(self) -> None:
        d = np.asarray(self.depth_m)
        if d.ndim != 2:
            raise ValueError(f"SensorFrame: depth must be (H, W), got shape {d.shape}")
        if (self.intrinsics.width, self.intrinsics.height) != (d.shape[1], d.shape[0]):
            raise ValueError(
                f"SensorFrame: intrinsics are for {self.intrinsics.width}x"
                f"{self.intrinsics.height}, the depth is {d.shape[1]}x{d.shape[0]}"
            )
        t = np.asarray(self.cam_to_world, dtype=np.float64)
        if t.shape != (4, 4) or not np.isfinite(t).all():
            raise ValueError(f"SensorFrame: cam_to_world must be a finite (4, 4), got {t.shape}")
        r = t[:3, :3]
        if not np.allclose(r @ r.T, np.eye(3), atol=1e-3) or np.linalg.det(r) <= 0:
            raise ValueError("SensorFrame: cam_to_world's rotation is not a rotation")
        depth = np.asarray(d, dtype=np.float32)
        object.__setattr__(self, "depth_m", np.where(depth > 0, depth, np.nan).astype(np.float32))

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the depth (= of the RGB frame it belongs to)."""
        return self.depth_m.shape[0], self.depth_m.shape[1]


def residual_to_motion_prob(mean_residual: np.ndarray) -> np.ndarray:
    """(K,) mean warp residuals (grey levels, NaN: no evidence) → (K,) float32 motion
    probabilities; a proposal without evidence gets 0 (never called moving)."""
    r = np.asarray(mean_residual, dtype=np.float64)
    logit = np.clip(r - RESIDUAL_AT_HALF, -50.0, 50.0)
    p = 1.0 / (1.0 + np.exp(-logit))
    return np.where(np.isfinite(r), p, 0.0).astype(np.float32)


class WarpMotionDecision:
    """Motion probabilities of a frame's proposals from the warp residual of its window.

    Stateless: the streaming runtime hands it the window's grey images (:meth:`grey`, computed
    once per frame and kept with it) and sensor data.

    Args:
        min_pixels: a proposal needs this many pixels with a residual under its mask (fewer:
            no evidence, probability 0).
    """

    def __init__(self, min_pixels: int = 1) -> None:
        if min_pixels < 1:
            raise ValueError(f"min_pixels must be >= 1, got {min_pixels}")
        self.min_pixels = min_pixels

    @staticmethod
    def grey(frame_rgb: np.ndarray) -> np.ndarray:
        """(H, W) float32 grey image of an (H, W, 3) uint8 RGB frame, as :meth:`evidence`
        compares them (`warp_grey`)."""
        return warp_grey(frame_rgb)

    def evidence(
        self,
        greys: Sequence[np.ndarray],
        sensors: Sequence[SensorFrame | None],
        center: int,
    ) -> np.ndarray | None:
        """(H, W) float32 mean warp residual of frame `center` against the other frames.

        Args:
            greys: the window's frames as :meth:`grey` gives them (a frame may repeat at a
                stream end, as the same array: repeats of the centre are skipped).
            sensors: each frame's `SensorFrame`, or None where none arrived.
            center: index of the frame the result describes.

        Returns:
            The residual map (NaN where no neighbour sees the pixel), or None when the centre
            has no sensor data or no other frame has in the centre's world (nothing to decide
            from).
        """
        if len(greys) != len(sensors) or not 0 <= center < len(greys):
            raise ValueError(
                f"evidence: {len(greys)} frames, {len(sensors)} sensor entries, centre {center}"
            )
        sc = sensors[center]
        if sc is None:
            return None
        frame_to_world = np.asarray(sc.cam_to_world, dtype=np.float64)
        seen: set[int] = {id(greys[center])}
        neighbours = []
        for g, s in zip(greys, sensors):
            if s is None or id(g) in seen or s.world != sc.world:
                continue
            seen.add(id(g))
            # Points of the centre's camera into the neighbour's: world → neighbour ∘ centre → world.
            neighbour_from_frame = invert_transform(np.asarray(s.cam_to_world)) @ frame_to_world
            neighbours.append((g, neighbour_from_frame, s.depth_m))
        if not neighbours:
            return None
        points = backproject_depth(sc.depth_m, sc.intrinsics)
        return window_warp_residual(points, greys[center], neighbours, sc.intrinsics)

    def decide(self, pred: ProposalPrediction, evidence: np.ndarray) -> ProposalPrediction:
        """`pred` with its motion probabilities replaced by the residual's (masks, IoU kept).

        Args:
            pred: the proposer's output for the frame, (K, H, W) masks at frame size.
            evidence: (H, W) residual map from :meth:`evidence`, same size.
        """
        if pred.masks.shape[1:] != evidence.shape:
            raise ValueError(
                f"decide: masks are {pred.masks.shape[1:]}, the residual is {evidence.shape}"
            )
        means = mask_means(evidence, pred.masks.astype(bool), self.min_pixels)
        return replace(pred, motion_prob=residual_to_motion_prob(means))


class DepthOdometryPoses:
    """Camera poses for :class:`SensorFrame` from the depth camera alone: the frame-to-frame
    :class:`~gmos_core.geometry.visual_odometry.DepthVisualOdometry` (no masks: moving objects
    are RANSAC outliers) chained from the first frame.

    Where the odometry finds no motion estimate (too few tracked static points, a gap), the
    chain restarts in a new `SensorFrame.world`; a change of intrinsics restarts it too.
    """

    def __init__(self) -> None:
        self._vo: DepthVisualOdometry | None = None
        self._pose = np.eye(4)
        self._world = -1

    def reset(self) -> None:
        """Forget the chain (a stream reset)."""
        self._vo = None

    def step(
        self, rgb: np.ndarray, depth_m: np.ndarray, intrinsics: PinholeIntrinsics, stamp_ns: int
    ) -> SensorFrame | None:
        """The frame's `SensorFrame`, or None where its pose is unknown (a chain's first frame
        has the identity pose: it is known).

        Args:
            rgb: (H, W, 3) uint8 RGB frame.
            depth_m: (H, W) float32 aligned depth, metres, NaN where invalid.
            intrinsics: the camera for W × H.
            stamp_ns: the frame's stamp (increasing).
        """
        if self._vo is None or self._vo.intrinsics != intrinsics:
            self._vo = DepthVisualOdometry(intrinsics)
            self._vo.step(rgb, depth_m, None, stamp_ns)
            self._pose, self._world = np.eye(4), self._world + 1
            return SensorFrame(depth_m, self._pose, intrinsics, self._world)
        ego = self._vo.step(rgb, depth_m, None, stamp_ns)
        if ego is None:
            # The odometry kept this frame as its previous one: the next estimate is relative
            # to it, so a new chain (world) starts here.
            self._pose, self._world = np.eye(4), self._world + 1
            return SensorFrame(depth_m, self._pose, intrinsics, self._world)
        # curr_from_prev maps points of the previous camera into this one.
        self._pose = self._pose @ invert_transform(ego.curr_from_prev)
        return SensorFrame(depth_m, self._pose, intrinsics, self._world)
