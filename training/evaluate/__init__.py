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

Every protocol is scored by its `gmos_core.metrics` evaluator (`MosIEvaluator`,
`DavisEvaluator`, `MocaEvaluator`) through the one evaluator loop
(`gmos_core.metrics.loop.run_evaluators`: `reset`, `process` per sequence, `evaluate`).

Outputs, in `--out` (default: `<results>_eval/<protocol>` next to `--results`): `results.csv` (one row per object
for the DAVIS protocols, per sequence for mos-i and moca), `results.json` (the global numbers,
unscaled), `per_sequence.png` (bar plot). User errors (missing frames, wrong sequence names,
unreadable PNGs, bad CSV rows) print one message naming the sequence and frame on stderr and
exit with status 2.

One concern per module:
  sources    reading results and ground truth into the loop's sequences, per kind of GT
  protocols  each protocol's evaluator(s), the loop, the `EvalReport`; `evaluate_protocol`
  report     `EvalReport`, its text table, its range check
  outputs    results.csv, results.json, per_sequence.png
  cli        `gmos-eval` / `python -m training.evaluate`
"""

from __future__ import annotations

from training.evaluate.cli import USER_ERRORS, build_parser, main, run
from training.evaluate.outputs import default_out_dir, write_outputs
from training.evaluate.protocols import (
    DAVIS_KEYS,
    DAVIS_TASKS,
    PROTOCOLS,
    evaluate_davis_protocol,
    evaluate_moca_protocol,
    evaluate_mos_i,
    evaluate_protocol,
)
from training.evaluate.report import EvalInputError, EvalReport, check_metric_ranges
from training.evaluate.sources import (
    MAX_UNSUP_PROPOSALS,
    RESULT_SUBDIRS,
    resolve_results_dir,
)

__all__ = [
    "DAVIS_KEYS",
    "DAVIS_TASKS",
    "MAX_UNSUP_PROPOSALS",
    "PROTOCOLS",
    "RESULT_SUBDIRS",
    "USER_ERRORS",
    "EvalInputError",
    "EvalReport",
    "build_parser",
    "check_metric_ranges",
    "default_out_dir",
    "evaluate_davis_protocol",
    "evaluate_moca_protocol",
    "evaluate_mos_i",
    "evaluate_protocol",
    "main",
    "resolve_results_dir",
    "run",
    "write_outputs",
]
