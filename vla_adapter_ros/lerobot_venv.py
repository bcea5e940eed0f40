"""Where LeRobot's own code runs: the separate LeRobot venv, made on first use.

LeRobot 0.4.4 pins torch < 2.11 and transformers < 5, so it cannot share the main venv (torch 2.13).
``scripts/lerobot_env.sh`` makes ``.venv-lerobot`` once (~2 min, ~8.4 GB with CUDA libraries; stamped,
so later calls only print its path); ``VLA_LEROBOT_VENV`` chooses where. The LeRobot dataset
converters (tools.lerobot_dataset) and the SmolVLA family (families.smolvla.bridge) both start
their workers with :func:`run`: no separate set-up step. Both workers answer the same way, through
:func:`answer`: the result as one JSON line on stdout (exit 0) or the error on stderr (exit 1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
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


def run(module: str, *args: str, python: str | Path | None = None, timeout: float | None = None,
        prefer: str = "") -> Any:
    """``python -m MODULE ARGS`` in the LeRobot venv (``python``: another interpreter that has lerobot),
    offline, with only this package on the path (the main venv's or ROS's site-packages must not shadow
    the venv's own); returns the worker's JSON result (:func:`answer`). A failing worker raises
    :class:`LeRobotWorkerError` with its last stderr line starting with ``prefer``, else its last stderr
    line; a venv that cannot be made, :class:`LeRobotVenvError`."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(OFFLINE, PYTHONPATH=str(ROOT))
    env.setdefault("OMP_NUM_THREADS", "1")
    done = subprocess.run([str(python or lerobot_python()), "-m", module, *args], capture_output=True, text=True,
                          env=env, timeout=timeout)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        lines = [line for line in lines if prefer and line.startswith(prefer)] or lines
        raise LeRobotWorkerError(lines[-1] if lines else f"{module} exited with {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


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
