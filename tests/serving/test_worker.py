"""LatestFrameWorker: newest item wins, one at a time, rate limit, survives handler bugs. No ROS."""

from __future__ import annotations

import threading
import time

from vla_adapter_ros.serving.worker import LatestFrameWorker


def test_worker_serves_only_the_newest_frame_one_at_a_time():
    seen, running, overlap = [], [0], []
    gate, started = threading.Event(), threading.Event()

    def handle(item):
        started.set()
        running[0] += 1
        overlap.append(running[0])
        if item == 0:
            gate.wait(5)  # hold the first item while newer ones arrive
        seen.append(item)
        running[0] -= 1

    worker = LatestFrameWorker(handle)
    worker.start()
    try:
        worker.submit(0)
        assert started.wait(5)  # the worker holds item 0
        dropped = [worker.submit(i) for i in range(1, 6)]
        gate.set()
        assert worker.wait_idle(5)
    finally:
        worker.stop()
    assert seen == [0, 5], "frames 1-4 must be dropped, never served after a newer one"
    assert dropped == [None, 1, 2, 3, 4] and worker.skipped == 4
    assert max(overlap) == 1


def test_worker_rate_limit_keeps_the_newest_frame_while_waiting():
    seen, served_a = [], threading.Event()

    def handle(item):
        seen.append((item, time.monotonic()))
        served_a.set()

    worker = LatestFrameWorker(handle, min_interval_s=0.2)
    worker.start()
    try:
        worker.submit("a")
        assert served_a.wait(5)
        worker.submit("b")
        worker.submit("c")  # replaces b during the rate-limit wait
        assert worker.wait_idle(5)
    finally:
        worker.stop()
    assert [s for s, _ in seen] == ["a", "c"]
    assert seen[1][1] - seen[0][1] >= 0.19


def test_worker_survives_a_handler_bug_and_reports_it():
    errors, seen = [], []

    def handle(item):
        if item == "boom":
            raise RuntimeError("bug")
        seen.append(item)

    worker = LatestFrameWorker(handle, on_error=errors.append)
    worker.start()
    try:
        worker.submit("boom")
        assert worker.wait_idle(5)
        worker.submit("ok")
        assert worker.wait_idle(5)
    finally:
        assert worker.stop()
    assert seen == ["ok"] and len(errors) == 1 and "bug" in str(errors[0])


