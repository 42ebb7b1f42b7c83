"""Reading a results folder and its ground truth into the evaluator loop's sequences.

One reader per kind of ground truth: `mos_i_sequences` (Gmos-2K interval CSV + label maps),
`davis_sequences` (a DAVIS root, four protocols) and `moca_sequences` (MoCA box CSV). Each
checks what it can before scoring starts (folders, sequence names, flags), then reads one
sequence at a time, as the loop asks for it, into the keyword inputs of the protocol's
evaluator (`gmos_core.metrics.loop.SequenceInputs`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from gmos_core.data import (
    DataFormatError,
    DavisDataset,
    check_result_sequences,
    read_label_png,
    read_moca_annotations,
    read_result_labels,
    read_time_anno,
)
from gmos_core.data.gt_check import check_interval_ids, prepare_gt_labels
from gmos_core.data.label_stack import read_label_stack
from gmos_core.metrics.loop import SequenceInputs
from training.evaluate.report import EvalInputError

__all__ = [
    "MAX_UNSUP_PROPOSALS",
    "RESULT_SUBDIRS",
    "SequenceReader",
    "davis_sequences",
    "moca_annotation_file",
    "moca_sequences",
    "mos_i_sequences",
    "resolve_results_dir",
]

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


@dataclass(frozen=True)
class SequenceReader:
    """The sequences one protocol scores, in order, each read only when iterated.

    Attributes:
        names: sequence names, in scoring order.
        read: name -> its `SequenceInputs` (raises `DataFormatError` / `EvalInputError`
            naming the sequence and frame on bad input).
    """

    names: list[str]
    read: Callable[[str], SequenceInputs]

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[SequenceInputs]:
        return (self.read(name) for name in self.names)


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


def mos_i_sequences(
    results_dir: Path,
    gt_dir: Path,
    time_anno_csv: Path,
    dataset: str = "davis17-im",
    binary_gt: bool = False,
) -> SequenceReader:
    """The rows of `time_anno_csv` selected for `dataset`, as `MosIEvaluator` inputs.

    Frames are the sorted PNG listings of `<gt_dir>/<seq>` and `<results_dir>/<seq>`; the
    first T = min(#GT, #pred) are scored. `<results_dir>/<seq>___motion.npy` gates the
    predicted channels when present (`pred_motion` (T, 20) float32). The ground truth is
    checked first (`gmos_core.data.gt_check`): 0/255 masks are refused unless `binary_gt`,
    and the ids with motion intervals must appear in the masks. Facts per sequence:
    frames_gt, frames_pred, frames_evaluated, motion_gated, static_gt_ids.
    """
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
    by_name = {r.seq_name: r for r in rows}

    def read(seq: str) -> SequenceInputs:
        row = by_name[seq]
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
        return SequenceInputs(
            seq,
            {
                "gt_labels": gt,
                "res_labels": pred,
                "intervals": row.intervals,
                "pred_motion": pred_motion,
            },
            {
                "frames_gt": len(gt_names),
                "frames_pred": len(pred_names),
                "frames_evaluated": t,
                "motion_gated": pred_motion is not None,
                "static_gt_ids": " ".join(map(str, static_ids)),
            },
        )

    return SequenceReader(seqs, read)


# --------------------------------------------------------------------------- DAVIS family


def select_davis_sequences(ds: DavisDataset, only: str | None) -> list[str]:
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


def davis_sequences(
    protocol: str,
    ds: DavisDataset,
    seqs: list[str],
    results_dir: Path,
    binary_gt: bool = False,
) -> SequenceReader:
    """`seqs` of a DAVIS root as `DavisEvaluator` inputs (`gt_labels`, `res_labels`, (T, H, W)).

    Per protocol: `mos` truncates to min(#GT, #results) frames whose names must line up;
    `davis17-unsup` refuses labels above `MAX_UNSUP_PROPOSALS`; `davis17-semi` refuses result
    ids above the first ground-truth frame's object count; the ground truth is prepared by
    `gmos_core.data.gt_check.prepare_gt_labels` (0/255 masks, `binary_gt`).
    """
    check_result_sequences(results_dir, seqs)

    def read(seq: str) -> SequenceInputs:
        gt = prepare_gt_labels(ds.gt_labels(seq), protocol, seq, binary_gt)
        if protocol == "mos":
            res, t = _read_mos_results(ds, results_dir, seq)
            gt = gt[:t]
        elif protocol == "davis17-unsup":
            res = ds.read_results(
                results_dir, seq, max_label=MAX_UNSUP_PROPOSALS, shape=gt.shape[1:]
            )
        else:
            res = ds.read_results(results_dir, seq, shape=gt.shape[1:])
            if protocol == "davis17-semi":
                _check_semi_ids(seq, ds.gt_frame_names(seq), gt, res)
        return SequenceInputs(seq, {"gt_labels": gt, "res_labels": res})

    return SequenceReader(seqs, read)


# --------------------------------------------------------------------------- MoCA


def moca_annotation_file(annotations: Path) -> Path:
    """The annotation CSV: `annotations` itself, or `annotations.csv` inside the folder."""
    if not annotations.is_dir():
        return annotations
    for cand in ("annotations.csv", "Annotations/annotations.csv"):
        if (annotations / cand).is_file():
            return annotations / cand
    raise DataFormatError(f"{annotations}: no annotations.csv inside")


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


def moca_sequences(
    results_dir: Path, ann_file: Path, image_root: Path | None = None
) -> SequenceReader:
    """The annotated MoCA videos found in `results_dir`, as `MocaEvaluator` inputs.

    Args:
        results_dir: `<video>/*.png` (or the official `<video>/gap1/*.png`) masks, one per
            frame starting at frame 0 (the n-th sorted file is frame n). Palette / 1-bit
            PNGs: any label > 0 is foreground; grayscale PNGs: the script's > 0.1 * 255 rule.
        ann_file: the annotation CSV.
        image_root: MoCA root with `JPEGImages/<video>/00000.jpg`: predicted boxes are
            rescaled from the mask size to the JPEG size (the official `--resize 1`).

    Returns:
        Readers of `masks` (list of (H, W) uint8), `gt_boxes`, `motion` and `image_size`;
        facts per video: frames_pred, frames_annotated.
    """
    ann = read_moca_annotations(ann_file)
    videos = sorted(p.name for p in results_dir.iterdir() if p.is_dir() and p.name in ann)
    if not videos:
        raise DataFormatError(
            f"results folder {results_dir} has no folder named like an annotated MoCA video"
        )

    def read(video: str) -> SequenceInputs:
        vdir = results_dir / video
        if (vdir / "gap1").is_dir():  # the layout MoCA_eval.py reads
            vdir = vdir / "gap1"
        names = _png_names(vdir)
        image_size = None
        if image_root is not None:
            jpg = image_root / "JPEGImages" / video / "00000.jpg"
            img = cv2.imread(str(jpg))
            if img is None:
                raise DataFormatError(f"video {video}: cannot read {jpg} for the box rescale")
            image_size = (int(img.shape[0]), int(img.shape[1]))
        boxes = ann[video]
        inputs: dict[str, Any] = {
            "masks": [_moca_mask(vdir / n, video, i) for i, n in enumerate(names)],
            "gt_boxes": {f: b.xyxy() for f, b in boxes.items()},
            "motion": {f: b.motion for f, b in boxes.items()},
            "image_size": image_size,
        }
        return SequenceInputs(
            video, inputs, {"frames_pred": len(names), "frames_annotated": len(boxes)}
        )

    return SequenceReader(videos, read)
