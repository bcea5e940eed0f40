"""The control loop thread and its period statistics (no ROS). Timing bounds here are loose enough for
a loaded 2-core machine; the real numbers are benchmarks/bench_executor.py's."""

from __future__ import annotations

import gc
import threading
import time

import pytest

from vla_adapter_ros.execution.timing import DeadlineLoop, PeriodStats


def test_period_stats_count_missed_ticks_from_the_intervals():
    stats = PeriodStats(0.01)
    for t in (0.0, 0.01, 0.02, 0.05, 0.06, 0.0749):  # 0.02 -> 0.05 misses two ticks; 0.06 -> 0.0749 none
        stats.record(t)
    snap = stats.snapshot()
    assert snap["ticks"] == 6 and snap["missed_ticks"] == 2
    assert snap["max_period_error_ms"] == pytest.approx(20.0)
    assert snap["period_p50_ms"] == pytest.approx(10.0)
    stats.restart()
    stats.record(100.0)  # a deliberate pause is no miss
    assert stats.snapshot()["missed_ticks"] == 2


def test_the_deadline_loop_keeps_its_phase_and_survives_a_failing_tick():
    stats = PeriodStats(0.01)
    errors: list[BaseException] = []
    count = {"n": 0}

    def tick() -> None:
        stats.record()
        count["n"] += 1
        if count["n"] == 5:
            raise RuntimeError("a bug in one tick")

    loop = DeadlineLoop(0.01, tick, on_error=errors.append)
    start = time.monotonic()
    loop.start()
    time.sleep(1.0)
    loop.stop()
    elapsed = time.monotonic() - start
    assert not loop.running and len(errors) == 1 and "a bug" in str(errors[0])
    # Absolute deadlines: never more ticks than periods elapsed (no catch-up bursts), and on a loaded
    # 2-core machine still most of them.
    assert 0.6 * elapsed / 0.01 <= count["n"] <= elapsed / 0.01 + 1, (count, elapsed)


def test_priority_request_reports_what_happened():
    said: list[str] = []
    done = threading.Event()
    loop = DeadlineLoop(0.01, done.set, priority=10, on_priority=said.append)
    loop.start()
    assert done.wait(5)
    loop.stop()
    assert len(said) == 1 and ("SCHED_FIFO priority 10" in said[0])


def test_starting_the_loop_moves_the_set_up_out_of_reach_of_a_full_collection():
    """A full collection over a node's set-up holds the GIL longer than a 100 Hz period: start() freezes it."""
    gc.unfreeze()
    setup = [object() for _ in range(1000)]
    loop = DeadlineLoop(0.01, lambda: None)
    loop.start()
    try:
        assert gc.get_freeze_count() >= len(setup)
    finally:
        loop.stop()
        gc.unfreeze()
