"""One reader for a sequence's stack of label PNGs (ground truth or results) and one lister of a
sequence folder's frame files, used by the DAVIS and YouTube-VOS readers and `gmos-eval`: every
error names the sequence (and the frame)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .palette import DataFormatError, read_label_png


def sequence_files(folder: Path, seq: str, suffix: str, kind: str) -> list[Path]:
    """The `*<suffix>` files of one sequence folder, sorted by name.

    Args:
        folder: the sequence's folder.
        seq: sequence name, for the messages.
        suffix: ".jpg" (frames) or ".png" (labels).
        kind: "image" or "annotation", for the messages.

    Raises:
        DataFormatError: no such folder, or no such file in it.
    """
    if not folder.is_dir():
        raise DataFormatError(f"sequence {seq}: {kind} folder {folder} not found")
    files = sorted(folder.glob(f"*{suffix}"))
    if not files:
        what = "frames" if suffix == ".jpg" else "annotations"
        raise DataFormatError(f"sequence {seq}: no {suffix} {what} in {folder}")
    return files


def read_label_stack(
    files: Sequence[str | Path],
    seq: str,
    what: str = "labels",
    *,
    shape: tuple[int, int] | None = None,
    max_label: int | None = None,
) -> np.ndarray:
    """Read label PNGs (`read_label_png`) of one sequence into one array.

    Args:
        files: the PNGs, in frame order (frame name = file stem).
        seq: sequence name, for the messages.
        what: what the files are ("ground truth", "result"), for the messages.
        shape: required (H, W); None = frame 0's.
        max_label: largest id allowed; None = any uint8 value.

    Returns:
        (T, H, W) uint8 labels, T = len(files).

    Raises:
        DataFormatError: no files, a missing or unreadable PNG (the reader's own error type,
            e.g. `LabelReadError`, is kept), a size mismatch or an id above `max_label`; the
            message names the sequence and frame.
    """
    if not files:
        raise DataFormatError(f"sequence {seq}: no frames requested")
    out: list[np.ndarray] = []
    for file in files:
        f = Path(file)
        name = f.stem
        if not f.is_file():
            raise DataFormatError(f"sequence {seq}, frame {name}: {what} {f} is missing")
        try:
            lab = read_label_png(f)
        except DataFormatError as e:
            raise type(e)(f"sequence {seq}, frame {name}: {e}") from e
        want = shape if shape is not None else (out[0].shape if out else None)
        if want is not None and lab.shape != tuple(want):
            raise DataFormatError(
                f"sequence {seq}, frame {name}: {what} is {lab.shape[1]}x{lab.shape[0]}, "
                f"expected {want[1]}x{want[0]} (W x H)"
            )
        if max_label is not None and (top := int(lab.max())) > max_label:
            raise DataFormatError(
                f"sequence {seq}, frame {name}: label {top} exceeds the largest allowed id "
                f"{max_label}"
            )
        out.append(lab)
    return np.stack(out, 0)
