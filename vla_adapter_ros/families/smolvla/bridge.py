"""Run the SmolVLA worker in the LeRobot venv from the main venv (imports neither torch nor lerobot).

LeRobot 0.4.4 pins torch < 2.11 and transformers < 5, so it cannot share the main venv (torch
2.13): ``scripts/lerobot_env.sh`` makes a venv of its own once (~2 min, ~8.4 GB with CUDA
libraries) and prints its path; ``VLA_LEROBOT_VENV`` chooses where. The worker speaks JSON: its
last stdout line is the result, a non-zero exit carries the error on stderr.
"""

from __future__ import annotations

from typing import Any

from vla_adapter_ros.lerobot_venv import LeRobotVenvError, LeRobotWorkerError, run

WORKER = "vla_adapter_ros.families.smolvla.worker"


class WorkerError(RuntimeError):
    """The SmolVLA worker failed; the message is its own error line."""


def run_worker(command: str, *args: str, timeout: float = 1800) -> Any:
    """``python -m worker COMMAND ARGS`` in the LeRobot venv, offline; returns its JSON result."""
    try:
        return run(WORKER, command, *args, timeout=timeout)
    except (LeRobotVenvError, LeRobotWorkerError) as exc:
        raise WorkerError(str(exc)) from exc
