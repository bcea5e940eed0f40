"""ruff passes on the whole source tree (same command as `make lint`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_clean():
    ruff = shutil.which("ruff")
    assert ruff, "ruff is not installed (requirements/dev.txt)"
    out = subprocess.run([ruff, "check", "."], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
