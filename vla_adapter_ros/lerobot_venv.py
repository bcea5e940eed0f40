"""Where LeRobot's own code runs: the separate LeRobot venv, made on first use.

LeRobot 0.4.4 pins torch < 2.11 and transformers < 5, so it cannot share the main venv (torch 2.13).
``scripts/lerobot_env.sh`` makes ``.venv-lerobot`` once (~2 min, ~8.4 GB with CUDA libraries; stamped,
so later calls only print its path); ``VLA_LEROBOT_VENV`` chooses where. The LeRobot dataset
converters (tools.lerobot_dataset) and the SmolVLA family (families.smolvla.bridge) both start
their workers with :func:`run`: no separate set-up step. Both workers answer the same way, through
:func:`answer`: the result as one JSON line on stdout (exit 0) or the error on stderr (exit 1).

Each :func:`run` is a fresh process, which spends ~6 s of CPU importing torch and lerobot (lerobot's
``policies`` package imports every policy). Inside :func:`warm_workers` the commands go instead to one
long-lived process per interpreter that imports them once and runs each worker module as ``python -m``
would (its argv, working directory, stdout, stderr and exit status; torch's thread count as it started):
the test suite's ~25 worker commands, or a script that trains several adapters. (A fresh process seeds
torch's default generator at random, so no command can depend on it: each seeds its own.)
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENV_SCRIPT = ROOT / "scripts" / "lerobot_env.sh"
# Hub and datasets libraries never reach a network: every model and dataset the workers read is local.
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


class LeRobotVenvError(RuntimeError):
    """The LeRobot venv could not be made; the message ends with the script's own error."""


class LeRobotWorkerError(RuntimeError):
    """A worker in the LeRobot venv failed; the message is its own error line."""


def lerobot_python() -> Path:
    """The LeRobot venv's python, the venv made by scripts/lerobot_env.sh when it is missing or stale."""
    env = dict(os.environ)
    env.setdefault("VLA_VENV", str(Path(sys.prefix)))
    try:
        out = subprocess.run(["bash", str(ENV_SCRIPT)], check=True, capture_output=True, text=True, env=env).stdout
    except subprocess.CalledProcessError as exc:
        raise LeRobotVenvError(f"cannot make the LeRobot venv ({ENV_SCRIPT.name}): {exc.stderr.strip()[-500:]}") from exc
    return Path(out.strip().splitlines()[-1]) / "bin" / "python"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(OFFLINE, PYTHONPATH=str(ROOT))
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def run(module: str, *args: str, python: str | Path | None = None, timeout: float | None = None,
        prefer: str = "") -> Any:
    """``python -m MODULE ARGS`` in the LeRobot venv (``python``: another interpreter that has lerobot),
    offline, with only this package on the path (the main venv's or ROS's site-packages must not shadow
    the venv's own); returns the worker's JSON result (:func:`answer`). A failing worker raises
    :class:`LeRobotWorkerError` with its last stderr line starting with ``prefer``, else its last stderr
    line; a venv that cannot be made, :class:`LeRobotVenvError`. Inside :func:`warm_workers`, the warm
    process runs it."""
    python = str(python or lerobot_python())
    if _warm.on:
        rc, stdout, stderr = _warm.server(python).call(module, args, timeout)
    else:
        done = subprocess.run([python, "-m", module, *args], capture_output=True, text=True, env=_env(),
                              timeout=timeout)
        rc, stdout, stderr = done.returncode, done.stdout, done.stderr
    if rc != 0:
        lines = [line for line in stderr.splitlines() if line.strip()]
        lines = [line for line in lines if prefer and line.startswith(prefer)] or lines
        raise LeRobotWorkerError(lines[-1] if lines else f"{module} exited with {rc}")
    return json.loads(stdout.strip().splitlines()[-1])


class _Server:
    """One warm worker process (this module's ``--serve``): a JSON request per line on its stdin, a JSON
    reply per line on its original stdout. Commands from several threads take turns."""

    def __init__(self, python: str) -> None:
        self.lock = threading.Lock()
        self.proc = subprocess.Popen([python, "-m", "vla_adapter_ros.lerobot_venv", "--serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_env())

    def call(self, module: str, args: tuple[str, ...], timeout: float | None) -> tuple[int, str, str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        request = json.dumps({"module": module, "args": list(args), "cwd": os.getcwd()}) + "\n"
        with self.lock:
            try:
                self.proc.stdin.write(request.encode())
                self.proc.stdin.flush()
                reply = _read_line(self.proc.stdout.fileno(), timeout)
            except (OSError, EOFError) as exc:
                self.close(kill=True)
                raise LeRobotWorkerError(f"the warm {module} worker died ({exc})") from exc
            except subprocess.TimeoutExpired:
                self.close(kill=True)  # as subprocess.run does to a command past its timeout
                raise subprocess.TimeoutExpired([module, *args], timeout or 0.0) from None
        out = json.loads(reply)
        return int(out["rc"]), out["stdout"], out["stderr"]

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self, kill: bool = False) -> None:
        if kill:
            self.proc.kill()
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _read_line(fd: int, timeout: float | None) -> bytes:
    deadline = None if timeout is None else time.monotonic() + timeout
    buf = b""
    while not buf.endswith(b"\n"):
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not select.select([fd], [], [], wait)[0]:
            raise subprocess.TimeoutExpired("warm worker", timeout or 0.0)
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            raise EOFError("no reply")
        buf += chunk
    return buf


class _Warm:
    def __init__(self) -> None:
        self.levels: list[bool] = []  # warm_workers() nesting, innermost last
        self.servers: dict[str, _Server] = {}
        self.lock = threading.Lock()

    @property
    def on(self) -> bool:
        return bool(self.levels) and self.levels[-1]

    def server(self, python: str) -> _Server:
        with self.lock:
            server = self.servers.get(python)
            if server is None or not server.alive:
                server = self.servers[python] = _Server(python)
            return server


_warm = _Warm()


@contextlib.contextmanager
def warm_workers(warm: bool = True) -> Iterator[None]:
    """Within: :func:`run` hands its commands to one warm process per interpreter (started on first use,
    stopped when no enclosing ``warm_workers()`` is left) instead of starting a process each;
    ``warm_workers(False)``: a fresh process each again, inside."""
    _warm.levels.append(warm)
    try:
        yield
    finally:
        _warm.levels.pop()
        if not any(_warm.levels):
            with _warm.lock:
                servers, _warm.servers = list(_warm.servers.values()), {}
            for server in servers:
                server.close()


def answer(work: Callable[[], Any], errors: tuple[type[Exception], ...] = (Exception,),
           describe: Callable[[Exception], str] = lambda exc: f"error: {exc}") -> int:
    """A worker's reply (run in the LeRobot venv): ``work()``'s result as the last stdout line, JSON, exit
    status 0; one of ``errors`` as ``describe(exc)`` on stderr, exit status 1 (the caller raises it)."""
    try:
        result = work()
    except errors as exc:
        print(describe(exc), file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


def _serve() -> int:
    """The warm worker (in the LeRobot venv): runs each requested module as ``python -m`` would."""
    import importlib
    import io
    import runpy
    import traceback

    class Capture(io.StringIO):
        def close(self) -> None:  # a module may close its stdout when done (json.tool does)
            pass

    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # what C code writes to fd 1 must not end up among the replies
    try:
        torch: Any = importlib.import_module("torch")
    except ImportError:  # pragma: no cover - every LeRobot venv has torch
        torch = None
    threads = torch.get_num_threads() if torch is not None else 0
    for line in sys.stdin:
        request = json.loads(line)
        if torch is not None:  # a command may change it (bench --threads); the next one starts as a fresh process
            torch.set_num_threads(threads)
        os.chdir(request["cwd"])
        out, err = Capture(), Capture()
        sys.argv = [request["module"], *request["args"]]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
                rc = 0
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
                if not isinstance(exc.code, int | None):
                    print(exc.code, file=sys.stderr)
            except BaseException:  # noqa: BLE001 - reported as the fresh process's traceback and exit status would be
                traceback.print_exc()
                rc = 1
        replies.write(json.dumps({"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue()}) + "\n")
        replies.flush()
    return 0


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    sys.exit(_serve())
