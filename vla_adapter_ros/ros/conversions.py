"""Message <-> numpy/str conversions for the policy node. Pure functions, no node state.

The decoders (camera message -> RGB, JointState -> proprio, ActionChunk -> array, stamps) are
:mod:`vla_adapter_ros.decoding`'s, re-exported here under the node's names: the bag reader
calls the same functions, so a frame served on the robot is decoded exactly as in training.
Every refusal raises :class:`ConversionError` (= ``decoding.DecodeError``) whose ``kind`` is a
short, stable key the node counts in its diagnostics (``image_encoding``,
``proprio_missing_joint``, ...) and whose message quotes the offending value.
"""

from __future__ import annotations

import array
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float32MultiArray, Float64MultiArray, Header, MultiArrayDimension

from vla_adapter_interfaces.msg import ActionChunk, AdapterInfo
from vla_adapter_ros.contract import StateSpec
from vla_adapter_ros.decoding import (  # noqa: F401 - the node's decoders, re-exported under their names
    DecodeError,
    action_chunk_to_array,
    compressed_msg_to_rgb,
    image_msg_to_rgb,
    joint_state_to_proprio,
    stamp_to_ns,
)

# The decoders live in vla_adapter_ros.decoding (ROS-free, shared with the bag reader): one implementation.
ConversionError = DecodeError  # the node's name for it: ``kind`` is the diagnostics key


# --- images -------------------------------------------------------------------
def rgb_to_image_msg(rgb: np.ndarray, header: Header | None = None, encoding: str = "rgb8") -> Image:
    """(H, W, 3) uint8 RGB -> sensor_msgs/Image in ``encoding`` (rgb8 or bgr8); for publishers and tests."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ConversionError("image_size", f"expected a (H, W, 3) uint8 RGB array, got {rgb.shape} {rgb.dtype}")
    if encoding not in ("rgb8", "bgr8"):
        raise ConversionError("image_encoding", f"rgb_to_image_msg writes rgb8 or bgr8, not {encoding!r}")
    pixels = rgb if encoding == "rgb8" else rgb[:, :, ::-1]
    msg = Image()
    if header is not None:
        msg.header = copy_header(header)
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(rgb.shape[1] * 3)
    msg.data = np.ascontiguousarray(pixels).tobytes()
    return msg


def compressed_image_msg(rgb: np.ndarray, header: Header | None = None, fmt: str = "png") -> CompressedImage:
    """(H, W, 3) uint8 RGB -> sensor_msgs/CompressedImage (``png``: lossless, or ``jpeg``); for publishers."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ConversionError("image_size", f"expected a (H, W, 3) uint8 RGB array, got {rgb.shape} {rgb.dtype}")
    if fmt not in ("png", "jpeg"):
        raise ConversionError("compressed_format", f"compressed_image_msg writes png or jpeg, not {fmt!r}")
    ok, buf = cv2.imencode(f".{'jpg' if fmt == 'jpeg' else 'png'}", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise ConversionError("compressed_decode", f"OpenCV could not encode a {rgb.shape} image as {fmt}")
    msg = CompressedImage(format=fmt, data=buf.tobytes())
    if header is not None:
        msg.header = copy_header(header)
    return msg


# --- state --------------------------------------------------------------------
STATE_MESSAGES = {"JointState": JointState, "Float64MultiArray": Float64MultiArray,
                  "Float32MultiArray": Float32MultiArray}


def state_msg(spec: StateSpec, values: Sequence[float], header: Header | None = None) -> Any:
    """A robot's state as its contract's message: a JointState with the selected entries filled (named
    joints, position / velocity / effort arrays), or a MultiArray with ``data.<i>`` set; for publishers
    (replay, tests). The inverse of ``decoding.state_vector``."""
    values = [float(v) for v in values]
    if len(values) != len(spec.fields):
        raise ConversionError("proprio_length", f"{len(values)} values for {len(spec.fields)} state entries")
    if spec.type != "JointState":
        data = [0.0] * (max(int(f.key) for f in spec.fields) + 1)
        for f, v in zip(spec.fields, values, strict=True):
            data[int(f.key)] = v
        return STATE_MESSAGES[spec.type](data=data)
    names = list(dict.fromkeys(f.key for f in spec.fields))
    arrays = {source: [0.0] * len(names) for source in dict.fromkeys(f.source for f in spec.fields)}
    for f, v in zip(spec.fields, values, strict=True):
        arrays[f.source][names.index(f.key)] = v
    msg = JointState(name=names, **arrays)
    if header is not None:
        msg.header = copy_header(header)
    return msg


# --- actions ------------------------------------------------------------------
def copy_header(header: Header) -> Header:
    return Header(stamp=Time(sec=header.stamp.sec, nanosec=header.stamp.nanosec), frame_id=header.frame_id)


def action_chunk_msg(
    header: Header,
    actions: np.ndarray,
    *,
    adapter: str,
    instruction: str,
    action_names: Sequence[str],
    dt: float,
    sequence: int,
    inference_time: float,
    execution_provider: str,
) -> ActionChunk:
    """(K, A) actions (already de-normalised and clipped by the runtime) -> ActionChunk, header from the image."""
    actions = np.asarray(actions, dtype=np.float32)
    if actions.ndim != 2:
        raise ConversionError("action_shape", f"actions must be (K, A), got shape {actions.shape}")
    k, a = actions.shape
    if action_names and len(action_names) != a:
        raise ConversionError("action_shape", f"{len(action_names)} action names {list(action_names)} for A = {a}")
    msg = ActionChunk()
    msg.header = copy_header(header)
    msg.adapter = adapter or ""
    msg.instruction = instruction
    msg.action_names = [str(n) for n in action_names]
    msg.chunk_length = int(k)
    msg.action_dim = int(a)
    msg.dt = float(dt)
    msg.actions = array.array("f", np.ascontiguousarray(actions).tobytes())  # row-major: [k * A + a]
    msg.sequence = int(sequence)
    msg.inference_time = float(inference_time)
    msg.execution_provider = execution_provider
    return msg


def first_action_msg(actions: np.ndarray, action_names: Sequence[str] = ()) -> Float32MultiArray:
    """The first action of a (K, A) chunk as a Float32MultiArray (for simple controllers)."""
    actions = np.asarray(actions, dtype=np.float32)
    if actions.ndim != 2 or actions.shape[0] == 0:
        raise ConversionError("action_shape", f"actions must be (K >= 1, A), got shape {actions.shape}")
    first = actions[0]
    msg = Float32MultiArray()
    label = ",".join(action_names) if action_names else "action"
    msg.layout.dim = [MultiArrayDimension(label=label, size=int(first.size), stride=int(first.size))]
    msg.data = array.array("f", first.tobytes())
    return msg


def adapter_info_msg(spec: Any) -> AdapterInfo:
    """runtime AdapterSpec (manifest entry) -> AdapterInfo."""
    return AdapterInfo(
        name=spec.name, task=spec.task, description=spec.description,
        instruction_examples=list(spec.instruction_examples), rank=int(spec.rank),
        num_parameters=int(spec.num_parameters), sha256=spec.sha256,
    )


# --- time and diagnostics -----------------------------------------------------
def ns_to_stamp(ns: int) -> Time:
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


LEVELS = {"OK": DiagnosticStatus.OK, "WARN": DiagnosticStatus.WARN, "ERROR": DiagnosticStatus.ERROR,
          "STALE": DiagnosticStatus.STALE}


def diagnostic_status(name: str, hardware_id: str, level: str, message: str,
                      values: Mapping[str, Any]) -> DiagnosticStatus:
    """One DiagnosticStatus, values formatted as strings in the given order."""
    if level not in LEVELS:
        raise ValueError(f"diagnostic level must be one of {sorted(LEVELS)}, got {level!r}")
    return DiagnosticStatus(
        level=LEVELS[level], name=name, message=message, hardware_id=hardware_id,
        values=[KeyValue(key=str(k), value=_format_value(v)) for k, v in values.items()],
    )


def diagnostic_array(stamp: Time, *statuses: DiagnosticStatus) -> DiagnosticArray:
    msg = DiagnosticArray(status=list(statuses))
    msg.header.stamp = stamp
    return msg


def diagnostic_level(status: DiagnosticStatus) -> int:
    """DiagnosticStatus.level as an int (a byte in some distributions)."""
    level = status.level
    return int.from_bytes(level, "little") if isinstance(level, bytes) else int(level)


def diagnostic_values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def _format_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, bytes):  # DiagnosticStatus.level is a byte in some distributions
        return str(int.from_bytes(v, "little"))
    return str(v)
