"""The control loop thread and its period statistics (no ROS). Timing bounds here are loose enough for
a loaded 2-core machine; the real numbers are benchmarks/bench_executor.py's."""

from __future__ import annotations

import gc
import threading
import time

import numpy as np
import pytest

from vla_adapter_ros.execution.timing import DeadlineLoop, GcPauses, PeriodStats


def test_without_deadlines_missed_ticks_are_judged_by_the_intervals():
    """A loop that cannot say its deadlines (an rclpy timer on Humble)."""
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


def test_a_late_tick_is_late_and_a_deadline_without_its_tick_is_missed():
    """With the deadlines the loop reports: a tick 5.5 ms late that still ran before the next deadline was
    late, not missed (the interval rule would count its 15.5 ms interval as a miss); the loop skipping two
    deadlines after a tick more than a period late missed two."""
    stats = PeriodStats(0.01)
    for t, deadline in ((0.0, 0.0), (0.01, 0.01), (0.0255, 0.02), (0.03, 0.03), (0.0602, 0.06), (0.07, 0.07)):
        stats.record(t, deadline=deadline)
    snap = stats.snapshot()
    assert snap["ticks"] == 6 and snap["missed_ticks"] == 2 and snap["missed_late_start"] == 2
    assert snap["max_late_ms"] == pytest.approx(5.5)
    assert snap["max_period_error_ms"] == pytest.approx(20.2)


def test_each_missed_tick_is_given_its_cause():
    """An overrun (the tick before took a period or more), a collection of half a period or more inside the
    interval, or neither (the thread did not run when its deadline came)."""
    stats = PeriodStats(0.01)
    stats.record(0.0)
    stats.done(0.025)  # this tick took 25 ms
    stats.record(0.03)  # 3 periods later: 2 missed, overrun
    stats.done(0.031)
    stats.gc.add(0.032, 0.045)  # a 13 ms collection
    stats.record(0.05)  # 2 periods: 1 missed, gc
    stats.done(0.051)
    stats.gc.add(0.052, 0.054)  # 2 ms: too short to cost a tick
    stats.record(0.08)  # 3 periods: 2 missed, late start
    snap = stats.snapshot()
    assert snap["missed_ticks"] == 5
    assert (snap["missed_overrun"], snap["missed_gc"], snap["missed_late_start"]) == (2, 1, 2)
    assert snap["max_tick_ms"] == pytest.approx(25.0) and snap["gc_max_pause_ms"] == pytest.approx(13.0)
    assert snap["gc_collections"] == 2


def test_gc_pauses_sees_real_collections_while_installed_only():
    pauses = GcPauses()
    pauses.install()
    pauses.install()  # once only
    try:
        gc.collect()  # a full collection: the longest one here
        assert pauses.count >= 1 and 0 < pauses.max_s < 5  # (automatic ones may come too)
        assert pauses.longest_within(0.0, time.monotonic()) == pytest.approx(pauses.max_s)
    finally:
        pauses.remove()
    seen = pauses.count
    gc.collect()
    assert pauses.count == seen


def test_the_deadline_loop_keeps_its_phase_and_survives_a_failing_tick():
    stats = PeriodStats(0.01)
    errors: list[BaseException] = []
    count = {"n": 0}

    def tick(deadline: float) -> None:
        stats.record(deadline=deadline)
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


def test_the_loop_tells_each_tick_its_deadline():
    """Deadlines on the absolute schedule (whole periods apart, a skipped one included) and never ahead of
    the tick: what PeriodStats counts missed ticks from."""
    seen: list[tuple[float, float]] = []
    enough = threading.Event()

    def tick(deadline: float) -> None:
        seen.append((deadline, time.monotonic()))
        if len(seen) == 3:
            time.sleep(0.025)  # overruns: at least one deadline is skipped
        if len(seen) >= 20:
            enough.set()

    loop = DeadlineLoop(0.01, tick)
    loop.start()
    assert enough.wait(10)
    loop.stop()
    deadlines = np.array([d for d, _ in seen])
    steps = np.diff(deadlines) / 0.01
    assert np.allclose(steps, np.round(steps), atol=1e-6) and (np.round(steps) >= 1).all(), steps
    assert np.round(steps[2]) >= 2, "the deadline after the overrunning tick was skipped"
    assert all(t >= d for d, t in seen)


def test_priority_request_reports_what_happened():
    said: list[str] = []
    done = threading.Event()
    loop = DeadlineLoop(0.01, lambda _: done.set(), priority=10, on_priority=said.append)
    loop.start()
    assert done.wait(5)
    loop.stop()
    assert len(said) == 1 and ("SCHED_FIFO priority 10" in said[0])


def test_starting_the_loop_moves_the_set_up_out_of_reach_of_a_full_collection():
    """A full collection over a node's set-up holds the GIL longer than a 100 Hz period: start() freezes it."""
    gc.unfreeze()
    setup = [object() for _ in range(1000)]
    loop = DeadlineLoop(0.01, lambda _: None)
    loop.start()
    try:
        assert gc.get_freeze_count() >= len(setup)
    finally:
        loop.stop()
        gc.unfreeze()
