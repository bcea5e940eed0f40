"""Layering: the core never loads rclpy; the train subcommand module loads no torch until run."""

from __future__ import annotations

import json
import subprocess
import sys

CODE = r"""
import importlib, json, sys
for m in {mods!r}:
    importlib.import_module(m)
print(json.dumps(sorted(k for k in ("rclpy", "torch", "transformers") if k in sys.modules)))
"""


def _loaded(*mods: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", CODE.format(mods=list(mods))], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_core_imports_without_rclpy():
    loaded = _loaded(
        "vla_adapter_ros.core.model", "vla_adapter_ros.core.adapters", "vla_adapter_ros.core.lora",
        "vla_adapter_ros.core.checkpoint", "vla_adapter_ros.core.language", "vla_adapter_ros.core.train",
        "vla_adapter_ros.core.distributed",
        "vla_adapter_ros.core.train_state",
    )
    assert "rclpy" not in loaded and "torch" in loaded
    assert "transformers" not in loaded  # the language model is loaded only when used


def test_config_and_train_cli_module_do_not_import_torch():
    assert _loaded("vla_adapter_ros.core.config", "vla_adapter_ros.core.train", "vla_adapter_ros.core.distributed") == []
