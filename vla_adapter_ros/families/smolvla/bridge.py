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
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
ENV_SCRIPT = ROOT / "scripts" / "lerobot_env.sh"
WORKER = "vla_adapter_ros.families.smolvla.worker"


class WorkerError(RuntimeError):
    """The SmolVLA worker failed; the message is its own error line."""


def lerobot_python() -> Path:
    """The LeRobot venv's python (made by scripts/lerobot_env.sh on first use)."""
    env = dict(os.environ)
    env.setdefault("VLA_VENV", str(Path(sys.prefix)))
    try:
        out = subprocess.run(["bash", str(ENV_SCRIPT)], check=True, capture_output=True, text=True, env=env).stdout
    except subprocess.CalledProcessError as exc:
        raise WorkerError(f"cannot make the LeRobot venv ({ENV_SCRIPT.name}): {exc.stderr.strip()[-500:]}") from exc
    return Path(out.strip().splitlines()[-1]) / "bin" / "python"


def run_worker(command: str, *args: str, timeout: float = 1800) -> Any:
    """``python -m worker COMMAND ARGS`` in the LeRobot venv, offline; returns its JSON result."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run([str(lerobot_python()), "-m", WORKER, command, *args], capture_output=True, text=True,
                          env=env, timeout=timeout)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        raise WorkerError(lines[-1] if lines else f"worker {command} exited with {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
