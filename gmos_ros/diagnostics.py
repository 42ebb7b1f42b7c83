"""Per-camera counters, the /diagnostics status they become, and rate-limited error logging.

Each camera has cumulative totals since activation (for the record) and a `WindowStats`
(gmos_ros.health) of the last `diagnostics_window_s` seconds, from which the level comes:
rates, drops, errors and latency percentiles of the window, so a status recovers once the
cause has left the window. Counters are touched by the subscription callbacks (input, drops,
conversion errors) and by the inference thread (processed, latency, resets, publish errors),
so every update holds the camera's lock. Latency is input stamp -> publish time on the node
clock (sim time under use_sim_time); the window runs on the monotonic clock.

The statuses follow diagnostic_updater's conventions: one status per camera named
"<node name>: <camera>", `hardware_id` the camera (its frame_id once a frame arrived, else its
resolved topic), published on /diagnostics.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from gmos_ros.health import HealthThresholds, WindowStats, WindowSummary, assess

__all__ = ["CameraCounters", "RateLimitedLogger", "build_diagnostics", "camera_status"]


@dataclass
class CameraCounters:
    """Totals since activation plus the sliding window the status is judged on.

    Attributes:
        frames_in: frames received and converted.
        frames_taken: frames the inference thread took from the slot (stepped).
        frames_processed: frames whose results were published.
        frames_dropped: frames replaced in the depth-1 slot before inference took them.
        stream_resets: stamp went backwards or resolution changed (segmenter reset).
        errors: count per error kind (conversion kinds, "decode_warning", "duplicate_stamp",
            "bad_sensor", "publish", "inference", "unmatched_header"; with a depth topic
            "depth_unmatched", "warp_depth_missing", "warp_pose_missing", "camera_info_missing",
            "depth_invalid").
        window: the same events over the last `window.window_s` seconds.
    """

    frames_in: int = 0
    frames_taken: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0
    stream_resets: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    window: WindowStats = field(default_factory=WindowStats)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def error(self, kind: str) -> None:
        """Count one error of `kind`."""
        with self.lock:
            self.errors[kind] += 1
        self.window.error(kind)

    def received(self, dropped: bool) -> None:
        """One frame converted; `dropped`: it replaced a frame inference had not taken."""
        with self.lock:
            self.frames_in += 1
            self.frames_dropped += int(dropped)
        self.window.input(dropped)

    def processed(self, latency_ms: float) -> None:
        """One result published, `latency_ms` after its input stamp."""
        with self.lock:
            self.frames_processed += 1
        self.window.processed(latency_ms)

    def totals(self) -> dict[str, float]:
        """Totals since activation, as diagnostics values."""
        with self.lock:
            out = {
                "frames_in": float(self.frames_in),
                "frames_taken": float(self.frames_taken),
                "frames_processed": float(self.frames_processed),
                "frames_dropped": float(self.frames_dropped),
                "stream_resets": float(self.stream_resets),
            }
            for kind, n in sorted(self.errors.items()):
                out[f"errors.{kind}"] = float(n)
            return out


def window_values(s: WindowSummary) -> dict[str, float]:
    """The window's figures as diagnostics values (keys prefixed `window.`)."""
    out = {
        "window.span_s": s.span_s,
        "window.input_rate_hz": s.input_rate_hz,
        "window.processed_rate_hz": s.processed_rate_hz,
        "window.frames_in": float(s.frames_in),
        "window.frames_dropped": float(s.frames_dropped),
        "window.drop_pct": s.drop_pct,
        "window.errors": float(s.error_count),
        "window.latency_ms_p50": s.latency_ms_p50,
        "window.latency_ms_p95": s.latency_ms_p95,
        "window.latency_ms_max": s.latency_ms_max,
        "since_input_s": s.since_input_s,
    }
    for kind, n in sorted(s.errors.items()):
        out[f"window.errors.{kind}"] = float(n)
    return out


def _fmt(v: float) -> str:
    if math.isnan(v):  # no sample in the window
        return "nan"
    return str(int(v)) if float(v).is_integer() else f"{v:.3f}"


def camera_status(
    name: str,
    hardware_id: str,
    counters: CameraCounters,
    thresholds: HealthThresholds,
    active: bool,
    extra: dict[str, float] | None = None,
) -> DiagnosticStatus:
    """One DiagnosticStatus for one camera: level and message from the window
    (`gmos_ros.health.assess`), values = the window's figures, then the totals, then `extra`."""
    summary = counters.window.summary()
    level, message = assess(summary, thresholds, active)
    values = window_values(summary) | counters.totals() | (extra or {})
    st = DiagnosticStatus()
    st.name = name
    st.hardware_id = hardware_id
    st.level = bytes([int(level)])
    st.message = message
    st.values = [KeyValue(key=k, value=_fmt(v)) for k, v in values.items()]
    return st


def build_diagnostics(stamp: object, statuses: list[DiagnosticStatus]) -> DiagnosticArray:
    """DiagnosticArray with the node clock's stamp."""
    arr = DiagnosticArray()
    arr.header.stamp = stamp
    arr.status = statuses
    return arr


class RateLimitedLogger:
    """Logs the first error of each kind at once, then at most one line per `period_s`,
    with the number of lines suppressed in between (bad input must not flood the log)."""

    def __init__(self, log: Callable[[str], None], period_s: float = 5.0) -> None:
        self._log = log
        self.period_s = period_s
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, kind: str, message: str) -> bool:
        """Log `message` under `kind` unless rate-limited; returns whether it was logged."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.period_s:
                self._suppressed[kind] += 1
                return False
            n = self._suppressed.pop(kind, 0)
            self._last[kind] = now
        more = f" ({n} more suppressed)" if n else ""
        self._log(f"[{kind}] {message}{more}")
        return True
