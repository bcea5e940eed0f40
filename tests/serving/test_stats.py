"""Serving counters, percentiles, rates and the throttled problem log. No ROS."""

from __future__ import annotations

import pytest

from vla_adapter_ros.serving.stats import ProblemLog, ServingStats


def test_stats_percentiles_and_rates():
    s = ServingStats(window=100)
    s.snapshot(now=0.0)
    for i in range(1, 101):
        s.incr("frames_in")
        s.record_output(i / 1000, 0.001, 0.002)
    s.refuse("image_encoding")
    s.error("provider")
    snap = s.snapshot(now=2.0)
    assert snap["input_rate_hz"] == pytest.approx(50.0) and snap["output_rate_hz"] == pytest.approx(50.0)
    assert snap["latency_p50_ms"] == pytest.approx(50.5) and snap["latency_p95_ms"] == pytest.approx(95.05)
    assert snap["refused"] == {"image_encoding": 1} and snap["errors"] == {"provider": 1}


def test_problem_log_logs_once_then_throttles_per_kind():
    lines, now = [], [0.0]
    log = ProblemLog(lines.append, period_s=10.0, clock=lambda: now[0])
    assert log.report("image_encoding", "bad 1")
    assert not log.report("image_encoding", "bad 2")
    assert log.report("stale_image", "old")  # another kind is not throttled by the first
    now[0] = 11.0
    assert log.report("image_encoding", "bad 3")
    assert len(lines) == 3 and "bad 1" in lines[0] and "1 more since" in lines[2]


def test_pairing_times_have_their_own_window_and_percentiles():
    s = ServingStats(window=4)
    assert s.snapshot()["pairing_p50_ms"] != s.snapshot()["pairing_p50_ms"]  # NaN before any frame set
    for seconds in (0.5, 0.0001, 0.0002, 0.0003, 0.0004):  # the first leaves the window of 4
        s.record_pairing(seconds)
    snap = s.snapshot()
    assert snap["pairing_p50_ms"] == pytest.approx(0.25) and snap["pairing_p95_ms"] == pytest.approx(0.385)
    assert snap["counts"] == {} and snap["latency_p50_ms"] != snap["latency_p50_ms"]  # outputs untouched
