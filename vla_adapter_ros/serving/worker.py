"""Serve only the newest item on one background thread: the policy node's inference loop.

The executor thread calls :meth:`LatestFrameWorker.submit` and returns at once; the worker
thread takes the newest pending item, so a stale frame is never queued behind a newer one
(the older one is dropped and counted), exactly one item is handled at a time, and an
optional minimum interval between starts caps the rate. ROS-free and unit-tested as such.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestFrameWorker(Generic[T]):
    """One thread that calls ``handle(item)`` for the newest submitted item, one at a time."""

    def __init__(
        self,
        handle: Callable[[T], None],
        *,
        name: str = "vla_inference",
        min_interval_s: float = 0.0,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._handle = handle
        self._on_error = on_error
        self._cond = threading.Condition()
        self._item: T | None = None
        self._busy = False
        self._stop = False
        self._last_start = -float("inf")
        self._min_interval_s = float(min_interval_s)
        self._skipped = 0
        self._handled = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # --- executor side --------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def submit(self, item: T) -> T | None:
        """Make ``item`` the next one served; returns the older pending item it replaced (dropped)."""
        with self._cond:
            dropped, self._item = self._item, item
            if dropped is not None:
                self._skipped += 1
            self._cond.notify_all()
        return dropped

    def clear(self) -> T | None:
        """Drop the pending item (e.g. on deactivate); returns it."""
        with self._cond:
            dropped, self._item = self._item, None
        return dropped

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop after the item in progress (if any); True when the thread ended within ``timeout``."""
        with self._cond:
            self._stop = True
            self._item = None
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until nothing is pending or running (tests, clean shutdown)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._busy or self._item is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    @property
    def min_interval_s(self) -> float:
        return self._min_interval_s

    @min_interval_s.setter
    def min_interval_s(self, value: float) -> None:
        with self._cond:
            self._min_interval_s = max(0.0, float(value))
            self._cond.notify_all()

    @property
    def skipped(self) -> int:
        """Items replaced by a newer one before they were served."""
        return self._skipped

    @property
    def handled(self) -> int:
        return self._handled

    @property
    def pending(self) -> bool:
        """A newer item is waiting (the one being handled should give way where it can)."""
        return self._item is not None

    @property
    def busy(self) -> bool:
        return self._busy

    # --- worker thread --------------------------------------------------------
    def _next(self) -> T | None:
        """The item to serve next (None = stop); honours the minimum interval between starts."""
        with self._cond:
            while True:
                while self._item is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return None
                remaining = self._last_start + self._min_interval_s - time.monotonic()
                if remaining <= 0:
                    break
                # Rate-limited: wait, letting newer frames replace the pending one meanwhile.
                self._cond.wait(remaining)
            item, self._item = self._item, None
            self._busy = True
            self._last_start = time.monotonic()
            return item

    def _run(self) -> None:
        while (item := self._next()) is not None:
            try:
                self._handle(item)
            except Exception as exc:  # noqa: BLE001 - the serving thread must outlive a handler bug
                # handle() reports the errors it expects itself; this is the last line of defence.
                if self._on_error is not None:
                    self._on_error(exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._handled += 1
                    self._cond.notify_all()
