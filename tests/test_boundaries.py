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


def test_runtime_and_serving_import_neither_torch_nor_rclpy():
    res = _import_all("vla_adapter_ros.runtime", "vla_adapter_ros.serving", "vla_adapter_ros.processing",
                      "vla_adapter_ros.names")
    assert res["loaded"] == [], res


CLI_CHECK = r"""
import io, json, sys
from contextlib import redirect_stdout
from vla_adapter_ros.cli import build_parser
parser = build_parser()
with redirect_stdout(io.StringIO()):
    parser.print_help()
help_only = sorted(m for m in sys.modules if m.startswith("vla_adapter_ros.") and m != "vla_adapter_ros.cli")
args = parser.parse_args({argv!r})
print(json.dumps({{"help_imports": help_only, "command": args._command,
                  "heavy": sorted(k for k in ("rclpy", "torch", "onnxruntime") if k in sys.modules),
                  "commands": sorted({{m for m in sys.modules if m in {modules!r}}})}}))
"""


def _cli_parse(argv: list[str]) -> dict:
    from vla_adapter_ros.cli import SUBCOMMANDS

    modules = sorted({m for m, _ in SUBCOMMANDS.values()})
    code = CLI_CHECK.format(argv=argv, modules=modules)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cli_help_imports_no_subcommand_module():
    res = _cli_parse(["version"])
    assert res["help_imports"] == [], "vla-adapter --help must list the commands without importing them"
    assert res["command"] == "version" and res["commands"] == ["vla_adapter_ros.tools.version"]
    assert res["heavy"] == []


def test_cli_switch_loads_neither_torch_nor_onnxruntime():
    res = _cli_parse(["switch", "faucet_open"])
    assert res["command"] == "switch" and res["commands"] == ["vla_adapter_ros.ros.clients"]
    assert "torch" not in res["heavy"] and "onnxruntime" not in res["heavy"], res
