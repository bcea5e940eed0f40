"""mypy (strict, mypy.ini) passes on the serving path: the same command as `make lint`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_clean_on_the_serving_path():
    mypy = shutil.which("mypy")
    assert mypy, "mypy is not installed (requirements/dev.txt)"
    out = subprocess.run([mypy, "--config-file", "mypy.ini", "--no-incremental", "--cache-dir", "/dev/null"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
