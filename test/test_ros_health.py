"""The sliding-window health policy (gmos_ros.health) with an injected clock: rates, drops,
errors and latency percentiles of the last N seconds, and the level they give."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gmos_ros.health import HealthThresholds, Level, WindowStats, assess


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _run(stats: WindowStats, clock: FakeClock, seconds: float, hz: float, drop_every: int = 0):
    """Feed `seconds` of frames at `hz`, each processed 50 ms later; every `drop_every`-th
    frame replaces an untaken one (a drop)."""
    n = int(round(seconds * hz))
    for i in range(n):
        clock.t += 1.0 / hz
        stats.input(dropped=bool(drop_every) and i % drop_every == 0)
        stats.processed(50.0 + i % 10)


def test_rates_and_latency_percentiles_cover_the_window_only():
    clock = FakeClock()
    stats = WindowStats(window_s=2.0, clock=clock)
    _run(stats, clock, 4.0, 30.0)
    s = stats.summary()
    assert s.span_s == pytest.approx(2.0)
    # 2 s of a 30 Hz stream (+-1 for the event on the window's edge, float clock steps).
    assert 59 <= s.frames_in <= 61 and s.input_rate_hz == pytest.approx(30.0, abs=0.6)
    lat = [50.0 + i % 10 for i in range(120)][-s.frames_processed :]
    assert s.latency_ms_p50 == pytest.approx(float(np.percentile(lat, 50)))
    assert s.latency_ms_p95 == pytest.approx(float(np.percentile(lat, 95)))
    assert s.latency_ms_max == 59.0
    # Nothing processed in the window: NaN, not a stale number.
    clock.t += 5.0
    s = stats.summary()
    assert s.frames_in == 0 and math.isnan(s.latency_ms_p50) and s.since_input_s == 5.0


def test_drops_warn_then_recover_once_out_of_the_window():
    clock = FakeClock()
    th = HealthThresholds(window_s=1.0, stale_s=0.5, drop_warn_pct=10.0)
    stats = WindowStats(window_s=th.window_s, clock=clock)
    _run(stats, clock, 1.0, 20.0)
    assert assess(stats.summary(), th, active=True) == (Level.OK, "ok")
    _run(stats, clock, 0.5, 20.0, drop_every=2)  # a burst: half the frames dropped
    level, msg = assess(stats.summary(), th, active=True)
    assert level == Level.WARN and "dropped" in msg
    _run(stats, clock, 1.0, 20.0)  # the cause ends; one window later it is OK again
    assert assess(stats.summary(), th, active=True)[0] == Level.OK
    # Below the threshold: 1 drop in 20 frames (5 %) is no warning at 10 %.
    stats.input(dropped=True)
    assert assess(stats.summary(), th, active=True)[0] == Level.OK


def test_no_input_goes_stale_or_error_and_inactive_is_stale():
    clock = FakeClock()
    th = HealthThresholds(window_s=2.0, stale_s=1.0)
    stats = WindowStats(window_s=2.0, clock=clock)
    clock.t += 0.5
    assert assess(stats.summary(), th, active=True)[0] == Level.OK  # just activated
    clock.t += 0.6  # no input since activation for 1.1 s
    level, msg = assess(stats.summary(), th, active=True)
    assert level == Level.STALE and msg.startswith("no input for 1.1 s")
    err = HealthThresholds(window_s=2.0, stale_s=1.0, no_input_level=Level.ERROR)
    assert assess(stats.summary(), err, active=True)[0] == Level.ERROR
    stats.input()
    assert assess(stats.summary(), th, active=True)[0] == Level.OK
    assert assess(stats.summary(), th, active=False)[0] == Level.STALE


def test_errors_warn_then_error_by_share_of_the_window():
    clock = FakeClock()
    th = HealthThresholds(window_s=1.0, stale_s=5.0, error_warn_pct=0.0, error_error_pct=50.0)
    stats = WindowStats(window_s=1.0, clock=clock)
    _run(stats, clock, 1.0, 10.0)
    stats.error("decode")
    level, msg = assess(stats.summary(), th, active=True)
    assert level == Level.WARN and "decode 1" in msg
    for _ in range(20):
        stats.error("encoding")
    level, msg = assess(stats.summary(), th, active=True)
    assert level == Level.ERROR and "encoding 20" in msg
    assert stats.summary().errors == {"decode": 1, "encoding": 20}
    clock.t += 1.01
    stats.input()
    assert assess(stats.summary(), th, active=True)[0] == Level.OK


def test_latency_warning_and_live_window_change():
    clock = FakeClock()
    th = HealthThresholds(window_s=1.0, stale_s=5.0, latency_warn_ms=55.0)
    stats = WindowStats(window_s=1.0, clock=clock)
    _run(stats, clock, 1.0, 10.0)  # latencies 50..59 ms: p95 above 55
    assert assess(stats.summary(), th, active=True)[0] == Level.WARN
    stats.window_s = 0.15  # shorter window, applied at once
    assert stats.summary().frames_in == 2
    with pytest.raises(ValueError, match="window_s=0"):
        WindowStats(window_s=0.0)


def test_memory_is_bounded_under_a_flood():
    from gmos_ros import health

    clock = FakeClock()
    stats = WindowStats(window_s=3600.0, clock=clock)
    for _ in range(health._MAX_EVENTS + 500):
        clock.t += 1e-6
        stats.input()
    assert stats.summary().frames_in == health._MAX_EVENTS
