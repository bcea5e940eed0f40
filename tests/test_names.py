"""One adapter-name rule (vla_adapter_ros.names), applied the same way by config, manifest and services."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vla_adapter_ros.core.config import TrainConfig
from vla_adapter_ros.names import MAX_ADAPTER_NAME_CHARS, AdapterNameError, validate_adapter_name
from vla_adapter_ros.ros.adapter_commands import adapter_name_problem
from vla_adapter_ros.runtime.errors import ManifestError
from vla_adapter_ros.runtime.manifest import AdapterSpec

BUNDLED = Path(__file__).resolve().parents[1] / "models" / "default" / "manifest.json"

BAD = [
    # (name, what the message says)
    ("", "is empty"),
    ("bad name", "'bad name' must be a letter or digit"),
    ("../x", "'../x' looks like a path"),
    ("/etc/passwd", "looks like a path"),
    ("adapters/pick", "looks like a path"),
    ("C:\\adapters\\pick", "looks like a path"),
    ("~root", "looks like a path"),
    (".hidden", "looks like a path"),
    ("pick\x00x", "looks like a path"),
    ("place.onnx_adapter", "'place.onnx_adapter' must be a letter or digit"),
    ("_private", "'_private' must be a letter or digit"),
    ("-flag", "'-flag' must be a letter or digit"),
    ("faucet_open\n", "must be a letter or digit"),  # a trailing newline does not slip past "$"
    ("café", "'café' must be a letter or digit"),
    ("x" * (MAX_ADAPTER_NAME_CHARS + 1), f"is {MAX_ADAPTER_NAME_CHARS + 1} characters long"),
    ("x" * 10_000, "10000 characters long"),
]
GOOD = ["coffee_button", "faucet_open", "handle_press", "a", "A1-b_2", "0", "x" * MAX_ADAPTER_NAME_CHARS]


@pytest.mark.parametrize(("name", "needle"), BAD)
def test_bad_names_are_refused_quoting_the_value(name, needle):
    with pytest.raises(AdapterNameError) as err:
        validate_adapter_name(name)
    message = str(err.value)
    assert needle in message
    assert len(message) < 300, "a long name must not be echoed whole"
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("name", GOOD)
def test_good_names_pass_unchanged(name):
    assert validate_adapter_name(name) == name


def test_a_non_string_is_refused():
    with pytest.raises(AdapterNameError, match="must be a string, got int 3"):
        validate_adapter_name(3)


def test_the_bundled_model_names_follow_the_rule():
    names = [a["name"] for a in json.loads(BUNDLED.read_text())["adapters"]]
    assert names == ["coffee_button", "faucet_open", "handle_press"]
    assert [validate_adapter_name(n) for n in names] == names


@pytest.mark.parametrize(("name", "needle"), BAD[:4] + BAD[-1:])
def test_every_layer_applies_the_same_rule(name, needle):
    with pytest.raises(ValueError, match="adapter_name"):  # training config
        TrainConfig(adapter_name=name)
    problem = adapter_name_problem(name)  # the policy node's switch / load services
    assert problem is not None and needle in problem
    entry = {**json.loads(BUNDLED.read_text())["adapters"][0], "name": name}
    with pytest.raises(ManifestError, match=r"adapters\[0\]\.name"):  # a manifest
        AdapterSpec.from_dict(entry, "adapters[0]")
    assert adapter_name_problem("faucet_open") is None


def test_names_is_the_lowest_layer():
    """Importing the rule loads nothing outside the standard library (any layer may use it)."""
    code = (
        "import sys, json; before = set(sys.modules); import vla_adapter_ros.names; "
        "print(json.dumps(sorted({m.split('.')[0] for m in set(sys.modules) - before})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert loaded - set(sys.stdlib_module_names) == {"vla_adapter_ros"}
