"""YouTube-VOS (2018/2019) layout: sparse annotations, all-frame inputs.

Layout of one split (`train` or `valid`)::

    <split_root>/JPEGImages/<seq>/00000.jpg 00005.jpg ...   annotated frames only (every 5th)
    <split_root>/Annotations/<seq>/00000.png ...             sparse label PNGs
    <split_root>/meta.json                                   {"videos": {seq: {"objects":
                                                              {oid: {"frames": [...]}}}}}
    <all_frames_root>/JPEGImages/<seq>/00000.jpg 00001.jpg   every raw frame (valid_all_frames)

Methods run on all frames (`valid_all_frames`), but only the annotated frames (those listed in
`meta.json`, every 5th) are written and scored (Cutie `vos_test_dataset.py`; notes B4). Gmos-2K
renumbers the annotated frames 00000, 00001, ... and expects predictions for exactly those,
in order. `select_annotated` maps all-frame results to that subset.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .davis import read_result_labels
from .label_stack import read_label_stack, sequence_files
from .palette import DataFormatError

__all__ = ["YouTubeVOSDataset", "select_annotated"]


def select_annotated(
    seq: str,
    frame_names: Sequence[str],
    labels: np.ndarray,
    annotated: Sequence[str],
) -> np.ndarray:
    """Pick the annotated frames out of per-frame results.

    Args:
        seq: sequence name (error messages).
        frame_names: stems of the result frames, one per row of `labels` (e.g. all frames
            `00000` ... `00090`).
        labels: (T_all, H, W) labels aligned with `frame_names`.
        annotated: stems of the annotated frames, in order.

    Returns:
        (T_ann, H, W) labels in `annotated` order.

    Raises:
        DataFormatError: an annotated frame has no result (names the sequence and frame), or
            the names and labels disagree in length.
    """
    if len(frame_names) != len(labels):
        raise DataFormatError(
            f"sequence {seq}: {len(frame_names)} frame names for {len(labels)} label maps"
        )
    index = {n: i for i, n in enumerate(frame_names)}
    missing = [n for n in annotated if n not in index]
    if missing:
        raise DataFormatError(
            f"sequence {seq}, frame {missing[0]}: no result for this annotated frame"
            + (f" ({len(missing)} annotated frames missing)" if len(missing) > 1 else "")
        )
    return np.stack([labels[index[n]] for n in annotated], 0)


class YouTubeVOSDataset:
    """Read-only view of one YouTube-VOS split.

    Args:
        split_root: folder with `JPEGImages`, `Annotations` and (optionally) `meta.json`.
        all_frames_root: folder whose `JPEGImages/<seq>` holds every raw frame
            (`valid_all_frames`); None if only the sparse frames are available.
    """

    def __init__(
        self,
        split_root: str | os.PathLike[str],
        all_frames_root: str | os.PathLike[str] | None = None,
    ) -> None:
        self.root = Path(split_root)
        if not self.root.is_dir():
            raise DataFormatError(f"YouTube-VOS split folder {self.root} does not exist")
        self.image_dir = self.root / "JPEGImages"
        self.anno_dir = self.root / "Annotations"
        self.all_frames_dir = Path(all_frames_root) / "JPEGImages" if all_frames_root else None
        self._meta: dict[str, dict] | None = None
        meta_file = self.root / "meta.json"
        if meta_file.is_file():
            try:
                meta = json.loads(meta_file.read_text())
                videos = meta["videos"]
                if not isinstance(videos, dict):
                    raise TypeError("'videos' is not an object")
            except (ValueError, KeyError, TypeError) as e:
                raise DataFormatError(f"{meta_file}: not a YouTube-VOS meta.json ({e})") from e
            self._meta = videos

    def sequences(self) -> list[str]:
        """Sequence names: the `meta.json` videos, else the `JPEGImages` folders, sorted."""
        if self._meta is not None:
            return sorted(self._meta)
        if not self.image_dir.is_dir():
            raise DataFormatError(f"{self.image_dir} not found")
        return sorted(p.name for p in self.image_dir.iterdir() if p.is_dir())

    def annotated_frames(self, seq: str) -> list[str]:
        """Stems of the frames that results must be produced for (sorted).

        From `meta.json` (union of the objects' frame lists) when present, else the sparse
        `JPEGImages/<seq>` listing, which holds exactly the annotated frames.

        Raises:
            DataFormatError: unknown sequence or no frames.
        """
        if self._meta is not None:
            if seq not in self._meta:
                raise DataFormatError(f"sequence {seq}: not in {self.root / 'meta.json'}")
            objs = self._meta[seq].get("objects", {})
            names = sorted({str(f) for o in objs.values() for f in o.get("frames", [])})
        else:
            d = self.image_dir / seq
            if not d.is_dir():
                raise DataFormatError(f"sequence {seq}: image folder {d} not found")
            names = sorted(p.stem for p in d.glob("*.jpg"))
        if not names:
            raise DataFormatError(f"sequence {seq}: no annotated frames")
        return names

    def all_frames(self, seq: str) -> list[str]:
        """Stems of every raw frame (from `all_frames_root`), or the sparse ones without it."""
        d = (self.all_frames_dir or self.image_dir) / seq
        return [p.stem for p in sequence_files(d, seq, ".jpg", "image")]

    def gt_labels(self, seq: str) -> tuple[list[str], np.ndarray]:
        """The sparse ground-truth PNGs of a sequence.

        Returns:
            (frame stems, (T_png, H, W) uint8 labels). In `valid` only the frames where an
            object first appears are annotated; in `train` every 5th frame.
        """
        files = sequence_files(self.anno_dir / seq, seq, ".png", "annotation")
        return [f.stem for f in files], read_label_stack(files, seq, "ground truth")

    def read_results(
        self,
        results_dir: str | os.PathLike[str],
        seq: str,
        max_label: int = 255,
    ) -> np.ndarray:
        """Read results for the annotated frames of one sequence.

        Accepts a result folder holding all frames (`00000..00090.png`: the annotated ones are
        picked) or only the annotated ones; any annotated frame without a PNG is an error.

        Returns:
            (T_ann, H, W) uint8 labels in annotated-frame order.

        Raises:
            DataFormatError: naming the sequence and the first missing frame.
        """
        return read_result_labels(results_dir, seq, self.annotated_frames(seq), max_label=max_label)
