"""Where LeRobot's own code runs: the separate LeRobot venv, made on first use.

LeRobot 0.4.4 pins torch < 2.11 and transformers < 5, so it cannot share the main venv (torch 2.13).
``scripts/lerobot_env.sh`` makes ``.venv-lerobot`` once (~2 min, ~8.4 GB with CUDA libraries; stamped,
so later calls only print its path); ``VLA_LEROBOT_VENV`` chooses where. The LeRobot dataset
converters (tools.lerobot_dataset) and the SmolVLA family (families.smolvla.bridge) both start
their workers with :func:`lerobot_python`: no separate set-up step.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV_SCRIPT = ROOT / "scripts" / "lerobot_env.sh"


class LeRobotVenvError(RuntimeError):
    """The LeRobot venv could not be made; the message ends with the script's own error."""


def lerobot_python() -> Path:
    """The LeRobot venv's python, the venv made by scripts/lerobot_env.sh when it is missing or stale."""
    env = dict(os.environ)
    env.setdefault("VLA_VENV", str(Path(sys.prefix)))
    try:
        out = subprocess.run(["bash", str(ENV_SCRIPT)], check=True, capture_output=True, text=True, env=env).stdout
    except subprocess.CalledProcessError as exc:
        raise LeRobotVenvError(f"cannot make the LeRobot venv ({ENV_SCRIPT.name}): {exc.stderr.strip()[-500:]}") from exc
    return Path(out.strip().splitlines()[-1]) / "bin" / "python"
