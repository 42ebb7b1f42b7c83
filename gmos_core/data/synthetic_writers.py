"""Write synthetic scenes to disk: DAVIS-style folders, Gmos-2K-style labels, mp4, npz.

DAVIS-style layout written by `write_davis_style` (frames keep the scene's native size; the
`480p` folder name is kept only so DAVIS readers find the files):

    root/JPEGImages/480p/<seq>/00000.jpg              RGB frames, JPEG quality 95
    root/Annotations/480p/<seq>/00000.png             all objects, ids 1..K (P-mode PNG)
    root/Annotations_unsupervised/480p/<seq>/00000.png  dynamic objects only, re-indexed 1..M
    root/annotations/<seq>/00000.png                  Gmos-2K-style moving-only labels (same)
    root/ImageSets/2017/val.txt                       one sequence name per line
    root/time_annotation.csv                          Gmos-2K motion intervals per object

Label PNGs are palette-indexed with the DAVIS / PASCAL VOC palette
(`gmos_core.data.palette.write_indexed_png`). In the CSV, `time_anno` keys are the re-indexed
ids of the moving-only label maps and intervals are inclusive frame indices, e.g.
`"{'1': [[0, 5], [9, 12]]}"`; `ann_frames` = `vid_frames` = T (every frame is annotated).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from gmos_core.data.palette import write_indexed_png
from gmos_core.data.synthetic import SceneSample, config_from_json, config_to_json
from gmos_core.data.time_anno import TimeAnnoRow, write_time_anno
from gmos_core.data.video import write_mp4 as video_write_mp4

__all__ = ["load_npz", "save_npz", "write_davis_style", "write_mp4"]


def _write_jpeg(path: Path, rgb: np.ndarray, quality: int = 95) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)  # OpenCV encodes BGR
    if not cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise OSError(f"{path}: cv2.imwrite failed")


def write_davis_style(
    samples: Iterable[SceneSample],
    root: str | os.PathLike[str],
    names: Sequence[str] | None = None,
    dataset: str = "synthetic",
    split: str = "test",
    progress: bool = True,
) -> list[str]:
    """Write scenes as a DAVIS-2017-style dataset with Gmos-2K motion-interval labels.

    Args:
        samples: scenes to write (consumed once; may be a lazy generator).
        root: dataset root folder (created).
        names: sequence names, one per sample; default `synth_<index:05d>`.
        dataset: value of the CSV `dataset` column.
        split: value of the CSV `split` column.
        progress: show a tqdm bar over sequences.

    Returns:
        The sequence names written, in order (also written to ImageSets/2017/val.txt).

    Raises:
        ValueError: fewer names than samples, a duplicate name, or more than 255 objects.
    """
    root = Path(root)
    written: list[str] = []
    rows: list[TimeAnnoRow] = []
    total = len(names) if names is not None else None
    for i, sample in enumerate(tqdm(samples, total=total, desc="writing", disable=not progress)):
        if names is not None and i >= len(names):
            raise ValueError(f"more samples than names ({len(names)})")
        seq = names[i] if names is not None else f"synth_{i:05d}"
        if seq in written:
            raise ValueError(f"duplicate sequence name {seq!r}")
        if sample.num_objects > 255:
            raise ValueError(f"{seq}: {sample.num_objects} objects do not fit 8-bit PNG labels")
        mos = sample.mos_i_labels()
        for t in range(sample.num_frames):
            stem = f"{t:05d}"
            _write_jpeg(root / "JPEGImages" / "480p" / seq / f"{stem}.jpg", sample.frames[t])
            write_indexed_png(
                root / "Annotations" / "480p" / seq / f"{stem}.png", sample.instance_masks[t]
            )
            write_indexed_png(
                root / "Annotations_unsupervised" / "480p" / seq / f"{stem}.png", mos.labels[t]
            )
            write_indexed_png(root / "annotations" / seq / f"{stem}.png", mos.labels[t])
        rows.append(
            TimeAnnoRow(
                seq_name=seq,
                intervals=mos.intervals,
                ann_frames=sample.num_frames,
                vid_frames=sample.num_frames,
                dataset=dataset,
                split=split,
            )
        )
        written.append(seq)
    image_sets = root / "ImageSets" / "2017"
    image_sets.mkdir(parents=True, exist_ok=True)
    (image_sets / "val.txt").write_text("".join(f"{s}\n" for s in written))
    write_time_anno(root / "time_annotation.csv", rows)
    return written


def write_mp4(sample: SceneSample, path: str | os.PathLike[str], fps: float | None = None) -> None:
    """Write the RGB frames as an mp4 (OpenCV `mp4v` codec).

    Args:
        sample: the scene; frames (T, H, W, 3) uint8 RGB.
        path: output .mp4 file (parent folders created).
        fps: frame rate; default the scene's configured fps.

    Raises:
        ValueError: OpenCV could not open a writer for the file.
    """
    # The project's one mp4 writer (size checks, partial files removed on error).
    video_write_mp4(path, sample.frames, float(fps or sample.config.fps))


# Array fields of SceneSample stored as-is in the npz.
_ARRAY_FIELDS = (
    "frames",
    "instance_masks",
    "depth",
    "intrinsics",
    "cam_to_world",
    "stamps_ns",
    "object_ids",
    "object_is_dynamic",
    "motion_state",
    "object_centroid_world",
    "object_normal_world",
)


def save_npz(sample: SceneSample, path: str | os.PathLike[str]) -> None:
    """Save a scene losslessly (compressed npz; the config is stored as JSON).

    Args:
        sample: the scene.
        path: output file, conventionally `.npz` (parent folders created).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    arrays = {name: getattr(sample, name) for name in _ARRAY_FIELDS}
    meta = {"scene_kind": sample.scene_kind, "config": config_to_json(sample.config)}
    np.savez_compressed(p, meta=np.array(json.dumps(meta)), **arrays)


def load_npz(path: str | os.PathLike[str]) -> SceneSample:
    """Load a scene written by `save_npz`.

    Args:
        path: npz file.

    Returns:
        The SceneSample, with identical arrays and config.
    """
    with np.load(Path(path), allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        arrays = {name: z[name] for name in _ARRAY_FIELDS}
    return SceneSample(
        **arrays, scene_kind=meta["scene_kind"], config=config_from_json(meta["config"])
    )
