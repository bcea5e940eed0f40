"""Bags as `ros2 bag record` writes them for a robot: its own topics and message types, written with
rosbags' Writer, log time = when the recorder received a message (a little after its header stamp),
no EpisodeStatus and no custom metadata. Shared by tests/bags and the worked examples in tests/core.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
JOINT_STATE = "sensor_msgs/msg/JointState"
TWIST = "geometry_msgs/msg/TwistStamped"
STRING = "std_msgs/msg/String"
F64 = "std_msgs/msg/Float64MultiArray"
F32 = "std_msgs/msg/Float32MultiArray"
T0 = 1_700_000_000_000_000_000
LATENCY = 2_000_000  # ns between a header stamp and the recorder's log time


def header(store: Any, ns: int, frame_id: str = "") -> Any:
    ty = store.types
    return ty["std_msgs/msg/Header"](stamp=ty["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9),
                                     frame_id=frame_id)


def image(store: Any, ns: int, rgb: np.ndarray, encoding: str = "rgb8", frame_id: str = "camera") -> Any:
    pixels = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "mono8": rgb[..., 0]}[encoding]
    h, w = rgb.shape[:2]
    return store.types[IMAGE](header=header(store, ns, frame_id), height=h, width=w, encoding=encoding,
                              is_bigendian=0, step=w * (1 if encoding == "mono8" else 3),
                              data=np.ascontiguousarray(pixels).reshape(-1))


def compressed(store: Any, ns: int, rgb: np.ndarray, fmt: str = "png", frame_id: str = "camera") -> Any:
    ok, buf = cv2.imencode(".png" if fmt == "png" else ".jpg", np.ascontiguousarray(rgb[..., ::-1]))
    assert ok
    return store.types[COMPRESSED](header=header(store, ns, frame_id), format=fmt, data=buf.reshape(-1))


def joint_state(store: Any, ns: int, names: Sequence[str], position: Iterable[float],
                velocity: Iterable[float] = ()) -> Any:
    return store.types[JOINT_STATE](header=header(store, ns), name=list(names),
                                    position=np.asarray(list(position), np.float64),
                                    velocity=np.asarray(list(velocity), np.float64), effort=np.zeros(0))


def twist(store: Any, ns: int, linear: Sequence[float], angular: Sequence[float], frame_id: str = "base_link") -> Any:
    ty = store.types
    vec = ty["geometry_msgs/msg/Vector3"]
    return ty[TWIST](header=header(store, ns, frame_id),
                     twist=ty["geometry_msgs/msg/Twist"](linear=vec(*map(float, linear)),
                                                         angular=vec(*map(float, angular))))


def multi_array(store: Any, values: Iterable[float], msgtype: str = F64) -> Any:
    ty = store.types
    dtype = np.float64 if msgtype == F64 else np.float32
    return ty[msgtype](layout=ty["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0),
                       data=np.asarray(list(values), dtype))


def string(store: Any, text: str) -> Any:
    return store.types[STRING](data=text)


def write_bag(path: Path, store: Any, messages: Iterable[tuple[str, str, int, Any]], storage: str = "mcap",
              silent: Iterable[tuple[str, str]] = ()) -> Path:
    """``messages``: (topic, type, log time ns, message), in any order; one connection per topic.
    ``silent``: (topic, type) subscribed by the recorder that published nothing (a connection, no message)."""
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    rows = sorted(messages, key=lambda m: m[2])
    with Writer(path, version=Writer.VERSION_LATEST, storage_plugin=plugin) as w:
        conns = {topic: w.add_connection(topic, msgtype, typestore=store) for topic, msgtype in silent}
        for topic, msgtype, log_ns, msg in rows:
            if topic not in conns:
                conns[topic] = w.add_connection(topic, msgtype, typestore=store)
            w.write(conns[topic], log_ns, store.serialize_cdr(msg, msgtype))
    return path
