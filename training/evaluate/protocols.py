"""Each `gmos-eval` protocol wired to its evaluator and run through the one evaluator loop.

A protocol runner reads its inputs with a `training.evaluate.sources` reader, feeds them to
the protocol's `gmos_core.metrics` evaluator(s) through `gmos_core.metrics.loop` and turns
the `EvaluationResult` into an `EvalReport` (the paper-style table, the results.csv rows,
the per-sequence score of the bar plot, the settings written into results.json).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tqdm import tqdm

from gmos_core.data import DavisDataset
from gmos_core.data.gt_check import GT_CONVENTIONS
from gmos_core.metrics.base import DavisEvaluator, DavisTask, Evaluator, MosIEvaluator
from gmos_core.metrics.loop import EvaluationResult, run_evaluators
from gmos_core.metrics.moca import MocaEvaluator
from training.evaluate.report import (
    EvalInputError,
    EvalReport,
    check_metric_ranges,
    fmt,
    plain,
    text_table,
)
from training.evaluate.sources import (
    MAX_UNSUP_PROPOSALS,
    SequenceReader,
    davis_sequences,
    moca_annotation_file,
    moca_sequences,
    mos_i_sequences,
    resolve_results_dir,
    select_davis_sequences,
)

__all__ = [
    "DAVIS_KEYS",
    "DAVIS_TASKS",
    "MOS_I_MATCHINGS",
    "PROTOCOLS",
    "evaluate_davis_protocol",
    "evaluate_moca_protocol",
    "evaluate_mos_i",
    "evaluate_protocol",
    "sequence_table",
]

PROTOCOLS = ("mos-i", "mos", "davis17-unsup", "davis17-semi", "davis16", "moca")

#: The DAVIS-family protocols and the `DavisEvaluator` task that scores each.
DAVIS_TASKS: dict[str, DavisTask] = {
    "mos": "mos",
    "davis17-unsup": "unsupervised",
    "davis17-semi": "semi-supervised",
    "davis16": "davis16",
}

DAVIS_KEYS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")

#: MOS-I matchings: results.json key -> (results.csv column suffix, frame-level matching).
MOS_I_MATCHINGS: dict[str, tuple[str, bool]] = {
    "sequence_level": ("", False),
    "frame_level": ("_flhm", True),
}


def _score(
    evaluators: Mapping[str, Evaluator],
    reader: SequenceReader,
    desc: str,
    unit: str,
    progress: bool,
) -> dict[str, EvaluationResult]:
    """The evaluator loop over `reader`'s sequences, with a progress bar."""
    return run_evaluators(evaluators, tqdm(reader, desc=desc, unit=unit, disable=not progress))


def sequence_table(scored: Mapping[str, EvaluationResult]) -> list[dict[str, Any]]:
    """results.csv rows, one per sequence: its name, what reading it found, then the numbers
    of every evaluator, each column name followed by the evaluator's key as a suffix."""
    first = next(iter(scored.values()))
    by_seq = {suffix: {r["sequence"]: r for r in res.sequences} for suffix, res in scored.items()}
    rows = []
    for seq in (r["sequence"] for r in first.sequences):
        rec: dict[str, Any] = {"sequence": seq, **first.facts[seq]}
        for suffix, numbers in by_seq.items():
            rec.update({f"{k}{suffix}": v for k, v in numbers[seq].items() if k != "sequence"})
        rows.append(rec)
    return rows


# --------------------------------------------------------------------------- MOS-I


def evaluate_mos_i(
    results_dir: Path,
    gt_dir: Path,
    time_anno_csv: Path,
    dataset: str = "davis17-im",
    frame_level_match: bool = False,
    progress: bool = True,
    binary_gt: bool = False,
) -> EvalReport:
    """MOS-I over the rows of `time_anno_csv` selected for `dataset` (PARITY.md §6.3), read by
    `sources.mos_i_sequences` and scored by `MosIEvaluator` (both matchings from one read
    with `frame_level_match`).

    Returns:
        EvalReport; `summary["sequence_level"]` (and `["frame_level"]` with
        `frame_level_match`) hold the `aggregate_mos_i` dicts; `meta["objects"]` the J_mov of
        every moving object (J_mov is pooled over objects, not sequences).
    """
    reader = mos_i_sequences(results_dir, gt_dir, time_anno_csv, dataset, binary_gt)
    modes = [m for m in MOS_I_MATCHINGS if frame_level_match or m == "sequence_level"]
    scored = _score(
        {m: MosIEvaluator(frame_level_match=MOS_I_MATCHINGS[m][1]) for m in modes},
        reader,
        "mos-i",
        "seq",
        progress,
    )
    summary = {mode: plain(scored[mode].summary) for mode in modes}
    csv_rows = sequence_table({MOS_I_MATCHINGS[m][0]: scored[m] for m in modes})
    objects: dict[tuple[str, int], dict[str, Any]] = {}
    for seq in reader.names:
        for mode in modes:
            tag = MOS_I_MATCHINGS[mode][0]
            for o in scored[mode].objects:
                if o["sequence"] == seq:
                    key = (seq, o["object_id"])
                    objects.setdefault(key, {"sequence": seq, "object_id": o["object_id"]})
                    objects[key][f"J_mov{tag}"] = o["J_mov"]
    table_rows = []
    for mode in modes:
        s = summary[mode]
        table_rows.append(
            [mode.replace("_", "-"), fmt(s["mtIoU"]), fmt(s["J_mov"]), f"{s['FP']:.3f}"]
        )
    table = (
        f"MOS-I {dataset}: {len(reader)} sequences (mtIoU and J_mov x100, FP = mean "
        "false-positive objects per frame)\n"
        + text_table(["matching", "mtIoU", "J_mov", "FP"], table_rows)
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


# --------------------------------------------------------------------------- DAVIS family


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
    """The DAVIS-family protocols: mos, davis17-unsup, davis17-semi, davis16
    (`DavisEvaluator` with the task of `DAVIS_TASKS`).

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
    year = year or ("2016" if protocol in ("davis16", "mos") else "2017")
    task = "unsupervised" if protocol == "davis17-unsup" else "semi-supervised"
    ds = DavisDataset(davis_root, split=split, resolution=resolution, task=task, year=year)
    seqs = select_davis_sequences(ds, sequences)
    reader = davis_sequences(protocol, ds, seqs, results_dir, binary_gt)
    evaluator = DavisEvaluator(DAVIS_TASKS[protocol], max_proposals=MAX_UNSUP_PROPOSALS)
    scored = _score({"": evaluator}, reader, protocol, "seq", progress)[""]
    glob, rows = scored.summary, scored.objects
    weighting = "sequence-weighted" if protocol == "davis16" else "object-weighted"
    table = f"{protocol}: {len(seqs)} sequences, {len(rows)} objects ({weighting}, x100)\n" + (
        text_table(list(DAVIS_KEYS), [[fmt(glob[k]) for k in DAVIS_KEYS]])
    )
    return EvalReport(
        protocol=protocol,
        results_dir=results_dir,
        summary=plain(glob),
        rows=rows,
        per_sequence={r["sequence"]: r["J&F-Mean"] for r in scored.sequences},
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


# --------------------------------------------------------------------------- MoCA


def evaluate_moca_protocol(
    results_dir: Path,
    annotations: Path,
    image_root: Path | None = None,
    progress: bool = True,
) -> EvalReport:
    """MoCA box protocol (motiongrouping `MoCA_eval.py`), read by `sources.moca_sequences`
    and scored by `MocaEvaluator`.

    Args:
        results_dir: `<video>/*.png` (or `<video>/gap1/*.png`) masks.
        annotations: the annotation CSV, or a folder holding `annotations.csv`.
        image_root: MoCA root with `JPEGImages/` to rescale boxes to the image size.

    Returns:
        EvalReport with the success rates at 0.5..0.9, mean box IoU and per-video rows.
    """
    ann_file = moca_annotation_file(annotations)
    reader = moca_sequences(results_dir, ann_file, image_root)
    evaluator = MocaEvaluator()
    scored = _score({"": evaluator}, reader, "moca", "video", progress)
    rows = sequence_table(scored)
    summary = plain(scored[""].summary)
    keys = ["mean_IoU"] + [f"SR@{th:g}" for th in evaluator.thresholds]
    table = f"MoCA: {len(reader)} videos, {int(summary['num_frames'])} scored frames (x100)\n" + (
        text_table(keys, [[fmt(summary[k]) for k in keys]])
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


# --------------------------------------------------------------------------- any protocol


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
    elif protocol == "moca":
        if binary_gt:
            raise EvalInputError("--binary-gt does not apply to moca (its ground truth is boxes)")
        report = evaluate_moca_protocol(results, gt, image_root, progress)
    elif protocol in DAVIS_TASKS:
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
    else:
        raise EvalInputError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    check_metric_ranges(report)
    return report
