"""Every reported metric inside its range, or an error: no tool prints an impossible score.

Fractions (J, F, recalls, mtIoU, J_mov, success rates) lie in [0, 1], decays in [-1, 1],
counts and FP per frame in [0, inf). The official MOS-I rule scores a moving label with an
empty ground-truth mask and an empty prediction as a true positive, so ground truth whose
motion intervals do not match its masks (0/255 masks read as id 255, objects that left the
image) drives mtIoU above 1 (issue 19: 254.5 on DAVIS-2016 masks); this check refuses it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from gmos_core.metrics.davis import MetricInputError

__all__ = ["MetricRangeError", "check_metric_ranges", "metric_range"]

#: Row / summary keys that are labels or flags, not metrics.
_NOT_METRICS = frozenset(
    {"motion_gated", "static_gt_ids", "sequence", "Sequence", "seq", "object_id"}
)


class MetricRangeError(MetricInputError):
    """A metric left its range: the inputs break an assumption of the official formula."""


def metric_range(key: str) -> tuple[float, float] | None:
    """The range of a reported number by its name, None for labels and flags."""
    if key in _NOT_METRICS:
        return None
    if key.startswith(("num_", "frames", "missing")) or key.split("_flhm")[0] == "FP":
        return (0.0, math.inf)
    if "Decay" in key:
        return (-1.0, 1.0)
    return (0.0, 1.0)


def check_metric_ranges(numbers: Mapping[str, Any], where: str) -> None:
    """Raise unless every number in `numbers` (nested mappings walked) is in its range.

    NaN is allowed (no object to score). Booleans and strings are skipped.

    Args:
        numbers: metric name -> value (or a nested mapping).
        where: what the numbers are, for the message (e.g. "mos-i global").

    Raises:
        MetricRangeError: naming the number, its value and the likely cause.
    """
    for k, v in numbers.items():
        if isinstance(v, Mapping):
            check_metric_ranges(v, f"{where} {k}")
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)):
            continue
        rng = metric_range(str(k))
        if rng is None or math.isnan(float(v)):
            continue
        if not rng[0] - 1e-9 <= float(v) <= rng[1] + 1e-9:
            raise MetricRangeError(
                f"{where}: {k} = {float(v):.6g} is outside [{rng[0]:g}, {rng[1]:g}]; the ground "
                "truth breaks an assumption of the official formula (e.g. moving objects whose "
                "masks are empty): check the ground-truth values and motion intervals"
            )
