"""Layering: the core never loads rclpy, nor transformers until the language model is used;
configs load no torch."""

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


def test_config_does_not_import_torch():
    """Configs are read where torch is absent (the robot); the CLI imports a subcommand's module only when
    that command runs, so core.train and core.distributed import torch at their top like any module."""
    assert _loaded("vla_adapter_ros.core.config") == []


def test_what_the_ros_side_uses_of_the_core_loads_no_torch():
    """ros/sim_node uses core.sim and ros/demo evaluates ONNX models through core.evaluate (ros never loads torch)."""
    loaded = _loaded("vla_adapter_ros.core.evaluate", "vla_adapter_ros.core.sim.metaworld_env",
                     "vla_adapter_ros.core.sim.instructions")
    assert "torch" not in loaded and "rclpy" not in loaded
