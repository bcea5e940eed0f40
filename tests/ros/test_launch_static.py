"""The launch files and parameter files, checked statically against the nodes' parameter classes
(launch/launch_ros are not installable here).

Parsed with ``ast``, never executed: every executable a launch file starts exists in
setup.py's console_scripts, every parameter it sets on a node is declared by that node's
NodeConfig class, every package file it references exists and is installed by setup.py.
Each node's ``config/<node>.yaml`` lists exactly its parameters with their defaults, and the
demo's ``config/sim_demo.yaml`` (read by the launch file and by ``vla-adapter demo``) validates.
"""

from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from vla_adapter_ros.ros.executor_node import ExecutorConfig
from vla_adapter_ros.ros.params import PACKAGE, PolicyNodeConfig
from vla_adapter_ros.ros.sim_node import SimNodeConfig

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))
CONFIGS = {"vla_adapter_node": PolicyNodeConfig, "vla_adapter_sim": SimNodeConfig,
           "vla_adapter_executor": ExecutorConfig}  # executable -> parameters
FORWARDS_ARGUMENTS = ("vla_adapter_node", "vla_adapter_executor")  # launch files forward PARAMETER_ARGUMENTS to


def module_constants(tree: ast.Module) -> dict[str, object]:
    """Module-level NAME = <literal> assignments."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return out


def call_name(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def value_of(node: ast.AST, constants: dict) -> object:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    return None


def parse(path: Path) -> tuple[ast.Module, dict, list[ast.Call]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    return tree, module_constants(tree), calls


def test_there_are_policy_and_executor_launch_files():
    assert (ROOT / "launch" / "vla_adapter.launch.py") in LAUNCH_FILES
    assert (ROOT / "launch" / "vla_adapter_executor.launch.py") in LAUNCH_FILES


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_every_executable_started_exists_in_setup_py(path, setup_spec):
    _, constants, calls = parse(path)
    scripts = {e.split("=")[0].strip() for e in setup_spec["entry_points"]["console_scripts"]}
    nodes = [c for c in calls if call_name(c) in ("Node", "LifecycleNode")]
    assert nodes, f"{path.name} starts no Node"
    for call in nodes:
        kw = {k.arg: value_of(k.value, constants) for k in call.keywords}
        assert kw.get("executable"), f"{path.name}: a Node without a literal executable"
        if kw.get("package") == PACKAGE:
            assert kw["executable"] in scripts, f"{path.name}: {kw['executable']!r} not in console_scripts {scripts}"


def _node_calls(calls: list[ast.Call], constants: dict) -> dict[str, list[ast.Call]]:
    out: dict[str, list[ast.Call]] = {}
    for c in calls:
        if call_name(c) in ("Node", "LifecycleNode"):
            exe = {k.arg: value_of(k.value, constants) for k in c.keywords}.get("executable")
            out.setdefault(exe, []).append(c)
    return out


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_every_parameter_set_is_declared_by_the_node(path):
    tree, constants, calls = parse(path)
    forwarded = set(constants.get("PARAMETER_ARGUMENTS", {}))
    for exe, nodes in _node_calls(calls, constants).items():
        fields_ = {f.name for f in fields(CONFIGS[exe])}
        set_names: set[str] = set(forwarded) if exe in FORWARDS_ARGUMENTS else set()
        files: list[str] = []
        for call in nodes:
            for kw in call.keywords:
                if kw.arg != "parameters":
                    continue
                for d in (n for n in ast.walk(kw.value) if isinstance(n, ast.Dict)):
                    set_names |= {k.value for k in d.keys if isinstance(k, ast.Constant)}
                assert not any(isinstance(n, ast.Dict) and any(k is None for k in n.keys)
                               for n in ast.walk(kw.value)), "** in parameters cannot be checked"
                files += [n.id for n in ast.walk(kw.value) if isinstance(n, ast.Name)]
        assert set_names or files, f"{path.name}: cannot see which parameters {exe} gets"
        assert set_names <= fields_, f"{path.name}: {exe} parameters not declared: {sorted(set_names - fields_)}"
    declared_args = {value_of(c.args[0], constants) for c in calls if call_name(c) == "DeclareLaunchArgument"}
    assert forwarded <= declared_args, f"forwarded but not declared: {forwarded - declared_args}"
    used = {value_of(c.args[0], constants) for c in calls if call_name(c) == "LaunchConfiguration" and c.args}
    # Arguments read through a loop variable (LaunchConfiguration(name)) count as used when forwarded.
    unused = declared_args - used - forwarded
    assert not unused, f"{path.name}: launch arguments declared but never used: {unused}"


def referenced_share_files(calls: list[ast.Call], constants: dict) -> list[str]:
    """Relative paths of PathJoinSubstitution([FindPackageShare(PACKAGE), 'dir', 'file'])."""
    out = []
    for call in calls:
        if call_name(call) != "PathJoinSubstitution" or not call.args or not isinstance(call.args[0], ast.List):
            continue
        parts = call.args[0].elts
        if parts and isinstance(parts[0], ast.Call) and call_name(parts[0]) == "FindPackageShare":
            pkg = value_of(parts[0].args[0], constants)
            rest = [value_of(p, constants) for p in parts[1:]]
            assert pkg == PACKAGE and all(isinstance(r, str) for r in rest), ast.dump(call)
            out.append("/".join(rest))
    return out


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_every_referenced_file_exists_and_is_installed(path, setup_spec):
    _, constants, calls = parse(path)
    installed = {f"{dest}/{Path(f).name}" for dest, files in setup_spec["data_files"] for f in files}
    refs = referenced_share_files(calls, constants)
    if path.name == "vla_adapter.launch.py":
        assert "config/vla_adapter.yaml" in refs
    if path.name == "vla_adapter_executor.launch.py":
        assert "config/vla_adapter_executor.yaml" in refs
    for rel in refs:
        assert (ROOT / rel).is_file(), f"{path.name} references {rel}, which does not exist"
        assert f"share/{PACKAGE}/{rel}" in installed, f"{rel} is not installed by setup.py"
    assert f"share/{PACKAGE}/launch/{path.name}" in installed, f"{path.name} itself is not installed"


@pytest.mark.parametrize("config", sorted(set(CONFIGS.values()), key=lambda c: c.NODE_NAME), ids=lambda c: c.NODE_NAME)
def test_each_node_has_a_parameter_file_with_every_parameter_and_its_default(config, setup_spec):
    path = config.defaults_file()
    data = yaml.safe_load(path.read_text())
    assert list(data) == [config.NODE_NAME], "the file must address the node by its default name"
    values = data[config.NODE_NAME]["ros__parameters"]
    names = set(config.field_info())
    assert set(values) == names, f"missing {names - set(values)}, unknown {set(values) - names}"
    defaults = config()
    for name, value in values.items():
        want = getattr(defaults, name)
        assert type(value) is type(want) and value == want, f"{name}: file has {value!r}, default is {want!r}"
    config(**values)  # and the file validates
    installed = {f"{dest}/{Path(f).name}" for dest, files in setup_spec["data_files"] for f in files}
    assert f"share/{PACKAGE}/config/{path.name}" in installed


def test_the_demo_parameter_file_validates_for_both_nodes_and_the_launch_file_reads_it():
    data = yaml.safe_load((ROOT / "config" / "sim_demo.yaml").read_text())
    configs = {c.NODE_NAME: c for c in CONFIGS.values()}
    assert {"vla_adapter", "vla_adapter_sim"} <= set(data) <= set(configs)
    for node, section in data.items():
        values = section["ros__parameters"]
        assert set(values) <= set(configs[node].field_info()), node
        configs[node](**values)
    _, constants, calls = parse(ROOT / "launch" / "sim_demo.launch.py")
    assert "config/sim_demo.yaml" in referenced_share_files(calls, constants)
    assert set(_node_calls(calls, constants)) == {"vla_adapter_node", "vla_adapter_sim"}
