"""Layering rules of docs/DESIGN.md, checked in fresh interpreters.

Every module under core/, bags/, runtime/ and the ROS-free top-level modules
is imported; rclpy must never be loaded, and runtime/ must not load torch.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

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


# --- package-to-package imports (docs/DESIGN.md, "Boundaries"), checked statically -----------------
# What each part of vla_adapter_ros may import from the others. Top-level modules count as parts
# (names, contract, pairing, processing, dds_env, cli). "core.sim" / "core.evaluate" name single
# subpackages/modules of core that a part may use without the rest of core.
ALLOWED = {
    "names": set(),
    "pairing": set(),
    "contract": set(),
    "processing": {"names"},
    "dds_env": set(),
    "lerobot_venv": set(),
    "runtime": {"names", "processing", "contract", "__init__"},
    "serving": {"names", "processing", "runtime"},
    "bags": {"names", "processing", "contract", "pairing", "decoding"},
    "decoding": {"processing", "contract"},
    "execution": {"names", "contract"},
    # core.closed_loop drives the executor core (ROS-free, torch-free) in virtual time
    "core": {"names", "processing", "contract", "pairing", "decoding", "bags", "runtime", "dds_env", "__init__", "execution",
             "tools.lerobot_dataset", "families.smolvla"},  # core.export runs the SmolVLA worker through families.smolvla.bridge
    "tools": {"runtime", "processing", "dds_env", "contract", "bags", "decoding", "ros.params", "__init__", "cli",
              "lerobot_venv"},
    "ros": {"names", "processing", "contract", "pairing", "decoding", "dds_env", "runtime", "bags", "serving",
            "execution", "core.sim", "core.evaluate", "tools.render", "__init__"},
    # families.<name>: torch + the family's upstream library, run in that family's own venv (core's tuners reused)
    "families": {"names", "processing", "contract", "bags", "decoding", "core", "runtime", "__init__", "lerobot_venv"},
    "cli": set(),  # imports the chosen command's module by name, at run time
    "__init__": set(),
}
ROOT = Path(__file__).resolve().parents[1] / "vla_adapter_ros"


def _part(module: str) -> str:
    """vla_adapter_ros.core.sim.x -> core; vla_adapter_ros -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> set[str]:
    """Absolute names of the vla_adapter_ros modules (or packages) ``path`` imports."""
    module = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__")
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("vla_adapter_ros")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            if base == "vla_adapter_ros":  # from vla_adapter_ros import processing, __version__
                out |= {f"vla_adapter_ros.{a.name}" if (ROOT / f"{a.name}.py").exists() or (ROOT / a.name).is_dir()
                        else "vla_adapter_ros" for a in node.names}
            elif base.startswith("vla_adapter_ros"):
                out.add(base)
    return out


def test_every_part_imports_only_the_parts_its_boundary_allows():
    problems = []
    for path in sorted(ROOT.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
        part = _part(module)
        for target in _imports(path):
            other = _part(target)
            if other == part:
                continue
            allowed = ALLOWED[part]
            sub = ".".join(target.split(".")[1:3])  # e.g. core.sim
            if other not in allowed and sub not in allowed:
                problems.append(f"{path.relative_to(ROOT.parent)} imports {target} ({part} -> {other})")
    assert not problems, "imports across a boundary docs/DESIGN.md does not allow:\n" + "\n".join(problems)
