"""The warm worker behind lerobot_venv.run: same answers and errors as a fresh process per command.

The protocol does not need LeRobot: the standard library's ``json.tool`` and ``timeit`` stand in for a
worker module here (this venv's python), so this runs on every machine in seconds; the SmolVLA and
dataset tests run their real workers warm (tests/conftest.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vla_adapter_ros import lerobot_venv
from vla_adapter_ros.lerobot_venv import LeRobotWorkerError, run, warm_workers


@pytest.fixture(autouse=True)
def own_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test's warm workers only (the session's own, tests/conftest.py, stay out of its way)."""
    monkeypatch.setattr(lerobot_venv, "_warm", lerobot_venv._Warm())


def answers(tmp_path: Path) -> tuple[object, str]:
    result = run("json.tool", "--compact", "in.json", python=sys.executable)  # relative: the caller's directory
    with pytest.raises(LeRobotWorkerError) as error:
        run("json.tool", str(tmp_path / "missing.json"), python=sys.executable)
    return result, str(error.value)


def test_a_warm_worker_answers_like_a_fresh_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "in.json").write_text('{"a": [1, 2]}')
    monkeypatch.chdir(tmp_path)
    with warm_workers(False):
        fresh = answers(tmp_path)
    with warm_workers():
        first = answers(tmp_path)
        (server,) = lerobot_venv._warm.servers.values()
        again = answers(tmp_path)
        assert lerobot_venv._warm.servers[sys.executable] is server, "one process for every command"
    assert fresh == first == again
    assert fresh[0] == {"a": [1, 2]} and "missing.json" in fresh[1]
    assert server.proc.poll() is not None, "stopped when the last warm_workers() ended"


def test_a_warm_worker_that_dies_or_times_out_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "in.json").write_text("[3]")
    monkeypatch.chdir(tmp_path)
    with warm_workers():
        assert run("json.tool", "--compact", "in.json", python=sys.executable) == [3]
        (server,) = lerobot_venv._warm.servers.values()
        server.proc.kill()
        server.proc.wait()
        assert run("json.tool", "--compact", "in.json", python=sys.executable) == [3]
        (second,) = lerobot_venv._warm.servers.values()
        assert second is not server
        with pytest.raises(subprocess.TimeoutExpired):  # as subprocess.run: the command is killed
            run("timeit", "-n", "1", "-r", "1", "import time; time.sleep(30)", python=sys.executable, timeout=1.0)
        assert second.proc.poll() is not None
        assert run("json.tool", "--compact", "in.json", python=sys.executable) == [3]
