"""Deterministic synthetic parallax scenes (Kubric-like, rendered with numpy/OpenCV).

The Gmos training mix (paper Sec. 4.1, Tab. C1) pairs synthetic videos with pixel-perfect masks
and motion labels (Kubric) with static-scene clips in which only the camera moves (Mannequin
Challenge), so that a model learns to tell independent object motion from camera-induced depth
parallax. No real dataset can be downloaded here, so this module renders the same lesson:

* a pinhole camera (intrinsics from a field of view) translates and rotates smoothly;
* the world is made of textured planar sprites: background planes (far back plane, ground,
  mid-depth walls; label 0) and cut-out objects (ellipses, polygons, blobs, rectangles; labels
  1..K) at various depths; static objects shift in the image by parallax only;
* moving objects follow piecewise-constant-velocity 3-D trajectories that start and stop
  (move, rest, move), giving per-frame motion states as in Gmos-2K;
* every sprite is warped with its exact plane-to-image homography (`cv2.warpPerspective`) and
  composited with a per-pixel inverse-depth test (a z-buffer), so occlusion is exact for any
  plane arrangement, and the depth map comes out of the same plane equations;
* textures for background, static and moving sprites come from one procedural distribution
  and instance ids are shuffled, so neither appearance nor id order reveals which objects move.

Conventions (OpenCV camera): x right, y down, z forward; the world origin is the camera centre
at frame 0 and the world axes are within a few degrees of that camera's, so world y also points
down (the ground is the plane y = +camera height). Pixel
(x, y) is the *centre* of column x, row y, and the principal point is ((W-1)/2, (H-1)/2).

Motion state, exactly: object k is moving at frame t (`motion_state[t, k]`) iff its world
position changes between frame t and frame t+1 (forward difference, a velocity > 0 on
[t, t+1)); the last frame repeats the state of the interval [T-2, T-1). Moving objects move at
a constant velocity within a move segment and are exactly still within a rest segment.

Entry points: `generate_scene(SceneConfig) -> SceneSample`, `generate_dataset(...)`, and the
lower-level `render_layout(SceneLayout)` for hand-built scenes (used by the tests). Command line:
`python -m gmos_core.data.synthetic --out DIR --num-scenes N --seed S` writes a DAVIS-style
folder (see `synthetic_writers.write_davis_style`).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from tqdm import tqdm

__all__ = [
    "MosILabels",
    "SceneConfig",
    "SceneKind",
    "SceneLayout",
    "SceneSample",
    "Sprite",
    "StageTimes",
    "config_from_json",
    "config_to_json",
    "generate_dataset",
    "generate_scene",
    "intrinsics_from_fov",
    "main",
    "motion_intervals",
    "project_points",
    "random_shape_alpha",
    "random_texture",
    "render_layout",
    "sample_layout",
]

SceneKind = Literal["dynamic", "static", "hard_parallax"]
_KINDS: tuple[str, ...] = ("dynamic", "static", "hard_parallax")

# Alpha (0..255) at or above which a warped texel counts as inside the sprite. Linear
# interpolation of the alpha channel then gives sub-texel accurate, hard-edged masks.
_ALPHA_ON = 128


@dataclass(frozen=True)
class SceneConfig:
    """Parameters of one synthetic scene. Ranges are inclusive (low, high) tuples sampled
    uniformly per scene (counts) or per object / segment (sizes, speeds, depths).

    Attributes:
        height: image height, px.
        width: image width, px.
        fov_deg: horizontal field of view, degrees (square pixels, so fy = fx).
        fps: frame rate, frames/s; sets the time step of every trajectory and `stamps_ns`.
        num_frames: frames per scene, T.
        seed: RNG seed; the whole scene is a pure function of the config (seed included).
        start_time_ns: timestamp of frame 0, ns.
        scene_kind: "random" draws the kind with `p_static_scene` / `p_hard_parallax`;
            otherwise forces "dynamic", "static" (camera moves, nothing else does: the
            Mannequin-Challenge role) or "hard_parallax".
        p_static_scene: probability of a fully static scene (when `scene_kind == "random"`).
        p_hard_parallax: probability of a hard-parallax scene: near static objects show more
            image motion than far, slow moving ones.
        num_background_planes: background planes, label 0: 1 = far back plane only, 2 = + ground
            plane, >= 3 = + (n - 2) mid-depth fronto-parallel walls standing on the ground.
        num_static_objects: (min, max) static cut-out objects per scene.
        num_moving_objects: (min, max) dynamic objects per scene (0 in static scenes).
        object_angular_size_deg: (min, max) apparent size of an object (the side of its
            bounding square) seen from the mid-frame camera, degrees; its metric size is
            2 * depth * tan(size / 2), so near and far objects look alike in pixels and depth
            cannot be read off the size.
        object_depth_m: (min, max) distance of an object in front of the mid-frame camera, m.
        wall_depth_m: (min, max) depth of mid-depth walls, m.
        back_plane_depth_m: (min, max) depth of the back plane, m.
        camera_height_m: (min, max) height of the camera above the ground plane, m.
        object_speed_mps: (min, max) speed of a moving object during a move segment, m/s.
        object_vertical_fraction: vertical (world y) share of a moving object's direction.
        camera_speed_mps: (min, max) mean camera translation speed, m/s (min > 0: the camera
            always translates, otherwise there is no parallax to learn from).
        camera_forward_fraction: max |forward| share of the camera's unit travel direction.
        camera_rot_speed_dps: (min, max) camera angular speed, degrees/s.
        camera_wobble_m: max amplitude of the smooth sinusoidal wobble added to the camera path.
        p_object_rests: probability that a dynamic object's schedule has rest segments (move,
            rest, move ...); otherwise it moves in every frame.
        min_move_frames: minimum length of a move segment, frames (intervals of motion).
        min_rest_frames: minimum length of a rest segment, frames.
        max_segment_frames: maximum length of a move or rest segment, frames.
        hard_near_depth_m: (min, max) depth of the near static object in hard-parallax scenes.
        hard_far_depth_m: (min, max) depth of moving objects in hard-parallax scenes.
        hard_parallax_ratio: in hard-parallax scenes the near static object's mean per-frame
            image displacement is at least this many times every moving object's largest one.
        texture_size: side of an object texture / alpha mask, texels.
        background_texture_size: side of a background-plane texture, texels.
        near_clip_m: surfaces closer than this to the camera are not drawn, m.
    """

    height: int = 128
    width: int = 128
    fov_deg: float = 60.0
    fps: float = 10.0
    num_frames: int = 24
    seed: int = 0
    start_time_ns: int = 0
    scene_kind: Literal["random", "dynamic", "static", "hard_parallax"] = "random"
    p_static_scene: float = 0.15
    p_hard_parallax: float = 0.2
    num_background_planes: int = 3
    num_static_objects: tuple[int, int] = (2, 5)
    num_moving_objects: tuple[int, int] = (1, 3)
    object_angular_size_deg: tuple[float, float] = (8.0, 30.0)
    object_depth_m: tuple[float, float] = (2.5, 14.0)
    wall_depth_m: tuple[float, float] = (16.0, 26.0)
    back_plane_depth_m: tuple[float, float] = (30.0, 45.0)
    camera_height_m: tuple[float, float] = (1.2, 2.0)
    object_speed_mps: tuple[float, float] = (0.4, 1.5)
    object_vertical_fraction: float = 0.25
    camera_speed_mps: tuple[float, float] = (0.2, 1.0)
    camera_forward_fraction: float = 0.4
    camera_rot_speed_dps: tuple[float, float] = (0.0, 8.0)
    camera_wobble_m: float = 0.05
    p_object_rests: float = 0.7
    min_move_frames: int = 3
    min_rest_frames: int = 3
    max_segment_frames: int = 12
    hard_near_depth_m: tuple[float, float] = (1.6, 3.0)
    hard_far_depth_m: tuple[float, float] = (12.0, 20.0)
    hard_parallax_ratio: float = 2.0
    texture_size: int = 64
    background_texture_size: int = 256
    near_clip_m: float = 0.3

    def __post_init__(self) -> None:
        if self.height < 8 or self.width < 8:
            raise ValueError(f"image must be at least 8x8 px, got {self.width}x{self.height}")
        if not 1.0 < self.fov_deg < 170.0:
            raise ValueError(f"fov_deg must be in (1, 170), got {self.fov_deg}")
        if self.fps <= 0 or self.num_frames < 2:
            raise ValueError("need fps > 0 and num_frames >= 2")
        if self.scene_kind not in ("random", *_KINDS):
            raise ValueError(f"unknown scene_kind {self.scene_kind!r}")
        if not 0.0 <= self.p_static_scene + self.p_hard_parallax <= 1.0:
            raise ValueError("p_static_scene + p_hard_parallax must lie in [0, 1]")
        if self.num_background_planes < 1:
            raise ValueError("need at least the back plane (num_background_planes >= 1)")
        for name in ("num_static_objects", "num_moving_objects"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be 0 <= min <= max, got {(lo, hi)}")
        if self.num_static_objects[1] + self.num_moving_objects[1] > 255:
            raise ValueError("at most 255 objects: labels are written as 8-bit PNGs")
        if self.num_moving_objects[1] > 20:
            # The official MOS-I evaluator has 20 object channels (time_anno.py).
            raise ValueError("at most 20 moving objects (MOS-I object channels)")
        if self.camera_speed_mps[0] <= 0:
            raise ValueError("camera_speed_mps min must be > 0: the camera must translate")
        if self.object_speed_mps[0] <= 0:
            raise ValueError("object_speed_mps min must be > 0")
        if min(self.min_move_frames, self.min_rest_frames) < 1:
            raise ValueError("min_move_frames and min_rest_frames must be >= 1")
        if self.max_segment_frames < max(self.min_move_frames, self.min_rest_frames):
            raise ValueError("max_segment_frames must be >= the minimum segment lengths")
        if self.hard_parallax_ratio < 1.0:
            raise ValueError("hard_parallax_ratio must be >= 1")

    @property
    def dt(self) -> float:
        """Time between frames, s."""
        return 1.0 / self.fps

    def with_seed(self, seed: int) -> SceneConfig:
        """A copy with another seed."""
        return dataclasses.replace(self, seed=int(seed))


@dataclass
class Sprite:
    """A textured planar quad. Texel (s, r) (column s, row r, integer = texel centre) sits at
    world point `origin[t] + s * axis_u + r * axis_v` at frame t.

    Attributes:
        rgba: (S_h, S_w, 4) uint8 texture; alpha >= 128 is inside the sprite.
        axis_u: (3,) float64 world step per texel along texture columns, m.
        axis_v: (3,) float64 world step per texel along texture rows, m.
        origin: (T, 3) float64 world position of texel (0, 0) per frame, m.
        instance_id: label 1..K of an object, 0 for a background plane.
        is_dynamic: True if the sprite's world position ever changes.
    """

    rgba: np.ndarray
    axis_u: np.ndarray
    axis_v: np.ndarray
    origin: np.ndarray
    instance_id: int = 0
    is_dynamic: bool = False

    @property
    def normal(self) -> np.ndarray:
        """(3,) float64 unit normal of the plane (sign arbitrary)."""
        n = np.cross(self.axis_u, self.axis_v)
        return n / np.linalg.norm(n)

    def alpha_centroid_texel(self) -> np.ndarray:
        """(2,) float64 (s, r) mean texel coordinate of the inside (alpha >= 128) region."""
        rows, cols = np.nonzero(self.rgba[..., 3] >= _ALPHA_ON)
        return np.array([cols.mean(), rows.mean()])

    def centroid_world(self) -> np.ndarray:
        """(T, 3) float64 world position of the alpha-area centroid per frame, m."""
        s, r = self.alpha_centroid_texel()
        return self.origin + s * self.axis_u + r * self.axis_v


@dataclass
class SceneLayout:
    """Everything `render_layout` needs: camera, sprites and motion ground truth.

    Attributes:
        config: the generating config (image size, fps, near clip).
        intrinsics: (3, 3) float64 pinhole K, px.
        cam_to_world: (T, 4, 4) float64 camera poses (OpenCV axes), m.
        background: background planes (instance_id 0), any order.
        objects: objects, `objects[k].instance_id == k + 1`.
        motion_state: (T, K) bool, see the module docstring.
        scene_kind: "dynamic", "static" or "hard_parallax".
    """

    config: SceneConfig
    intrinsics: np.ndarray
    cam_to_world: np.ndarray
    background: list[Sprite]
    objects: list[Sprite]
    motion_state: np.ndarray
    scene_kind: SceneKind = "dynamic"


@dataclass
class MosILabels:
    """Gmos-2K-style labels: dynamic objects only, re-indexed 1..M, with motion intervals.

    Attributes:
        labels: (T, H, W) uint16 label maps; 0 = background and static objects, m = the m-th
            dynamic object (in ascending original id), in every frame it is visible, whether or
            not it is moving at that frame (Gmos-2K `annotations/` convention).
        intervals: m -> inclusive [start, end] frame intervals in which object m is moving.
        original_ids: (M,) uint16 original instance id of re-indexed object m = index + 1.
    """

    labels: np.ndarray
    intervals: dict[int, list[tuple[int, int]]]
    original_ids: np.ndarray


@dataclass
class SceneSample:
    """One rendered scene with pixel-perfect ground truth. T frames, K objects.

    Attributes:
        frames: (T, H, W, 3) uint8 RGB.
        instance_masks: (T, H, W) uint16 visible-part labels: 0 = background planes,
            k in 1..K = object k (static or moving).
        depth: (T, H, W) float32 z-depth (distance along the optical axis), m.
        intrinsics: (3, 3) float64 pinhole K, px.
        cam_to_world: (T, 4, 4) float64 camera-to-world poses, m (OpenCV camera axes).
        stamps_ns: (T,) int64 frame timestamps, ns (start_time_ns + t / fps).
        object_ids: (K,) uint16, 1..K.
        object_is_dynamic: (K,) bool, object k+1 moves in at least one frame.
        motion_state: (T, K) bool, object k+1 moves in the world at frame t (see module doc).
        object_centroid_world: (T, K, 3) float64 world position of each object's alpha-area
            centroid, m (re-project it with `project_points` to predict image positions).
        object_normal_world: (K, 3) float64 unit plane normal of each object (constant).
        scene_kind: "dynamic", "static" or "hard_parallax".
        config: the config that generated the sample.
    """

    frames: np.ndarray
    instance_masks: np.ndarray
    depth: np.ndarray
    intrinsics: np.ndarray
    cam_to_world: np.ndarray
    stamps_ns: np.ndarray
    object_ids: np.ndarray
    object_is_dynamic: np.ndarray
    motion_state: np.ndarray
    object_centroid_world: np.ndarray
    object_normal_world: np.ndarray
    scene_kind: str
    config: SceneConfig = field(default_factory=SceneConfig)

    @property
    def num_frames(self) -> int:
        """T."""
        return int(self.frames.shape[0])

    @property
    def num_objects(self) -> int:
        """K (static + dynamic)."""
        return int(self.object_ids.shape[0])

    @property
    def dynamic_ids(self) -> np.ndarray:
        """(M,) uint16 ascending original ids of the dynamic objects."""
        return self.object_ids[self.object_is_dynamic]

    def moving_masks(self, t: int, instantaneous: bool = False) -> np.ndarray:
        """Gmos-2K-style label map of frame t: dynamic objects only, re-indexed 1..M.

        Args:
            t: frame index.
            instantaneous: if True, also drop dynamic objects that are at rest at frame t
                (the MOS-I "actively moving" set); `> 0` of the result is then the Gmos-S
                foreground mask.

        Returns:
            (H, W) uint16; 0 = background, static objects (and resting ones if instantaneous).
        """
        lut = self._reindex_lut(self.motion_state[t] if instantaneous else None)
        return lut[self.instance_masks[t]]

    def mos_i_labels(self) -> MosILabels:
        """Dynamic-only re-indexed label maps for all frames plus motion intervals.

        Gmos-2K's annotation rule (paper App. D): an object counts as moving only while it is
        visible, so the intervals cover the frames where the object moves *and* has pixels.
        (Otherwise the official MOS-I formula divides by ~1e-8 on a sequence whose only moving
        frames are invisible ones.) An object that never moves visibly gets no entry.
        """
        lut = self._reindex_lut(None)
        dyn = np.flatnonzero(self.object_is_dynamic)
        intervals = {}
        for m, k in enumerate(dyn.tolist()):
            visible = (self.instance_masks == self.object_ids[k]).any(axis=(1, 2))
            ivs = motion_intervals(self.motion_state[:, k] & visible)
            if ivs:
                intervals[m + 1] = ivs
        return MosILabels(
            labels=lut[self.instance_masks],
            intervals=intervals,
            original_ids=self.object_ids[dyn].copy(),
        )

    def _reindex_lut(self, moving_now: np.ndarray | None) -> np.ndarray:
        # Lookup table original id -> re-indexed id (0 for dropped objects); indexing a LUT
        # with the whole label map is one vectorised gather.
        lut = np.zeros(self.num_objects + 1, dtype=np.uint16)
        m = 0
        for k in range(self.num_objects):
            if self.object_is_dynamic[k]:
                m += 1
                if moving_now is None or moving_now[k]:
                    lut[k + 1] = m
        return lut


@dataclass
class StageTimes:
    """Accumulated wall-clock time per generation stage, s (for the benchmark).

    Attributes:
        layout: sampling camera, objects, trajectories and textures.
        warp: `cv2.warpPerspective` of the sprites.
        composite: inverse-depth computation and z-buffered compositing.
        finalise: depth inversion and packing the output arrays.
    """

    layout: float = 0.0
    warp: float = 0.0
    composite: float = 0.0
    finalise: float = 0.0

    def total(self) -> float:
        """Sum of all stages, s."""
        return self.layout + self.warp + self.composite + self.finalise


# ----------------------------------------------------------------------------------------------
# Geometry helpers
# ----------------------------------------------------------------------------------------------


def intrinsics_from_fov(width: int, height: int, fov_deg: float) -> np.ndarray:
    """Pinhole intrinsics from a horizontal field of view (square pixels).

    Args:
        width: image width, px.
        height: image height, px.
        fov_deg: horizontal field of view, degrees.

    Returns:
        (3, 3) float64 K with fx = fy = (W / 2) / tan(fov / 2) and principal point at the image
        centre in the pixel-centre convention, ((W - 1) / 2, (H - 1) / 2).
    """
    f = 0.5 * width / math.tan(math.radians(fov_deg) / 2.0)
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def _rot_xyz(rx: float, ry: float, rz: float) -> np.ndarray:
    """(3, 3) rotation Rz(rz) @ Ry(ry) @ Rx(rx), angles in radians."""
    cx, sx = math.cos(rx), math.sin(rx)
    cy, sy = math.cos(ry), math.sin(ry)
    cz, sz = math.cos(rz), math.sin(rz)
    rot_x = np.array([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]])
    rot_y = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    rot_z = np.array([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]])
    return rot_z @ rot_y @ rot_x


def project_points(
    points_world: np.ndarray, cam_to_world: np.ndarray, intrinsics: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Project world points into one camera.

    Args:
        points_world: (..., 3) world points, m.
        cam_to_world: (4, 4) camera pose.
        intrinsics: (3, 3) K.

    Returns:
        uv: (..., 2) float64 pixel coordinates (pixel-centre convention);
        z: (...,) float64 camera z-depth, m (<= 0 means behind the camera).
    """
    rot = cam_to_world[:3, :3]
    pc = (np.asarray(points_world, dtype=np.float64) - cam_to_world[:3, 3]) @ rot
    z = pc[..., 2]
    uvw = pc @ intrinsics.T
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = uvw[..., :2] / uvw[..., 2:3]
    return uv, z


def motion_intervals(states: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive [start, end] runs of True in a (T,) bool vector, in frame indices."""
    s = np.asarray(states, dtype=bool)
    padded = np.concatenate([[False], s, [False]]).astype(np.int8)
    d = np.diff(padded)
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1) - 1
    return [(int(a), int(b)) for a, b in zip(starts, ends)]


# ----------------------------------------------------------------------------------------------
# Procedural textures and shapes
# ----------------------------------------------------------------------------------------------


def _value_noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w) float32 multi-octave smooth noise in [0, 1]."""
    acc = np.zeros((h, w), np.float32)
    total = 0.0
    base = int(rng.integers(2, 6))
    for octave in range(int(rng.integers(2, 5))):
        cells = base * 2**octave
        amp = 0.55**octave
        grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
        # Cubic upsampling of a coarse random grid = cheap smooth noise at that scale.
        acc += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
    acc /= total
    lo, hi = float(acc.min()), float(acc.max())
    return (acc - lo) / max(hi - lo, 1e-6)


@functools.lru_cache(maxsize=8)
def _pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Cached read-only (h, w) float32 row and column index grids."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


def _scalar_field(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w) float32 pattern in [0, 1]: noise, stripes, checker or blobs."""
    kind = int(rng.integers(0, 4))
    if kind == 0:
        return _value_noise(rng, h, w)
    yy, xx = _pixel_grid(h, w)
    theta = rng.uniform(0, math.pi)
    u = (xx * math.cos(theta) + yy * math.sin(theta)) / w
    v = (-xx * math.sin(theta) + yy * math.cos(theta)) / w
    if kind == 1:
        freq = rng.uniform(2.0, 12.0)
        f = 0.5 + 0.5 * np.sin(2 * math.pi * freq * u + rng.uniform(0, 2 * math.pi))
        sharp = rng.uniform(1.0, 6.0)  # from sinusoidal to nearly square-wave stripes
        return (0.5 + 0.5 * np.tanh(sharp * (f - 0.5) * 2) / math.tanh(sharp)).astype(np.float32)
    if kind == 2:
        cells = rng.uniform(2.0, 10.0)
        f = (np.floor(u * cells) + np.floor(v * cells)) % 2
        return f.astype(np.float32)
    canvas = np.full((h, w), rng.random(), np.float32)
    for _ in range(int(rng.integers(3, 15))):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        radius = int(rng.integers(max(1, w // 20), max(2, w // 4)))
        cv2.circle(canvas, centre, radius, float(rng.random()), -1, lineType=cv2.LINE_AA)
    return canvas


def _colourise(rng: np.random.Generator, f: np.ndarray) -> np.ndarray:
    """Map a [0, 1] field through a random 2-4 colour ramp -> (h, w, 3) float32 in [0, 255]."""
    n = int(rng.integers(2, 5))
    colours = rng.uniform(0, 255, size=(n, 3)).astype(np.float32)
    # A 256-entry lookup table is much cheaper than interpolating every texel.
    ramp = np.linspace(0.0, n - 1.0, 256)
    lut = np.stack([np.interp(ramp, np.arange(n), colours[:, c]) for c in range(3)], axis=1)
    idx = np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return lut.astype(np.float32)[idx]


def random_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A procedural texture; the same distribution is used for every sprite.

    Args:
        rng: random generator (consumed deterministically).
        height: texture rows.
        width: texture columns.

    Returns:
        (height, width, 3) uint8 RGB.
    """
    img = _colourise(rng, _scalar_field(rng, height, width))
    if rng.random() < 0.5:
        # Mix two patterns through a smooth noise mask: richer, less "synthetic" textures.
        other = _colourise(rng, _scalar_field(rng, height, width))
        mask = _value_noise(rng, height, width)[..., None]
        img = img * mask + other * (1 - mask)
    grain = rng.uniform(0.0, 12.0)
    # Luminance grain (one channel, broadcast): a third of the cost of per-channel noise.
    img += grain * rng.standard_normal((height, width, 1), dtype=np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def random_shape_alpha(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random cut-out shape: ellipse, star/convex polygon, smooth blob or rotated rectangle.

    Args:
        rng: random generator.
        size: side of the square alpha mask, texels.

    Returns:
        (size, size) uint8 alpha, 255 inside, 0 outside; the shape spans most of the square and
        covers at least 15 % of it (slivers, e.g. a thin random triangle, are redrawn).
    """
    for _ in range(8):
        alpha = _shape_alpha_once(rng, size)
        if (alpha > 0).mean() >= 0.15:
            break
    return alpha


def _shape_alpha_once(rng: np.random.Generator, size: int) -> np.ndarray:
    alpha = np.zeros((size, size), np.uint8)
    c = (size - 1) / 2.0
    r_max = 0.48 * size
    kind = int(rng.integers(0, 4))
    shift = 4  # cv2 fixed-point bits: sub-texel accurate outlines
    scale = 1 << shift
    if kind == 0:
        axes = (int(r_max * scale), int(r_max * rng.uniform(0.45, 1.0) * scale))
        cv2.ellipse(
            alpha,
            (int(c * scale), int(c * scale)),
            axes,
            rng.uniform(0, 180),
            0,
            360,
            255,
            -1,
            lineType=cv2.LINE_8,
            shift=shift,
        )
        return alpha
    if kind == 1:
        n = int(rng.integers(3, 9))
        ang = np.sort(rng.uniform(0, 2 * math.pi, n))
        rad = r_max * rng.uniform(0.55, 1.0, n)
    elif kind == 2:
        n = 48
        ang = np.linspace(0, 2 * math.pi, n, endpoint=False)
        rad = np.ones(n)
        for harmonic in range(2, 6):  # a few random Fourier harmonics -> smooth blob outline
            rad += rng.uniform(0, 0.25) * np.cos(harmonic * ang + rng.uniform(0, 2 * math.pi))
        rad = r_max * rad / rad.max()
    else:
        # Half extents chosen so that the corners stay within r_max of the centre.
        aspect = rng.uniform(0.4, 1.0)
        half = r_max / math.hypot(1.0, aspect) * np.array([1.0, aspect])
        ang0 = rng.uniform(0, math.pi)
        corners = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]]) * half
        rot = np.array([[math.cos(ang0), -math.sin(ang0)], [math.sin(ang0), math.cos(ang0)]])
        pts = corners @ rot.T + c
        cv2.fillPoly(alpha, [np.round(pts * scale).astype(np.int32)], 255, cv2.LINE_8, shift)
        return alpha
    pts = np.stack([c + rad * np.cos(ang), c + rad * np.sin(ang)], axis=1)
    cv2.fillPoly(alpha, [np.round(pts * scale).astype(np.int32)], 255, cv2.LINE_8, shift)
    return alpha


# ----------------------------------------------------------------------------------------------
# Layout sampling
# ----------------------------------------------------------------------------------------------


def _uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


def _camera_trajectory(
    rng: np.random.Generator, cfg: SceneConfig, ts: np.ndarray, kind: SceneKind
) -> np.ndarray:
    """(T, 4, 4) smooth camera poses: constant-velocity travel + sinusoidal wobble, and a
    constant angular velocity + wobble in roll/pitch/yaw. Pose 0 is near the identity."""
    speed = _uniform(rng, cfg.camera_speed_mps)
    fwd_frac = cfg.camera_forward_fraction
    rot_scale = 1.0
    if kind == "hard_parallax":
        # Hard parallax needs sideways travel (forward travel gives little parallax near the
        # image centre) and little rotation (rotation shifts near and far points alike).
        lo, hi = cfg.camera_speed_mps
        speed = float(rng.uniform(0.5 * (lo + hi), hi))
        fwd_frac = min(fwd_frac, 0.1)
        rot_scale = 0.2
    # Mostly sideways travel: a vertical share of at most 0.3, a bounded forward share, and the
    # rest along world x (left or right).
    vert = rng.uniform(-0.3, 0.3)
    fwd = rng.uniform(-fwd_frac, fwd_frac)
    side = math.sqrt(max(1.0 - vert**2 - fwd**2, 0.0)) * (1.0 if rng.random() < 0.5 else -1.0)
    direction = np.array([side, vert, fwd])
    direction /= np.linalg.norm(direction)
    amp = rng.uniform(0, cfg.camera_wobble_m, 3)
    freq = rng.uniform(0.2, 1.0, 3)
    phase = rng.uniform(0, 2 * math.pi, 3)
    wob = amp * (np.sin(2 * math.pi * freq * ts[:, None] + phase) - np.sin(phase))
    centres = speed * ts[:, None] * direction + wob

    omega_mag = math.radians(_uniform(rng, cfg.camera_rot_speed_dps)) * rot_scale
    omega_dir = rng.normal(size=3) * np.array([1.0, 1.0, 0.3])  # roll rates are smaller
    omega = omega_mag * omega_dir / max(np.linalg.norm(omega_dir), 1e-9)
    angles0 = np.radians([rng.uniform(-4, 4), rng.uniform(-4, 4), rng.uniform(-2, 2)])
    ramp = np.radians(rng.uniform(0, 1.0, 3)) * rot_scale
    rfreq = rng.uniform(0.3, 1.2, 3)
    rphase = rng.uniform(0, 2 * math.pi, 3)
    poses = np.tile(np.eye(4), (len(ts), 1, 1))
    for i, t in enumerate(ts):
        ang = angles0 + omega * t + ramp * np.sin(2 * math.pi * rfreq * t + rphase)
        poses[i, :3, :3] = _rot_xyz(*ang)
        poses[i, :3, 3] = centres[i]
    return poses


def _motion_schedule(rng: np.random.Generator, cfg: SceneConfig) -> np.ndarray:
    """(T-1,) bool: the object moves during interval [t, t+1). Alternating move / rest
    segments with the configured minimum lengths; at least `min_move_frames` of motion."""
    n = cfg.num_frames - 1
    if rng.random() >= cfg.p_object_rests:
        return np.ones(n, bool)
    segments: list[tuple[bool, int]] = []
    state = bool(rng.random() < 0.5)
    used = 0
    while used < n:
        lo = cfg.min_move_frames if state else cfg.min_rest_frames
        length = int(rng.integers(lo, cfg.max_segment_frames + 1))
        length = min(length, n - used)
        if length < lo and segments:
            # A truncated tail shorter than its minimum is merged into the previous segment.
            prev_state, prev_len = segments[-1]
            segments[-1] = (prev_state, prev_len + length)
        else:
            segments.append((state, length))
        used += length
        state = not state
    sched = np.concatenate([np.full(length, s, bool) for s, length in segments])
    if sched.sum() < min(cfg.min_move_frames, n):
        start = int(rng.integers(0, n - min(cfg.min_move_frames, n) + 1))
        sched[start : start + cfg.min_move_frames] = True
    return sched


def _corner_depths(sprite: Sprite, poses: np.ndarray) -> np.ndarray:
    """(T, 4) camera z of the sprite's texture corners at every frame, m."""
    h, w = sprite.rgba.shape[:2]
    offs = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])
    corners = (
        sprite.origin[:, None, :]
        + offs[None, :, 0:1] * sprite.axis_u
        + offs[None, :, 1:2] * sprite.axis_v
    )  # (T, 4, 3)
    rel = corners - poses[:, None, :3, 3]
    return np.einsum("tci,ti->tc", rel, poses[:, :3, 2])


def _image_speed(centroids: np.ndarray, poses: np.ndarray, k: np.ndarray) -> np.ndarray:
    """(T-1,) per-frame image displacement of a world point track, px/frame."""
    uv = np.stack([project_points(centroids[t], poses[t], k)[0] for t in range(len(poses))])
    return np.linalg.norm(np.diff(uv, axis=0), axis=1)


def sample_layout(cfg: SceneConfig, rng: np.random.Generator | None = None) -> SceneLayout:
    """Sample the camera path, background planes, objects, textures and motion schedules.

    Args:
        cfg: scene config.
        rng: generator to draw from; default `np.random.default_rng(cfg.seed)`.

    Returns:
        A SceneLayout ready for `render_layout`.
    """
    rng = np.random.default_rng(cfg.seed) if rng is None else rng
    T = cfg.num_frames
    ts = np.arange(T) * cfg.dt
    t_mid = T // 2
    k = intrinsics_from_fov(cfg.width, cfg.height, cfg.fov_deg)
    k_inv = np.linalg.inv(k)

    if cfg.scene_kind == "random":
        u = rng.random()
        kind: SceneKind = (
            "static"
            if u < cfg.p_static_scene
            else "hard_parallax"
            if u < cfg.p_static_scene + cfg.p_hard_parallax
            else "dynamic"
        )
    else:
        kind = cfg.scene_kind
    poses = _camera_trajectory(rng, cfg, ts, kind)
    # The camera must stay above the ground (y = cam_h) along its whole path.
    cam_h = max(_uniform(rng, cfg.camera_height_m), float(poses[:, 1, 3].max()) + 0.5)
    half_fov = math.atan(math.hypot(cfg.width, cfg.height) / 2 / k[0, 0])
    travel = float(np.linalg.norm(poses[:, :3, 3], axis=1).max())
    bts = cfg.background_texture_size

    def tex_rgba(h: int, w: int, alpha: np.ndarray | None = None) -> np.ndarray:
        rgba = np.empty((h, w, 4), np.uint8)
        rgba[..., :3] = random_texture(rng, h, w)
        rgba[..., 3] = 255 if alpha is None else alpha
        return rgba

    # --- background planes (label 0) ---------------------------------------------------------
    background: list[Sprite] = []
    back_z = _uniform(rng, cfg.back_plane_depth_m)
    # Large enough to fill the view from anywhere on the path, under any rotation we use.
    half = back_z * math.tan(min(half_fov + math.radians(10), math.radians(85))) + travel + 1.0
    step = 2 * half / bts
    background.append(
        Sprite(
            rgba=tex_rgba(bts, bts),
            axis_u=np.array([step, 0.0, 0.0]),
            axis_v=np.array([0.0, step, 0.0]),
            origin=np.tile([-half, -half, back_z], (T, 1)),
        )
    )
    if cfg.num_background_planes >= 2:
        # Ground: horizontal plane y = cam_h from behind the camera to the back plane. Rows run
        # towards the camera, so the far edge is row 0.
        z_far, z_near = back_z, -5.0
        step_x, step_z = 2 * half / bts, (z_far - z_near) / bts
        background.append(
            Sprite(
                rgba=tex_rgba(bts, bts),
                axis_u=np.array([step_x, 0.0, 0.0]),
                axis_v=np.array([0.0, 0.0, -step_z]),
                origin=np.tile([-half, cam_h, z_far], (T, 1)),
            )
        )
    for _ in range(max(0, cfg.num_background_planes - 2)):
        z = _uniform(rng, cfg.wall_depth_m)
        w_m = rng.uniform(4.0, 16.0)
        h_m = rng.uniform(3.0, 12.0)
        x_c = rng.uniform(-0.8, 0.8) * z * math.tan(math.radians(cfg.fov_deg) / 2)
        tex = max(16, bts // 2)
        background.append(
            Sprite(
                rgba=tex_rgba(tex, tex),
                axis_u=np.array([w_m / tex, 0.0, 0.0]),
                axis_v=np.array([0.0, h_m / tex, 0.0]),
                # Walls stand on the ground (bottom edge at y = cam_h) or float if no ground.
                origin=np.tile([x_c - w_m / 2, cam_h - h_m, z], (T, 1)),
            )
        )

    # --- objects -----------------------------------------------------------------------------
    n_static = int(rng.integers(cfg.num_static_objects[0], cfg.num_static_objects[1] + 1))
    n_moving = int(rng.integers(cfg.num_moving_objects[0], cfg.num_moving_objects[1] + 1))
    if kind == "static":
        n_moving = 0
    if kind == "hard_parallax":
        n_static = max(n_static, 1)
        n_moving = max(n_moving, 1)
    tex = cfg.texture_size
    min_depth = cfg.near_clip_m + 0.5
    ground_y = cam_h if cfg.num_background_planes >= 2 else math.inf

    def place(depth_range: tuple[float, float], track: np.ndarray) -> Sprite:
        """An object whose texture centre follows `track` (T, 3) offsets around an anchor
        drawn in the mid-frame view at a depth from `depth_range`; retried until it stays in
        front of the camera at every frame."""
        alpha = random_shape_alpha(rng, tex)
        rgba = tex_rgba(tex, tex, alpha)
        tilt = _rot_xyz(math.radians(rng.uniform(-25, 25)), math.radians(rng.uniform(-25, 25)), 0)
        tan_half = math.tan(math.radians(_uniform(rng, cfg.object_angular_size_deg)) / 2)
        sprite = Sprite(rgba, tilt[:, 0], tilt[:, 1], np.zeros((T, 3)))
        for attempt in range(20):
            margin = 0.1
            pix = np.array(
                [
                    rng.uniform(margin, 1 - margin) * (cfg.width - 1),
                    rng.uniform(margin, 1 - margin) * (cfg.height - 1),
                    1.0,
                ]
            )
            z = _uniform(rng, depth_range) + attempt * 0.5  # push back if it keeps failing
            size_m = 2 * z * tan_half
            sprite.axis_u, sprite.axis_v = tilt[:, 0] * size_m / tex, tilt[:, 1] * size_m / tex
            centre_off = (tex - 1) / 2.0 * (sprite.axis_u + sprite.axis_v)
            anchor = poses[t_mid, :3, :3] @ (z * (k_inv @ pix)) + poses[t_mid, :3, 3]
            centres = anchor + track - track.mean(axis=0)
            # Keep objects above the ground plane (resting on it at worst) so they stay visible.
            overshoot = centres[:, 1].max() + size_m / 2 - ground_y
            if overshoot > 0:
                centres[:, 1] -= overshoot
            sprite.origin = centres - centre_off
            if _corner_depths(sprite, poses).min() >= min_depth:
                break
        return sprite

    objects: list[Sprite] = []
    states: list[np.ndarray] = []
    for i in range(n_static):
        near = kind == "hard_parallax" and i == 0
        depth_range = cfg.hard_near_depth_m if near else cfg.object_depth_m
        objects.append(place(depth_range, np.zeros((T, 3))))
        states.append(np.zeros(T, bool))
    for _ in range(n_moving):
        sched = _motion_schedule(rng, cfg)
        vel = np.zeros((T - 1, 3))
        direction = np.zeros(3)
        for t in range(T - 1):
            if not sched[t]:
                continue
            if t == 0 or not sched[t - 1]:
                # New move segment: new speed, and (usually) a new heading.
                speed = _uniform(rng, cfg.object_speed_mps)
                if not direction.any() or rng.random() < 0.6:
                    d = rng.normal(size=3)
                    d[1] *= cfg.object_vertical_fraction
                    d[2] *= 0.5
                    direction = d / max(np.linalg.norm(d), 1e-9)
            vel[t] = speed * direction
        track = np.concatenate([np.zeros((1, 3)), np.cumsum(vel * cfg.dt, axis=0)])
        depth_range = cfg.hard_far_depth_m if kind == "hard_parallax" else cfg.object_depth_m
        sprite = place(depth_range, track)
        sprite.is_dynamic = True
        objects.append(sprite)
        states.append(np.concatenate([sched, sched[-1:]]))

    if kind == "hard_parallax":
        _enforce_hard_parallax(cfg, objects, poses, k)

    # Shuffle ids so that id order says nothing about which objects move.
    order = rng.permutation(len(objects))
    objects = [objects[i] for i in order]
    motion = (
        np.stack([states[i] for i in order], axis=1) if len(objects) else np.zeros((T, 0), bool)
    )
    for new_id, sprite in enumerate(objects, start=1):
        sprite.instance_id = new_id
    return SceneLayout(cfg, k, poses, background, objects, motion, kind)


def _enforce_hard_parallax(
    cfg: SceneConfig,
    objects: list[Sprite],
    poses: np.ndarray,
    k: np.ndarray,
) -> None:
    """Slow the far moving objects (about their mean position) until the near static object
    (objects[0]) moves `hard_parallax_ratio` times more in the image than any of them."""
    near = objects[0]
    near_speed = float(_image_speed(near.centroid_world(), poses, k).mean())
    for sprite in objects:
        if not sprite.is_dynamic:
            continue
        for _ in range(12):
            far_speed = float(_image_speed(sprite.centroid_world(), poses, k).max())
            if near_speed >= cfg.hard_parallax_ratio * far_speed:
                break
            mean = sprite.origin.mean(axis=0)
            # Scaling the track about its mean scales every velocity: the motion schedule
            # (which intervals have speed > 0) is unchanged.
            sprite.origin = mean + 0.6 * (sprite.origin - mean)


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------


def render_layout(
    layout: SceneLayout,
    timings: StageTimes | None = None,
    frames: Sequence[int] | None = None,
) -> SceneSample:
    """Render a layout: homography warp per sprite, z-buffered compositing, labels, depth.

    For each frame, sprite texel (s, r) maps to the image by the homography
    H = K R^T [axis_u | axis_v | origin - c] (R, c: camera rotation and centre). Its inverse
    depth is affine in the pixel: 1/z = (n_c . K^-1 [x, y, 1]) / (n_c . p_c) for the plane
    normal n_c and a plane point p_c in camera coordinates, so the z-buffer compares exact
    per-pixel plane depths, and the visible id at each pixel is the nearest surface.

    Args:
        layout: camera, sprites, motion ground truth.
        timings: if given, stage times are added to it.
        frames: render only these frame indices (training windows need 1-5 of a scene's
            frames); the sample then holds len(frames) frames in this order, and its
            per-frame arrays (poses, motion state, stamps, centroids) are subset to match.
            None renders every frame.

    Returns:
        The SceneSample.
    """
    cfg = layout.config
    H, W = cfg.height, cfg.width
    sel = np.arange(cfg.num_frames) if frames is None else np.asarray(frames, dtype=np.int64)
    if sel.ndim != 1 or (sel.size and (sel.min() < 0 or sel.max() >= cfg.num_frames)):
        raise ValueError(f"frames must be indices in [0, {cfg.num_frames}), got {frames!r}")
    T = int(sel.size)
    k = layout.intrinsics
    k_inv_t = np.linalg.inv(k).T
    n_obj = len(layout.objects)
    out_rgb = np.zeros((T, H, W, 3), np.uint8)
    ids = np.zeros((T, H, W), np.uint16)
    inv_depth = np.zeros((T, H, W), np.float32)
    xs = np.arange(W, dtype=np.float32)
    ys = np.arange(H, dtype=np.float32)[:, None]
    max_inv = np.float32(1.0 / cfg.near_clip_m)
    sprites = layout.background + layout.objects
    # Per-sprite constants, hoisted out of the frame loop.
    normals = [sp.normal for sp in sprites]
    corner_texels = []
    padded = []
    for sp in sprites:
        h_s, w_s = sp.rgba.shape[:2]
        corner_texels.append(
            np.array(
                [
                    [-0.5, -0.5, 1],
                    [w_s - 0.5, -0.5, 1],
                    [w_s - 0.5, h_s - 0.5, 1],
                    [-0.5, h_s - 0.5, 1],
                ]
            )
        )
        # One replicated texel of transparent border: bilinear sampling at the quad's edge
        # then mixes the edge colour with itself instead of with black, and alpha crosses
        # 128 at the texture's outer edge (texel -0.5 / S - 0.5), exactly the quad outline.
        pad = cv2.copyMakeBorder(sp.rgba, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
        pad[0, :, 3] = pad[-1, :, 3] = pad[:, 0, 3] = pad[:, -1, 3] = 0
        padded.append(pad)
    id_planes = {sp.instance_id: np.full((H, W), sp.instance_id, np.uint16) for sp in sprites}
    unpad = np.array([[1.0, 0.0, -1.0], [0.0, 1.0, -1.0], [0.0, 0.0, 1.0]])  # padded -> texel
    tw = time.perf_counter
    t_warp = t_comp = 0.0
    plane_to_cam = np.empty((3, 3))

    for i, t in enumerate(sel.tolist()):
        rot = layout.cam_to_world[t, :3, :3]
        centre = layout.cam_to_world[t, :3, 3]
        k_rt = k @ rot.T
        kinv_t_rt = k_inv_t @ rot.T
        rgb_buf, id_buf, iz_buf = out_rgb[i], ids[i], inv_depth[i]
        for sp, rgba, normal, corner_tex in zip(sprites, padded, normals, corner_texels):
            t0 = tw()
            rel = sp.origin[t] - centre
            plane_to_cam[:, 0], plane_to_cam[:, 1], plane_to_cam[:, 2] = sp.axis_u, sp.axis_v, rel
            hom = k_rt @ plane_to_cam
            corners = corner_tex @ hom.T
            if np.all(corners[:, 2] > cfg.near_clip_m):
                # Whole quad in front: only its projected bounding box needs warping.
                uv = corners[:, :2] / corners[:, 2:3]
                x0 = max(int(math.floor(uv[:, 0].min())), 0)
                y0 = max(int(math.floor(uv[:, 1].min())), 0)
                x1 = min(int(math.ceil(uv[:, 0].max())) + 1, W)
                y1 = min(int(math.ceil(uv[:, 1].max())) + 1, H)
                if x1 <= x0 or y1 <= y0:
                    t_warp += tw() - t0
                    continue
            else:
                # Quad crosses the camera plane (ground): warp everything; pixels whose ray
                # meets the plane behind the camera get 1/z <= 0 and are rejected below.
                x0, y0, x1, y1 = 0, 0, W, H
            shift = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]])
            warped = cv2.warpPerspective(
                rgba,
                shift @ hom @ unpad,
                (x1 - x0, y1 - y0),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=(0, 0, 0, 0),
            )
            t1 = tw()
            t_warp += t1 - t0
            # Plane inverse depth, affine in pixel coordinates.
            # 1/z = (K^-T R^T n) . [x, y, 1] / (n . (p - c)); rotations preserve the dot.
            # Python floats (not numpy float64 scalars) keep `iz` float32 under NEP 50, which
            # cv2.copyTo needs: a dtype mismatch would make it reallocate instead of writing.
            a, b, c = ((kinv_t_rt @ normal) / float(normal @ rel)).tolist()
            iz = a * xs[x0:x1] + b * ys[y0:y1] + c
            sub_iz = iz_buf[y0:y1, x0:x1]
            vis = (warped[..., 3] >= _ALPHA_ON) & (iz > sub_iz) & (iz < max_inv)
            # cv2.copyTo writes through the (non-contiguous) buffer views in place and is ~15x
            # faster than np.copyto(..., where=) here; the mask is the bool array as uint8.
            mask = vis.view(np.uint8)
            cv2.copyTo(iz, mask, sub_iz)
            cv2.copyTo(warped[..., :3], mask, rgb_buf[y0:y1, x0:x1])
            # Background planes write 0: a wall in front of an object hides its label too.
            cv2.copyTo(id_planes[sp.instance_id][: y1 - y0, : x1 - x0], mask, id_buf[y0:y1, x0:x1])
            t_comp += tw() - t1

    t2 = tw()
    with np.errstate(divide="ignore"):
        depth = np.where(inv_depth > 0, 1.0 / inv_depth, np.inf).astype(np.float32)
    centroids = (
        np.stack([sp.centroid_world()[sel] for sp in layout.objects], axis=1)
        if n_obj
        else np.zeros((T, 0, 3))
    )
    normals = np.stack([sp.normal for sp in layout.objects]) if n_obj else np.zeros((0, 3))
    stamps = cfg.start_time_ns + np.round(sel * (1e9 / cfg.fps)).astype(np.int64)
    sample = SceneSample(
        frames=out_rgb,
        instance_masks=ids,
        depth=depth,
        intrinsics=k.copy(),
        cam_to_world=layout.cam_to_world[sel].copy(),
        stamps_ns=stamps,
        object_ids=np.arange(1, n_obj + 1, dtype=np.uint16),
        object_is_dynamic=np.array([sp.is_dynamic for sp in layout.objects], bool),
        motion_state=layout.motion_state[sel].astype(bool),
        object_centroid_world=centroids,
        object_normal_world=normals,
        scene_kind=layout.scene_kind,
        config=cfg,
    )
    if timings is not None:
        timings.warp += t_warp
        timings.composite += t_comp
        timings.finalise += tw() - t2
    return sample


def generate_scene(config: SceneConfig, timings: StageTimes | None = None) -> SceneSample:
    """Sample and render one scene; a pure function of `config` (same seed -> same arrays).

    Args:
        config: scene config (its `seed` drives every random choice).
        timings: if given, per-stage times are added to it.

    Returns:
        The SceneSample.
    """
    t0 = time.perf_counter()
    layout = sample_layout(config)
    if timings is not None:
        timings.layout += time.perf_counter() - t0
    return render_layout(layout, timings)


def generate_dataset(
    configs: SceneConfig | Iterable[SceneConfig],
    seeds: Iterable[int] | None = None,
    progress: bool = False,
) -> Iterator[SceneSample]:
    """Lazily generate many scenes.

    Args:
        configs: one base config (then `seeds` is required and each seed replaces its seed) or
            an iterable of configs used as they are.
        seeds: scene seeds for a base config.
        progress: show a tqdm bar.

    Yields:
        SceneSample per config / seed, in order.
    """
    if isinstance(configs, SceneConfig):
        if seeds is None:
            raise ValueError("a single base config needs `seeds`")
        seed_list = list(seeds)
        cfg_iter: Iterable[SceneConfig] = (configs.with_seed(s) for s in seed_list)
        total: int | None = len(seed_list)
    else:
        if seeds is not None:
            raise ValueError("`seeds` only goes with a single base config")
        cfg_list = configs if isinstance(configs, Sequence) else list(configs)
        cfg_iter, total = cfg_list, len(cfg_list)
    for cfg in tqdm(cfg_iter, total=total, desc="synthetic scenes", disable=not progress):
        yield generate_scene(cfg)


def config_to_json(cfg: SceneConfig) -> str:
    """The config as a JSON object string (tuples become lists)."""
    return json.dumps(dataclasses.asdict(cfg), sort_keys=True)


def config_from_json(text: str) -> SceneConfig:
    """Inverse of `config_to_json`; unknown keys are rejected by the dataclass."""
    raw = json.loads(text)
    return SceneConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


def main(argv: list[str] | None = None) -> int:
    """CLI: write N synthetic scenes as a DAVIS-style folder (plus Gmos-2K-style labels).

    Args:
        argv: command-line arguments (default sys.argv[1:]).

    Returns:
        Process exit code.
    """
    from gmos_core.data.synthetic_writers import write_davis_style  # avoids an import cycle

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="output dataset root")
    p.add_argument("--num-scenes", type=int, default=8)
    p.add_argument("--seed", type=int, default=0, help="scene i uses seed + i")
    p.add_argument("--num-frames", type=int, default=SceneConfig.num_frames)
    p.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("W", "H"))
    p.add_argument("--dataset", default="synthetic", help="`dataset` column of the CSV")
    args = p.parse_args(argv)
    base = SceneConfig(width=args.size[0], height=args.size[1], num_frames=args.num_frames)
    seeds = [args.seed + i for i in range(args.num_scenes)]
    names = [f"synth_{s:06d}" for s in seeds]
    samples = generate_dataset(base, seeds)  # lazily; the writer shows the progress bar
    write_davis_style(samples, args.out, names, dataset=args.dataset)
    print(f"wrote {len(names)} scenes to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
