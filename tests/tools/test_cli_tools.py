"""`vla-adapter --help`, `version`, `doctor` run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

from vla_adapter_ros import __version__


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vla_adapter_ros.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_help_lists_subcommands():
    out = cli("--help")
    assert out.returncode == 0
    for cmd in ("version", "doctor", "switch"):
        assert cmd in out.stdout


def test_version():
    out = cli("version")
    assert out.returncode == 0 and out.stdout.strip() == f"vla_adapter_ros {__version__}"


def test_doctor_reports_every_check_and_this_env_is_complete():
    out = cli("doctor", "--json", "--strict")
    checks = {c["name"]: c for c in json.loads(out.stdout)}
    assert {"python", "rclpy", "vla_adapter_interfaces", "onnxruntime", "torch", "mujoco_render", "dds_env"} <= set(
        checks
    )
    assert out.returncode == 0, [c for c in checks.values() if not c["ok"]]
    assert "CPUExecutionProvider" in checks["onnxruntime"]["detail"]


def test_doctor_names_the_fix_for_a_missing_piece():
    code = (
        "import sys; sys.modules['rosbags'] = None; "
        "from vla_adapter_ros.tools import doctor; c = doctor._probe('x', 'import no_such_module_xyz', 'a', 'fix it');"
        "print(c.ok, c.fix)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False fix it"
