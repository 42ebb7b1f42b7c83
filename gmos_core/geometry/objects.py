"""Per-object 3-D state: robust position and extent from a mask, velocity with ego-motion removed.

A mask's pixels are looked up in a per-pixel point map (depth back-projection, metric; or π³'s
local points, up to scale). Position is the per-axis median of the valid points (robust to mask
bleed onto the background and to depth holes), extent the 5-95 % range per axis.

Velocity is measured in the **current camera frame** with the camera's own motion removed: the
previous position is carried into the current frame with the ego-motion (``p_prev → T·p_prev``)
before differencing, so a static object seen from a moving camera has velocity ≈ 0 and a moving
one has its velocity relative to the world, expressed in the current camera axes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gmos_core.geometry.camera import apply_transform
from gmos_core.geometry.ego_motion import EgoMotion

__all__ = ["ObjectMeasurement", "ObjectState", "ObjectStateEstimator", "measure_object"]


@dataclass(frozen=True)
class ObjectMeasurement:
    """One object in one frame.

    Attributes:
        position: (3,) float64 robust centroid in the camera frame (m if ``metric``).
        extent: (3,) float64 size along the camera x, y, z axes (5-95 % range), same unit.
        num_points: valid points used.
        valid_fraction: valid points / mask pixels, in [0, 1] (depth holes lower it).
        metric: metres (True) or π³ units (False).
    """

    position: np.ndarray
    extent: np.ndarray
    num_points: int
    valid_fraction: float
    metric: bool


def measure_object(
    mask: np.ndarray,
    points: np.ndarray,
    metric: bool,
    min_points: int = 20,
    trim_percent: float = 5.0,
) -> ObjectMeasurement | None:
    """Robust position and extent of the points under a mask.

    Args:
        mask: (H, W) bool (or non-zero) object mask.
        points: (H, W, 3) camera-frame points; NaN / non-finite / z <= 0 entries are ignored (depth
            holes, zero depth inside the mask).
        metric: whether ``points`` are in metres.
        min_points: fewer valid points → None (no reliable state).
        trim_percent: the extent is the [trim, 100 - trim] percentile range per axis.

    Returns:
        :class:`ObjectMeasurement`, or None when the mask has fewer than ``min_points`` valid points.

    Raises:
        ValueError: mask and point map sizes differ.
    """
    m = np.asarray(mask) != 0
    if points.ndim != 3 or points.shape[-1] != 3 or points.shape[:2] != m.shape:
        raise ValueError(
            f"measure_object: mask {m.shape} and point map {points.shape} do not match "
            "(expected (H, W) and (H, W, 3))"
        )
    n_mask = int(m.sum())
    if n_mask == 0:
        return None
    p = points[m].astype(np.float64)
    ok = np.isfinite(p).all(axis=1) & (p[:, 2] > 0)
    n = int(ok.sum())
    if n < min_points:
        return None
    p = p[ok]
    lo, hi = np.percentile(p, [trim_percent, 100.0 - trim_percent], axis=0)
    return ObjectMeasurement(
        position=np.median(p, axis=0),
        extent=np.maximum(hi - lo, 0.0),
        num_points=n,
        valid_fraction=n / n_mask,
        metric=metric,
    )


@dataclass(frozen=True)
class ObjectState:
    """An object's 3-D state at one frame, in the current camera frame.

    Attributes:
        object_id: the segmenter's object id.
        stamp_ns: frame time, ns.
        position: (3,) robust centroid (m if ``metric``, else π³ units).
        extent: (3,) size along the camera axes, same unit.
        velocity: (3,) velocity relative to the world, in the current camera axes, units/s;
            zeros when ``velocity_valid`` is False.
        velocity_valid: a previous position and the ego-motion in between were known.
        metric: metres (True) or up to scale (False).
        num_points: valid points behind the position.
    """

    object_id: int
    stamp_ns: int
    position: np.ndarray
    extent: np.ndarray
    velocity: np.ndarray
    velocity_valid: bool
    metric: bool
    num_points: int

    @property
    def speed(self) -> float:
        """|velocity|, units/s (0 when the velocity is not valid)."""
        return float(np.linalg.norm(self.velocity))


@dataclass
class _Track:
    # Recent positions (oldest first), all carried into the latest camera frame, and their stamps.
    positions: list[np.ndarray]
    stamps_ns: list[int]
    metric: bool

    @property
    def stamp_ns(self) -> int:
        return self.stamps_ns[-1]


class ObjectStateEstimator:
    """Turns per-frame measurements into states with ego-motion-compensated velocities.

    The velocity is the least-squares slope of the object's positions over the last ``window_s``
    (all carried into the current camera frame), not a two-frame difference: a one-pixel jitter of
    a mask moves a far object's centroid by centimetres, which a 0.1 s difference turns into
    decimetres per second.

    Memory is bounded: a track not measured for ``max_gap_s`` is dropped, and a track keeps at
    most the positions of the last ``window_s``.

    Args:
        max_gap_s: longest time between two measurements of an object that still gives a velocity.
        window_s: time span of the positions the velocity is fitted on.
    """

    def __init__(self, max_gap_s: float = 1.0, window_s: float = 0.5) -> None:
        if not max_gap_s > 0:
            raise ValueError(f"max_gap_s must be > 0, got {max_gap_s}")
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.max_gap_ns = int(max_gap_s * 1e9)
        self.window_ns = int(window_s * 1e9)
        self._tracks: dict[int, _Track] = {}
        self._last_stamp_ns: int | None = None

    @property
    def num_tracks(self) -> int:
        return len(self._tracks)

    def reset(self) -> None:
        """Forget every track (e.g. after a camera jump or a scale reset)."""
        self._tracks.clear()
        self._last_stamp_ns = None

    def rescale(self, ratio: float) -> None:
        """Multiply stored up-to-scale positions by ``ratio`` (a new π³ window's scale)."""
        for tr in self._tracks.values():
            if not tr.metric:
                tr.positions = [p * ratio for p in tr.positions]

    def update(
        self,
        stamp_ns: int,
        measurements: dict[int, ObjectMeasurement],
        ego: EgoMotion | None,
    ) -> list[ObjectState]:
        """Add one frame.

        Args:
            stamp_ns: this frame's time, ns (strictly increasing; an older stamp resets the tracks).
            measurements: object id → measurement in this frame's camera.
            ego: camera motion from the previous :meth:`update` frame to this one; None when it is
                unknown (the tracks then cannot be carried over: velocities are invalid this frame).

        Returns:
            one :class:`ObjectState` per measurement, in id order.
        """
        last = self._last_stamp_ns
        if last is not None and stamp_ns <= last:
            self.reset()
            last = None
        if last is not None:
            if ego is None:
                self._tracks.clear()
            else:
                for k in list(self._tracks):
                    tr = self._tracks[k]
                    if tr.metric == ego.metric:
                        tr.positions = [
                            apply_transform(ego.curr_from_prev, p) for p in tr.positions
                        ]
                    else:  # units differ: this track cannot be carried over
                        del self._tracks[k]
        self._last_stamp_ns = stamp_ns
        out: list[ObjectState] = []
        for oid in sorted(measurements):
            meas = measurements[oid]
            tr = self._tracks.get(oid)
            if tr is None or tr.metric != meas.metric or stamp_ns - tr.stamp_ns > self.max_gap_ns:
                tr = _Track([], [], meas.metric)
                self._tracks[oid] = tr
            tr.positions.append(np.asarray(meas.position, dtype=np.float64).copy())
            tr.stamps_ns.append(int(stamp_ns))
            while stamp_ns - tr.stamps_ns[0] > self.window_ns and len(tr.stamps_ns) > 2:
                tr.positions.pop(0)
                tr.stamps_ns.pop(0)
            velocity, valid = _fit_velocity(tr)
            out.append(
                ObjectState(
                    object_id=int(oid),
                    stamp_ns=int(stamp_ns),
                    position=meas.position,
                    extent=meas.extent,
                    velocity=velocity,
                    velocity_valid=valid,
                    metric=meas.metric,
                    num_points=meas.num_points,
                )
            )
        stale = [k for k, tr in self._tracks.items() if stamp_ns - tr.stamp_ns > self.max_gap_ns]
        for k in stale:
            del self._tracks[k]
        return out


def _fit_velocity(tr: _Track) -> tuple[np.ndarray, bool]:
    """Least-squares slope of positions over time; (zeros, False) with fewer than 2 positions."""
    if len(tr.stamps_ns) < 2:
        return np.zeros(3), False
    t = (np.asarray(tr.stamps_ns, dtype=np.float64) - tr.stamps_ns[-1]) * 1e-9
    p = np.stack(tr.positions)
    tc = t - t.mean()
    denom = float((tc**2).sum())
    if denom <= 0:
        return np.zeros(3), False
    return (tc[:, None] * (p - p.mean(axis=0))).sum(axis=0) / denom, True
