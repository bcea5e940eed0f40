"""A rosbags typestore that knows the project's messages (vla_adapter_interfaces/msg).

The standard ROS 2 types come from rosbags' Jazzy store (the current LTS; the
newest store is used if a future rosbags drops it). The project's own .msg
files are parsed with ``get_types_from_msg`` from, in order:

1. ``msg_dir`` when given;
2. the source tree (``<repo>/vla_adapter_interfaces/msg``), so a checkout works
   without a colcon build;
3. ``share/vla_adapter_interfaces/msg`` under every ``AMENT_PREFIX_PATH`` entry
   and ``sys.prefix`` (an installed package).

A fresh typestore is built per call (no module-level cache); callers that read
many bags build one and pass it on.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rosbags.typesys import Stores, TypesysError, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

INTERFACES_PACKAGE = "vla_adapter_interfaces"
ACTION_CHUNK = f"{INTERFACES_PACKAGE}/msg/ActionChunk"
EPISODE_STATUS = f"{INTERFACES_PACKAGE}/msg/EpisodeStatus"
ADAPTER_INFO = f"{INTERFACES_PACKAGE}/msg/AdapterInfo"

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
JOINT_STATE = "sensor_msgs/msg/JointState"
STRING = "std_msgs/msg/String"
FLOAT32_MULTI_ARRAY = "std_msgs/msg/Float32MultiArray"
FLOAT64_MULTI_ARRAY = "std_msgs/msg/Float64MultiArray"
TWIST_STAMPED = "geometry_msgs/msg/TwistStamped"

# A robot contract's short type names (contract.CAMERA_TYPES, STATE_TYPES, ACTION_SOURCE_TYPES) -> ROS 2 types.
CONTRACT_TYPES = {
    "Image": IMAGE, "CompressedImage": COMPRESSED_IMAGE, "JointState": JOINT_STATE,
    "Float32MultiArray": FLOAT32_MULTI_ARRAY, "Float64MultiArray": FLOAT64_MULTI_ARRAY,
    "ActionChunk": ACTION_CHUNK, "TwistStamped": TWIST_STAMPED, "String": STRING,
}
SHORT_TYPES = {full: short for short, full in CONTRACT_TYPES.items()}

_SOURCE_MSG_DIR = Path(__file__).resolve().parents[2] / INTERFACES_PACKAGE / "msg"


class InterfaceDefinitionError(RuntimeError):
    """The project's .msg files cannot be found or parsed; the message names where it looked."""


def default_store() -> Stores:
    """ROS 2 Jazzy when rosbags has it, else the newest ROS 2 store it ships."""
    if hasattr(Stores, "ROS2_JAZZY"):
        return Stores.ROS2_JAZZY
    ros2 = [s for s in Stores if s.name.startswith("ROS2_")]
    return ros2[-1]  # the enum lists distributions oldest first


def candidate_msg_dirs() -> list[Path]:
    """Directories that may hold vla_adapter_interfaces/*.msg, in search order."""
    dirs = [_SOURCE_MSG_DIR]
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    prefixes.append(sys.prefix)
    for prefix in prefixes:
        dirs.append(Path(prefix) / "share" / INTERFACES_PACKAGE / "msg")
    return dirs


def find_msg_dir(msg_dir: str | Path | None = None) -> Path:
    """The first directory holding the project's .msg files; ``msg_dir`` wins when given."""
    if msg_dir is not None:
        path = Path(msg_dir)
        if not any(path.glob("*.msg")):
            raise InterfaceDefinitionError(f"no .msg files in {str(path)!r}")
        return path
    searched = candidate_msg_dirs()
    for path in searched:
        if path.is_dir() and any(path.glob("*.msg")):
            return path
    raise InterfaceDefinitionError(
        f"cannot find {INTERFACES_PACKAGE} .msg files; looked in {[str(p) for p in searched]}"
    )


def interface_types(msg_dir: str | Path | None = None) -> dict[str, Any]:
    """Parsed definitions of every .msg in the interfaces package (rosbags Typesdict)."""
    path = find_msg_dir(msg_dir)
    types: dict[str, Any] = {}
    for msg_file in sorted(path.glob("*.msg")):
        name = f"{INTERFACES_PACKAGE}/msg/{msg_file.stem}"
        try:
            types.update(get_types_from_msg(msg_file.read_text(encoding="utf-8"), name))
        except (TypesysError, UnicodeDecodeError) as exc:
            raise InterfaceDefinitionError(f"cannot parse {str(msg_file)!r} as {name}: {exc}") from exc
    return types


def make_typestore(msg_dir: str | Path | None = None, store: Stores | None = None,
                   extra_msgs: Iterable[tuple[str, str]] = ()) -> Typestore:
    """A new typestore: ROS 2 standard types + vla_adapter_interfaces + ``extra_msgs``.

    ``extra_msgs`` are ``(typename, msg text)`` pairs, e.g. a robot's own action message.
    """
    typestore = get_typestore(store or default_store())
    types = interface_types(msg_dir)
    for name, text in extra_msgs:
        types.update(get_types_from_msg(text, name))
    typestore.register(types)
    return typestore
