"""`gmos-eval`: score a results folder with the official conventions of each benchmark.

Protocols (notes B1-B8, PARITY.md §6.3):

=============== ===================================================================== ==========
protocol        what                                                                  --gt
=============== ===================================================================== ==========
mos-i           Gmos MOS-I (mtIoU, J_mov, FP), `metrics/benchmark_mos_i.py`           Gmos-2K
                                                                                      folder
mos             SegAnyMo binary MOS: all frames, truncated to the shorter sequence    DAVIS root
davis17-unsup   DAVIS-2017 unsupervised (<= 20 proposals, Hungarian on (J+F)/2)       DAVIS root
davis17-semi    DAVIS-2017 semi-supervised (first/last frame skipped, ids matched)    DAVIS root
davis16         DAVIS-2016 binary (first/last frame skipped, sequence-weighted)       DAVIS root
moca            MoCA box success rate (motiongrouping `MoCA_eval.py`)                 MoCA CSV
=============== ===================================================================== ==========

`--results` may be the Gmos `--save_dir` (then `mos-i_frame/` is used for mos-i, `mos_frame/`
for the mask protocols, or Gmos-S `frame/` for the binary ones) or the folder of sequences.

Ground truth is checked per protocol before scoring (`gmos_core.data.gt_check`): 0/255
single-object masks are read natively by davis16 and mos, and refused by mos-i,
davis17-unsup and davis17-semi unless `--binary-gt` says to read 255 as object 1; MOS-I ids
with motion intervals must appear in the masks. No number outside its range is reported.

Outputs, in `--out` (default: `<results>_eval/<protocol>` next to `--results`): `results.csv` (one row per object
for the DAVIS protocols, per sequence for mos-i and moca), `results.json` (the global numbers,
unscaled), `per_sequence.png` (bar plot). User errors (missing frames, wrong sequence names,
unreadable PNGs, bad CSV rows) print one message naming the sequence and frame on stderr and
exit with status 2.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from gmos_core.data import (
    DataFormatError,
    DavisDataset,
    TimeAnnoError,
    check_result_sequences,
    read_label_png,
    read_result_labels,
    read_time_anno,
)
from gmos_core.data.gt_check import GT_CONVENTIONS, check_interval_ids, prepare_gt_labels
from gmos_core.data.label_stack import read_label_stack
from gmos_core.metrics.ranges import MetricRangeError
from gmos_core.metrics.ranges import check_metric_ranges as check_metric_ranges_in

PROTOCOLS = ("mos-i", "mos", "davis17-unsup", "davis17-semi", "davis16", "moca")

# Sub-folders of a Gmos / Gmos-S `--save_dir` to look for, in order, per protocol. The MOS-I
# paper numbers come from the stage-1 (online) output; the offline stage-2 output `mos_frame`
# is what the conventional MOS / UVOS benchmarks get.
RESULT_SUBDIRS: dict[str, tuple[str, ...]] = {
    "mos-i": ("mos-i_frame",),
    "mos": ("mos_frame", "frame"),
    "davis17-unsup": ("mos_frame",),
    "davis17-semi": ("mos_frame",),
    "davis16": ("mos_frame", "frame"),
    "moca": ("mos_frame", "frame"),
}

#: DAVIS-2017 unsupervised: the toolkit aborts on more proposals than this.
MAX_UNSUP_PROPOSALS = 20

DAVIS_KEYS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")


class EvalInputError(Exception):
    """A user error not covered by the data readers (bad flag combination, bad motion file)."""


@dataclass
class EvalReport:
    """What one evaluation produced.

    Attributes:
        protocol: protocol name.
        results_dir: the folder of sequences that was scored.
        summary: global numbers, unscaled (fractions); nested dicts for several match modes.
        rows: `results.csv` rows (per object or per sequence).
        per_sequence: sequence -> the main per-sequence score, for the bar plot.
        plot_label: y-axis label of the bar plot.
        table: the paper-style text table printed to stdout.
    """

    protocol: str
    results_dir: Path
    summary: dict[str, Any]
    rows: list[dict[str, Any]]
    per_sequence: dict[str, float]
    plot_label: str
    table: str
    meta: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers


def resolve_results_dir(results: Path, protocol: str) -> Path:
    """Pick the folder of sequences inside a Gmos `--save_dir`, or return `results` itself.

    Args:
        results: `--results` argument.
        protocol: protocol name (selects the candidate sub-folders).

    Returns:
        The folder that holds `<seq>/` result folders.

    Raises:
        DataFormatError: `results` is not a folder.
    """
    if not results.is_dir():
        raise DataFormatError(f"results folder {results} does not exist")
    for sub in RESULT_SUBDIRS[protocol]:
        if (results / sub).is_dir():
            return results / sub
    return results


def _png_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".png")


def _fmt(v: float, scale: float = 100.0) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v * scale:.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- MOS-I


def _load_pred_motion(path: Path, seq: str, num_frames: int) -> np.ndarray:
    """`<seq>___motion.npy`: (T', 20, 1) or (T', 20) per-proposal motion probabilities."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise EvalInputError(f"sequence {seq}: cannot read motion file {path} ({e})") from e
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2 or arr.shape[1] != 20:
        raise EvalInputError(
            f"sequence {seq}: motion file {path} has shape {arr.shape}, expected (T, 20, 1)"
        )
    if arr.shape[0] < num_frames:
        raise EvalInputError(
            f"sequence {seq}: motion file {path} has {arr.shape[0]} frames, frame "
            f"{arr.shape[0]} of the {num_frames} evaluated frames has no motion value"
        )
    return np.asarray(arr[:num_frames], dtype=np.float32)


def evaluate_mos_i(
    results_dir: Path,
    gt_dir: Path,
    time_anno_csv: Path,
    dataset: str = "davis17-im",
    frame_level_match: bool = False,
    progress: bool = True,
    binary_gt: bool = False,
) -> EvalReport:
    """MOS-I over the rows of `time_anno_csv` selected for `dataset` (PARITY.md §6.3).

    Frames are the sorted PNG listings of `<gt_dir>/<seq>` and `<results_dir>/<seq>`; the
    first T = min(#GT, #pred) are scored. `<results_dir>/<seq>___motion.npy` gates the
    predicted channels when present. The ground truth is checked first
    (`gmos_core.data.gt_check`): 0/255 masks are refused unless `binary_gt`, and the ids
    with motion intervals must appear in the masks.

    Returns:
        EvalReport; `summary["sequence_level"]` (and `["frame_level"]` with
        `frame_level_match`) hold the `aggregate_mos_i` dicts.
    """
    from gmos_core.metrics.mos_i import aggregate_mos_i, evaluate_mos_i_sequence

    rows = read_time_anno(time_anno_csv, dataset=dataset)
    if not rows:
        present = sorted({(r.dataset, r.split) for r in read_time_anno(time_anno_csv)}, key=str)
        raise EvalInputError(
            f"{time_anno_csv}: no non-empty rows for --dataset {dataset}; the file has "
            f"(dataset, split) = {', '.join(map(str, present)) or 'no non-empty rows'}"
        )
    seqs = [r.seq_name for r in rows]
    if not gt_dir.is_dir():
        raise DataFormatError(f"ground-truth folder {gt_dir} does not exist")
    missing_gt = [s for s in seqs if not (gt_dir / s).is_dir()]
    if missing_gt:
        raise DataFormatError(
            f"ground-truth folder {gt_dir} lacks {len(missing_gt)} of {len(seqs)} "
            f"sequence(s) listed in {time_anno_csv.name}: {', '.join(missing_gt)}"
        )
    check_result_sequences(results_dir, seqs)

    modes = [("sequence_level", False)] + ([("frame_level", True)] if frame_level_match else [])
    per_mode: dict[str, list[Any]] = {m: [] for m, _ in modes}
    csv_rows: list[dict[str, Any]] = []
    # Per-object J_mov goes to results.json: J_mov is pooled over objects, not sequences.
    objects: dict[tuple[str, int], dict[str, Any]] = {}
    for row in tqdm(rows, desc="mos-i", unit="seq", disable=not progress):
        seq = row.seq_name
        gt_names = _png_names(gt_dir / seq)
        pred_names = _png_names(results_dir / seq)
        if not gt_names:
            raise DataFormatError(f"sequence {seq}: no ground-truth PNGs in {gt_dir / seq}")
        if not pred_names:
            raise DataFormatError(f"sequence {seq}: no result PNGs in {results_dir / seq}")
        if (
            row.vid_frames is not None
            and row.ann_frames is not None
            and row.vid_frames != row.ann_frames
            and len(pred_names) == row.vid_frames
            and len(gt_names) < len(pred_names)
        ):
            # The official min(#GT, #pred) rule would silently pair raw frame t with annotated
            # frame t (YTVOS annotates every 5th frame): refuse instead.
            raise DataFormatError(
                f"sequence {seq}: {len(pred_names)} result frames = the raw video length, but "
                f"only {row.ann_frames} frames are annotated; write results for the annotated "
                "frames only, in order (gmos_core.data.select_annotated maps all-frame results)"
            )
        t = min(len(gt_names), len(pred_names))  # the official evaluator's rule
        gt = read_label_stack([gt_dir / seq / n for n in gt_names[:t]], seq, "ground truth")
        gt = prepare_gt_labels(gt, "mos-i", seq, binary_gt)
        static_ids = check_interval_ids(gt, row.intervals, seq, t)
        pred = read_label_stack([results_dir / seq / n for n in pred_names[:t]], seq, "result")
        motion_file = results_dir / f"{seq}___motion.npy"
        pred_motion = _load_pred_motion(motion_file, seq, t) if motion_file.is_file() else None
        rec: dict[str, Any] = {
            "sequence": seq,
            "frames_gt": len(gt_names),
            "frames_pred": len(pred_names),
            "frames_evaluated": t,
            "motion_gated": pred_motion is not None,
            "static_gt_ids": " ".join(map(str, static_ids)),
        }
        for mode, flm in modes:
            res = evaluate_mos_i_sequence(
                gt, pred, row.intervals, pred_motion=pred_motion, frame_level_match=flm, seq=seq
            )
            per_mode[mode].append(res)
            tag = "" if mode == "sequence_level" else "_flhm"
            rec.update({f"{k}{tag}": v for k, v in _mos_i_seq_numbers(res).items()})
            for ch, jm in zip(np.asarray(res.motion_channels), np.asarray(res.j_mov)):
                key = (seq, int(ch) + 1)
                objects.setdefault(key, {"sequence": seq, "object_id": int(ch) + 1})
                objects[key][f"J_mov{tag}"] = float(jm)
        csv_rows.append(rec)

    summary = {mode: _plain(aggregate_mos_i(per_mode[mode])) for mode, _ in modes}
    table_rows = []
    for mode, _ in modes:
        s = summary[mode]
        table_rows.append(
            [mode.replace("_", "-"), _fmt(s["mtIoU"]), _fmt(s["J_mov"]), f"{s['FP']:.3f}"]
        )
    table = (
        f"MOS-I {dataset}: {len(rows)} sequences (mtIoU and J_mov x100, FP = mean false-positive"
        " objects per frame)\n" + _table(["matching", "mtIoU", "J_mov", "FP"], table_rows)
    )
    return EvalReport(
        protocol="mos-i",
        results_dir=results_dir,
        summary=summary,
        rows=csv_rows,
        per_sequence={r["sequence"]: r["mtIoU"] for r in csv_rows},
        plot_label="mtIoU (sequence-level matching)",
        table=table,
        meta={
            "dataset": dataset,
            "time_anno": str(time_anno_csv),
            "gt": str(gt_dir),
            "binary_gt": binary_gt,
            "void_handling": GT_CONVENTIONS["mos-i"].void_handling,
            "objects": list(objects.values()),
        },
    )


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe copy: numpy scalars/arrays to Python floats/lists."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, np.ndarray):
            out[k] = v.tolist()
        elif isinstance(v, np.generic):
            out[k] = v.item()
        else:
            out[k] = v
    return out


def _mos_i_seq_numbers(res: Any) -> dict[str, float]:
    """Per-sequence mtIoU (mean over thresholds), J_mov (mean over objects) and FP: the
    official `--verbose` numbers."""
    return {
        "mtIoU": res.mtiou_mean,
        "J_mov": res.j_mov_mean,
        "FP": float(res.fp_count),
        "num_moving_objects": int(np.asarray(res.j_mov).size),
    }


# --------------------------------------------------------------------------- DAVIS family


def _select_sequences(ds: DavisDataset, only: str | None) -> list[str]:
    """The image set's sequences, or exactly the `--sequences` ones.

    With `--sequences` no image-set file is read: each name must have a ground-truth folder
    (`Annotations*/<resolution>/<seq>`), which is what scoring needs.
    """
    if not only:
        return ds.sequences()
    p = Path(only)
    wanted = (
        [s.strip() for s in p.read_text().splitlines() if s.strip()]
        if p.is_file()
        else [s.strip() for s in only.split(",") if s.strip()]
    )
    if not wanted:
        raise EvalInputError(f"--sequences {only!r} names no sequence")
    unknown = [s for s in wanted if not (ds.anno_dir / s).is_dir()]
    if unknown:
        have = sorted(d.name for d in ds.anno_dir.iterdir() if d.is_dir())
        raise EvalInputError(
            f"--sequences names {len(unknown)} sequence(s) with no ground-truth folder in "
            f"{ds.anno_dir}: {', '.join(unknown)} (it has: {', '.join(have[:10])}"
            f"{' ...' if len(have) > 10 else ''})"
        )
    return list(dict.fromkeys(wanted))


def _read_mos_results(ds: DavisDataset, results_dir: Path, seq: str) -> tuple[np.ndarray, int]:
    """SegAnyMo `mos`: sorted result PNGs truncated to min(#GT, #res); names must line up."""
    gt_names = ds.gt_frame_names(seq)
    res_names = [Path(n).stem for n in _png_names(results_dir / seq)]
    if not res_names:
        raise DataFormatError(f"sequence {seq}: no result PNGs in {results_dir / seq}")
    t = min(len(gt_names), len(res_names))
    for g, r in zip(gt_names[:t], res_names[:t]):
        if g != r:
            # A gap in the numbering would silently pair frame t with frame t+1.
            raise DataFormatError(
                f"sequence {seq}, frame {g}: result is missing ({r}.png found in its place)"
            )
    return read_result_labels(results_dir, seq, gt_names[:t]), t


def evaluate_davis_protocol(
    protocol: str,
    results_dir: Path,
    davis_root: Path,
    split: str = "val",
    year: str | None = None,
    resolution: str = "480p",
    sequences: str | None = None,
    progress: bool = True,
    binary_gt: bool = False,
) -> EvalReport:
    """The DAVIS-family protocols: mos, davis17-unsup, davis17-semi, davis16.

    Args:
        protocol: one of the four names.
        results_dir: folder of `<seq>/<frame>.png` results.
        davis_root: DAVIS root.
        split: image-set name.
        year: image-set year; default 2016 for davis16 and mos, 2017 otherwise.
        resolution: `480p` (the F tolerance depends on it: evaluate at 480p).
        sequences: optional comma list or file of sequence names (e.g. DAVIS16-Moving);
            with it no image-set file is needed.
        binary_gt: the ground truth is 0/255 single-object masks: read 255 as object 1
            (see `gmos_core.data.gt_check` for each protocol's void handling).

    Returns:
        EvalReport with the DAVIS global table and one CSV row per object.
    """
    from gmos_core.metrics import davis as dm

    year = year or ("2016" if protocol in ("davis16", "mos") else "2017")
    task = "unsupervised" if protocol == "davis17-unsup" else "semi-supervised"
    ds = DavisDataset(davis_root, split=split, resolution=resolution, task=task, year=year)
    seqs = _select_sequences(ds, sequences)
    check_result_sequences(results_dir, seqs)

    results = []
    for seq in tqdm(seqs, desc=protocol, unit="seq", disable=not progress):
        gt = prepare_gt_labels(ds.gt_labels(seq), protocol, seq, binary_gt)
        if protocol == "mos":
            res, t = _read_mos_results(ds, results_dir, seq)
            results.append(dm.evaluate_mos_binary(seq, gt[:t], res))
        elif protocol == "davis16":
            res = ds.read_results(results_dir, seq, shape=gt.shape[1:])
            results.append(dm.evaluate_davis16(seq, gt, res))
        elif protocol == "davis17-unsup":
            res = ds.read_results(
                results_dir, seq, max_label=MAX_UNSUP_PROPOSALS, shape=gt.shape[1:]
            )
            results.append(dm.evaluate_unsupervised(seq, gt, res, MAX_UNSUP_PROPOSALS))
        else:
            res = ds.read_results(results_dir, seq, shape=gt.shape[1:])
            _check_semi_ids(seq, ds.gt_frame_names(seq), gt, res)
            results.append(dm.evaluate_semisupervised(seq, gt, res))

    glob = dm.global_table_davis16(results) if protocol == "davis16" else dm.global_table(results)
    rows = dm.per_object_table(results)
    for r in rows:
        r["J&F-Mean"] = (float(r["J-Mean"]) + float(r["F-Mean"])) / 2.0
    per_seq: dict[str, float] = {}
    for res_ in results:
        objs = [r for r in rows if r["seq"] == res_.seq]
        if objs:
            per_seq[res_.seq] = float(np.mean([r["J&F-Mean"] for r in objs]))
    weighting = "sequence-weighted" if protocol == "davis16" else "object-weighted"
    table = f"{protocol}: {len(seqs)} sequences, {len(rows)} objects ({weighting}, x100)\n" + (
        _table(list(DAVIS_KEYS), [[_fmt(glob[k]) for k in DAVIS_KEYS]])
    )
    return EvalReport(
        protocol=protocol,
        results_dir=results_dir,
        summary=_plain(glob),
        rows=rows,
        per_sequence=per_seq,
        plot_label="J&F-Mean",
        table=table,
        meta={
            "gt": str(davis_root),
            "split": split if sequences is None else None,
            "sequences": seqs,
            "year": year,
            "resolution": resolution,
            "binary_gt": binary_gt,
            "void_handling": GT_CONVENTIONS[protocol].void_handling,
        },
    )


def _check_semi_ids(seq: str, names: Sequence[str], gt: np.ndarray, res: np.ndarray) -> None:
    """Semi-supervised: result ids above the GT object count abort the toolkit; name the frame.

    Only frames 1 .. T-2 are scored (and counted) by the protocol.
    """
    gt0 = gt[0][gt[0] != 255]
    num_obj = int(gt0.max()) if gt0.size else 0
    for t in range(1, max(res.shape[0] - 1, 1)):
        top = int(res[t].max())
        if top > num_obj:
            raise DataFormatError(
                f"sequence {seq}, frame {names[t]}: result label {top} but the first "
                f"ground-truth frame has only {num_obj} object(s)"
            )


# --------------------------------------------------------------------------- MoCA


def evaluate_moca_protocol(
    results_dir: Path,
    annotations: Path,
    image_root: Path | None = None,
    progress: bool = True,
) -> EvalReport:
    """MoCA box protocol (motiongrouping `MoCA_eval.py`).

    Args:
        results_dir: `<video>/*.png` (or the official `<video>/gap1/*.png`) masks, one per
            frame starting at frame 0 (the n-th sorted file is frame n). Palette / 1-bit
            PNGs: any label > 0 is foreground; grayscale PNGs: the script's > 0.1 * 255 rule.
        annotations: the annotation CSV, or a folder holding `annotations.csv`.
        image_root: MoCA root with `JPEGImages/<video>/00000.jpg`: predicted boxes are
            rescaled from the mask size to the JPEG size (the official `--resize 1`).

    Returns:
        EvalReport with the success rates at 0.5..0.9, mean box IoU and per-video rows.
    """
    from gmos_core.data import read_moca_annotations
    from gmos_core.metrics.moca import MocaEvaluator

    ann_file = annotations
    if annotations.is_dir():
        for cand in ("annotations.csv", "Annotations/annotations.csv"):
            if (annotations / cand).is_file():
                ann_file = annotations / cand
                break
        else:
            raise DataFormatError(f"{annotations}: no annotations.csv inside")
    ann = read_moca_annotations(ann_file)
    videos = sorted(p.name for p in results_dir.iterdir() if p.is_dir() and p.name in ann)
    if not videos:
        raise DataFormatError(
            f"results folder {results_dir} has no folder named like an annotated MoCA video"
        )
    evaluator = MocaEvaluator()
    rows: list[dict[str, Any]] = []
    for video in tqdm(videos, desc="moca", unit="video", disable=not progress):
        vdir = results_dir / video
        if (vdir / "gap1").is_dir():  # the layout MoCA_eval.py reads
            vdir = vdir / "gap1"
        names = _png_names(vdir)
        image_size = None
        if image_root is not None:
            import cv2

            jpg = image_root / "JPEGImages" / video / "00000.jpg"
            img = cv2.imread(str(jpg))
            if img is None:
                raise DataFormatError(f"video {video}: cannot read {jpg} for the box rescale")
            image_size = (int(img.shape[0]), int(img.shape[1]))
        boxes = ann[video]
        masks = [_moca_mask(vdir / n, video, i) for i, n in enumerate(names)]
        evaluator.process(
            video,
            masks=masks,
            gt_boxes={f: b.xyxy() for f, b in boxes.items()},
            motion={f: b.motion for f, b in boxes.items()},
            image_size=image_size,
        )
        vres = evaluator.videos[-1]
        rows.append(
            {
                "sequence": video,
                "frames_pred": len(names),
                "frames_annotated": len(boxes),
                "frames_scored": int(vres.ious.size),
                "mean_iou": vres.mean_iou,
                **{
                    f"SR@{th:g}": (float(np.mean(vres.ious > th)) if vres.ious.size else math.nan)
                    for th in evaluator.thresholds
                },
            }
        )
    summary = _plain(evaluator.evaluate())
    keys = ["mean_IoU"] + [f"SR@{th:g}" for th in evaluator.thresholds]
    table = f"MoCA: {len(videos)} videos, {int(summary['num_frames'])} scored frames (x100)\n" + (
        _table(keys, [[_fmt(summary[k]) for k in keys]])
    )
    return EvalReport(
        protocol="moca",
        results_dir=results_dir,
        summary=summary,
        rows=rows,
        per_sequence={r["sequence"]: float(r["mean_iou"]) for r in rows},
        plot_label="mean box IoU",
        table=table,
        meta={"gt": str(ann_file)},
    )


def _moca_mask(path: Path, video: str, frame: int) -> np.ndarray:
    """A result PNG as the 0..255 image `MoCA_eval.py` thresholds.

    Grayscale PNGs (masks or Gmos-S probabilities) keep their values, as `cv2.imread` gives
    them to the script. Palette PNGs are label maps: any id > 0 becomes 255, because their
    palette colours (what the script would average) carry no meaning (DAVIS id 8 is dark
    enough to fall under the script's 0.1 * 255 threshold).
    """
    try:
        lab = read_label_png(path)
        with Image.open(path) as im:
            is_palette = im.mode in ("P", "1")  # 1-bit masks read as 0/1: treat as labels
    except (DataFormatError, OSError) as e:
        raise DataFormatError(f"video {video}, frame {frame:05d}: {e}") from e
    return np.where(lab > 0, 255, 0).astype(np.uint8) if is_palette else lab


# --------------------------------------------------------------------------- outputs


def write_outputs(report: EvalReport, out_dir: Path) -> dict[str, Path]:
    """Write `results.csv`, `results.json` and `per_sequence.png` into `out_dir`.

    Returns:
        {"csv": path, "json": path, "plot": path}.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": out_dir / "results.csv",
        "json": out_dir / "results.json",
        "plot": out_dir / "per_sequence.png",
    }
    fields: list[str] = []
    for r in report.rows:
        fields += [k for k in r if k not in fields]
    with paths["csv"].open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in report.rows:
            w.writerow({k: _csv_cell(v) for k, v in r.items()})
    payload = {
        "protocol": report.protocol,
        "results_dir": str(report.results_dir),
        **report.meta,
        "num_sequences": len(report.per_sequence),
        "global": report.summary,
    }
    paths["json"].write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")
    _bar_plot(report, paths["plot"])
    return paths


def _csv_cell(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v)  # full precision: the CSV is used for cross-checks, not just reading
    return v


def _bar_plot(report: EvalReport, path: Path) -> None:
    # The object-oriented API with the Agg canvas: no pyplot global state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(report.per_sequence)
    vals = [report.per_sequence[n] for n in names]
    fig = Figure(figsize=(max(6.0, 0.3 * len(names) + 2), 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(range(len(names)), vals, color="#3070b0")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel(report.plot_label)
    ax.set_title(f"{report.protocol}: per-sequence {report.plot_label}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """The `gmos-eval` argument parser."""
    p = argparse.ArgumentParser(
        prog="gmos-eval",
        description="Evaluate Gmos results with the official MOS-I / DAVIS / MoCA conventions.",
    )
    p.add_argument("--protocol", required=True, choices=PROTOCOLS)
    p.add_argument(
        "--results",
        required=True,
        type=Path,
        help="Gmos --save_dir (mos-i_frame/, mos_frame/ or frame/ inside) or a folder of "
        "<seq>/ result folders",
    )
    p.add_argument(
        "--gt",
        required=True,
        type=Path,
        help="mos-i: folder of <seq>/00000.png Gmos-2K annotations; DAVIS protocols: DAVIS "
        "root; moca: annotations.csv (or a folder holding it)",
    )
    p.add_argument("--time-anno", type=Path, help="mos-i: the Gmos-2K time_annotation.csv")
    p.add_argument(
        "--dataset",
        default="davis17-im",
        help="mos-i CSV slice: davis17-im (dataset=davis, split=test), ytvos19-im "
        "(dataset=ytvos, split=test), or any other value of the CSV's dataset column "
        "(all its splits), e.g. synthetic",
    )
    p.add_argument(
        "--frame-level-match",
        action="store_true",
        help="mos-i: also report per-frame Hungarian matching",
    )
    p.add_argument("--split", default="val", help="DAVIS image set (default val)")
    p.add_argument(
        "--year",
        default=None,
        help="DAVIS image-set year (default 2016 for davis16/mos, 2017 otherwise)",
    )
    p.add_argument("--resolution", default="480p")
    p.add_argument(
        "--sequences",
        default=None,
        help="DAVIS protocols: comma list or file of sequence names to score; with it no "
        "ImageSets/<year>/<split>.txt is needed",
    )
    p.add_argument(
        "--binary-gt",
        action="store_true",
        help="the ground truth is 0/255 single-object masks (DAVIS-2016 as published): read "
        "255 as object 1. Without it such masks are refused by mos-i, davis17-unsup and "
        "davis17-semi (where 255 is void or no id); davis16 and mos read them natively",
    )
    p.add_argument(
        "--image-root",
        type=Path,
        default=None,
        help="moca: MoCA root with JPEGImages/ to rescale boxes from mask size to image size",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: <results>_eval/<protocol>, next to --results, so the "
        "results folder itself is never written into)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _user_errors() -> tuple[type[BaseException], ...]:
    errs: list[type[BaseException]] = [
        DataFormatError,
        TimeAnnoError,
        EvalInputError,
        MetricRangeError,
        FileNotFoundError,
        NotADirectoryError,
    ]
    try:
        from gmos_core.metrics.davis import MetricInputError

        errs.append(MetricInputError)
    except ImportError:  # the metrics package is optional for the data-only errors
        pass
    return tuple(errs)


def evaluate_protocol(
    protocol: str,
    results: Path,
    gt: Path,
    *,
    time_anno: Path | None = None,
    dataset: str = "davis17-im",
    frame_level_match: bool = False,
    split: str = "val",
    year: str | None = None,
    resolution: str = "480p",
    sequences: str | None = None,
    binary_gt: bool = False,
    image_root: Path | None = None,
    progress: bool = True,
) -> EvalReport:
    """Score a results folder under one protocol (the library form of `gmos-eval`; no files
    written). The keyword arguments are the `gmos-eval` flags of the same names.

    Raises:
        EvalInputError: a flag combination the protocol cannot use.
        MetricRangeError: a number outside its range.
    """
    results = resolve_results_dir(results, protocol)
    if protocol == "mos-i":
        if time_anno is None:
            raise EvalInputError("--protocol mos-i needs --time-anno <time_annotation.csv>")
        report = evaluate_mos_i(
            results, gt, time_anno, dataset, frame_level_match, progress, binary_gt=binary_gt
        )
        check_metric_ranges(report)
        return report
    if protocol == "moca":
        if binary_gt:
            raise EvalInputError("--binary-gt does not apply to moca (its ground truth is boxes)")
        report = evaluate_moca_protocol(results, gt, image_root, progress)
        check_metric_ranges(report)
        return report
    report = evaluate_davis_protocol(
        protocol,
        results,
        gt,
        split=split,
        year=year,
        resolution=resolution,
        sequences=sequences,
        progress=progress,
        binary_gt=binary_gt,
    )
    check_metric_ranges(report)
    return report


def run(args: argparse.Namespace) -> EvalReport:
    """Evaluate according to parsed arguments (no output files)."""
    return evaluate_protocol(
        args.protocol,
        args.results,
        args.gt,
        time_anno=args.time_anno,
        dataset=args.dataset,
        frame_level_match=args.frame_level_match,
        split=args.split,
        year=args.year,
        resolution=args.resolution,
        sequences=args.sequences,
        binary_gt=args.binary_gt,
        image_root=args.image_root,
        progress=not args.quiet,
    )


def default_out_dir(results: Path, protocol: str) -> Path:
    """`<results>_eval/<protocol>`: a folder of its own next to `--results`."""
    res = results.resolve()
    return res.parent / f"{res.name}_eval" / protocol


def check_metric_ranges(report: EvalReport) -> None:
    """Refuse to report a metric outside its range (`gmos_core.metrics.ranges`): the global
    numbers and every per-sequence / per-object row.

    Raises:
        MetricRangeError: naming the number, its value and where it came from.
    """
    check_metric_ranges_in(report.summary, f"{report.protocol} global")
    for row in report.rows:
        name = row.get("sequence", row.get("Sequence", row.get("seq", "?")))
        check_metric_ranges_in(row, f"{report.protocol} sequence {name}")


def main(argv: list[str] | None = None) -> int:
    """Console entry point. Returns 0 on success, 2 on a user error (message on stderr)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed the usage error
        return int(e.code or 0)
    try:
        report = run(args)
        out_dir = args.out or default_out_dir(args.results, args.protocol)
        paths = write_outputs(report, out_dir)
    except _user_errors() as e:
        print(f"gmos-eval: error: {e}", file=sys.stderr)
        return 2
    print(report.table)
    print(f"wrote {paths['csv']}, {paths['json'].name}, {paths['plot'].name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
