"""Message <-> numpy/str conversions for the policy node. Pure functions, no node state.

Images go through :func:`vla_adapter_ros.processing.image_to_rgb` (the same code the
dataset uses), so a frame served on the robot is decoded exactly as in training.
Every refusal raises :class:`ConversionError` whose ``kind`` is a short, stable key
the node counts in its diagnostics (``image_encoding``, ``proprio_missing_joint``, ...)
and whose message quotes the offending value.
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
from std_msgs.msg import Float32MultiArray, Header, MultiArrayDimension

from vla_adapter_interfaces.msg import ActionChunk, AdapterInfo
from vla_adapter_ros.processing import ENCODING_CHANNELS, MAX_IMAGE_PIXELS, ProcessingError, image_to_rgb

# CompressedImage.format values we decode ("jpeg", "png", "rgb8; jpeg compressed bgr8", ...).
# "compressedDepth" (16-bit depth PNG with a header) is not an RGB camera image.
_DEPTH_FORMAT_MARK = "compressedDepth"


class ConversionError(ProcessingError):
    """A message that cannot be turned into a policy input. ``kind`` is the diagnostics key."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# --- images -------------------------------------------------------------------
def image_msg_to_rgb(msg: Image) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8; any size, padded rows) -> (H, W, 3) uint8 RGB."""
    encoding = msg.encoding
    if encoding.lower() not in ENCODING_CHANNELS:
        raise ConversionError(
            "image_encoding",
            f"unsupported image encoding {encoding!r}; supported: {', '.join(sorted(ENCODING_CHANNELS))}",
        )
    if len(msg.data) == 0:
        raise ConversionError("image_empty", f"image {msg.height}x{msg.width} {encoding} has no data")
    try:
        # msg.data is an array.array('B') (or bytes); frombuffer inside image_to_rgb does not copy it.
        return image_to_rgb(msg.data, encoding, int(msg.height), int(msg.width), int(msg.step))
    except ProcessingError as exc:
        raise ConversionError("image_size", str(exc)) from exc


def compressed_msg_to_rgb(msg: CompressedImage) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG, PNG, anything OpenCV decodes) -> (H, W, 3) uint8 RGB."""
    if _DEPTH_FORMAT_MARK.lower() in msg.format.lower():
        raise ConversionError("compressed_format", f"compressed format {msg.format!r} is depth, not a camera image")
    if len(msg.data) == 0:
        raise ConversionError("image_empty", f"compressed image (format {msg.format!r}) has no data")
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        head = bytes(buf[:8]).hex()
        raise ConversionError(
            "compressed_decode",
            f"compressed payload of {buf.size} bytes (format {msg.format!r}, starts {head}) is not a decodable image",
        )
    if bgr.shape[0] * bgr.shape[1] > MAX_IMAGE_PIXELS:
        raise ConversionError(
            "image_size", f"decoded image {bgr.shape[0]}x{bgr.shape[1]} exceeds the {MAX_IMAGE_PIXELS}-pixel limit"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


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


# --- proprioception -----------------------------------------------------------
def joint_state_to_proprio(msg: JointState, names: Sequence[str]) -> np.ndarray:
    """JointState -> (P,) float32 ordered as ``names``, picked by joint name.

    A message without names is accepted positionally when it has exactly P
    positions (simple publishers do that); any other mismatch is refused.
    """
    names = list(names)
    positions = np.asarray(msg.position, dtype=np.float64)
    if not names:
        raise ConversionError("proprio_config", "no proprio joint names configured (manifest or parameter)")
    if len(msg.name) == 0:
        if positions.size != len(names):
            raise ConversionError(
                "proprio_length",
                f"JointState has no names and {positions.size} positions; expected {len(names)} ({', '.join(names)})",
            )
        values = positions
    else:
        if len(msg.name) != positions.size:
            raise ConversionError(
                "proprio_length", f"JointState has {len(msg.name)} names but {positions.size} positions"
            )
        index = {n: i for i, n in enumerate(msg.name)}
        missing = [n for n in names if n not in index]
        if missing:
            raise ConversionError(
                "proprio_missing_joint",
                f"JointState lacks joint(s) {missing}; it has {list(msg.name)}, the policy needs {names}",
            )
        values = positions[[index[n] for n in names]]
    with np.errstate(over="ignore"):
        out = values.astype(np.float32)  # a finite 1e300 overflows to inf here: check after the cast
    if not np.all(np.isfinite(out)):
        bad = [n for n, v in zip(names, out, strict=True) if not np.isfinite(v)]
        raise ConversionError("proprio_nonfinite", f"JointState position of {bad} is not finite in float32: "
                                                   f"{values.tolist()}")
    return out


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


def action_chunk_to_array(msg: ActionChunk) -> np.ndarray:
    """ActionChunk -> (K, A) float32 (inverse of the row-major packing)."""
    data = np.asarray(msg.actions, dtype=np.float32)
    if data.size != msg.chunk_length * msg.action_dim:
        raise ConversionError(
            "action_shape", f"{data.size} values for chunk_length {msg.chunk_length} x action_dim {msg.action_dim}"
        )
    return data.reshape(msg.chunk_length, msg.action_dim)


def adapter_info_msg(spec: Any) -> AdapterInfo:
    """runtime AdapterSpec (manifest entry) -> AdapterInfo."""
    return AdapterInfo(
        name=spec.name, task=spec.task, description=spec.description,
        instruction_examples=list(spec.instruction_examples), rank=int(spec.rank),
        num_parameters=int(spec.num_parameters), sha256=spec.sha256,
    )


# --- time and diagnostics -----------------------------------------------------
def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


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
