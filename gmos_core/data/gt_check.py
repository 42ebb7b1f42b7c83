"""Ground-truth label checks run before any scoring, one convention per evaluation protocol.

Why: the same PNGs mean different things under different protocols. DAVIS-2016 publishes
single-object masks as 0/255 grayscale; under the DAVIS-2017 protocols 255 is *void*, and
under MOS-I ids above 20 are silently dropped. Scored as-is, such masks either look like
"no objects" or (MOS-I) give an mtIoU far above 1, because every moving label whose mask
is empty counts as a true positive in the official rule. So 0/255 masks are detected and
either converted (explicit `binary_gt=True`, the `--binary-gt` flag of `gmos-eval`) or
refused with a message that says what was found.

Conventions (:data:`GT_CONVENTIONS`):

============== ============================= ========================== ===================
protocol       object ids                    void                       0/255 masks
============== ============================= ========================== ===================
davis16        any value > 0 is the object   none                       native (no change)
mos            any value > 0 is the object   none                       native (no change)
davis17-unsup  1..254                        255, excluded from J and F refused / 255 -> 1
davis17-semi   1..254                        255, counted as background refused / 255 -> 1
mos-i          1..20 (the 20 channels)       none (255 is not an id)    refused / 255 -> 1
============== ============================= ========================== ===================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .palette import DataFormatError

__all__ = [
    "GT_CONVENTIONS",
    "GtConvention",
    "GtLabelError",
    "check_interval_ids",
    "is_binary_255",
    "prepare_gt_labels",
]


class GtLabelError(DataFormatError):
    """Ground-truth labels that the chosen protocol cannot score as they are."""


@dataclass(frozen=True)
class GtConvention:
    """How one protocol reads ground-truth label values.

    Attributes:
        protocol: protocol name (as `gmos-eval --protocol`).
        binary: every value > 0 is the one object (0/255 masks are the native format).
        max_id: the largest object id the protocol scores (ignored when `binary`).
        void: the void value, or None when the protocol has no void.
        void_handling: one sentence stating what happens to void pixels.
    """

    protocol: str
    binary: bool
    max_id: int
    void: int | None
    void_handling: str


GT_CONVENTIONS: dict[str, GtConvention] = {
    "davis16": GtConvention(
        "davis16", True, 255, None, "no void: every value > 0 is the single object"
    ),
    "mos": GtConvention("mos", True, 255, None, "no void: every value > 0 is the single object"),
    "davis17-unsup": GtConvention(
        "davis17-unsup", False, 254, 255, "255 is void: excluded from both J and F"
    ),
    "davis17-semi": GtConvention(
        "davis17-semi", False, 254, 255, "255 is void: counted as background (toolkit rule)"
    ),
    "mos-i": GtConvention(
        "mos-i", False, 20, None, "no void: ids 1..20 are the 20 channels, 0 is background"
    ),
}


def is_binary_255(labels: np.ndarray) -> bool:
    """True when the labels hold only 0 and 255 and at least one 255 (a 0/255 mask).

    Args:
        labels: (T, H, W) or (H, W) integer label maps.
    """
    arr = np.asarray(labels)
    if arr.size == 0:
        return False
    present = np.unique(arr)
    return bool(present[-1] == 255 and set(present.tolist()) <= {0, 255})


def prepare_gt_labels(
    labels: np.ndarray, protocol: str, seq: str, binary_gt: bool = False
) -> np.ndarray:
    """Check one sequence's ground truth against `protocol` and return what is scored.

    Args:
        labels: (T, H, W) uint8 ground-truth label maps as read from the PNGs.
        protocol: a key of :data:`GT_CONVENTIONS`.
        seq: sequence name, for messages.
        binary_gt: the ground truth is known to be 0/255 single-object masks: map 255 to
            object 1. Refused when the labels are not 0/255 (it would hide a real void).

    Returns:
        (T, H, W) uint8 labels in the protocol's convention (a copy when converted).

    Raises:
        GtLabelError: 0/255 masks without `binary_gt` under a protocol where 255 is void
            or not an id; `binary_gt` on labels that are not 0/255; MOS-I ids above 20.
    """
    conv = GT_CONVENTIONS[protocol]
    arr = np.asarray(labels)
    binary = is_binary_255(arr)
    if binary_gt:
        if not binary:
            vals = np.unique(arr)
            raise GtLabelError(
                f"sequence {seq}: --binary-gt was given but the ground truth is not 0/255 "
                f"masks (values {_fmt_values(vals)}); drop --binary-gt for palette ground truth"
            )
        return np.where(arr == 255, 1, 0).astype(np.uint8)
    if conv.binary:
        return arr
    if binary:
        meaning = (
            f"255 is void under {protocol}, so the sequence would have no object"
            if conv.void == 255
            else f"255 is not one of the ids 1..{conv.max_id} of {protocol}, so it would be "
            "dropped and every moving label would count as an empty-mask hit"
        )
        raise GtLabelError(
            f"sequence {seq}: the ground truth holds only the values 0 and 255 (single-object "
            f"0/255 masks, as DAVIS-2016 publishes them); {meaning}. Pass --binary-gt to read "
            "255 as object 1, or convert the masks to palette PNGs with ids 1, 2, ..."
        )
    ids = np.unique(arr)
    if conv.void is not None:
        ids = ids[ids != conv.void]
    too_big = ids[ids > conv.max_id]
    if too_big.size:
        raise GtLabelError(
            f"sequence {seq}: ground-truth ids {_fmt_values(too_big)} exceed the largest id "
            f"{conv.max_id} that {protocol} scores ({conv.void_handling})"
        )
    return arr


def check_interval_ids(
    labels: np.ndarray,
    intervals: Mapping[int, Sequence[tuple[int, int]]],
    seq: str,
    num_frames: int | None = None,
) -> list[int]:
    """MOS-I: compare the ids in the masks with the ids that have motion intervals.

    An id with intervals that never appears in the masks is an error: every one of its
    moving frames would count as a true positive with an empty prediction (the official
    rule scores both-empty as IoU 1), which is how 0/255 ground truth reached mtIoU 254.5.
    Ids in the masks without intervals are static objects, which MOS-I allows.

    Args:
        labels: (T, H, W) ground-truth labels, already through :func:`prepare_gt_labels`.
        intervals: object id -> inclusive [start, end] frame intervals.
        seq: sequence name, for messages.
        num_frames: T evaluated (intervals are clipped to it); default all of `labels`.

    Returns:
        The static ids: ids in the masks without intervals (sorted).

    Raises:
        GtLabelError: interval ids that appear in no ground-truth frame, or whose mask is
            empty in every frame of their intervals.
    """
    arr = np.asarray(labels)
    t = arr.shape[0] if num_frames is None else min(num_frames, arr.shape[0])
    mask_ids = {int(v) for v in np.unique(arr[:t]) if v != 0}
    interval_ids = {int(k) for k, spans in intervals.items() if len(spans)}
    absent = sorted(interval_ids - mask_ids)
    if absent:
        raise GtLabelError(
            f"sequence {seq}: motion intervals name object id(s) {_fmt_values(absent)} that "
            "appear in no ground-truth frame (the masks hold id(s) "
            f"{_fmt_values(sorted(mask_ids)) or 'none'}); the ids in the masks and in "
            "time_annotation.csv must name the same objects"
        )
    for obj in sorted(interval_ids):
        frames = [f for s, e in intervals[obj] for f in range(s, min(e, t - 1) + 1)]
        if frames and not np.any(arr[frames] == obj):
            raise GtLabelError(
                f"sequence {seq}: object {obj} moves in frames {frames[0]}..{frames[-1]} by "
                "its motion intervals but its mask is empty in every one of them; the "
                "intervals do not belong to these masks"
            )
    return sorted(mask_ids - interval_ids)


def _fmt_values(vals: Iterable[int] | np.ndarray) -> str:
    vals = [int(v) for v in vals]
    head = ", ".join(map(str, vals[:12]))
    return head + (f" ... ({len(vals)} values)" if len(vals) > 12 else "")
