"""The README's ROS-native path: colcon builds both packages from a workspace.

The tracked files are copied into ``<tmp>/src/vla_adapter_ros`` and built with
the exact ``--base-paths`` the README gives (colcon does not descend into a
package directory, so the nested interfaces package is named explicitly).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_colcon_builds_both_packages_and_installs_share_files(tmp_path):
    colcon = shutil.which("colcon")
    assert colcon, "colcon is not installed (requirements/ros.txt)"
    src = tmp_path / "src" / "vla_adapter_ros"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for rel in files.split():
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    venv = Path(sys.prefix)
    env = dict(os.environ, CMAKE_PREFIX_PATH=str(venv), AMENT_PREFIX_PATH=str(venv))
    out = subprocess.run(
        [colcon, "--log-base", "log", "build", "--base-paths", "src/vla_adapter_ros",
         "src/vla_adapter_ros/vla_adapter_interfaces", "--event-handlers", "console_direct-",
         "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    install = tmp_path / "install"
    share = install / "vla_adapter_ros" / "share"
    assert (share / "ament_index" / "resource_index" / "packages" / "vla_adapter_ros").is_file()
    assert (share / "vla_adapter_ros" / "package.xml").is_file()
    assert (share / "vla_adapter_ros" / "config" / "fastdds_localhost.xml").is_file()
    assert (install / "vla_adapter_ros" / "lib" / "vla_adapter_ros" / "vla-adapter").is_file()
    srv = install / "vla_adapter_interfaces" / "share" / "vla_adapter_interfaces" / "srv" / "SwitchAdapter.srv"
    assert srv.is_file()
