"""Two-view motion geometry of a 5-frame window, as the input planes of the flow motion net.

For each neighbour of the window's centre frame the dense optical flow (OpenCV DIS, checked
forward-backward) says where every pixel went; a homography and a fundamental matrix, fitted
robustly to that flow (moving objects are the outliers), say where it would have gone if it
were static. The homography explains a rotating camera or a far scene; the fundamental matrix
also explains the parallax of near static things under a translating camera, but only across
its epipolar lines. What neither explains is independent motion; which of the two to trust,
and how an object's flow differs from its surroundings', is what the net learns
(`gmos_core.models.flow_motion_net`). Measured per object on the validation clips
(docs/training.md, session 14): the homography's grey residual 0.67 AUROC, the flow's
homography transfer error 0.73, the Sampson distance to a fundamental matrix fitted by LMedS
0.76, the net on these planes 0.79.

Pure numpy/OpenCV (no torch, no ROS). One frame's planes cost 8 DIS flows (4 in a stream whose
windows share a `FlowPairCache`) and 8 robust fits at the working size (128 px on the long side:
~38-48 ms on one core of the build machine, the fundamental matrix's LMedS fit most of it;
`training.bench_flow_motion`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Executor

import cv2
import numpy as np

__all__ = [
    "FEATURE_SCALE",
    "NEIGHBOUR_OFFSETS",
    "NUM_FEATURES",
    "WORK_SIDE",
    "FlowPairCache",
    "feature_size",
    "flow_grey",
    "pair_planes",
    "window_planes",
]

#: Neighbours of the centre frame, as offsets in the window (the runtime's 5-frame window).
NEIGHBOUR_OFFSETS = (-2, -1, 1, 2)
#: Planes per neighbour (flow x, y; homography transfer error x, y; Sampson distance; valid),
#: then the centre's grey image and the x, y pixel coordinates in [-1, 1].
PLANES_PER_NEIGHBOUR = 6
NUM_FEATURES = PLANES_PER_NEIGHBOUR * len(NEIGHBOUR_OFFSETS) + 3
#: Long side (px) of the working images the flow is computed on (the renderer's 128 × 128 at
#: 10 fps is what the net learned from: pixel motion is in those units).
WORK_SIDE = 128
#: The planes are stored at 1 / FEATURE_SCALE of the working size.
FEATURE_SCALE = 2
# A forward-backward flow mismatch above this (px) marks an occlusion or a bad match.
_FB_TOLERANCE_PX = 1.0
# Every `_FIT_STEP`-th pixel (in x and y) of the valid flow feeds the robust fits.
_FIT_STEP = 3
_MIN_FIT_POINTS = 30
# Scales that bring each plane to roughly unit range (working-size pixels), and clips.
_FLOW_SCALE, _HRES_SCALE, _HRES_CLIP, _SAMPSON_SCALE, _SAMPSON_CLIP = 8.0, 4.0, 5.0, 2.0, 5.0

_LOCAL = threading.local()


def _dis() -> cv2.DISOpticalFlow:
    # One per thread: creating it costs more than a 128-px flow, and its calc keeps working
    # buffers, so two threads must not share one.
    dis = getattr(_LOCAL, "dis", None)
    if dis is None:
        dis = _LOCAL.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis


def feature_size(height: int, width: int) -> tuple[int, int]:
    """(h, w) of the planes for an H × W frame: the working size halved, each a multiple of 8
    (the net pools three times)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"feature_size: frame size must be positive, got {height}x{width}")
    s = WORK_SIDE / FEATURE_SCALE / max(height, width)
    return max(8, round(height * s / 8) * 8), max(8, round(width * s / 8) * 8)


def flow_grey(frame_rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB → (h, w) uint8 grey at the working size (long side `WORK_SIDE`;
    made once per frame and kept with it by the streaming runtime)."""
    if frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3 or frame_rgb.dtype != np.uint8:
        raise ValueError(
            f"flow_grey: expected (H, W, 3) uint8, got {frame_rgb.shape} {frame_rgb.dtype}"
        )
    h, w = frame_rgb.shape[:2]
    grey = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2GRAY)
    s = WORK_SIDE / max(h, w)
    if s == 1.0:
        return grey
    size = (max(8, round(w * s)), max(8, round(h * s)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA)


class FlowPairCache:
    """Dense flows of recent frame pairs, so that windows sliding over a stream compute each
    pair's flow once instead of twice.

    The planes of centre t ask for the flows t → j and j → t of each neighbour j, and the planes
    of centre j (when j is a centre too, as every frame is in a stream) ask for the same two.
    Pairs are matched by the identity of the two grey arrays, which each entry holds (so an id
    cannot be reused while cached): callers make a frame's grey once (`flow_grey`) and never
    change it in place. Bounded to the `capacity` most recently used flows (a stream needs ~12;
    each flow is h × w × 2 float32, 128 kB at 128 × 128). Safe to share between threads.

    Args:
        capacity: flows kept (>= 1).
    """

    def __init__(self, capacity: int = 32) -> None:
        if capacity < 1:
            raise ValueError(f"FlowPairCache: capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._flows: OrderedDict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._flows)

    def flow(self, g0: np.ndarray, g1: np.ndarray) -> np.ndarray:
        """(h, w, 2) float32 DIS flow from `g0` to `g1` (read-only: shared with later calls)."""
        key = (id(g0), id(g1))
        with self._lock:
            entry = self._flows.get(key)
            if entry is not None and entry[0] is g0 and entry[1] is g1:
                self._flows.move_to_end(key)
                self.hits += 1
                return entry[2]
        flow = _dense_flow(g0, g1)
        flow.flags.writeable = False
        with self._lock:
            self.misses += 1
            self._flows[key] = (g0, g1, flow)
            self._flows.move_to_end(key)
            while len(self._flows) > self.capacity:
                self._flows.popitem(last=False)
        return flow


def _dense_flow(g0: np.ndarray, g1: np.ndarray) -> np.ndarray:
    return _dis().calc(g0, g1, None)


def _homogeneous(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.stack([x, y, np.ones_like(x)], -1).reshape(-1, 3).astype(np.float64)


def pair_planes(g0: np.ndarray, g1: np.ndarray, flows: FlowPairCache | None = None) -> np.ndarray:
    """The six planes of the centre frame `g0` against one neighbour `g1`.

    Args:
        g0, g1: (h, w) uint8 grey images of one size (`flow_grey`).
        flows: where the two flows are looked up and kept (None: computed here); the planes
            are the same either way.

    Returns:
        (6, h, w) float32: flow x, y (/ 8 px); flow minus the homography's transfer, x, y
        (/ 4 px, clipped to ±5); Sampson distance to the fundamental matrix (/ 2 px, clipped to
        5); valid (1 where the flow stays inside the neighbour and passes the forward-backward
        check). Every plane is 0 where not valid, and the fitted planes are 0 where too few
        points fit.
    """
    if g0.shape != g1.shape or g0.ndim != 2:
        raise ValueError(f"pair_planes: grey images differ or are not 2-D: {g0.shape}, {g1.shape}")
    h, w = g0.shape
    flow = flows.flow if flows is not None else _dense_flow
    fw, bw = flow(g0, g1), flow(g1, g0)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    x1, y1 = xs + fw[..., 0], ys + fw[..., 1]
    back = cv2.remap(
        bw, x1, y1, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan
    )
    with np.errstate(invalid="ignore"):
        fb = np.hypot(fw[..., 0] + back[..., 0], fw[..., 1] + back[..., 1])
        ok = (x1 >= 0) & (x1 <= w - 1) & (y1 >= 0) & (y1 <= h - 1) & (fb < _FB_TOLERANCE_PX)
    hres = np.zeros((h, w, 2))
    sampson = np.zeros((h, w))
    sub = ok[::_FIT_STEP, ::_FIT_STEP]
    src = np.stack([xs, ys], -1)[::_FIT_STEP, ::_FIT_STEP][sub].astype(np.float64)
    dst = np.stack([x1, y1], -1)[::_FIT_STEP, ::_FIT_STEP][sub].astype(np.float64)
    if len(src) >= _MIN_FIT_POINTS:
        p0, p1 = _homogeneous(xs, ys), _homogeneous(x1, y1)
        hom, _ = cv2.findHomography(src, dst, cv2.RANSAC, 1.0)
        if hom is not None:
            q = p0 @ hom.T
            with np.errstate(divide="ignore", invalid="ignore"):
                hres = (p1[:, :2] - q[:, :2] / q[:, 2:3]).reshape(h, w, 2)
        fmat, _ = cv2.findFundamentalMat(src, dst, cv2.FM_LMEDS)
        if fmat is not None and fmat.shape == (3, 3):
            fx, ftx = p0 @ fmat.T, p1 @ fmat
            den = fx[:, 0] ** 2 + fx[:, 1] ** 2 + ftx[:, 0] ** 2 + ftx[:, 1] ** 2
            sampson = np.sqrt(np.sum(p1 * fx, 1) ** 2 / np.maximum(den, 1e-12)).reshape(h, w)
    okf = ok.astype(np.float32)
    planes = [
        fw[..., 0] / _FLOW_SCALE,
        fw[..., 1] / _FLOW_SCALE,
        np.clip(np.nan_to_num(hres[..., 0]) / _HRES_SCALE, -_HRES_CLIP, _HRES_CLIP),
        np.clip(np.nan_to_num(hres[..., 1]) / _HRES_SCALE, -_HRES_CLIP, _HRES_CLIP),
        np.clip(sampson / _SAMPSON_SCALE, 0.0, _SAMPSON_CLIP),
        np.ones_like(okf),
    ]
    return np.stack([np.nan_to_num(p).astype(np.float32) * okf for p in planes])


def window_planes(
    greys: Sequence[np.ndarray],
    center: int,
    flows: FlowPairCache | None = None,
    pool: Executor | None = None,
) -> np.ndarray:
    """The net's input for the centre frame of a window.

    Args:
        greys: the window's frames as `flow_grey` gives them, in time order; the centre's
            neighbours are `center + NEIGHBOUR_OFFSETS`. A neighbour outside the window, or the
            centre's own array repeated (the runtime repeats frames at a stream's ends), gives
            six zero planes (no evidence).
        center: index of the frame the planes describe.
        flows: flow cache shared by the windows of a stream (`FlowPairCache`), or None.
        pool: threads to compute the neighbours' planes on at once (OpenCV releases the GIL
            in the flows and fits), or None: one after another. The planes are the same.

    Returns:
        (NUM_FEATURES, h, w) float32 at `feature_size` of the working images: the neighbours'
        planes (`pair_planes`, in `NEIGHBOUR_OFFSETS` order), the centre's grey / 255 and the
        x, y coordinates in [-1, 1].
    """
    if not 0 <= center < len(greys):
        raise ValueError(f"window_planes: centre {center} outside a window of {len(greys)}")
    g0 = greys[center]
    h, w = g0.shape
    fh, fw = feature_size(h, w)
    pairs = []
    for off in NEIGHBOUR_OFFSETS:
        j = center + off
        pairs.append(greys[j] if 0 <= j < len(greys) and greys[j] is not g0 else None)
    if pool is None:
        per_pair = [None if g1 is None else pair_planes(g0, g1, flows) for g1 in pairs]
    else:
        futures = [None if g1 is None else pool.submit(pair_planes, g0, g1, flows) for g1 in pairs]
        per_pair = [None if f is None else f.result() for f in futures]
    planes: list[np.ndarray] = []
    for p in per_pair:
        planes.extend(p if p is not None else np.zeros((PLANES_PER_NEIGHBOUR, h, w), np.float32))
    xs = np.linspace(-1.0, 1.0, w, dtype=np.float32)
    ys = np.linspace(-1.0, 1.0, h, dtype=np.float32)
    planes += [
        g0.astype(np.float32) / 255.0,
        np.broadcast_to(xs[None, :], (h, w)),
        np.broadcast_to(ys[:, None], (h, w)),
    ]
    return np.stack(
        [
            cv2.resize(np.ascontiguousarray(p), (fw, fh), interpolation=cv2.INTER_AREA)
            for p in planes
        ]
    )
