"""`vla-adapter switch` against a real SwitchAdapter server in another process (loopback DDS)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros
FIXTURE = Path(__file__).parent / "fixtures" / "switch_server.py"


@pytest.fixture()
def switch_server(ros_env):
    name = f"switch_fixture_{os.getpid()}"
    proc = subprocess.Popen(
        [sys.executable, str(FIXTURE), name, "pick,place,open"],
        env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "READY", proc.stderr.read()
        yield f"/{name}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vla_adapter_ros.cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_switch_known_adapter(switch_server, ros_env):
    out = cli("switch", "place", "--node", switch_server, "--timeout", "20", env=ros_env)
    assert out.returncode == 0, out.stderr
    assert "ok: switched to place" in out.stdout
    assert "active: place" in out.stdout and "previous: pick" in out.stdout


def test_switch_unknown_adapter_is_refused_with_names(switch_server, ros_env):
    out = cli("switch", "fly", "--node", switch_server, "--timeout", "20", env=ros_env)
    assert out.returncode == 1
    assert "refused" in out.stdout and "pick, place, open" in out.stdout
    assert "active: pick" in out.stdout


def test_unreachable_service_fails_fast_and_clearly(ros_env):
    start = time.monotonic()
    out = cli("switch", "pick", "--node", "/nobody_here", "--timeout", "1.5", env=ros_env)
    elapsed = time.monotonic() - start
    assert out.returncode == 3
    assert "/nobody_here/switch_adapter not available" in out.stderr
    assert elapsed < 15, f"took {elapsed:.1f} s"
