"""Bags written by EpisodeWriter decode with the real rclpy message classes (ROS 2 interop)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from vla_adapter_ros.bags.episodes import EpisodeWriter

pytestmark = pytest.mark.ros

DECODE = r"""
import json, sys
from rosbags.rosbag2 import Reader
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from vla_adapter_interfaces.msg import ActionChunk, EpisodeStatus
cls = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/JointState": JointState, "std_msgs/msg/String": String,
       "vla_adapter_interfaces/msg/ActionChunk": ActionChunk, "vla_adapter_interfaces/msg/EpisodeStatus": EpisodeStatus}
out = {}
with Reader(sys.argv[1]) as r:
    for c, t, raw in r.messages():
        m = deserialize_message(bytes(raw), cls[c.msgtype])
        if c.topic == "/vla/action":
            out.setdefault("actions", []).append([list(m.actions), m.header.stamp.sec, m.header.stamp.nanosec])
        elif c.topic == "/camera/image_raw":
            out.setdefault("pixels", []).append(list(m.data[:6]))
        elif c.topic == "/joint_states":
            out["names"] = list(m.name)
        elif c.topic == "/vla/episode":
            out["status"] = [m.task, m.seed, m.success, m.done]
        else:
            out["instruction"] = m.data
print(json.dumps(out))
"""


@pytest.mark.skipif(importlib.util.find_spec("rclpy") is None
                    or importlib.util.find_spec("vla_adapter_interfaces") is None,
                    reason="rclpy or the built vla_adapter_interfaces is not available")
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_rclpy_deserializes_every_topic(tmp_path, storage):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (3, 4, 5, 3), dtype=np.uint8)
    actions = rng.uniform(-1, 1, (3, 4)).astype(np.float32)
    with EpisodeWriter(tmp_path / "ep", task="push-v3", seed=9, storage=storage) as w:
        for t in range(3):
            w.write_step(2 * 10**9 + t, images[t], np.zeros(4), actions[t], instruction="push it", success=t == 2)
    res = subprocess.run([sys.executable, "-c", DECODE, str(tmp_path / "ep")], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["instruction"] == "push it" and out["status"] == ["push-v3", 9, True, True]
    assert out["names"] == ["ee_x", "ee_y", "ee_z", "gripper"]
    assert out["pixels"] == [images[t].reshape(-1)[:6].tolist() for t in range(3)]
    assert [a[1:] for a in out["actions"]] == [[2, t] for t in range(3)]
    assert np.array_equal(np.asarray([a[0] for a in out["actions"]], np.float32), actions)
