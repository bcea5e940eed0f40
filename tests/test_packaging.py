"""The ament_python package and the interfaces package are well formed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_package_xml_files_parse_with_catkin_pkg():
    from catkin_pkg.package import parse_package

    pkg = parse_package(str(ROOT / "package.xml"))
    assert pkg.name == "vla_adapter_ros" and pkg.get_build_type() == "ament_python"
    deps = {d.name for d in pkg.exec_depends}
    assert {"rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs", "vla_adapter_interfaces"} <= deps
    iface = parse_package(str(ROOT / "vla_adapter_interfaces" / "package.xml"))
    assert iface.get_build_type() == "ament_cmake"
    assert "rosidl_interface_packages" in [g.name for g in iface.member_of_groups]


def test_setup_py_installs_share_files():
    code = (
        "import json, setuptools; captured = {};"
        "setuptools.setup = lambda **kw: captured.update(kw);"
        "import runpy; runpy.run_path('setup.py');"
        "print(json.dumps({'data_files': captured['data_files'], 'entry_points': captured['entry_points']}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    import json

    spec = json.loads(out.stdout.strip().splitlines()[-1])
    installed = {f for _, files in spec["data_files"] for f in files}
    assert "resource/vla_adapter_ros" in installed and "package.xml" in installed
    for folder in ("launch", "config", "models"):
        on_disk = {str(p.relative_to(ROOT)) for p in (ROOT / folder).rglob("*") if p.is_file()}
        assert on_disk <= installed, f"{folder}: not installed: {sorted(on_disk - installed)}"
    scripts = {e.split("=")[0].strip() for e in spec["entry_points"]["console_scripts"]}
    assert "vla-adapter" in scripts


def test_interfaces_install_space_is_built():
    share = ROOT / "build" / "install" / "vla_adapter_interfaces" / "share" / "vla_adapter_interfaces"
    assert (share / "srv" / "SwitchAdapter.srv").is_file()
    assert (share / "msg" / "ActionChunk.msg").is_file()
