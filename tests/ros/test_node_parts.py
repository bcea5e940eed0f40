"""ROS-free parts of the policy node: config validation, the latest-frame worker, stats, name checks."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from vla_adapter_ros.ros import params
from vla_adapter_ros.ros.params import PolicyNodeConfig
from vla_adapter_ros.ros.stats import ProblemLog, ServingStats
from vla_adapter_ros.ros.worker import LatestFrameWorker


# --- config ---------------------------------------------------------------------
def test_params_module_and_config_are_ros_free():
    code = ("import sys; from vla_adapter_ros.ros.params import PolicyNodeConfig; PolicyNodeConfig(); "
            "print('rclpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "change, needle",
    [
        (dict(camera_reliability="sometimes"), "'sometimes'"),
        (dict(camera_depth=0), "camera_depth must be in [1, 100], got 0"),
        (dict(max_image_age=-1.0), "-1.0"),
        (dict(max_rate=float("nan")), "finite"),
        (dict(camera_topic="not a topic"), "'not a topic'"),
        (dict(action_topic=""), "action_topic ''"),
        (dict(providers="cuda,,cpu"), "bad provider"),
        (dict(adapter="../x"), "not a path"),
        (dict(autostart="yes"), "autostart must be bool, got 'yes'"),
        (dict(latency_window=1.5), "latency_window must be int"),
    ],
)
def test_bad_values_are_refused_quoting_the_value(change, needle):
    with pytest.raises(ValueError) as err:
        PolicyNodeConfig(**change)
    assert needle in str(err.value)


def test_derived_values():
    cfg = PolicyNodeConfig(providers=" cuda, cpu ", proprio_joint_names="a,b", use_compressed=True,
                           camera_topic="/cam/image_raw", max_rate=5)
    assert cfg.provider_list == ["cuda", "cpu"] and cfg.joint_name_list == ["a", "b"]
    assert cfg.image_topic == "/cam/image_raw/compressed"
    assert cfg.max_rate == 5.0 and isinstance(cfg.max_rate, float)
    assert PolicyNodeConfig().provider_list == [] and PolicyNodeConfig(proprio_topic="").proprio_topic == ""


def test_check_update_honours_mutability():
    cfg = PolicyNodeConfig()
    assert params.check_update(cfg, {"max_rate": 10.0}, unconfigured=False).max_rate == 10.0
    with pytest.raises(ValueError, match="read-only"):
        params.check_update(cfg, {"camera_topic": "/x"}, unconfigured=True)
    with pytest.raises(ValueError, match="only while the node is unconfigured"):
        params.check_update(cfg, {"model_dir": "/m"}, unconfigured=False)
    assert params.check_update(cfg, {"model_dir": "/m"}, unconfigured=True).model_dir == "/m"
    with pytest.raises(ValueError, match="max_image_age"):
        params.check_update(cfg, {"max_image_age": -2.0}, unconfigured=False)
    with pytest.raises(ValueError, match="unknown parameter"):
        params.check_update(cfg, {"nope": 1}, unconfigured=True)


def test_every_field_has_a_description_and_mutability():
    for name, f in params.field_info().items():
        assert f.metadata["description"], name
        assert f.metadata["mutability"] in (params.READ_ONLY, params.CONFIGURE, params.RUNTIME), name


# --- latest-frame worker ----------------------------------------------------------
def test_worker_serves_only_the_newest_frame_one_at_a_time():
    seen, running, overlap = [], [0], []
    gate = threading.Event()

    def handle(item):
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
        time.sleep(0.05)
        dropped = [worker.submit(i) for i in range(1, 6)]
        gate.set()
        assert worker.wait_idle(5)
    finally:
        worker.stop()
    assert seen == [0, 5], "frames 1-4 must be dropped, never served after a newer one"
    assert dropped == [None, 1, 2, 3, 4] and worker.skipped == 4
    assert max(overlap) == 1


def test_worker_rate_limit_keeps_the_newest_frame_while_waiting():
    seen = []
    worker = LatestFrameWorker(lambda i: seen.append((i, time.monotonic())), min_interval_s=0.2)
    worker.start()
    try:
        worker.submit("a")
        time.sleep(0.02)
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


# --- stats and throttled logging -------------------------------------------------
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
