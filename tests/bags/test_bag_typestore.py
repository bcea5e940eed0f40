"""The project typestore: custom messages registered, hashes equal to the colcon build's, no rclpy/torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vla_adapter_ros.bags import typestore as ts

ROOT = Path(__file__).resolve().parents[2]
BUILT_SHARE = ROOT / "build" / "install" / "vla_adapter_interfaces" / "share" / "vla_adapter_interfaces" / "msg"


def test_custom_messages_are_registered_on_a_ros2_store():
    store = ts.make_typestore()
    for name in (ts.ACTION_CHUNK, ts.EPISODE_STATUS, ts.ADAPTER_INFO, ts.IMAGE, ts.JOINT_STATE, ts.STRING,
                 ts.FLOAT32_MULTI_ARRAY):
        assert name in store.types, name
    assert ts.default_store().name == "ROS2_JAZZY"
    fields = [f[0] for f in store.fielddefs[ts.ACTION_CHUNK][1]]
    assert fields[:3] == ["header", "adapter", "instruction"] and "actions" in fields


def test_source_tree_msg_dir_is_found_first_and_explicit_dir_wins(tmp_path):
    assert ts.find_msg_dir() == ROOT / "vla_adapter_interfaces" / "msg"
    with pytest.raises(ts.InterfaceDefinitionError, match="no .msg files"):
        ts.find_msg_dir(tmp_path)
    (tmp_path / "Broken.msg").write_text("int32\n")
    with pytest.raises(ts.InterfaceDefinitionError, match="Broken.msg"):
        ts.interface_types(tmp_path)


@pytest.mark.skipif(not BUILT_SHARE.is_dir(), reason="vla_adapter_interfaces not built (make setup)")
def test_type_hashes_match_the_rosidl_build():
    store = ts.make_typestore(BUILT_SHARE)
    for name in ("ActionChunk", "EpisodeStatus", "AdapterInfo"):
        built = json.loads((BUILT_SHARE / f"{name}.json").read_text())["type_hashes"][0]
        assert built["type_name"] == f"vla_adapter_interfaces/msg/{name}"
        assert store.hash_rihs01(built["type_name"]) == built["hash_string"]


def test_bags_and_core_data_modules_import_without_rclpy():
    code = (
        "import sys, json\n"
        "import vla_adapter_ros.bags.typestore, vla_adapter_ros.bags.episodes, vla_adapter_ros.bags.errors\n"
        "bags_torch = 'torch' in sys.modules\n"
        "import vla_adapter_ros.core.data, vla_adapter_ros.core.record\n"
        "import vla_adapter_ros.core.sim.metaworld_env, vla_adapter_ros.core.sim.instructions\n"
        "print(json.dumps({'bags_torch': bags_torch, 'rclpy': 'rclpy' in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"bags_torch": False, "rclpy": False}
