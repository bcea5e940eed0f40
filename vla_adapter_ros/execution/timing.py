"""The control loop's clock: a thread with absolute deadlines, and period statistics. ROS-free.

:class:`DeadlineLoop` calls ``tick()`` at ``start + n * period`` (absolute deadlines on the
monotonic clock, so a late tick does not shift the ones after it: no drift); a tick that
overran by whole periods skips those deadlines instead of firing them back to back.
:class:`PeriodStats` measures what any loop delivered (this one or an rclpy timer): intervals
between tick starts and their error against the period, each tick's lateness behind its deadline, and
missed ticks. A tick is missed when its deadline passed without it: the loop reports each tick's
deadline and a jump of ``n`` periods between consecutive deadlines missed ``n - 1`` (a tick that is
late but runs before the next deadline is late, not missed: it is in the period error and
``max_late_ms``). A loop that cannot say its deadlines (an rclpy timer before Jazzy) is judged by
its intervals instead: one of ``n >= 1.5`` periods missed ``round(n) - 1``. Each miss gets its cause:
the tick before it ran a period or longer (``overrun``), a garbage collection paused every thread for
half a period or more (``gc``, seen by :class:`GcPauses`), or neither: the loop's thread was not
running when its deadline came (``late_start``: another process had the core, or another thread held
the GIL).
docs/BENCHMARKS.md compares both loops.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

MISS_CAUSES = ("overrun", "gc", "late_start")


class GcPauses:
    """Every garbage collection's span on the monotonic clock, from ``gc.callbacks`` while installed (a
    collection stops every Python thread: it holds the GIL). Keeps the longest pause, the count, and the
    recent spans so that a missed tick can be checked against them."""

    def __init__(self, keep: int = 256) -> None:
        self._spans: deque[tuple[float, float]] = deque(maxlen=keep)
        self._start: float | None = None
        self.count = 0
        self.max_s = 0.0

    def install(self) -> None:
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def remove(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:  # runs with the GIL held, in the collecting thread
        now = time.monotonic()
        if phase == "start":
            self._start = now
        elif self._start is not None:
            self.add(self._start, now)
            self._start = None

    def add(self, start: float, end: float) -> None:
        self._spans.append((start, end))
        self.count += 1
        self.max_s = max(self.max_s, end - start)

    def longest_within(self, start: float, end: float) -> float:
        """The longest collection that overlapped ``[start, end]``, in seconds (0 when none did)."""
        return max((min(e, end) - max(s, start) for s, e in list(self._spans) if s < end and e > start), default=0.0)


class PeriodStats:
    """Thread-safe; ``record()`` at the start of every tick (with the tick's deadline when the loop knows
    it) and ``done()`` at its end."""

    def __init__(self, period_s: float, window: int = 1000) -> None:
        self.period = float(period_s)
        self.gc = GcPauses()  # installed while the loop runs (the node's activate / deactivate)
        self._lock = threading.Lock()
        self._intervals: deque[float] = deque(maxlen=window)
        self._last: float | None = None
        self._last_deadline: float | None = None
        self._last_duration = 0.0
        self.ticks = 0
        self.missed = 0
        self.causes = dict.fromkeys(MISS_CAUSES, 0)
        self.max_error = 0.0
        self.max_tick = 0.0
        self.max_late = 0.0

    def record(self, t: float | None = None, deadline: float | None = None) -> None:
        """A tick started at ``t``; ``deadline``: when it was due (same clock), if the loop knows."""
        t = time.monotonic() if t is None else t
        with self._lock:
            self.ticks += 1
            if deadline is not None:
                self.max_late = max(self.max_late, t - deadline)
            if self._last is not None:
                interval = t - self._last
                self._intervals.append(interval)
                if deadline is not None and self._last_deadline is not None:
                    missed = int(round((deadline - self._last_deadline) / self.period)) - 1
                else:
                    n = interval / self.period
                    missed = int(round(n)) - 1 if n >= 1.5 else 0
                if missed > 0:
                    self.missed += missed
                    self.causes[self._cause(self._last, t)] += missed
                self.max_error = max(self.max_error, abs(interval - self.period))
            self._last, self._last_deadline, self._last_duration = t, deadline, 0.0

    def done(self, t: float | None = None) -> None:
        """The tick that started at the last ``record()`` ended now."""
        t = time.monotonic() if t is None else t
        with self._lock:
            if self._last is not None:
                self._last_duration = t - self._last
                self.max_tick = max(self.max_tick, self._last_duration)

    def _cause(self, start: float, end: float) -> str:
        if self._last_duration >= self.period:
            return "overrun"
        if self.gc.longest_within(start, end) >= 0.5 * self.period:
            return "gc"
        return "late_start"

    def restart(self) -> None:
        """A pause on purpose (deactivated) is not a missed tick."""
        with self._lock:
            self._last, self._last_deadline, self._last_duration = None, None, 0.0

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            intervals = np.array(self._intervals)
            out = {"ticks": self.ticks, "missed_ticks": self.missed, "max_period_error_ms": self.max_error * 1e3,
                   **{f"missed_{c}": n for c, n in self.causes.items()}, "max_tick_ms": self.max_tick * 1e3,
                   "max_late_ms": self.max_late * 1e3,
                   "gc_collections": self.gc.count, "gc_max_pause_ms": self.gc.max_s * 1e3}
        if intervals.size:
            err = np.abs(intervals - self.period)
            out.update(period_p50_ms=float(np.median(intervals)) * 1e3,
                       period_error_p50_ms=float(np.percentile(err, 50)) * 1e3,
                       period_error_p99_ms=float(np.percentile(err, 99)) * 1e3)
        else:
            out.update(period_p50_ms=float("nan"), period_error_p50_ms=float("nan"), period_error_p99_ms=float("nan"))
        return out


class DeadlineLoop:
    """``tick(deadline)`` every ``period_s`` on a thread of its own (``deadline``: when this tick was due, on
    the monotonic clock); ``stop()`` joins it."""

    def __init__(self, period_s: float, tick: Callable[[float], None], *, name: str = "control_loop",
                 on_error: Callable[[BaseException], None] | None = None, priority: int = 0,
                 on_priority: Callable[[str], None] | None = None) -> None:
        self.period = float(period_s)
        self._tick, self._on_error = tick, on_error
        self._priority, self._on_priority = priority, on_priority
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        # Every object alive now (rclpy, numpy, the node's set-up: ~41k objects in the executor node) goes to
        # the permanent generation. Otherwise an automatic full collection walks them all, ~11 ms with the GIL
        # held (measured), whichever thread triggers it: longer than a 100 Hz period. Objects made later are
        # still collected as usual.
        gc.freeze()
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def _set_priority(self) -> None:
        if self._priority <= 0:
            return
        try:  # Linux: pid 0 = the calling thread; needs CAP_SYS_NICE or an rtprio limit
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(self._priority))
            message = f"control loop runs SCHED_FIFO priority {self._priority}"
        except (AttributeError, OSError) as exc:
            message = (f"cannot set SCHED_FIFO priority {self._priority} ({exc}); running with normal priority "
                       "(grant rtprio in /etc/security/limits.conf or CAP_SYS_NICE)")
        if self._on_priority is not None:
            self._on_priority(message)

    def _run(self) -> None:
        self._set_priority()
        deadline = time.monotonic() + self.period
        while not self._stop.is_set():
            delay = deadline - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            try:
                self._tick(deadline)
            except Exception as exc:  # noqa: BLE001 - a tick's bug must not end the control loop; it is reported
                if self._on_error is not None:
                    self._on_error(exc)
            deadline += self.period
            late = time.monotonic() - deadline
            if late > self.period:  # overran whole periods: skip them (counted by PeriodStats), keep the phase
                deadline += (late // self.period) * self.period
