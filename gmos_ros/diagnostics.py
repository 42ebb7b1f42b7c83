"""Per-camera counters, the /diagnostics status they become, and rate-limited error logging.

Counters are touched by the subscription callbacks (input, drops, conversion errors) and by
the inference thread (processed, latency, resets, publish errors), so every update holds the
camera's lock. Rates are measured over the last diagnostics period on the monotonic clock;
latency is input stamp -> publish time on the node clock (sim time under use_sim_time).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

__all__ = ["CameraCounters", "RateLimitedLogger", "build_diagnostics", "camera_status"]


@dataclass
class CameraCounters:
    """Totals since activation plus what the last report saw (for rates).

    Attributes:
        frames_in: frames received and converted.
        frames_taken: frames the inference thread took from the slot (stepped).
        frames_processed: frames whose results were published.
        frames_dropped: frames replaced in the depth-1 slot before inference took them.
        stream_resets: stamp went backwards or resolution changed (segmenter reset).
        errors: count per error kind (conversion kinds, "duplicate_stamp", "publish",
            "inference", "unmatched_header").
        latency_ms: input stamp -> publish, last period's samples.
    """

    frames_in: int = 0
    frames_taken: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0
    stream_resets: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latency_ms: list[float] = field(default_factory=list)
    last_in: int = 0
    last_processed: int = 0
    last_time: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def error(self, kind: str) -> None:
        """Count one error of `kind`."""
        with self.lock:
            self.errors[kind] += 1

    def snapshot(self) -> dict[str, float]:
        """Rates and totals since the previous snapshot (resets the period)."""
        with self.lock:
            now = time.monotonic()
            dt = max(1e-6, now - self.last_time)
            lat = sorted(self.latency_ms)
            out = {
                "input_rate_hz": (self.frames_in - self.last_in) / dt,
                "processed_rate_hz": (self.frames_processed - self.last_processed) / dt,
                "latency_ms_mean": sum(lat) / len(lat) if lat else float("nan"),
                "latency_ms_max": lat[-1] if lat else float("nan"),
                "frames_in": float(self.frames_in),
                "frames_taken": float(self.frames_taken),
                "frames_processed": float(self.frames_processed),
                "frames_dropped": float(self.frames_dropped),
                "stream_resets": float(self.stream_resets),
            }
            for kind, n in sorted(self.errors.items()):
                out[f"errors.{kind}"] = float(n)
            self.latency_ms.clear()
            self.last_in, self.last_processed, self.last_time = (
                self.frames_in,
                self.frames_processed,
                now,
            )
            return out


def _fmt(v: float) -> str:
    if v != v:  # NaN: no sample in this period
        return "nan"
    return str(int(v)) if float(v).is_integer() else f"{v:.3f}"


def camera_status(
    name: str, hardware_id: str, values: dict[str, float], active: bool
) -> DiagnosticStatus:
    """One DiagnosticStatus: OK; WARN once frames were dropped or errors counted; STALE when
    the node is not active."""
    st = DiagnosticStatus()
    st.name = name
    st.hardware_id = hardware_id
    errors = sum(v for k, v in values.items() if k.startswith("errors."))
    if not active:
        st.level, st.message = DiagnosticStatus.STALE, "inactive (model not loaded)"
    elif values.get("frames_dropped", 0) > 0 or errors > 0:
        st.level = DiagnosticStatus.WARN
        st.message = f"{int(values['frames_dropped'])} frames dropped, {int(errors)} errors"
    else:
        st.level, st.message = DiagnosticStatus.OK, "ok"
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
