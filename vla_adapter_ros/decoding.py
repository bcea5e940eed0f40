"""Messages -> numpy: the one decoding path of the policy node and the bag reader.

A camera message becomes (H, W, 3) uint8 RGB, a state message the float32 vector a robot
contract selects from it, a recorded action message the action vector. The policy node
(``ros/conversions.py``, rclpy messages) and the bag reader (``bags/``, rosbags messages)
call these same functions, so a frame, a state or an action is decoded in training exactly as
on the robot. ROS-free: the functions are duck-typed over the field names that rclpy's and
rosbags' message classes share (``msg.encoding``, ``msg.position``, ``msg.header.stamp``, ...);
which message type a topic carries comes from the contract (``CameraSpec.type``,
``StateSpec.type``, ``ActionSource.type``), never from the object's class.

Every refusal raises :class:`DecodeError` whose ``kind`` is the short, stable key the node
counts in its diagnostics (``image_encoding``, ``proprio_missing_joint``, ...) and whose
message quotes the offending value. numpy, OpenCV, :mod:`processing` and :mod:`contract` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from vla_adapter_ros.contract import StateField
from vla_adapter_ros.processing import ENCODING_CHANNELS, MAX_IMAGE_PIXELS, ProcessingError, image_to_rgb

# CompressedImage.format values we decode ("jpeg", "png", "rgb8; jpeg compressed bgr8", ...).
# "compressedDepth" (16-bit depth PNG with a header) is not an RGB camera image.
_DEPTH_FORMAT_MARK = "compressedDepth"
MULTI_ARRAYS = ("Float32MultiArray", "Float64MultiArray")


class DecodeError(ProcessingError):
    """A message that cannot be turned into a policy input. ``kind`` is the diagnostics key."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # keep pickling (worker processes) working with two arguments
        return (type(self), (self.kind, str(self)))


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time -> integer nanoseconds (0 = unset)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


# --- cameras ----------------------------------------------------------------------------------
def image_msg_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8; any size, padded rows) -> (H, W, 3) uint8 RGB."""
    encoding = msg.encoding
    if encoding.lower() not in ENCODING_CHANNELS:
        raise DecodeError(
            "image_encoding",
            f"unsupported image encoding {encoding!r}; supported: {', '.join(sorted(ENCODING_CHANNELS))}",
        )
    if len(msg.data) == 0:
        raise DecodeError("image_empty", f"image {msg.height}x{msg.width} {encoding} has no data")
    try:
        # msg.data is an array.array('B'), bytes or a numpy array; image_to_rgb copies it exactly once.
        return image_to_rgb(msg.data, encoding, int(msg.height), int(msg.width), int(msg.step))
    except ProcessingError as exc:
        raise DecodeError("image_size", str(exc)) from exc


def compressed_msg_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG, PNG, anything OpenCV decodes) -> (H, W, 3) uint8 RGB."""
    if _DEPTH_FORMAT_MARK.lower() in msg.format.lower():
        raise DecodeError("compressed_format", f"compressed format {msg.format!r} is depth, not a camera image")
    if len(msg.data) == 0:
        raise DecodeError("image_empty", f"compressed image (format {msg.format!r}) has no data")
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        head = bytes(buf[:8]).hex()
        raise DecodeError(
            "compressed_decode",
            f"compressed payload of {buf.size} bytes (format {msg.format!r}, starts {head}) is not a decodable image",
        )
    if bgr.shape[0] * bgr.shape[1] > MAX_IMAGE_PIXELS:
        raise DecodeError(
            "image_size", f"decoded image {bgr.shape[0]}x{bgr.shape[1]} exceeds the {MAX_IMAGE_PIXELS}-pixel limit"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def camera_msg_to_rgb(msg: Any, msg_type: str = "Image") -> np.ndarray:
    """A camera message of the contract's ``type`` (``Image`` or ``CompressedImage``) -> (H, W, 3) uint8 RGB."""
    if msg_type == "Image":
        return image_msg_to_rgb(msg)
    if msg_type == "CompressedImage":
        return compressed_msg_to_rgb(msg)
    raise DecodeError("camera_type", f"camera message type {msg_type!r} is not Image or CompressedImage")


# --- state and recorded actions: entries selected by a contract --------------------------------
def _finite(values: np.ndarray, fields: Sequence[StateField], msg_type: str, what: str) -> np.ndarray:
    with np.errstate(over="ignore"):
        out = values.astype(np.float32)  # a finite 1e300 overflows to inf here: check after the cast
    if not np.all(np.isfinite(out)):
        bad = [f.short_name for f, v in zip(fields, out, strict=True) if not np.isfinite(v)]
        raise DecodeError(f"{what}_nonfinite", f"{msg_type} value of {bad} is not finite in float32: "
                                               f"{values.tolist()}")
    return out


def _joint_state_values(msg: Any, fields: Sequence[StateField], what: str) -> np.ndarray:
    """JointState entries ``position.<joint>`` / ``velocity.<joint>`` / ``effort.<joint>`` by joint name.

    A message without names is read positionally when every entry is a position and it has
    exactly that many positions (simple publishers do that); any other mismatch is refused.
    """
    names = list(msg.name)
    arrays = {source: np.asarray(getattr(msg, source), dtype=np.float64) for source in {f.source for f in fields}}
    plural = {"position": "positions", "velocity": "velocities", "effort": "efforts"}
    wanted = [f.short_name for f in fields]
    if not names:
        positions = arrays.get("position")
        if len(arrays) != 1 or positions is None or positions.size != len(fields):
            have = ", ".join(f"{np.asarray(getattr(msg, s)).size} {plural[s]}" for s in plural)
            raise DecodeError(f"{what}_length", f"JointState has no names and {have}; expected {len(fields)} "
                                                f"positions ({', '.join(wanted)})")
        return positions
    for source, values in arrays.items():
        if values.size != len(names):
            raise DecodeError(f"{what}_length", f"JointState has {len(names)} names but {values.size} "
                                                f"{plural[source]}")
    index = {n: i for i, n in enumerate(names)}
    missing = list(dict.fromkeys(f.key for f in fields if f.key not in index))
    if missing:
        raise DecodeError(f"{what}_missing_joint", f"JointState lacks joint(s) {missing}; it has {names}, the "
                                                   f"policy needs {wanted}")
    return np.asarray([arrays[f.source][index[f.key]] for f in fields], dtype=np.float64)


def _multi_array_values(msg: Any, fields: Sequence[StateField], msg_type: str, what: str) -> np.ndarray:
    """``data.<index>`` entries of a Float32/64MultiArray (indexes into ``data`` as published)."""
    data = np.asarray(msg.data, dtype=np.float64).reshape(-1)
    beyond = [f.name for f in fields if int(f.key) >= data.size]
    if beyond:
        raise DecodeError(f"{what}_length", f"{msg_type} has {data.size} values; {beyond} lie beyond them")
    return data[[int(f.key) for f in fields]]


def _twist_values(msg: Any, fields: Sequence[StateField]) -> np.ndarray:
    """``linear.<x|y|z>`` / ``angular.<x|y|z>`` entries of a geometry_msgs/TwistStamped."""
    return np.asarray([getattr(getattr(msg.twist, f.source), f.key) for f in fields], dtype=np.float64)


def state_vector(msg: Any, msg_type: str, fields: Sequence[StateField]) -> np.ndarray:
    """The (P,) float32 state a contract's ``state.fields`` select from a message of ``state.type``."""
    if not fields:
        raise DecodeError("proprio_config", "no proprio entries configured (contract, manifest or parameter)")
    if msg_type == "JointState":
        values = _joint_state_values(msg, fields, "proprio")
    elif msg_type in MULTI_ARRAYS:
        values = _multi_array_values(msg, fields, msg_type, "proprio")
    else:
        raise DecodeError("proprio_config", f"state message type {msg_type!r} is not JointState or a MultiArray")
    return _finite(values, fields, msg_type, "proprio")


def joint_state_to_proprio(msg: Any, names: Sequence[str]) -> np.ndarray:
    """JointState -> (P,) float32 positions ordered as ``names``, picked by joint name (the node's
    proprio of a manifest's ``proprio_names``; :func:`state_vector` with ``position.<name>`` entries)."""
    return state_vector(msg, "JointState", tuple(StateField("position", str(n)) for n in names))


def action_chunk_to_array(msg: Any) -> np.ndarray:
    """ActionChunk -> (K, A) float32 (inverse of the row-major packing)."""
    data = np.asarray(msg.actions, dtype=np.float32)
    k, a = int(msg.chunk_length), int(msg.action_dim)
    if k < 1 or a < 1 or data.size != k * a:
        raise DecodeError("action_shape", f"{data.size} values for chunk_length {k} x action_dim {a}")
    return data.reshape(k, a)


def action_vector(msg: Any, msg_type: str, fields: Sequence[StateField] = ()) -> np.ndarray:
    """The (A,) float32 action a recorded message holds, for a contract's ``action_source``.

    ``ActionChunk``: its first action (the one answering the frame). ``Float32/64MultiArray``: the
    ``data.<index>`` entries in ``fields``, or without fields the whole array (a (K, A) layout: its
    first row). ``JointState`` (a teleoperation leader arm): its ``position.<joint>`` ... entries.
    ``TwistStamped``: its ``linear.<axis>`` / ``angular.<axis>`` entries.
    """
    if msg_type == "ActionChunk":
        values = action_chunk_to_array(msg)[0].astype(np.float64)
        fields = _indexed(values.size)
    elif msg_type in MULTI_ARRAYS and not fields:
        values = np.asarray(msg.data, dtype=np.float64).reshape(-1)
        dims = [int(d.size) for d in msg.layout.dim]
        if len(dims) >= 2 and dims[0] > 0 and values.size == int(np.prod(dims)):
            values = values.reshape(dims[0], -1)[0]  # a (K, A) array: its first row
        if values.size == 0:
            raise DecodeError("action_shape", f"{msg_type} holds no values")
        fields = _indexed(values.size)
    elif msg_type not in (*MULTI_ARRAYS, "JointState", "TwistStamped"):
        raise DecodeError("action_config", f"action message type {msg_type!r} is not an action source type")
    elif not fields:
        raise DecodeError("action_config", f"a {msg_type} action source needs its entries in action order")
    elif msg_type == "JointState":
        values = _joint_state_values(msg, fields, "action")
    elif msg_type == "TwistStamped":
        values = _twist_values(msg, fields)
    else:
        values = _multi_array_values(msg, fields, msg_type, "action")
    return _finite(values, fields, msg_type, "action")


def _indexed(n: int) -> tuple[StateField, ...]:
    return tuple(StateField("data", str(i)) for i in range(n))
