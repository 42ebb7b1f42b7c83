"""Training windows for the Gmos proposer and Gmos-S.

One sample = the inputs and targets of ONE middle frame t (paper Sec. 4.3 "Input setting"):

* ``pi3`` (N=5, 3, H', W') float32 in [0, 1]: five frames sampled uniformly from a window centred
  on t, π³-preprocessed (`pi3_preprocess`). The window LENGTH is sampled uniformly in
  [0.16, 1.0] s and turned into a frame stride ``s = max(1, round(L · fps / (N − 1)))``; indices
  are clamped to the video (replicate padding, as `window_indices` does at inference).
* ``sam`` (3, S, S) float32: the middle frame, SAM2-preprocessed (`sam2_preprocess`).
* ``gt_masks`` (G, R, R) float32 {0, 1} at the head's mask resolution R = 4 · grid: one per
  target object, EMPTY where the object is static at t (or invisible: App. D's TFA rule).
* ``gt_motion`` (G,) float32 {0, 1}: motion state of each target at t.
* ``gt_fg`` (R, R) float32: the union of the moving targets (Gmos-S target).
* ``gt_fg_window`` (N, R, R) float32, synthetic only: ``gt_fg`` of every window frame (the dense
  target of the micro π³ motion pretraining, `training.pretrain_pi3`).
* ``gt_static_window`` (N, R, R) float32, synthetic only: the visible objects that do NOT move at
  each window frame (static ones, and moving ones while they rest): the hard negatives of that
  pretraining (an object that does not move is not motion, however object-like it looks).
* ``skipped`` int: corrupt samples skipped to produce this one (the trainer sums them).

Datasets:

* `SyntheticWindowDataset`: scenes from `gmos_core.data.synthetic` generated on the fly from a
  seed (nothing cached, deterministic: item i always gives the same arrays).
* `Gmos2KWindowDataset`: the Gmos-2K layout for users who have the data:
  ``root/JPEGImages/<subset>/<split>/<seq>/<frame>.jpg`` (or ``root/JPEGImages/<seq>/``),
  ``root/annotations/<subset>/<split>/<seq>/00000.png`` (moving-object labels, every frame the
  object is visible) and the interval CSV ``root/time_annotation.csv`` (`time_anno.py`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from gmos_core.data.palette import DataFormatError, LabelReadError, read_label_png
from gmos_core.data.synthetic import (
    SceneConfig,
    SceneSample,
    generate_scene,
    render_layout,
    sample_layout,
)
from gmos_core.data.time_anno import TimeAnnoError, TimeAnnoRow, read_time_anno
from gmos_core.data.video import list_image_files
from gmos_core.models.preprocess import pi3_preprocess, sam2_preprocess, window_indices

__all__ = [
    "Gmos2KDataConfig",
    "Gmos2KWindowDataset",
    "SyntheticDataConfig",
    "SyntheticWindowDataset",
    "WindowSpec",
    "collate_windows",
    "downsample_mask",
    "sample_stride",
    "synthetic_config_from_dict",
]

#: Exceptions that mark one sample as corrupt (skipped and counted, never fatal).
CORRUPT_SAMPLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    DataFormatError,
    LabelReadError,
    TimeAnnoError,
)


@dataclass(frozen=True)
class WindowSpec:
    """How windows are cut and preprocessed.

    Attributes:
        num_frames: frames per window (5).
        min_span_s, max_span_s: range of the sampled window length, s (0.16, 1.0).
        pi3_pixel_limit: π³ pixel budget (micro 16384 -> 126x126 for a 128x128 frame).
        sam_size: SAM2 input side (micro 256, paper 1024).
        mask_size: head mask resolution R = 4 · grid (micro 64, paper 256).
        min_visible_px: a target with fewer visible pixels at R is invisible -> static.
    """

    num_frames: int = 5
    min_span_s: float = 0.16
    max_span_s: float = 1.0
    pi3_pixel_limit: int = 16384
    sam_size: int = 256
    mask_size: int = 64
    min_visible_px: int = 1


def sample_stride(rng: np.random.Generator, fps: float, spec: WindowSpec) -> int:
    """Frame stride of a window whose length is drawn uniformly in [min_span_s, max_span_s].

    Five frames span 4 strides, so s = round(L · fps / 4), at least 1 frame.
    """
    span = rng.uniform(spec.min_span_s, spec.max_span_s)
    return max(1, int(round(span * fps / (spec.num_frames - 1))))


def downsample_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """(H, W) bool -> (size, size) float32 {0, 1} by area averaging and a 0.5 threshold."""
    m = mask.astype(np.float32)
    if m.shape != (size, size):
        m = cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA)
    return (m >= 0.5).astype(np.float32)


def _targets(
    labels: np.ndarray, ids: Sequence[int], moving: Sequence[bool], spec: WindowSpec
) -> dict[str, torch.Tensor]:
    """Targets of one frame from a label map.

    Args:
        labels: (H, W) integer label map of the frame.
        ids: label ids of the target objects.
        moving: motion state of each target at the frame.

    Returns:
        ``gt_masks`` (G, R, R), ``gt_motion`` (G,), ``gt_fg`` (R, R).
    """
    r = spec.mask_size
    masks = np.zeros((len(ids), r, r), np.float32)
    motion = np.zeros(len(ids), np.float32)
    for j, (k, mv) in enumerate(zip(ids, moving)):
        if not mv:
            continue  # static at t: the target stays, its mask is empty
        m = downsample_mask(labels == k, r)
        if m.sum() < spec.min_visible_px:
            continue  # invisible counts as static (Gmos-2K TFA rule)
        masks[j] = m
        motion[j] = 1.0
    fg = masks.max(axis=0) if len(ids) else np.zeros((r, r), np.float32)
    return {
        "gt_masks": torch.from_numpy(masks),
        "gt_motion": torch.from_numpy(motion),
        "gt_fg": torch.from_numpy(np.ascontiguousarray(fg)),
    }


def _inputs(frames: Sequence[np.ndarray], spec: WindowSpec) -> dict[str, torch.Tensor]:
    """π³ window (N, 3, H', W') and SAM2 middle frame (3, S, S)."""
    return {
        "pi3": pi3_preprocess(list(frames), pixel_limit=spec.pi3_pixel_limit),
        "sam": sam2_preprocess(frames[len(frames) // 2], resolution=spec.sam_size),
    }


@dataclass(frozen=True)
class SyntheticDataConfig:
    """Which synthetic scenes a `SyntheticWindowDataset` draws.

    Attributes:
        seed_start: first scene seed (training uses 0 ..; the held-out split 900000 ..).
        num_scenes: number of distinct scenes (item i uses scene i // windows_per_scene).
        windows_per_scene: windows cut from one scene (consecutive items share the scene,
            which is rendered once and kept while they are drawn).
        fps_choices: scene frame rates; a higher rate gives finer strides so that the sampled
            window lengths 0.16-1.0 s are reachable.
        duration_s: scene length, s (num_frames = round(duration · fps)).
        height, width: frame size.
    """

    seed_start: int = 0
    num_scenes: int = 100_000
    windows_per_scene: int = 2
    fps_choices: tuple[float, ...] = (10.0, 20.0)
    duration_s: float = 2.4
    height: int = 128
    width: int = 128
    scene: dict[str, Any] = field(default_factory=dict)


class SyntheticWindowDataset(Dataset):
    """Windows over synthetic parallax scenes, generated on the fly (map-style, deterministic).

    Args:
        data: which scenes (seed range, fps, size).
        spec: window / preprocessing spec.
    """

    def __init__(self, data: SyntheticDataConfig, spec: WindowSpec) -> None:
        self.data = data
        self.spec = spec
        self.num_skipped = 0
        self._cache: tuple[int, SceneSample] | None = None

    def __len__(self) -> int:
        return self.data.num_scenes * self.data.windows_per_scene

    def scene_config(self, scene_index: int) -> SceneConfig:
        """The `SceneConfig` of scene `scene_index` (seed = seed_start + index)."""
        seed = self.data.seed_start + scene_index
        rng = np.random.default_rng([seed, 1])
        fps = float(rng.choice(self.data.fps_choices))
        return SceneConfig(
            height=self.data.height,
            width=self.data.width,
            fps=fps,
            num_frames=max(self.spec.num_frames, int(round(self.data.duration_s * fps))),
            seed=seed,
            **self.data.scene,
        )

    def scene(self, scene_index: int) -> SceneSample:
        """Render scene `scene_index` (seed = seed_start + index); the last one is kept."""
        if self._cache is not None and self._cache[0] == scene_index:
            return self._cache[1]
        sample = generate_scene(self.scene_config(scene_index))
        self._cache = (scene_index, sample)
        return sample

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        scene_index = index // self.data.windows_per_scene
        cfg = self.scene_config(scene_index)
        # The window draw depends on the item only, never on call order.
        rng = np.random.default_rng([self.data.seed_start + scene_index, 2, index])
        t = int(rng.integers(cfg.num_frames))
        stride = sample_stride(rng, cfg.fps, self.spec)
        idx = window_indices(t, cfg.num_frames, stride, self.spec.num_frames)
        if self.data.windows_per_scene == 1:
            # One window per scene: render only its frames (5 of 24-48; the same arrays as
            # rendering the whole scene, `render_layout(frames=...)`).
            uniq = sorted(set(int(j) for j in idx))
            sample = render_layout(sample_layout(cfg), frames=uniq)
            pos = {j: i for i, j in enumerate(uniq)}
            local = [pos[int(j)] for j in idx]
            t_local = pos[t]
        else:
            sample = self.scene(scene_index)
            local, t_local = [int(j) for j in idx], t
        dyn = np.flatnonzero(sample.object_is_dynamic)
        item: dict[str, Any] = _inputs(sample.frames[local], self.spec)
        item.update(
            _targets(
                sample.instance_masks[t_local],
                [int(sample.object_ids[k]) for k in dyn],
                [bool(sample.motion_state[t_local, k]) for k in dyn],
                self.spec,
            )
        )
        # Moving foreground of every window frame: the dense target of the π³ motion
        # pretraining (`training.pretrain_pi3`); the heads are trained on the middle frame only.
        item["gt_fg_window"] = torch.stack(
            [
                _targets(
                    sample.instance_masks[j],
                    [int(sample.object_ids[k]) for k in dyn],
                    [bool(sample.motion_state[j, k]) for k in dyn],
                    self.spec,
                )["gt_fg"]
                for j in local
            ]
        )
        item["gt_static_window"] = torch.stack(
            [torch.from_numpy(_static_objects(sample, j, self.spec.mask_size)) for j in local]
        )
        # Exact geometry of the window (the micro π³'s point and camera heads, pretrain_pi3
        # with geometry_weight > 0): z-depth at the π³ input size (nearest: no mixed surfaces),
        # m, NaN where no surface; camera-to-world poses, m.
        ph, pw = item["pi3"].shape[-2:]
        depth = np.stack(
            [cv2.resize(sample.depth[j], (pw, ph), interpolation=cv2.INTER_NEAREST) for j in local]
        )
        depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
        item["gt_depth_window"] = torch.from_numpy(depth.astype(np.float32))
        item["gt_cam_to_world"] = torch.from_numpy(sample.cam_to_world[local].astype(np.float32))
        item.update({"skipped": 0, "stride": stride, "key": f"seed{sample.config.seed}/t{t}"})
        return item


def _static_objects(sample: SceneSample, frame: int, size: int) -> np.ndarray:
    """(size, size) float32 {0, 1}: pixels of objects visible and not moving at `frame`."""
    still = [int(k) for k, mv in zip(sample.object_ids, sample.motion_state[frame]) if not mv]
    return downsample_mask(np.isin(sample.instance_masks[frame], still), size)


@dataclass(frozen=True)
class Gmos2KDataConfig:
    """A Gmos-2K-style folder.

    Attributes:
        root: folder with ``JPEGImages/``, ``annotations/`` and the CSV.
        csv: interval CSV (relative to root unless absolute).
        subsets: CSV ``dataset`` values to use (None: all).
        split: CSV ``split`` value (None: all).
        fps: frame rate of the annotated frames per subset (window lengths are in seconds);
            ``default`` for others. YTVOS / OVIS annotate every 5th frame of 30 fps video.
        windows_per_sequence: items per sequence per epoch.
        max_skip: give up after this many corrupt samples in a row (a broken dataset).
    """

    root: str = ""
    csv: str = "time_annotation.csv"
    subsets: tuple[str, ...] | None = None
    split: str | None = "train"
    fps: dict[str, float] = field(
        default_factory=lambda: {
            "davis": 24.0,
            "ytvos": 6.0,
            "ovis": 6.0,
            "moca_mask": 30.0,
            "hoi4d": 15.0,
            "default": 24.0,
        }
    )
    windows_per_sequence: int = 4
    max_skip: int = 100


class Gmos2KWindowDataset(Dataset):
    """Windows over a Gmos-2K-layout folder (DAVIS / YTVOS / OVIS / MoCA / HOI4D subsets).

    Targets are the objects of the CSV row (ids of the label PNGs): mask = visible label
    region while the object is inside one of its motion intervals, empty otherwise.
    A sample whose frames or labels cannot be read is skipped (the next item is tried) and
    counted in `num_skipped` and in the returned item's ``skipped`` field.
    """

    def __init__(self, data: Gmos2KDataConfig, spec: WindowSpec, seed: int = 0) -> None:
        self.data = data
        self.spec = spec
        self.seed = seed
        self.root = Path(data.root)
        csv = Path(data.csv)
        csv = csv if csv.is_absolute() else self.root / csv
        rows = read_time_anno(csv, split=data.split, drop_empty=False, on_error="skip")
        self.num_skipped = rows.num_skipped  # unparsable CSV rows count as corrupt samples
        self.rows: list[TimeAnnoRow] = [
            r for r in rows if data.subsets is None or (r.dataset or "") in data.subsets
        ]
        if not self.rows:
            raise DataFormatError(f"{csv}: no sequences for subsets={data.subsets}")

    def __len__(self) -> int:
        return len(self.rows) * self.data.windows_per_sequence

    def _seq_dirs(self, row: TimeAnnoRow) -> tuple[Path, Path]:
        sub = Path(row.dataset or "") / (row.split or "")
        ann = self.root / "annotations" / sub / row.seq_name
        img = self.root / "JPEGImages" / sub / row.seq_name
        if not img.is_dir():
            img = self.root / "JPEGImages" / row.seq_name
        return img, ann

    def _load(self, index: int) -> dict[str, Any]:
        row = self.rows[index // self.data.windows_per_sequence]
        img_dir, ann_dir = self._seq_dirs(row)
        ann_files = sorted(ann_dir.glob("*.png"))
        if not ann_files:
            raise DataFormatError(f"{row.seq_name}: no annotations in {ann_dir}")
        img_files = list_image_files(img_dir)
        # Annotated frames only (YTVOS-style sparse annotations): pair image and label by stem.
        by_stem = {Path(p).stem: Path(p) for p in img_files}
        frames_idx = [by_stem.get(a.stem) for a in ann_files]
        if any(f is None for f in frames_idx):
            raise DataFormatError(f"{row.seq_name}: a label has no matching image in {img_dir}")
        n = len(ann_files)
        rng = np.random.default_rng([self.seed, index])
        t = int(rng.integers(n))
        fps = self.data.fps.get(row.dataset or "default", self.data.fps["default"])
        stride = sample_stride(rng, fps, self.spec)
        idx = window_indices(t, n, stride, self.spec.num_frames)
        frames = []
        for i in idx:
            bgr = cv2.imread(str(frames_idx[i]), cv2.IMREAD_COLOR)
            if bgr is None:
                raise DataFormatError(f"{frames_idx[i]}: unreadable image")
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        labels = read_label_png(ann_files[t])
        if labels.shape != frames[len(frames) // 2].shape[:2]:
            raise DataFormatError(f"{ann_files[t]}: label size differs from its image")
        ids = sorted(row.intervals) or sorted(int(v) for v in np.unique(labels) if v > 0)
        moving = [any(a <= t <= b for a, b in row.intervals.get(k, [])) for k in ids]
        item: dict[str, Any] = _inputs(frames, self.spec)
        item.update(_targets(labels, ids, moving, self.spec))
        item.update({"stride": stride, "key": f"{row.seq_name}/{ann_files[t].stem}"})
        return item

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        skipped = 0
        for attempt in range(self.data.max_skip + 1):
            j = (index + attempt * self.data.windows_per_sequence) % len(self)
            try:
                item = self._load(j)
            except CORRUPT_SAMPLE_ERRORS:
                skipped += 1
                self.num_skipped += 1
                continue
            item["skipped"] = skipped
            return item
        raise DataFormatError(
            f"{self.data.root}: {skipped} corrupt samples in a row from item {index}; "
            "the dataset looks broken"
        )


def collate_windows(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch items: tensors of equal shape are stacked, per-frame target lists stay lists.

    Returns:
        ``pi3`` (B, N, 3, H', W'), ``sam`` (B, 3, S, S), ``gt_fg`` (B, R, R), ``gt_masks`` /
        ``gt_motion`` lists of B tensors, ``skipped`` int sum, ``keys`` list of str, and
        ``gt_fg_window`` / ``gt_static_window`` (B, N, R, R), ``gt_depth_window``
        (B, N, H', W') and ``gt_cam_to_world`` (B, N, 4, 4) when every item has them
        (synthetic windows).
    """
    return {
        "pi3": torch.stack([it["pi3"] for it in items]),
        "sam": torch.stack([it["sam"] for it in items]),
        "gt_fg": torch.stack([it["gt_fg"] for it in items]),
        "gt_masks": [it["gt_masks"] for it in items],
        "gt_motion": [it["gt_motion"] for it in items],
        "skipped": int(sum(int(it.get("skipped", 0)) for it in items)),
        "keys": [str(it.get("key", "")) for it in items],
        **(
            {"gt_fg_window": torch.stack([it["gt_fg_window"] for it in items])}
            if all("gt_fg_window" in it for it in items)
            else {}
        ),
        **{
            k: torch.stack([it[k] for it in items])
            for k in ("gt_static_window", "gt_depth_window", "gt_cam_to_world")
            if all(k in it for it in items)
        },
    }


def synthetic_config_from_dict(raw: dict[str, Any]) -> SyntheticDataConfig:
    """Build a `SyntheticDataConfig` from a plain (OmegaConf-resolved) dict."""
    names = {f.name for f in dataclasses.fields(SyntheticDataConfig)}
    unknown = set(raw) - names
    if unknown:
        raise ValueError(f"unknown synthetic data keys {sorted(unknown)}")
    kw = dict(raw)
    if "fps_choices" in kw:
        kw["fps_choices"] = tuple(float(v) for v in kw["fps_choices"])
    scene = dict(kw.pop("scene", {}) or {})
    scene = {k: tuple(v) if isinstance(v, list) else v for k, v in scene.items()}
    return SyntheticDataConfig(**kw, scene=scene)


def fraction_moving(ds: SyntheticWindowDataset, n: int) -> float:
    """Share of targets moving over the first n items (a sanity statistic for logs)."""
    tot, mov = 0, 0
    for i in range(min(n, len(ds))):
        m = ds[i]["gt_motion"]
        tot += int(m.numel())
        mov += int(m.sum())
    return mov / tot if tot else math.nan
