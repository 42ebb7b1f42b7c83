"""A camera's health over a sliding window: what happened in the last N seconds, and its level.

Pure Python (no ROS), so the policy is unit-tested with an injected clock. `WindowStats`
records events (frame received, frame dropped, frame processed with its latency, error of a
kind) with their time on a monotonic clock and answers for the last `window_s` seconds only:
one dropped frame makes the level WARN while it is inside the window and OK again once it
has left it, which cumulative counters never do.

`assess` turns a `WindowSummary` into one of the `diagnostic_msgs/DiagnosticStatus` levels
(OK, WARN, ERROR, STALE) with a message naming the reason, following `HealthThresholds`.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

__all__ = ["HealthThresholds", "Level", "WindowStats", "WindowSummary", "assess"]

# Safety bound on the events kept per kind: memory stays flat even under a flood of
# messages far beyond any camera rate (1000 msg/s for 5 s is 5000 entries).
_MAX_EVENTS = 100_000


class Level(IntEnum):
    """The levels of diagnostic_msgs/DiagnosticStatus (same byte values)."""

    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3


@dataclass(frozen=True)
class HealthThresholds:
    """When a camera's status leaves OK (node parameters `diagnostics_*`).

    Attributes:
        window_s: span of the sliding window, s.
        stale_s: no input for this long (or since activation) -> the no-input level.
        no_input_level: Level.STALE (default) or Level.ERROR for "no input".
        drop_warn_pct: frames dropped above this % of the frames received in the window ->
            WARN (drops are frames replaced in the depth-1 slot before inference took them).
        error_warn_pct: errors above this % of the messages in the window -> WARN
            (0 = any error).
        error_error_pct: errors above this % of the messages in the window -> ERROR.
        latency_warn_ms: latency p95 in the window above this -> WARN (0 = off).
    """

    window_s: float = 5.0
    stale_s: float = 3.0
    no_input_level: Level = Level.STALE
    drop_warn_pct: float = 10.0
    error_warn_pct: float = 0.0
    error_error_pct: float = 50.0
    latency_warn_ms: float = 0.0


@dataclass(frozen=True)
class WindowSummary:
    """What one camera did in the last `span_s` seconds.

    Attributes:
        span_s: time covered (the window, or less right after activation), s.
        frames_in: frames received and converted.
        frames_dropped: frames replaced in the slot before inference took them.
        frames_processed: results published.
        errors: count per error kind.
        input_rate_hz / processed_rate_hz: frames_in / span_s, frames_processed / span_s.
        latency_ms_p50 / latency_ms_p95 / latency_ms_max: input stamp -> publish, ms; NaN
            when nothing was processed in the window.
        since_input_s: time since the last frame received (since activation when none), s.
    """

    span_s: float
    frames_in: int
    frames_dropped: int
    frames_processed: int
    errors: dict[str, int]
    input_rate_hz: float
    processed_rate_hz: float
    latency_ms_p50: float
    latency_ms_p95: float
    latency_ms_max: float
    since_input_s: float

    @property
    def error_count(self) -> int:
        """Errors of every kind in the window."""
        return sum(self.errors.values())

    @property
    def drop_pct(self) -> float:
        """Frames dropped, % of the frames received in the window (0 when none arrived)."""
        return 100.0 * self.frames_dropped / self.frames_in if self.frames_in else 0.0

    @property
    def error_pct(self) -> float:
        """Errors, % of every message of the window (good frames + refused ones)."""
        total = self.frames_in + self.error_count
        return 100.0 * self.error_count / total if total else 0.0


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default) of an ascending list; NaN if empty."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass
class WindowStats:
    """Events of one camera with their times; summaries of the last `window_s` seconds.

    Thread-safe (subscription callbacks and the inference thread both record). Memory is
    proportional to the event rate times the window, capped at `_MAX_EVENTS` per kind.

    Args:
        window_s: span of the window, s (may be changed live).
        clock: monotonic time source in seconds (tests inject a fake one).
    """

    window_s: float = 5.0
    clock: Callable[[], float] = time.monotonic
    _start: float = field(init=False)
    _last_input: float | None = field(init=False, default=None)
    _inputs: deque[float] = field(init=False)
    _drops: deque[float] = field(init=False)
    _processed: deque[tuple[float, float]] = field(init=False)
    _errors: deque[tuple[float, str]] = field(init=False)
    _lock: threading.Lock = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.window_s <= 0:
            raise ValueError(f"window_s={self.window_s}: must be > 0")
        self._start = self.clock()
        self._inputs = deque(maxlen=_MAX_EVENTS)
        self._drops = deque(maxlen=_MAX_EVENTS)
        self._processed = deque(maxlen=_MAX_EVENTS)
        self._errors = deque(maxlen=_MAX_EVENTS)
        self._lock = threading.Lock()

    def input(self, dropped: bool = False) -> None:
        """A frame was received; `dropped`: it replaced one inference had not taken."""
        with self._lock:
            now = self.clock()
            self._last_input = now
            self._inputs.append(now)
            if dropped:
                self._drops.append(now)
            self._prune(now)

    def processed(self, latency_ms: float) -> None:
        """A result was published `latency_ms` after its input stamp."""
        with self._lock:
            now = self.clock()
            self._processed.append((now, float(latency_ms)))
            self._prune(now)

    def error(self, kind: str) -> None:
        """One error of `kind` (refused message, failed publish, inference failure...)."""
        with self._lock:
            now = self.clock()
            self._errors.append((now, kind))
            self._prune(now)

    def summary(self) -> WindowSummary:
        """The last `window_s` seconds (see `WindowSummary`)."""
        with self._lock:
            now = self.clock()
            self._prune(now)
            span = max(1e-6, min(self.window_s, now - self._start))
            lat = sorted(v for _, v in self._processed)
            last = self._last_input if self._last_input is not None else self._start
            return WindowSummary(
                span_s=span,
                frames_in=len(self._inputs),
                frames_dropped=len(self._drops),
                frames_processed=len(self._processed),
                errors=dict(Counter(k for _, k in self._errors)),
                input_rate_hz=len(self._inputs) / span,
                processed_rate_hz=len(self._processed) / span,
                latency_ms_p50=_percentile(lat, 50.0),
                latency_ms_p95=_percentile(lat, 95.0),
                latency_ms_max=lat[-1] if lat else math.nan,
                since_input_s=now - last,
            )

    def _prune(self, now: float) -> None:
        cut = now - self.window_s
        for q in (self._inputs, self._drops):
            while q and q[0] <= cut:
                q.popleft()
        for q2 in (self._processed, self._errors):
            while q2 and q2[0][0] <= cut:
                q2.popleft()


def assess(summary: WindowSummary, th: HealthThresholds, active: bool) -> tuple[Level, str]:
    """The level of one camera and why, worst reason first.

    Order: inactive (STALE) > no input for `stale_s` (STALE or ERROR) > errors above
    `error_error_pct` (ERROR) > errors above `error_warn_pct` (WARN) > drops above
    `drop_warn_pct` (WARN) > latency p95 above `latency_warn_ms` (WARN) > OK.
    """
    if not active:
        return Level.STALE, "inactive (model not loaded)"
    if summary.since_input_s >= th.stale_s:
        return th.no_input_level, f"no input for {summary.since_input_s:.1f} s"
    n_err = summary.error_count
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(summary.errors.items()))
    span = f"in the last {summary.span_s:.1f} s"
    if n_err and summary.error_pct > th.error_error_pct:
        return (
            Level.ERROR,
            f"{summary.error_pct:.0f}% of messages refused or failed {span} ({kinds})",
        )
    if n_err and summary.error_pct > th.error_warn_pct:
        return Level.WARN, f"{n_err} errors {span} ({kinds})"
    if summary.frames_dropped and summary.drop_pct > th.drop_warn_pct:
        return (
            Level.WARN,
            f"{summary.frames_dropped} of {summary.frames_in} frames dropped {span} "
            f"({summary.drop_pct:.0f}% > {th.drop_warn_pct:g}%): inference slower than input",
        )
    if th.latency_warn_ms > 0 and summary.latency_ms_p95 > th.latency_warn_ms:
        return Level.WARN, f"latency p95 {summary.latency_ms_p95:.0f} ms > {th.latency_warn_ms:g}"
    return Level.OK, "ok"
