"""Gmos-2K motion-interval CSV (`gmos_2k/time_annotation.csv`) and MOS-I ground truth.

Columns: `seq_name,time_anno,ann_frames,vid_frames,dataset,split`. `time_anno` is a
Python-literal dict `{'<obj_id>': [[start, end], ...]}`; intervals are inclusive and counted in
*annotated*-frame indices (0 = the first annotated PNG). The official MOS-I evaluator
(`metrics/benchmark_mos_i.py`) also accepts a 2-column `seq_name,time_anno` file.

Row selection follows that evaluator exactly (PARITY.md §6.3 item 1): keep `dataset == davis`
(davis17-im) or `ytvos` (ytvos19-im) if the column exists, keep `split == test` if the column
exists, drop rows whose dict is empty, keep CSV order.
"""

from __future__ import annotations

import ast
import csv
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

__all__ = [
    "DATASET_SLICES",
    "MOS_I_NUM_CHANNELS",
    "TimeAnnoError",
    "TimeAnnoRow",
    "TimeAnnoRows",
    "format_time_anno",
    "mos_i_ground_truth",
    "motion_matrix",
    "parse_time_anno",
    "read_time_anno",
    "write_time_anno",
]

#: MOS-I benchmark name -> (value of the `dataset` column, value of the `split` column).
DATASET_SLICES: dict[str, tuple[str, str]] = {
    "davis17-im": ("davis", "test"),
    "ytvos19-im": ("ytvos", "test"),
}

#: The official evaluator uses 20 object channels; ids 1..20 map to channels 0..19.
MOS_I_NUM_CHANNELS = 20

_COLUMNS = ("seq_name", "time_anno", "ann_frames", "vid_frames", "dataset", "split")


class TimeAnnoError(ValueError):
    """A motion-interval CSV row cannot be parsed; the message names the line and sequence."""


@dataclass(frozen=True)
class TimeAnnoRow:
    """One sequence of the motion-interval CSV.

    Attributes:
        seq_name: sequence folder name.
        intervals: object id (1-based, as in the label PNGs) -> inclusive [start, end] intervals
            in annotated-frame indices, in file order.
        ann_frames: number of annotated frames (None if the column is absent or empty).
        vid_frames: number of raw video frames (None if absent or empty).
        dataset: source dataset (`davis`, `ytvos`, `ovis`, `hoi4d`, `moca_mask`) or None.
        split: `train` / `test` or None.
        line: 1-based line number in the CSV (header = line 1), for error messages.
    """

    seq_name: str
    intervals: dict[int, list[tuple[int, int]]]
    ann_frames: int | None = None
    vid_frames: int | None = None
    dataset: str | None = None
    split: str | None = None
    line: int = 0


class TimeAnnoRows(list[TimeAnnoRow]):
    """The rows returned by `read_time_anno`, plus the rows skipped with `on_error="skip"`.

    Attributes:
        skipped: (line number, sequence name, reason) for every unparsable row that was skipped.
    """

    def __init__(self, rows: Iterable[TimeAnnoRow] = ()) -> None:
        super().__init__(rows)
        self.skipped: list[tuple[int, str, str]] = []

    @property
    def num_skipped(self) -> int:
        """Number of unparsable rows skipped."""
        return len(self.skipped)


def parse_time_anno(text: str) -> dict[int, list[tuple[int, int]]]:
    """Parse one `time_anno` cell.

    Args:
        text: e.g. `"{'1': [[0, 81]], '3': [[0, 71], [76, 86]]}"`.

    Returns:
        {object id: [(start, end), ...]} with int ids in [1, 20] and 0 <= start <= end.

    Raises:
        ValueError: not a literal dict of that shape. The text is never `eval`ed.
    """
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
        raise ValueError(f"time_anno is not a Python literal ({type(e).__name__}: {e})") from e
    if not isinstance(value, dict):
        raise ValueError(f"time_anno must be a dict, got {type(value).__name__}")
    out: dict[int, list[tuple[int, int]]] = {}
    for key, ivs in value.items():
        # Keys are strings in the official file; ints are accepted, floats/bools are not.
        if not isinstance(key, str | int) or isinstance(key, bool):
            raise ValueError(f"object id {key!r} is not an integer")
        try:
            obj_id = int(key)
        except ValueError:
            raise ValueError(f"object id {key!r} is not an integer") from None
        # The official evaluator writes M[:, id-1] in a 20-column tensor: other ids would crash
        # it (id > 20) or silently wrap to the last channel (id <= 0).
        if not 1 <= obj_id <= MOS_I_NUM_CHANNELS:
            raise ValueError(f"object id {obj_id} outside [1, {MOS_I_NUM_CHANNELS}]")
        if obj_id in out:
            raise ValueError(f"object id {obj_id} appears twice")
        if not isinstance(ivs, list | tuple):
            raise ValueError(f"object {obj_id}: intervals must be a list of [start, end]")
        parsed: list[tuple[int, int]] = []
        for iv in ivs:
            if (
                not isinstance(iv, list | tuple)
                or len(iv) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in iv)
            ):
                raise ValueError(f"object {obj_id}: interval {iv!r} is not [start, end] ints")
            s, e = int(iv[0]), int(iv[1])
            # A negative start would become a Python negative slice in the official code and
            # s > e an empty one: both are annotation errors, not intentional.
            if s < 0 or e < s:
                raise ValueError(f"object {obj_id}: interval [{s}, {e}] needs 0 <= start <= end")
            parsed.append((s, e))
        out[obj_id] = parsed
    return out


def format_time_anno(intervals: Mapping[int, Sequence[Sequence[int]]]) -> str:
    """Format intervals as the official CSV does: `{'1': [[0, 81]], '2': [[3, 9]]}`."""
    return str({str(int(k)): [[int(s), int(e)] for s, e in v] for k, v in intervals.items()})


def _opt_int(value: str | None, column: str) -> int | None:
    if value is None or value.strip() == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{column} {value!r} is not an integer") from None


def read_time_anno(
    path: str | os.PathLike[str],
    dataset: str | None = None,
    split: str | None = None,
    drop_empty: bool = True,
    on_error: Literal["raise", "skip"] = "raise",
) -> TimeAnnoRows:
    """Read the motion-interval CSV, selecting rows as the official MOS-I evaluator does.

    Args:
        path: CSV file.
        dataset: `davis17-im` / `ytvos19-im` (benchmark names: imply the `davis` / `ytvos`
            dataset and, unless `split` is given, split `test`), a raw `dataset` column value,
            or None for all rows. Ignored if the file has no `dataset` column, as officially.
        split: keep only this `split` value (ignored if the file has no `split` column).
        drop_empty: drop rows whose dict is `{}` (the official evaluator does).
        on_error: `raise` -> `TimeAnnoError` on the first unparsable kept row; `skip` -> leave
            it out and record it in the result's `skipped` list.

    Returns:
        TimeAnnoRows (a list of TimeAnnoRow in CSV order, with `.skipped`).

    Raises:
        TimeAnnoError: missing columns, an unparsable kept row (line number and sequence
            named), or a sequence listed twice among the kept rows.
        FileNotFoundError: no such file.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    ds_value = dataset
    if dataset in DATASET_SLICES:
        ds_value, default_split = DATASET_SLICES[dataset]
        split = default_split if split is None else split
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: time-annotation CSV not found")
    rows = TimeAnnoRows()
    seen: dict[str, int] = {}
    with p.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        missing = [c for c in ("seq_name", "time_anno") if c not in cols]
        if missing:
            raise TimeAnnoError(f"{p}: header lacks column(s) {missing} (found {cols})")
        for rec in reader:
            line = reader.line_num  # physical line of the record's end; header is line 1
            seq = (rec.get("seq_name") or "").strip()
            # Filter before parsing, as the official code does: a broken row of another
            # dataset does not stop a DAVIS evaluation.
            if ds_value is not None and "dataset" in cols and rec.get("dataset") != ds_value:
                continue
            if split is not None and "split" in cols and rec.get("split") != split:
                continue
            try:
                if None in rec:  # DictReader puts surplus cells under the key None
                    raise ValueError(f"{len(cols) + len(rec[None])} cells for {len(cols)} columns")
                if not seq:
                    raise ValueError("empty seq_name")
                text = rec.get("time_anno")
                if text is None:
                    raise ValueError("missing time_anno cell")
                intervals = parse_time_anno(text)
                row = TimeAnnoRow(
                    seq_name=seq,
                    intervals=intervals,
                    ann_frames=_opt_int(rec.get("ann_frames"), "ann_frames"),
                    vid_frames=_opt_int(rec.get("vid_frames"), "vid_frames"),
                    dataset=rec.get("dataset") or None,
                    split=rec.get("split") or None,
                    line=line,
                )
            except ValueError as e:
                msg = f"{p}:{line}: sequence {seq or '<unnamed>'!r}: {e}"
                if on_error == "raise":
                    raise TimeAnnoError(msg) from e
                rows.skipped.append((line, seq, str(e)))
                continue
            if drop_empty and not row.intervals:
                continue
            if seq in seen:
                # The official code would evaluate it twice with the first row's intervals.
                raise TimeAnnoError(
                    f"{p}:{line}: sequence {seq!r} already listed on line {seen[seq]}"
                )
            seen[seq] = line
            rows.append(row)
    return rows


def write_time_anno(path: str | os.PathLike[str], rows: Iterable[TimeAnnoRow]) -> None:
    """Write rows in the official 6-column layout (None fields become empty cells).

    Args:
        path: output CSV; parent folders are created.
        rows: rows to write, in order.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", newline="", encoding="utf-8") as f:
        # lineterminator "\n": the official file uses LF, and csv defaults to CRLF.
        w = csv.writer(f, lineterminator="\n")
        w.writerow(_COLUMNS)
        for r in rows:
            w.writerow(
                [
                    r.seq_name,
                    format_time_anno(r.intervals),
                    "" if r.ann_frames is None else r.ann_frames,
                    "" if r.vid_frames is None else r.vid_frames,
                    r.dataset or "",
                    r.split or "",
                ]
            )


def motion_matrix(
    intervals: Mapping[int, Sequence[tuple[int, int]]],
    num_frames: int,
    num_channels: int = MOS_I_NUM_CHANNELS,
) -> np.ndarray:
    """Per-frame motion labels M (PARITY.md §6.3 item 3).

    Args:
        intervals: object id (1-based) -> inclusive [start, end] intervals.
        num_frames: T, the number of evaluated frames; intervals are clipped to it.
        num_channels: K; id k goes to channel k-1.

    Returns:
        (T, K) bool, M[t, k-1] = frame t lies in an interval of object k.
    """
    m = np.zeros((num_frames, num_channels), dtype=bool)
    for obj_id, ivs in intervals.items():
        k = int(obj_id) - 1
        if not 0 <= k < num_channels:
            raise ValueError(f"object id {obj_id} outside [1, {num_channels}]")
        for s, e in ivs:
            m[max(int(s), 0) : int(e) + 1, k] = True
    return m


def mos_i_ground_truth(
    gt_labels: np.ndarray,
    intervals: Mapping[int, Sequence[tuple[int, int]]],
    num_channels: int = MOS_I_NUM_CHANNELS,
) -> np.ndarray:
    """MOS-I ground-truth channels: channel k = (label == k+1) AND object k+1 moving at t.

    Objects without an interval (static ones kept in the PNGs) and static frames are empty.

    Args:
        gt_labels: (T, H, W) integer label maps.
        intervals: object id -> inclusive [start, end] intervals in frame indices.
        num_channels: K (20 in the benchmark).

    Returns:
        (T, K, H, W) bool.
    """
    gt = np.asarray(gt_labels)
    if gt.ndim != 3:
        raise ValueError(f"gt_labels must be (T, H, W), got shape {gt.shape}")
    moving = motion_matrix(intervals, gt.shape[0], num_channels)  # (T, K)
    ids = np.arange(1, num_channels + 1, dtype=np.int64)[None, :, None, None]
    return (gt[:, None].astype(np.int64) == ids) & moving[:, :, None, None]
