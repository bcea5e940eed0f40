"""Run the SmolVLA worker in the LeRobot venv from the main venv (imports neither torch nor lerobot).

LeRobot 0.4.4 pins torch < 2.11 and transformers < 5, so it cannot share the main venv (torch
2.13): ``scripts/lerobot_env.sh`` makes a venv of its own once (~2 min, ~8.4 GB with CUDA
libraries) and prints its path; ``VLA_LEROBOT_VENV`` chooses where. The worker speaks JSON: its
last stdout line is the result, a non-zero exit carries the error on stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from vla_adapter_ros.lerobot_venv import LeRobotVenvError, lerobot_python

ROOT = Path(__file__).resolve().parents[3]
WORKER = "vla_adapter_ros.families.smolvla.worker"


class WorkerError(RuntimeError):
    """The SmolVLA worker failed; the message is its own error line."""


def run_worker(command: str, *args: str, timeout: float = 1800) -> Any:
    """``python -m worker COMMAND ARGS`` in the LeRobot venv, offline; returns its JSON result."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env.setdefault("OMP_NUM_THREADS", "1")
    try:
        python = lerobot_python()
    except LeRobotVenvError as exc:
        raise WorkerError(str(exc)) from exc
    proc = subprocess.run([str(python), "-m", WORKER, command, *args], capture_output=True, text=True,
                          env=env, timeout=timeout)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        raise WorkerError(lines[-1] if lines else f"worker {command} exited with {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
