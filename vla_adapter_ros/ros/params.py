"""The policy node's parameters: ONE typed, self-validating config, declared to ROS from here.

:class:`PolicyNodeConfig` is plain Python (no rclpy import at module level), so tests, the
launch-file check and documentation read it without a ROS graph. The node calls
:func:`declare_parameters` (one ``ParameterDescriptor`` per field, from the field metadata)
and :func:`config_from_node`; its on-set-parameters callback calls :func:`check_update`,
which re-runs ``__post_init__`` on the candidate config, so a bad value is rejected with the
same reason whether it comes from YAML, the command line or ``ros2 param set``.

Three kinds of parameters (field metadata ``mutability``):
- ``read_only``: wiring (topics, QoS, publishers); fixed for the life of the process.
- ``configure``: what ``configure`` loads (model_dir, adapter, providers); may change only
  while the node is unconfigured and take effect at the next configure.
- ``runtime``: watchdog/rate limits; take effect immediately.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

NODE_NAME = "vla_adapter"
PACKAGE = "vla_adapter_ros"
DEFAULT_MODEL_NAME = "default"
READ_ONLY, CONFIGURE, RUNTIME = "read_only", "configure", "runtime"
CAMERA_RELIABILITY = ("best_effort", "reliable")

# A ROS topic name: absolute or relative (~ allowed), tokens of [A-Za-z0-9_] not starting with a digit.
_TOPIC_RE = re.compile(r"^(~/|/)?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$|^~$")
_PROVIDER_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_JOINT_RE = re.compile(r"^\S+$")


def _p(default: Any, description: str, mutability: str = READ_ONLY, **limits: Any) -> Any:
    return field(default=default, metadata={"description": description, "mutability": mutability, **limits})


@dataclass
class PolicyNodeConfig:
    """Everything the policy node reads from ROS parameters (names = field names)."""

    # --- model (loaded by configure) ---
    model_dir: str = _p("", "exported model directory; empty = the bundled models/default", CONFIGURE)
    adapter: str = _p("", "adapter active after configure; empty = the manifest's default adapter", CONFIGURE)
    providers: str = _p(
        "", "comma-separated onnxruntime providers in order (tensorrt,cuda,cpu); empty = runtime default",
        CONFIGURE,
    )
    # --- topics (all remappable as well) ---
    camera_topic: str = _p("/camera/image_raw", "camera sensor_msgs/Image topic")
    use_compressed: bool = _p(False, "subscribe to sensor_msgs/CompressedImage on <camera_topic>/compressed")
    instruction_topic: str = _p("/vla/instruction", "instruction std_msgs/String (reliable, transient local)")
    proprio_topic: str = _p("/joint_states", "proprioception sensor_msgs/JointState; empty = no proprio")
    action_topic: str = _p("/vla/action", "vla_adapter_interfaces/ActionChunk output")
    publish_first_action_array: bool = _p(False, "also publish the first action as std_msgs/Float32MultiArray")
    first_action_topic: str = _p("/vla/first_action", "Float32MultiArray topic (publish_first_action_array)")
    # --- camera QoS ---
    camera_reliability: str = _p("best_effort", "camera QoS reliability: best_effort or reliable")
    camera_depth: int = _p(1, "camera QoS history depth (keep last)", min=1, max=100)
    # --- serving ---
    max_image_age: float = _p(
        1.0, "seconds; frames older than this (now - header.stamp) are not served; 0 = no limit", RUNTIME,
        min=0.0, max=3600.0,
    )
    max_rate: float = _p(0.0, "Hz; at most this many inferences per second; 0 = as fast as frames come",
                         RUNTIME, min=0.0, max=1000.0)
    # One thread by default: onnxruntime's own default (one pinned, spinning thread per core)
    # fought the ROS threads on the 2-core machines here (benchmarks/bench_ros.py: ROS overhead
    # 1-10 ms instead of ~1 ms, switch p99 9 ms instead of 4 ms, and even slower inference).
    # On a GPU provider it hardly matters; raise it for a large model on a many-core CPU.
    intra_op_threads: int = _p(
        1, "onnxruntime intra-op threads per session; 0 = onnxruntime's default (one per core, spinning)",
        CONFIGURE, min=0, max=256,
    )
    proprio_joint_names: str = _p(
        "", "comma-separated JointState names, in the policy's proprio order; empty = the manifest's names",
        CONFIGURE,
    )
    # --- lifecycle and diagnostics ---
    autostart: bool = _p(True, "configure and activate at start-up (plain `ros2 run` serves right away); "
                               "exit 1 if that fails. False: a lifecycle manager configures it")
    diagnostics_period: float = _p(1.0, "seconds between /diagnostics messages", min=0.1, max=60.0)
    latency_window: int = _p(300, "frames in the latency percentile window", min=10, max=100000)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            expected = _TYPES[f.type]
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                setattr(self, f.name, value)
            if type(value) is not expected:
                raise ValueError(f"{f.name} must be {expected.__name__}, got {value!r} ({type(value).__name__})")
            lo, hi = f.metadata.get("min"), f.metadata.get("max")
            if expected is float and not math.isfinite(value):
                raise ValueError(f"{f.name} must be finite, got {value!r}")
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise ValueError(f"{f.name} must be in [{lo}, {hi}], got {value!r}")
        for name in ("camera_topic", "instruction_topic", "action_topic", "first_action_topic"):
            _check_topic(name, getattr(self, name))
        if self.proprio_topic:
            _check_topic("proprio_topic", self.proprio_topic)
        if self.camera_reliability not in CAMERA_RELIABILITY:
            raise ValueError(f"camera_reliability must be one of {list(CAMERA_RELIABILITY)}, "
                             f"got {self.camera_reliability!r}")
        bad = [p for p in self.provider_list if not _PROVIDER_RE.match(p)]
        if bad:
            raise ValueError(f"providers {self.providers!r}: bad provider name(s) {bad}")
        if any(not _JOINT_RE.match(n) for n in self.joint_name_list):
            raise ValueError(f"proprio_joint_names {self.proprio_joint_names!r}: empty or blank joint name")
        if self.adapter and ("/" in self.adapter or "\\" in self.adapter or ".." in self.adapter):
            raise ValueError(f"adapter {self.adapter!r} must be a manifest adapter name, not a path")

    # --- derived values ---
    @property
    def provider_list(self) -> list[str]:
        return _split(self.providers)

    @property
    def joint_name_list(self) -> list[str]:
        return _split(self.proprio_joint_names)

    @property
    def image_topic(self) -> str:
        """The topic actually subscribed: image_transport's ``<base>/compressed`` when compressed."""
        return f"{self.camera_topic.rstrip('/')}/compressed" if self.use_compressed else self.camera_topic

    def resolved_model_dir(self) -> Path:
        return Path(self.model_dir).expanduser() if self.model_dir else default_model_dir()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_TYPES = {"str": str, "bool": bool, "int": int, "float": float}


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",")] if text.strip() else []


def _check_topic(name: str, topic: str) -> None:
    if not _TOPIC_RE.match(topic):
        raise ValueError(f"{name} {topic!r} is not a valid ROS topic name")


def default_model_dir() -> Path:
    """The bundled model: <source tree>/models/default, else <share>/vla_adapter_ros/models/default."""
    src = Path(__file__).resolve().parents[2] / "models" / DEFAULT_MODEL_NAME
    if src.is_dir():
        return src
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return src
    try:
        return Path(get_package_share_directory(PACKAGE)) / "models" / DEFAULT_MODEL_NAME
    except (PackageNotFoundError, ValueError, LookupError):
        return src  # not installed either: the node reports this path as missing


def field_info() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in fields(PolicyNodeConfig)}


def defaults() -> dict[str, Any]:
    return PolicyNodeConfig().to_dict()


def check_update(current: PolicyNodeConfig, changes: dict[str, Any], *, unconfigured: bool) -> PolicyNodeConfig:
    """The config after ``changes``, or ValueError saying why a change is refused."""
    info = field_info()
    for name in changes:
        if name not in info:
            raise ValueError(f"unknown parameter {name!r}")
        mutability = info[name].metadata["mutability"]
        if mutability == READ_ONLY:
            raise ValueError(f"{name} is read-only (fixed at start-up); restart the node to change it")
        if mutability == CONFIGURE and not unconfigured:
            raise ValueError(f"{name} can change only while the node is unconfigured (cleanup first); "
                             "it takes effect at the next configure")
    return dataclasses.replace(current, **changes)


# --- ROS side (rclpy imported lazily so this module stays ROS-free) ------------
def declare_parameters(node: Any) -> PolicyNodeConfig:
    """Declare every field as a ROS parameter with a descriptor; return the validated config."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

    ros_types = {"str": ParameterType.PARAMETER_STRING, "bool": ParameterType.PARAMETER_BOOL,
                 "int": ParameterType.PARAMETER_INTEGER, "float": ParameterType.PARAMETER_DOUBLE}
    base = PolicyNodeConfig()
    for f in fields(PolicyNodeConfig):
        meta = f.metadata
        desc = ParameterDescriptor(
            name=f.name, type=ros_types[f.type], description=meta["description"],
            additional_constraints={READ_ONLY: "fixed at start-up",
                                    CONFIGURE: "changeable only while unconfigured",
                                    RUNTIME: "changeable at any time"}[meta["mutability"]],
            read_only=meta["mutability"] == READ_ONLY,
        )
        if "min" in meta and f.type == "int":
            desc.integer_range = [IntegerRange(from_value=meta["min"], to_value=meta["max"], step=0)]
        elif "min" in meta and f.type == "float":
            desc.floating_point_range = [FloatingPointRange(from_value=float(meta["min"]),
                                                            to_value=float(meta["max"]), step=0.0)]
        node.declare_parameter(f.name, getattr(base, f.name), desc)
    return config_from_node(node)


def config_from_node(node: Any) -> PolicyNodeConfig:
    """Read every declared parameter into a validated PolicyNodeConfig (ValueError on a bad value)."""
    names = [f.name for f in fields(PolicyNodeConfig)]
    return PolicyNodeConfig(**{p.name: p.value for p in node.get_parameters(names)})
