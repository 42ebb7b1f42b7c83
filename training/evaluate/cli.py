"""`gmos-eval` / `python -m training.evaluate`: the command line (see the package docstring)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gmos_core.data import DataFormatError, TimeAnnoError
from gmos_core.metrics.davis import MetricInputError
from gmos_core.metrics.ranges import MetricRangeError
from training.evaluate.outputs import default_out_dir, write_outputs
from training.evaluate.protocols import PROTOCOLS, evaluate_protocol
from training.evaluate.report import EvalInputError, EvalReport

__all__ = ["USER_ERRORS", "build_parser", "main", "run"]

#: Errors that are the user's (bad flags, folders, files): one message, exit status 2.
USER_ERRORS: tuple[type[BaseException], ...] = (
    DataFormatError,
    TimeAnnoError,
    EvalInputError,
    MetricRangeError,
    FileNotFoundError,
    NotADirectoryError,
    MetricInputError,
)


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
    except USER_ERRORS as e:
        print(f"gmos-eval: error: {e}", file=sys.stderr)
        return 2
    print(report.table)
    print(f"wrote {paths['csv']}, {paths['json'].name}, {paths['plot'].name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
