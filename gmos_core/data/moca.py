"""MoCA box annotations, as read by motiongrouping's `tools/MoCA_eval.py` (notes B5).

The CSV (`MoCA_filtered/annotations.csv`) has a header `,file_list,spatial_coordinates,metadata`
and rows such as::

    0,/arabian_horn_viper/00000.jpg,"[2,482,225,507,191]",{'1': '0'}

- `file_list` is `/<video>/<5-digit frame>.jpg`; the frame index is 0-based.
- `spatial_coordinates` is a VIA shape `[2, x, y, w, h]` (2 = rectangle) or `[]` (no box: the
  frame is not scored).
- `metadata` is `{'1': '<m>'}` with m = 0 locomotion, 1 deformation, 2 static; `{}` means "same
  as the previous row".

The raw VIA export (`# CSV_HEADER = metadata_id,file_list,flags,temporal_coordinates,
spatial_coordinates,metadata` plus `#` comment lines) is read too: columns are found by name.

Official quirks reproduced (so that scores match): rows are processed sorted by the
`file_list` string, and the `{}` carry-forward follows that order; `xmin`/`ymin` are clamped
at 0 while `xmax = xmin + w` uses the clamped `xmin` (see `MocaBox.xyxy`).
"""

from __future__ import annotations

import ast
import csv
import os
from dataclasses import dataclass
from pathlib import Path

from .palette import DataFormatError

__all__ = ["MOTION_NAMES", "MocaAnnotationError", "MocaBox", "read_moca_annotations"]

#: motion label -> name, as in the MoCA results table.
MOTION_NAMES: dict[int, str] = {0: "locomotion", 1: "deformation", 2: "static"}


class MocaAnnotationError(DataFormatError):
    """A MoCA annotation row cannot be parsed; the message names the line and file."""


@dataclass(frozen=True)
class MocaBox:
    """One annotated frame.

    Attributes:
        video: video name.
        frame: 0-based frame index (the number in `00012.jpg`).
        x, y, w, h: the box as stored (pixels of the JPEG the annotation refers to).
        motion: 0 locomotion, 1 deformation, 2 static.
    """

    video: str
    frame: int
    x: float
    y: float
    w: float
    h: float
    motion: int

    def xyxy(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) exactly as `MoCA_eval.py` builds it.

        xmin/ymin are clamped at 0 and the width/height are added to the *clamped* corner,
        which shifts boxes that start left of / above the image. Kept for score parity.
        """
        xmin = max(self.x, 0.0)
        ymin = max(self.y, 0.0)
        return (xmin, ymin, xmin + self.w, ymin + self.h)


def _find_columns(header: list[str]) -> tuple[int, int, int]:
    names = [h.strip().lstrip("#").strip() for h in header]
    try:
        return (
            names.index("file_list"),
            names.index("spatial_coordinates"),
            names.index("metadata"),
        )
    except ValueError:
        raise ValueError(
            f"header {header} lacks file_list / spatial_coordinates / metadata"
        ) from None


def read_moca_annotations(path: str | os.PathLike[str]) -> dict[str, dict[int, MocaBox]]:
    """Read the MoCA annotation CSV.

    Args:
        path: `annotations.csv`.

    Returns:
        {video: {frame index: MocaBox}} for the frames with a box; videos in sorted order.

    Raises:
        MocaAnnotationError: bad header, bad box / motion literal, a `{}` motion with no
            earlier row to copy from, or a frame annotated twice (line number named).
        FileNotFoundError: no such file.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: MoCA annotation CSV not found")
    with p.open(newline="", encoding="utf-8") as f:
        lines = list(csv.reader(f))
    header: list[str] | None = None
    records: list[tuple[int, list[str]]] = []
    for i, row in enumerate(lines, start=1):
        if not row or all(not c.strip() for c in row):
            continue
        first = row[0].strip()
        if first.startswith("#"):
            # VIA exports put the column names in a comment: "# CSV_HEADER = metadata_id,...".
            if "CSV_HEADER" in first:
                row = [first.split("=", 1)[1].strip(), *row[1:]]
                header = row
            continue
        if header is None:
            header = row
            continue
        records.append((i, row))
    if header is None:
        raise MocaAnnotationError(f"{p}: empty file")
    try:
        c_file, c_box, c_meta = _find_columns(header)
    except ValueError as e:
        raise MocaAnnotationError(f"{p}: {e}") from e
    need = max(c_file, c_box, c_meta) + 1
    # The official reader sorts by the file name before carrying `{}` motion labels forward.
    records.sort(key=lambda r: r[1][c_file] if len(r[1]) > c_file else "")
    out: dict[str, dict[int, MocaBox]] = {}
    prev_motion: int | None = None
    for line, row in records:
        where = f"{p}:{line}"
        if len(row) < need:
            raise MocaAnnotationError(f"{where}: {len(row)} cells, expected at least {need}")
        fn, box_s, meta_s = row[c_file].strip(), row[c_box].strip(), row[c_meta].strip()
        try:
            box = ast.literal_eval(box_s)
        except (ValueError, SyntaxError, TypeError) as e:
            raise MocaAnnotationError(f"{where}: box {box_s!r} is not a literal ({e})") from e
        if box == [] or box == ():
            continue  # no box in this frame: not scored, and its motion is not used either
        parts = fn.replace("\\", "/").strip("/").split("/")
        if len(parts) < 2 or not parts[-1].lower().endswith((".jpg", ".png", ".jpeg")):
            raise MocaAnnotationError(f"{where}: file_list {fn!r} is not /<video>/<frame>.jpg")
        video, stem = parts[-2], parts[-1].rsplit(".", 1)[0]
        try:
            frame = int(stem)
        except ValueError:
            raise MocaAnnotationError(
                f"{where}: frame name {parts[-1]!r} is not a number"
            ) from None
        if (
            not isinstance(box, list | tuple)
            or len(box) != 5
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in box)
            or int(box[0]) != 2
        ):
            raise MocaAnnotationError(f"{where}: box {box_s!r} is not a VIA rectangle [2,x,y,w,h]")
        try:
            meta = ast.literal_eval(meta_s) if meta_s else {}
        except (ValueError, SyntaxError, TypeError) as e:
            raise MocaAnnotationError(f"{where}: metadata {meta_s!r} is not a literal") from e
        if not isinstance(meta, dict):
            raise MocaAnnotationError(f"{where}: metadata {meta_s!r} is not a dict")
        if not meta:
            if prev_motion is None:
                raise MocaAnnotationError(f"{where}: motion '{{}}' with no earlier label to copy")
            motion = prev_motion
        else:
            try:
                motion = int(meta["1"])
            except (KeyError, TypeError, ValueError):
                raise MocaAnnotationError(
                    f"{where}: metadata {meta_s!r} has no motion label '1'"
                ) from None
            if motion not in MOTION_NAMES:
                raise MocaAnnotationError(f"{where}: motion label {motion} not in 0/1/2")
        prev_motion = motion
        vid = out.setdefault(video, {})
        if frame in vid:
            raise MocaAnnotationError(f"{where}: video {video} frame {frame} annotated twice")
        _, x, y, w, h = (float(v) for v in box)
        vid[frame] = MocaBox(video, frame, x, y, w, h, motion)
    return {v: dict(sorted(out[v].items())) for v in sorted(out)}
