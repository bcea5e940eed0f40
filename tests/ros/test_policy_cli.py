"""`vla-adapter list | status | send-instruction | switch` against the real policy node (loopback DDS)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.ros


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vla_adapter_ros.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_list_marks_the_active_adapter(shared_policy, ros_env):
    proc, d = shared_policy
    out = cli("list", "--node", proc.fqn, "--timeout", "20", env=ros_env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    active = lines[-1].split("active: ")[1]
    assert any(line.startswith(f"* {active} ") for line in lines)
    for name in ("pick", "place", "open"):
        assert any(f" {name} " in line and "test/" + name in line for line in lines), out.stdout


def test_switch_cli_against_the_node(shared_policy, ros_env):
    proc, d = shared_policy
    out = cli("switch", "place", "--node", proc.fqn, "--timeout", "20", env=ros_env)
    assert out.returncode == 0, out.stderr
    assert "active: place" in out.stdout
    out = cli("switch", "../../etc/passwd", "--node", proc.fqn, "--timeout", "20", env=ros_env)
    assert out.returncode == 1 and "looks like a path" in out.stdout and "active: place" in out.stdout


def test_status_reads_the_node_status_on_demand(shared_policy, ros_env):
    proc, d = shared_policy
    out = cli("status", "--node", proc.fqn, "--timeout", "20", env=ros_env)
    assert out.returncode in (0, 1), out.stderr  # OK or WARN (e.g. no frames in the last period)
    assert out.stdout.startswith(f"{proc.name}: policy: ")
    for key in ("lifecycle_state", "active_adapter", "execution_provider", "latency_p95_ms", "skipped_frames"):
        assert f"  {key} " in out.stdout, key
    assert "CPUExecutionProvider" in out.stdout


def test_status_of_a_missing_node_fails_clearly(ros_env):
    out = cli("status", "--node", "/nobody_here", "--timeout", "1.5", env=ros_env)
    assert out.returncode == 3 and "no status from /nobody_here" in out.stderr and "get_status" in out.stderr


def test_send_instruction_changes_what_the_node_serves(shared_policy, ros_env):
    proc, d = shared_policy
    topic = proc.topics["instruction_topic"]
    out = cli("send-instruction", "close the drawer", "--topic", topic, "--timeout", "20", env=ros_env)
    assert out.returncode == 0, out.stderr
    assert "acknowledged" in out.stdout
    start = d.action_count()
    d.send_frame(np.zeros((32, 32, 3), np.uint8))
    assert d.wait_actions(start + 1)[-1].instruction == "close the drawer"
    d.send_instruction("open the drawer")  # restore for other tests
    d.wait_for(lambda: d.status()["instruction"] == "open the drawer", 10, "the instruction restored")


def test_send_instruction_without_subscriber_fails_clearly(ros_env):
    out = cli("send-instruction", "hello", "--topic", "/nobody/listens", "--timeout", "1", env=ros_env)
    assert out.returncode == 3 and "no subscriber on /nobody/listens" in out.stderr
    out = cli("send-instruction", "  ", env=ros_env)
    assert out.returncode == 2 and "empty" in out.stderr


def test_load_cli_calls_the_node_load_adapter_service(shared_policy, ros_env):
    proc, d = shared_policy
    active = d.status()["active_adapter"]
    out = cli("load", "open", "--no-activate", "--node", proc.fqn, "--timeout", "20", env=ros_env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok: adapter 'open' was already loaded") and f"(active: {active})" in out.stdout
    out = cli("load", "door_close", "--node", proc.fqn, "--timeout", "20", env=ros_env)
    assert out.returncode == 1 and "refused: adapter 'door_close' is not listed in the manifest" in out.stdout
    assert "listed: pick, place, open" in out.stdout and f"(active: {active})" in out.stdout
    out = cli("load", "../x", "--node", proc.fqn, "--timeout", "20", env=ros_env)
    assert out.returncode == 1 and "looks like a path" in out.stdout
    out = cli("load", "open", "--node", "/nobody_here", "--timeout", "1.5", env=ros_env)
    assert out.returncode == 3 and "/nobody_here/load_adapter" in out.stderr
