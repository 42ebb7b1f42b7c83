"""DAVIS 2016/2017 dataset layout and results-folder reader.

Layout (`davisvideochallenge/davis2017-evaluation`, `davis2017/davis.py`)::

    <root>/ImageSets/<year>/<split>.txt          one sequence name per line
    <root>/JPEGImages/<resolution>/<seq>/00000.jpg ...
    <root>/Annotations/<resolution>/<seq>/00000.png ...                (semi-supervised, DAVIS16)
    <root>/Annotations_unsupervised/<resolution>/<seq>/00000.png ...  (unsupervised)

Results use one folder per sequence with one P-mode (or L-mode) PNG per frame, named like the
ground-truth frames (`<results>/<seq>/00000.png`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from .label_stack import read_label_stack, sequence_files
from .palette import DataFormatError, read_label_png

__all__ = ["VOID_LABEL", "DavisDataset", "check_result_sequences", "read_result_labels"]

#: DAVIS marks pixels to ignore with 255 in the ground truth.
VOID_LABEL = 255


def check_result_sequences(results_dir: str | os.PathLike[str], sequences: Sequence[str]) -> None:
    """Fail early, listing every sequence that has no folder in `results_dir`.

    Raises:
        DataFormatError: the results folder is missing or lacks some sequences.
    """
    d = Path(results_dir)
    if not d.is_dir():
        raise DataFormatError(f"results folder {d} does not exist")
    missing = [s for s in sequences if not (d / s).is_dir()]
    if missing:
        present = sorted(p.name for p in d.iterdir() if p.is_dir())
        raise DataFormatError(
            f"results folder {d} lacks {len(missing)} of {len(sequences)} sequence(s): "
            f"{', '.join(missing)}"
            + (f" (it has: {', '.join(present[:10])}{' ...' if len(present) > 10 else ''})")
        )


def read_result_labels(
    results_dir: str | os.PathLike[str],
    seq: str,
    frame_names: Sequence[str],
    max_label: int = 255,
    shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Read `<results_dir>/<seq>/<name>.png` for every frame name.

    Args:
        results_dir: folder of per-sequence result folders.
        seq: sequence name.
        frame_names: frame stems (e.g. `00000`), usually the ground-truth ones.
        max_label: largest id allowed (e.g. 20 proposals for unsupervised DAVIS17).
        shape: required (H, W), usually the ground-truth size; None = the first frame's.

    Returns:
        (T, H, W) uint8 labels, T = len(frame_names).

    Raises:
        DataFormatError: missing frame, unreadable PNG, size mismatch or an id > max_label;
            the message names the sequence and frame.
    """
    seq_dir = Path(results_dir) / seq
    if not seq_dir.is_dir():
        raise DataFormatError(f"sequence {seq}: no results folder {seq_dir}")
    return read_label_stack(
        [seq_dir / f"{name}.png" for name in frame_names],
        seq,
        "result",
        shape=None if shape is None else (int(shape[0]), int(shape[1])),
        max_label=max_label,
    )


class DavisDataset:
    """Read-only view of a DAVIS root.

    Args:
        root: DAVIS root (contains `ImageSets`, `JPEGImages`, `Annotations`...).
        split: image-set name, e.g. `val`, `train`, `test-dev`.
        resolution: `480p` or `Full-Resolution`.
        task: `semi-supervised` (GT from `Annotations`) or `unsupervised`
            (`Annotations_unsupervised`).
        year: `2017` or `2016` (selects `ImageSets/<year>`; DAVIS16 uses `Annotations`).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "val",
        resolution: str = "480p",
        task: Literal["semi-supervised", "unsupervised"] = "semi-supervised",
        year: str = "2017",
    ) -> None:
        if task not in ("semi-supervised", "unsupervised"):
            raise ValueError(f"task must be 'semi-supervised' or 'unsupervised', got {task!r}")
        self.root = Path(root)
        self.split = split
        self.resolution = resolution
        self.task = task
        self.year = str(year)
        anno = "Annotations_unsupervised" if task == "unsupervised" else "Annotations"
        self.image_dir = self.root / "JPEGImages" / resolution
        self.anno_dir = self.root / anno / resolution
        if not self.root.is_dir():
            raise DataFormatError(f"DAVIS root {self.root} does not exist")
        if not self.anno_dir.is_dir():
            raise DataFormatError(f"DAVIS root {self.root} has no {anno}/{resolution} folder")
        self._sequences: list[str] | None = None

    def sequences(self) -> list[str]:
        """Sequence names of the image set, in file order.

        Raises:
            DataFormatError: the image-set file is missing or empty.
        """
        if self._sequences is None:
            f = self.root / "ImageSets" / self.year / f"{self.split}.txt"
            if not f.is_file():
                raise DataFormatError(f"DAVIS image set {f} not found")
            names = [ln.strip() for ln in f.read_text().splitlines() if ln.strip()]
            if not names:
                raise DataFormatError(f"DAVIS image set {f} is empty")
            self._sequences = names
        return list(self._sequences)

    def frames(self, seq: str) -> list[Path]:
        """Sorted JPEG frames of a sequence.

        Raises:
            DataFormatError: no image folder or no frames.
        """
        return sequence_files(self.image_dir / seq, seq, ".jpg", "image")

    def gt_frame_names(self, seq: str) -> list[str]:
        """Stems of the ground-truth PNGs (`00000`, ...), sorted.

        Raises:
            DataFormatError: no annotation folder or no PNGs.
        """
        return [p.stem for p in sequence_files(self.anno_dir / seq, seq, ".png", "annotation")]

    def gt_labels(self, seq: str) -> np.ndarray:
        """Ground-truth label maps of a sequence, void (255) kept.

        Returns:
            (T, H, W) uint8; 0 background, 1..254 objects, 255 void.

        Raises:
            DataFormatError: unreadable PNG or a frame whose size differs from the first,
                naming the sequence and frame.
        """
        # Every uint8 value is meaningful here (1..254 ids, 255 void), so nothing to
        # reject; `read_label_png` already refused colour images.
        d = self.anno_dir / seq
        return read_label_stack(
            [d / f"{name}.png" for name in self.gt_frame_names(seq)], seq, "ground truth"
        )

    def num_objects(self, seq: str) -> int:
        """Number of GT objects as the DAVIS toolkit counts it: max id of the first frame."""
        first = read_label_png(self.anno_dir / seq / f"{self.gt_frame_names(seq)[0]}.png")
        ids = first[first != VOID_LABEL]
        return int(ids.max()) if ids.size else 0

    def read_results(
        self,
        results_dir: str | os.PathLike[str],
        seq: str,
        frame_names: Sequence[str] | None = None,
        max_label: int = 255,
        shape: tuple[int, int] | None = None,
    ) -> np.ndarray:
        """Read the predicted label maps of one sequence.

        Args:
            results_dir: folder of per-sequence result folders.
            seq: sequence name.
            frame_names: frame stems; default the ground-truth ones.
            max_label: largest id allowed (20 for unsupervised DAVIS17).
            shape: required (H, W); default none (the metric checks against GT).

        Returns:
            (T, H, W) uint8.

        Raises:
            DataFormatError: see `read_result_labels`.
        """
        names = list(frame_names) if frame_names is not None else self.gt_frame_names(seq)
        return read_result_labels(results_dir, seq, names, max_label=max_label, shape=shape)

    def check_results(self, results_dir: str | os.PathLike[str]) -> None:
        """Check that `results_dir` has a folder for every sequence of the split.

        Raises:
            DataFormatError: listing the missing sequences.
        """
        check_result_sequences(results_dir, self.sequences())
