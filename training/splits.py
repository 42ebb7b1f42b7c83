"""The synthetic evaluation splits: the held-out test split (`gmos-benchmark`) and the clips
the tools score on (as the benchmark stores them), shared by the benchmark, `gmos-calibrate`,
the stride curve of `gmos-bench` and `gmos-gpu-check`.

Seeds: training draws below 700000, π³ validation and calibration 800000.., the held-out
split 900000.. (`HELD_OUT_SEED`).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from gmos_core.data.synthetic import SceneConfig, SceneSample, generate_scene
from gmos_core.data.synthetic_writers import write_davis_style
from gmos_core.geometry.camera import PinholeIntrinsics
from gmos_core.geometry.warp_decision import SensorFrame

HELD_OUT_SEED = 900_000
KINDS = ("dynamic", "hard_parallax", "dynamic")


@dataclass(frozen=True)
class SplitSpec:
    """The held-out split."""

    num_seqs: int = 30
    seed: int = HELD_OUT_SEED
    num_frames: int = 24
    fps: float = 10.0
    size: int = 128


def apply_tfa_rule(sample: SceneSample, min_px: int = 1) -> SceneSample:
    """Gmos-2K's annotation rule (App. D, TFA): an invisible object counts as static.

    The generator marks an object moving whenever it moves in the world, also while it is
    out of view or fully occluded; an object that is never visible while moving would then be
    a ground-truth object with no pixels, which the MOS-I evaluator cannot score sensibly
    (a zero-area union). Motion states are ANDed with visibility (>= `min_px` pixels) and objects
    that never move visibly become static (unannotated), as in Gmos-2K.
    """
    visible = np.stack(
        [(sample.instance_masks == k).sum(axis=(1, 2)) >= min_px for k in sample.object_ids],
        axis=1,
    )  # (T, K)
    motion = sample.motion_state & visible
    return dataclasses.replace(sample, motion_state=motion, object_is_dynamic=motion.any(axis=0))


def iter_held_out_scenes(spec: SplitSpec) -> Iterator[tuple[int, SceneSample]]:
    """The held-out scenes of `spec` and their seeds, one at a time (memory flat in
    `spec.num_seqs`); `held_out_scenes` collects them.

    Seeds are taken in order from `spec.seed`; a scene with no visibly moving object after
    `apply_tfa_rule` is skipped (the evaluators drop sequences without moving objects).
    """
    seed, made = spec.seed, 0
    while made < spec.num_seqs:
        s = apply_tfa_rule(
            generate_scene(
                SceneConfig(
                    height=spec.size,
                    width=spec.size,
                    fps=spec.fps,
                    num_frames=spec.num_frames,
                    seed=seed,
                    scene_kind=KINDS[made % len(KINDS)],  # type: ignore[arg-type]
                )
            )
        )
        if s.object_is_dynamic.any():
            yield seed, s
            made += 1
        seed += 1


def held_out_scenes(spec: SplitSpec) -> tuple[list[SceneSample], list[int]]:
    """The held-out scenes (a pure function of the spec) and their seeds
    (`iter_held_out_scenes`, collected)."""
    pairs = list(iter_held_out_scenes(spec))
    return [s for _, s in pairs], [seed for seed, _ in pairs]


def write_split(spec: SplitSpec, data: Path) -> tuple[list[str], list[SceneSample]]:
    """Write the DAVIS-style folder plus a MOS ground-truth root; returns (names, scenes)."""
    scenes, seeds = held_out_scenes(spec)
    names = [f"heldout_{sd}_{s.scene_kind}" for sd, s in zip(seeds, scenes)]
    if data.exists():
        shutil.rmtree(data)
    write_davis_style(scenes, data, names=names, progress=False)
    # Binary MOS ground truth = objects that move at some point, at every frame (DAVIS
    # `Annotations` is all objects, static ones included, so it cannot serve here).
    mos = data / "mos_gt"
    (mos / "Annotations").mkdir(parents=True, exist_ok=True)
    (mos / "Annotations" / "480p").symlink_to(
        (data / "Annotations_unsupervised" / "480p").resolve()
    )
    (mos / "JPEGImages").symlink_to((data / "JPEGImages").resolve())
    (mos / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (mos / "ImageSets" / "2017" / "val.txt").write_text("".join(f"{n}\n" for n in names))
    return names, scenes


@dataclass
class ValidationSequence:
    """One validation clip: frames as the benchmark stores them and its MOS / MOS-I labels."""

    name: str
    frames: np.ndarray  # (T, H, W, 3) uint8, after a JPEG (quality 95) round trip
    fps: float
    labels: np.ndarray  # (T, H, W) dynamic objects re-indexed 1..M at every frame
    intervals: dict[int, list[tuple[int, int]]]
    # The renderer's depth and camera poses per frame: what an RGB-D camera with odometry
    # gives (the "depth_warp" motion decision); None for clips without them.
    sensors: list[SensorFrame] | None = None


def jpeg_round_trip(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB after a JPEG quality-95 round trip (how the benchmark stores frames)."""
    ok, buf = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()


def as_sequence(name: str, s: SceneSample) -> ValidationSequence:
    """A rendered clip as the benchmark stores it (JPEG q95 frames) with its MOS-I labels."""
    mos = s.mos_i_labels()
    frames = np.stack([jpeg_round_trip(f) for f in s.frames])
    return ValidationSequence(
        name, frames, float(s.config.fps), mos.labels, mos.intervals, sensor_frames(s)
    )


def sensor_frames(s: SceneSample) -> list[SensorFrame]:
    """A rendered clip's exact depth and camera poses as an RGB-D camera with odometry
    would give them, one `SensorFrame` per frame."""
    h, w = s.depth.shape[1:]
    k = PinholeIntrinsics.from_matrix(s.intrinsics, w, h)
    return [SensorFrame(d, p, k) for d, p in zip(s.depth, s.cam_to_world)]
