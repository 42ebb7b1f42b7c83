"""DAVIS region similarity J, contour accuracy F and the sequence protocols built on them.

Every number here is meant to equal the official evaluators bit for bit (within 1e-6, in
practice exactly), so the conventions below are deliberate, including the odd ones:

* ``davis2017-evaluation`` (``davisvideochallenge``) for J, F, ``db_statistics`` and the
  semi-supervised / unsupervised sequence protocols, checked against
  ``shared/fixtures/davis2017_metric_parity.npz`` (see ``davis2017_metric_parity.md``).
* DAVIS-2016 (``fperazzi/davis``): binary, first and last frame excluded, sequence-weighted.
* SegAnyMo's ``mos`` protocol: binary, all frames, truncated to the shorter sequence.

Masks are H x W arrays where any non-zero value is foreground (bool or 0/1 uint8 both work).
Label maps are (T, H, W) integer arrays, 0 = background, k = object k; in DAVIS-2017 ground
truth 255 marks void pixels.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "GLOBAL_KEYS",
    "MetricInputError",
    "SequenceResult",
    "boundary_precision_recall",
    "boundary_radius",
    "db_statistics",
    "disk_kernel",
    "evaluate_davis16",
    "evaluate_mos_binary",
    "evaluate_semisupervised",
    "evaluate_unsupervised",
    "f_measure",
    "global_table",
    "global_table_davis16",
    "jaccard",
    "per_object_table",
    "seg2bmap",
]

#: Keys of :func:`global_table`, in the order of the toolkit's ``global_results`` CSV.
GLOBAL_KEYS: tuple[str, ...] = (
    "J&F-Mean",
    "J-Mean",
    "J-Recall",
    "J-Decay",
    "F-Mean",
    "F-Recall",
    "F-Decay",
)

#: Label value that marks void (ignored) pixels in DAVIS-2017 ground truth.
VOID_LABEL = 255


class MetricInputError(ValueError):
    """Input to a metric is malformed (wrong shape/dtype, too many objects, ...)."""


# --------------------------------------------------------------------------------------
# input checking
# --------------------------------------------------------------------------------------


def _as_mask(name: str, mask: np.ndarray) -> np.ndarray:
    """Return a 2-D bool view of ``mask`` (non-zero = foreground) or raise."""
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise MetricInputError(f"{name} must be a 2-D H x W mask, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise MetricInputError(f"{name} must be a bool or numeric mask, got dtype {arr.dtype}")
    return arr != 0


def _prepare_pair(
    gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    g = _as_mask("gt", gt)
    p = _as_mask("pred", pred)
    if g.shape != p.shape:
        raise MetricInputError(f"gt and pred shapes differ: {g.shape} vs {p.shape}")
    v = None
    if void is not None:
        v = _as_mask("void", void)
        if v.shape != g.shape:
            raise MetricInputError(f"void shape {v.shape} differs from mask shape {g.shape}")
    return g, p, v


def _as_labels(seq: str, name: str, labels: np.ndarray) -> np.ndarray:
    """Return ``labels`` as a (T, H, W) int64 array or raise, naming the sequence."""
    arr = np.asarray(labels)
    if arr.ndim != 3:
        raise MetricInputError(f"{seq}: {name} must be (T, H, W) label maps, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise MetricInputError(f"{seq}: {name} must hold integer labels, got dtype {arr.dtype}")
    if arr.size and int(arr.min()) < 0:
        raise MetricInputError(f"{seq}: {name} contains negative labels")
    return arr.astype(np.int64, copy=False)


def _same_shape(seq: str, gt: np.ndarray, res: np.ndarray, *, frames: bool = True) -> None:
    if gt.shape[1:] != res.shape[1:]:
        raise MetricInputError(
            f"{seq}: GT frames are {gt.shape[1:]} but result frames are {res.shape[1:]}; "
            "evaluate at annotation resolution (F's tolerance depends on the image size)"
        )
    if frames and gt.shape[0] != res.shape[0]:
        raise MetricInputError(
            f"{seq}: GT has {gt.shape[0]} frames but the result has {res.shape[0]}"
        )


# --------------------------------------------------------------------------------------
# J
# --------------------------------------------------------------------------------------


def _jaccard_counts(g: np.ndarray, p: np.ndarray, v: np.ndarray | None) -> tuple[int, int]:
    """Intersection and union pixel counts; void pixels leave both counts."""
    inter = g & p
    union = g | p
    if v is not None:
        keep = ~v
        inter &= keep
        union &= keep
    return int(np.count_nonzero(inter)), int(np.count_nonzero(union))


def jaccard(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None) -> float:
    """Region similarity J = |gt & pred| / |gt | pred|, void pixels excluded from both.

    Args:
        gt: (H, W) bool / 0-1 ground-truth mask (ground truth FIRST, as in the toolkit).
        pred: (H, W) bool / 0-1 predicted mask.
        void: optional (H, W) bool mask of pixels to ignore.

    Returns:
        J as a Python float. An empty union (both empty, or everything void) gives 1.0,
        as the toolkit does.
    """
    g, p, v = _prepare_pair(gt, pred, void)
    inter, union = _jaccard_counts(g, p, v)
    return 1.0 if union == 0 else inter / union


# --------------------------------------------------------------------------------------
# F
# --------------------------------------------------------------------------------------


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """Boundary map of a binary mask, with the toolkit's ``_seg2bmap`` convention.

    A pixel is a boundary pixel when it differs from its east, south or south-east
    neighbour. The last row only looks east, the last column only looks south and the
    bottom-right pixel is never marked, so the image border never creates boundary pixels
    (a full-image mask has an empty map) and the marked pixel is the one nearer the origin.

    Args:
        mask: (H, W) bool / numeric mask, non-zero = foreground.

    Returns:
        (H, W) bool boundary map.
    """
    s = _as_mask("mask", mask)
    b = np.zeros(s.shape, dtype=bool)
    b[:, :-1] |= s[:, :-1] != s[:, 1:]  # east
    b[:-1, :] |= s[:-1, :] != s[1:, :]  # south
    b[:-1, :-1] |= s[:-1, :-1] != s[1:, 1:]  # south-east
    return b


def boundary_radius(shape: tuple[int, int], bound_th: float = 0.008) -> int:
    """Dilation radius in pixels: ``bound_th`` itself if >= 1, else ceil(bound_th * diag).

    Float64 ``ceil`` of 0.008 * sqrt(H^2 + W^2) is exact for all realistic image sizes
    (checked in the fixture notes), so no epsilon is added; ``round`` or ``int`` would be
    wrong (e.g. 75x100 gives exactly 1.0, 480x854 gives 8).
    """
    if not (isinstance(bound_th, numbers.Real) and math.isfinite(bound_th) and bound_th > 0):
        raise MetricInputError(f"bound_th must be a positive finite number, got {bound_th!r}")
    if bound_th >= 1:
        if float(bound_th) != int(bound_th):
            raise MetricInputError(f"a bound_th >= 1 is a radius in pixels; got {bound_th}")
        return int(bound_th)
    h, w = shape
    return int(math.ceil(bound_th * math.sqrt(h * h + w * w)))


def disk_kernel(radius: int) -> np.ndarray:
    """(2r+1, 2r+1) uint8 disk: offsets with dy^2 + dx^2 <= r^2 (skimage ``disk(r)``)."""
    if radius < 0:
        raise MetricInputError(f"radius must be >= 0, got {radius}")
    yy, xx = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return (yy * yy + xx * xx <= radius * radius).astype(np.uint8)


def _dilate(bmap: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    # cv2.dilate's default border adds no foreground from outside the image, which is what
    # the toolkit does (and equals scipy's binary_dilation with the same disk).
    if not bmap.any():
        return np.zeros_like(bmap)
    return cv2.dilate(bmap.view(np.uint8), kernel).astype(bool)


def _pr_from_counts(n_p: int, n_g: int, m_p: int, m_g: int) -> tuple[float, float]:
    # The special cases are checked in the toolkit's order.
    if n_p == 0 and n_g > 0:
        return 1.0, 0.0
    if n_p > 0 and n_g == 0:
        return 0.0, 1.0
    if n_p == 0 and n_g == 0:
        return 1.0, 1.0
    return m_p / n_p, m_g / n_g


def _f_from_pr(precision: float, recall: float) -> float:
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


class _Boundary:
    """Boundary map of one mask and its dilation, cached so pairs can reuse them."""

    __slots__ = ("bmap", "dilated", "count")

    def __init__(self, mask: np.ndarray, kernel: np.ndarray) -> None:
        self.bmap = seg2bmap(mask) if mask.any() else np.zeros(mask.shape, dtype=bool)
        self.dilated = _dilate(self.bmap, kernel)
        self.count = int(np.count_nonzero(self.bmap))


def _boundary_pr(pred_b: _Boundary, gt_b: _Boundary) -> tuple[float, float]:
    m_p = int(np.count_nonzero(pred_b.bmap & gt_b.dilated)) if pred_b.count and gt_b.count else 0
    m_g = int(np.count_nonzero(gt_b.bmap & pred_b.dilated)) if pred_b.count and gt_b.count else 0
    return _pr_from_counts(pred_b.count, gt_b.count, m_p, m_g)


def boundary_precision_recall(
    gt: np.ndarray,
    pred: np.ndarray,
    void: np.ndarray | None = None,
    bound_th: float = 0.008,
) -> tuple[float, float]:
    """Boundary precision and recall inside the toolkit's ``f_measure``.

    Void pixels are set to background in both masks *before* boundary extraction (so a void
    region cutting an object creates boundary along the cut) and are not used again.

    Args:
        gt: (H, W) bool / 0-1 ground-truth mask.
        pred: (H, W) bool / 0-1 predicted mask.
        void: optional (H, W) bool void mask.
        bound_th: tolerance as a fraction of the image diagonal (or pixels if >= 1).

    Returns:
        (P, R): P = fraction of the prediction's boundary pixels within the tolerance of the
        GT boundary; R = fraction of the GT's boundary pixels within the tolerance of the
        prediction boundary. An empty boundary on one side gives (1, 0) / (0, 1), on both
        sides (1, 1).
    """
    g, p, v = _prepare_pair(gt, pred, void)
    if v is not None:
        g = g & ~v
        p = p & ~v
    kernel = disk_kernel(boundary_radius(g.shape, bound_th))
    return _boundary_pr(_Boundary(p, kernel), _Boundary(g, kernel))


def f_measure(
    gt: np.ndarray,
    pred: np.ndarray,
    void: np.ndarray | None = None,
    bound_th: float = 0.008,
) -> float:
    """Contour accuracy F = 2PR / (P + R) (0 when P + R = 0), see
    :func:`boundary_precision_recall` for the arguments. Symmetric in gt and pred."""
    return _f_from_pr(*boundary_precision_recall(gt, pred, void, bound_th))


# --------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------


def _nanmean(values: np.ndarray) -> float:
    # An all-NaN (or empty) slice is NaN, as in the toolkit, without the RuntimeWarning.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return float(np.nanmean(values))


def db_statistics(values: np.ndarray, *, compat_uint8: bool = False) -> tuple[float, float, float]:
    """Per-object mean, recall and decay of a per-frame score vector (toolkit ``db_statistics``).

    * mean = nanmean(v);
    * recall = #(v > 0.5, strictly) / N, NaN frames counted as failures;
    * decay = nanmean(v[i0..i1]) - nanmean(v[i3..i4]) with inclusive, overlapping bins and
      i_k = floor(k (N - 1) / 4 + 1/2) (the toolkit's round(linspace(1, N, 5) + 1e-10) - 1).

    The toolkit stores the bin indices as uint8, so for N >= 256 they wrap around and its
    decay is NaN or garbage (depending on the numpy version). The default here computes the
    intended decay for every N; ``compat_uint8=True`` reproduces the wrapped indices with
    numpy >= 2 semantics (indices mod 256, and an end index of 255 + 1 wrapping to 0) so that
    published numbers of sequences with >= 256 frames can be reproduced. For N <= 255 both
    modes are identical.

    Args:
        values: (N,) float per-frame scores, N >= 1; NaN allowed.
        compat_uint8: reproduce the toolkit's uint8 index overflow (keyword only).

    Returns:
        (mean, recall, decay) as Python floats.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise MetricInputError(f"values must be a non-empty 1-D vector, got shape {v.shape}")
    n = v.size
    mean = _nanmean(v)
    with np.errstate(invalid="ignore"):
        recall = float(np.mean(v > 0.5))
    ids = [(k * (n - 1) + 2) // 4 for k in range(5)]  # floor(k(N-1)/4 + 1/2), exact in ints
    if compat_uint8:
        ids = [i % 256 for i in ids]
        first = v[ids[0] : (ids[1] + 1) % 256]
        last = v[ids[3] : (ids[4] + 1) % 256]
    else:
        first = v[ids[0] : ids[1] + 1]
        last = v[ids[3] : ids[4] + 1]
    decay = _nanmean(first) - _nanmean(last)
    return mean, recall, decay


# --------------------------------------------------------------------------------------
# sequences
# --------------------------------------------------------------------------------------


@dataclass
class SequenceResult:
    """Per-object, per-frame J and F of one sequence.

    Attributes:
        seq: sequence name.
        object_names: K names ``"{seq}_{row+1}"`` in row order (the toolkit's naming).
        J: (K, T_eval) float64 region similarity; row r is ``object_names[r]``.
        F: (K, T_eval) float64 contour accuracy.
        assignment: (K, 2) int64 (proposal index, GT object index), 0-based, for the
            unsupervised protocol (row r of J/F is that pair); None otherwise.
        frame_indices: (T_eval,) int64 indices of the evaluated frames in the input.
    """

    seq: str
    object_names: list[str]
    J: np.ndarray
    F: np.ndarray
    assignment: np.ndarray | None = None
    frame_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def num_objects(self) -> int:
        """Number of object rows K."""
        return len(self.object_names)

    def object_stats(self, *, compat_uint8: bool = False) -> np.ndarray:
        """(K, 6) float64: J-mean, J-recall, J-decay, F-mean, F-recall, F-decay per object."""
        out = np.zeros((self.num_objects, 6), dtype=np.float64)
        for r in range(self.num_objects):
            out[r, :3] = db_statistics(self.J[r], compat_uint8=compat_uint8)
            out[r, 3:] = db_statistics(self.F[r], compat_uint8=compat_uint8)
        return out


class _FrameScorer:
    """Per-frame J and F of many (pred, gt) pairs that share the same frames and void.

    Boundary maps and their dilations are computed once per mask and frame, then reused for
    every pair, which is what makes the unsupervised protocol (all proposals x all GT
    objects) affordable.
    """

    def __init__(self, void: np.ndarray | None, shape: tuple[int, int]) -> None:
        self.void = void  # (T, H, W) bool or None
        self.keep = None if void is None else ~void
        self.kernel = disk_kernel(boundary_radius(shape))

    def prepare(self, masks: np.ndarray) -> tuple[np.ndarray, list[_Boundary]]:
        """(T, H, W) bool masks -> (void-removed masks, per-frame boundaries)."""
        m = masks if self.keep is None else masks & self.keep
        return m, [_Boundary(m[t], self.kernel) for t in range(m.shape[0])]

    @staticmethod
    def score(
        pred: tuple[np.ndarray, list[_Boundary]], gt: tuple[np.ndarray, list[_Boundary]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(T,) J and (T,) F of one pair. Void is already removed from both masks."""
        p, pb = pred
        g, gb = gt
        inter = np.count_nonzero(p & g, axis=(1, 2))
        union = np.count_nonzero(p | g, axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            j = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
        f = np.array([_f_from_pr(*_boundary_pr(pb[t], gb[t])) for t in range(len(pb))])
        return j.astype(np.float64), f.astype(np.float64)


def evaluate_semisupervised(
    seq: str, gt_labels: np.ndarray, res_labels: np.ndarray
) -> SequenceResult:
    """DAVIS-2017 semi-supervised protocol for one sequence (toolkit ``_evaluate_semisupervised``).

    * GT 255 (void) becomes background; no void mask is used for J or F.
    * Objects are labels 1..K, K = the largest label in the first GT frame.
    * Frames 1 .. T-2 are evaluated (the first and last frame are not).
    * Result objects are labels 1..Kr over the evaluated result frames; missing objects are
      empty masks, Kr > K is an error (the toolkit aborts).

    Args:
        seq: sequence name (used in object names and error messages).
        gt_labels: (T, H, W) integer GT label maps, 255 = void, T >= 3.
        res_labels: (T, H, W) integer result label maps.

    Returns:
        :class:`SequenceResult` with J, F of shape (K, T-2); row k-1 is object k.
    """
    gt = _as_labels(seq, "gt_labels", gt_labels)
    res = _as_labels(seq, "res_labels", res_labels)
    _same_shape(seq, gt, res)
    t_all = gt.shape[0]
    if t_all < 3:
        raise MetricInputError(
            f"{seq}: the semi-supervised protocol skips the first and last frame and needs "
            f">= 3 frames, got {t_all}"
        )
    gt = np.where(gt == VOID_LABEL, 0, gt)
    num_obj = int(gt[0].max())
    gt_eval = gt[1:-1]
    res_eval = res[1:-1]
    num_res = int(res_eval.max()) if res_eval.size else 0
    if num_res > num_obj:
        raise MetricInputError(
            f"{seq}: the result has {num_res} objects but the first GT frame has {num_obj}; "
            "the semi-supervised protocol does not allow more result objects than GT objects"
        )
    scorer = _FrameScorer(None, gt.shape[1:])
    t_eval = t_all - 2
    j_rows = np.zeros((num_obj, t_eval))
    f_rows = np.zeros((num_obj, t_eval))
    for k in range(1, num_obj + 1):
        # Objects with k > num_res are absent from res: their masks are the toolkit's zero padding.
        j_rows[k - 1], f_rows[k - 1] = scorer.score(
            scorer.prepare(res_eval == k), scorer.prepare(gt_eval == k)
        )
    return SequenceResult(
        seq=seq,
        object_names=[f"{seq}_{k}" for k in range(1, num_obj + 1)],
        J=j_rows,
        F=f_rows,
        frame_indices=np.arange(1, t_all - 1, dtype=np.int64),
    )


def evaluate_unsupervised(
    seq: str, gt_labels: np.ndarray, res_labels: np.ndarray, max_proposals: int = 20
) -> SequenceResult:
    """DAVIS-2017 unsupervised protocol for one sequence (toolkit ``_evaluate_unsupervised``).

    * All T frames are evaluated; void = (GT == 255) is passed to J and F for every pair.
    * GT objects are labels 1..K (K from the first GT frame); proposals are result labels
      1..P with P the largest result label over all frames (P > ``max_proposals`` is an
      error), padded with empty proposals up to K.
    * Every (proposal, GT object) pair gets score (mean_t J + mean_t F) / 2, and a
      one-to-one assignment maximising the total is found with
      ``scipy.optimize.linear_sum_assignment`` (extra proposals are not penalised).
    * Output rows are the assigned pairs in increasing proposal index (not GT order), and
      the object names ``"{seq}_{r+1}"`` follow that order.

    Args:
        seq: sequence name.
        gt_labels: (T, H, W) integer GT label maps, 255 = void.
        res_labels: (T, H, W) integer result label maps (proposal ids 1..P).
        max_proposals: the toolkit's limit on P (20).

    Returns:
        :class:`SequenceResult` with J, F of shape (K, T) and ``assignment`` (K, 2) int64
        rows (proposal index, GT index), 0-based.
    """
    gt = _as_labels(seq, "gt_labels", gt_labels)
    res = _as_labels(seq, "res_labels", res_labels)
    _same_shape(seq, gt, res)
    if gt.shape[0] < 1:
        raise MetricInputError(f"{seq}: no frames to evaluate")
    void = gt == VOID_LABEL
    gt = np.where(void, 0, gt)
    num_obj = int(gt[0].max())
    num_prop = int(res.max()) if res.size else 0
    if num_prop > max_proposals:
        raise MetricInputError(
            f"{seq}: the result has {num_prop} proposals but at most {max_proposals} are "
            "allowed in the unsupervised protocol (keep the best ones and re-index them)"
        )
    num_rows = max(num_prop, num_obj)  # empty proposals pad up to the GT count
    t_all = gt.shape[0]
    scorer = _FrameScorer(void if void.any() else None, gt.shape[1:])
    gts = [scorer.prepare(gt == k) for k in range(1, num_obj + 1)]
    j_all = np.zeros((num_rows, num_obj, t_all))
    f_all = np.zeros((num_rows, num_obj, t_all))
    for p in range(num_rows):
        prop = scorer.prepare(res == p + 1)
        for g in range(num_obj):
            j_all[p, g], f_all[p, g] = scorer.score(prop, gts[g])
    # Same expression and layout as the toolkit, so that tie-breaking sees identical floats.
    score = (np.mean(j_all, axis=2) + np.mean(f_all, axis=2)) / 2
    rows, cols = linear_sum_assignment(-score)
    return SequenceResult(
        seq=seq,
        object_names=[f"{seq}_{r + 1}" for r in range(len(rows))],
        J=j_all[rows, cols, :],
        F=f_all[rows, cols, :],
        assignment=np.stack([rows, cols], axis=1).astype(np.int64).reshape(-1, 2),
        frame_indices=np.arange(t_all, dtype=np.int64),
    )


def _binary_single_object(
    seq: str, gt: np.ndarray, res: np.ndarray, frames: np.ndarray
) -> SequenceResult:
    scorer = _FrameScorer(None, gt.shape[1:])
    j, f = scorer.score(scorer.prepare(res[frames] > 0), scorer.prepare(gt[frames] > 0))
    return SequenceResult(
        seq=seq, object_names=[f"{seq}_1"], J=j[None, :], F=f[None, :], frame_indices=frames
    )


def evaluate_davis16(seq: str, gt_labels: np.ndarray, res_labels: np.ndarray) -> SequenceResult:
    """DAVIS-2016 binary protocol (``fperazzi/davis``) for one sequence.

    All labels > 0 are one object (DAVIS-2016 annotations are 0/255 PNGs, so 255 is the
    object there, not void), no void mask is used, and the first and last frame are
    excluded from J, F and their statistics. Average sequences with
    :func:`global_table_davis16` (sequence-weighted). The temporal-stability measure T of
    the 2016 toolkit is not computed.

    Args:
        seq: sequence name.
        gt_labels: (T, H, W) integer / bool GT maps, T >= 3.
        res_labels: (T, H, W) integer / bool result maps.

    Returns:
        :class:`SequenceResult` with one object ``"{seq}_1"``, J and F of shape (1, T-2).
    """
    gt = _as_labels(seq, "gt_labels", gt_labels)
    res = _as_labels(seq, "res_labels", res_labels)
    _same_shape(seq, gt, res)
    if gt.shape[0] < 3:
        raise MetricInputError(
            f"{seq}: DAVIS-2016 skips the first and last frame and needs >= 3 frames, "
            f"got {gt.shape[0]}"
        )
    return _binary_single_object(seq, gt, res, np.arange(1, gt.shape[0] - 1, dtype=np.int64))


def evaluate_mos_binary(seq: str, gt_labels: np.ndarray, res_labels: np.ndarray) -> SequenceResult:
    """SegAnyMo-style ``mos`` protocol (``core/eval/eval_mask.py``) for one sequence.

    GT and result are collapsed to one binary object (any label > 0), every frame is scored
    (no first/last skip, no void), and both sequences are truncated to the shorter length.

    Args:
        seq: sequence name.
        gt_labels: (T_gt, H, W) integer / bool GT maps.
        res_labels: (T_res, H, W) integer / bool result maps.

    Returns:
        :class:`SequenceResult` with one object, J and F of shape (1, min(T_gt, T_res)).
    """
    gt = _as_labels(seq, "gt_labels", gt_labels)
    res = _as_labels(seq, "res_labels", res_labels)
    _same_shape(seq, gt, res, frames=False)
    t = min(gt.shape[0], res.shape[0])
    if t == 0:
        raise MetricInputError(f"{seq}: no frames to evaluate")
    return _binary_single_object(seq, gt, res, np.arange(t, dtype=np.int64))


# --------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------


def _table_from_stats(stats: np.ndarray) -> dict[str, float]:
    j_m, j_r, j_d, f_m, f_r, f_d = (float(x) for x in stats.mean(axis=0))
    return {
        "J&F-Mean": (j_m + f_m) / 2.0,
        "J-Mean": j_m,
        "J-Recall": j_r,
        "J-Decay": j_d,
        "F-Mean": f_m,
        "F-Recall": f_r,
        "F-Decay": f_d,
    }


def _all_stats(results: list[SequenceResult], compat_uint8: bool) -> list[np.ndarray]:
    if not results:
        raise MetricInputError("no sequence results to aggregate")
    return [r.object_stats(compat_uint8=compat_uint8) for r in results]


def global_table(results: list[SequenceResult], *, compat_uint8: bool = False) -> dict[str, float]:
    """Global DAVIS-2017 numbers (``evaluation_method.py``), object-weighted.

    Each statistic is the plain mean over all objects of all sequences (sequences are not
    averaged first) and J&F-Mean = (J-Mean + F-Mean) / 2.

    Args:
        results: per-sequence results, at least one object in total.
        compat_uint8: passed to :func:`db_statistics`.

    Returns:
        dict with the :data:`GLOBAL_KEYS` as keys.
    """
    stats = np.concatenate(_all_stats(results, compat_uint8), axis=0)
    if stats.shape[0] == 0:
        raise MetricInputError("the sequence results contain no objects")
    return _table_from_stats(stats)


def global_table_davis16(
    results: list[SequenceResult], *, compat_uint8: bool = False
) -> dict[str, float]:
    """Sequence-weighted global numbers (DAVIS-2016 convention): the per-object statistics
    are averaged within each sequence first, then over sequences. With one object per
    sequence (the 2016 protocol) this equals :func:`global_table`. Same keys."""
    per_seq = [s.mean(axis=0) for s in _all_stats(results, compat_uint8) if s.shape[0]]
    if not per_seq:
        raise MetricInputError("the sequence results contain no objects")
    return _table_from_stats(np.stack(per_seq, axis=0))


def per_object_table(
    results: list[SequenceResult], *, compat_uint8: bool = False
) -> list[dict[str, float | str]]:
    """One row per (sequence, object), like the toolkit's per-sequence CSV.

    Returns:
        list of dicts with ``"Sequence"`` (the object name ``"{seq}_{k}"``), ``"seq"`` and
        the float keys J-Mean, J-Recall, J-Decay, F-Mean, F-Recall, F-Decay.
    """
    rows: list[dict[str, float | str]] = []
    for res, stats in zip(results, _all_stats(results, compat_uint8)):
        for name, s in zip(res.object_names, stats):
            rows.append(
                {
                    "Sequence": name,
                    "seq": res.seq,
                    "J-Mean": float(s[0]),
                    "J-Recall": float(s[1]),
                    "J-Decay": float(s[2]),
                    "F-Mean": float(s[3]),
                    "F-Recall": float(s[4]),
                    "F-Decay": float(s[5]),
                }
            )
    return rows
