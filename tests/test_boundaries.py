"""Layering rules of docs/DESIGN.md, checked in fresh interpreters.

Every module under core/, bags/, runtime/ and the ROS-free top-level modules
is imported; rclpy must never be loaded, and runtime/ must not load torch.
"""

from __future__ import annotations

import json
import subprocess
import sys

CHECK = r"""
import importlib, json, pkgutil, sys
import vla_adapter_ros
roots = {roots!r}
mods = []
for root in roots:
    pkg = importlib.import_module(root)
    mods.append(root)
    if hasattr(pkg, "__path__"):
        for info in pkgutil.walk_packages(pkg.__path__, root + "."):
            mods.append(info.name)
for m in mods:
    importlib.import_module(m)
print(json.dumps({{"mods": mods, "loaded": sorted(k for k in ("rclpy", "torch") if k in sys.modules)}}))
"""


def _import_all(*roots: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHECK.format(roots=list(roots))], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_core_bags_and_tools_never_import_rclpy():
    res = _import_all(
        "vla_adapter_ros.core", "vla_adapter_ros.bags", "vla_adapter_ros.processing",
        "vla_adapter_ros.dds_env", "vla_adapter_ros.tools", "vla_adapter_ros.cli",
    )
    assert "rclpy" not in res["loaded"], res


def test_runtime_serving_and_execution_import_neither_torch_nor_rclpy():
    res = _import_all("vla_adapter_ros.runtime", "vla_adapter_ros.serving", "vla_adapter_ros.processing",
                      "vla_adapter_ros.names", "vla_adapter_ros.execution")
    assert res["loaded"] == [], res


def test_cli_parser_loads_no_heavy_modules():
    code = (
        "import sys, json; from vla_adapter_ros.cli import build_parser; build_parser(); "
        "print(json.dumps(sorted(k for k in ('rclpy', 'torch', 'onnxruntime') if k in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
