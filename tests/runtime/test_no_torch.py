"""The runtime serves a model with neither torch nor rclpy imported (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import json, sys
import numpy as np
import vla_adapter_ros.runtime
from vla_adapter_ros.runtime import errors, language, manifest, policy, providers
with policy.OnnxPolicy.from_dir(sys.argv[1], providers=["cpu"], mode=sys.argv[2]) as p:
    p.switch("button")
    result = p.infer(np.zeros((48, 64, 3), np.uint8), "press the button", [0.1, 0.5, 0.2, 0.5])
print(json.dumps({
    "torch": "torch" in sys.modules,
    "rclpy": "rclpy" in sys.modules,
    "adapter": result.adapter,
    "shape": list(result.actions.shape),
}))
"""


def test_runtime_serves_without_torch_or_rclpy(model_dir):
    for mode in ("shared", "merged"):
        proc = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(model_dir), mode], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert out == {"torch": False, "rclpy": False, "adapter": "button", "shape": [3, 4]}
