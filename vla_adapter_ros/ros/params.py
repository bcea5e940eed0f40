"""ROS parameters of every node of the package: ONE declarative machinery.

A node's parameters are a dataclass derived from :class:`NodeConfig`, one field per
parameter made with :func:`param` (type from the annotation; default, description,
mutability, range and allowed values in the field). The base class validates types, ranges,
allowed values and finiteness in ``__post_init__`` and calls the subclass's :meth:`NodeConfig.check`
for rules between fields; :meth:`NodeConfig.declare` declares every field to a node with a
``ParameterDescriptor`` and returns the validated config; :meth:`NodeConfig.update` is what a
node's on-set-parameters callback calls, so a bad value is refused with the same reason
whether it comes from YAML, the command line or ``ros2 param set``. Plain Python at import
(no rclpy), so tests, the launch-file check and docs read it without a ROS graph.

Three kinds of parameters (``mutability``):
- ``read_only``: wiring (topics, QoS, publishers); fixed for the life of the process.
- ``configure``: what ``configure`` loads; may change only while the node is unconfigured
  and take effect at the next configure.
- ``runtime``: limits that take effect immediately.

Every node has ``config/<node>.yaml`` listing all its parameters with their defaults
(tests/ros/test_params_files.py keeps each equal to its class, and checks the launch files and
``config/sim_demo.yaml`` against the classes).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from vla_adapter_ros.contract import RobotContract, StateField
from vla_adapter_ros.names import validate_adapter_name
from vla_adapter_ros.runtime.modes import SERVING_MODES

PACKAGE = "vla_adapter_ros"
READ_ONLY, CONFIGURE, RUNTIME = "read_only", "configure", "runtime"
MUTABILITY_TEXT = {READ_ONLY: "fixed at start-up", CONFIGURE: "changeable only while unconfigured",
                   RUNTIME: "changeable at any time"}
CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"  # source tree; installed: share/<pkg>/config

C = TypeVar("C", bound="NodeConfig")
_TYPES = {"str": str, "bool": bool, "int": int, "float": float}
# A ROS topic name: absolute or relative (~ allowed), tokens of [A-Za-z0-9_] not starting with a digit.
_TOPIC_RE = re.compile(r"^(~/|/)?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$|^~$")


def param(default: Any, description: str, mutability: str = READ_ONLY, *, min: float | None = None,  # noqa: A002
          max: float | None = None, choices: tuple[Any, ...] | None = None, topic: bool = False,  # noqa: A002
          optional: bool = False) -> Any:
    """One parameter. ``topic``: must be a valid ROS topic name (``optional``: or empty)."""
    meta = {"description": description, "mutability": mutability, "min": min, "max": max, "choices": choices,
            "topic": topic, "optional": optional}
    return field(default=default, metadata=meta)


def check_topic(name: str, topic: str) -> None:
    if not _TOPIC_RE.match(topic):
        raise ValueError(f"{name} {topic!r} is not a valid ROS topic name")


def split_list(text: str) -> list[str]:
    """A comma-separated parameter as a list (``" a, b "`` -> ``["a", "b"]``; empty -> [])."""
    return [t.strip() for t in text.split(",")] if text.strip() else []


@dataclass
class NodeConfig:
    """Base of every node's parameter dataclass; see the module docstring."""

    NODE_NAME: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in fields(self):
            self._check_field(f)
        self.check()

    def _check_field(self, f: dataclasses.Field) -> None:
        value, expected, meta = getattr(self, f.name), _TYPES[f.type], f.metadata
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
            setattr(self, f.name, value)
        if type(value) is not expected:
            raise ValueError(f"{f.name} must be {expected.__name__}, got {value!r} ({type(value).__name__})")
        if expected is float and not math.isfinite(value):
            raise ValueError(f"{f.name} must be finite, got {value!r}")
        lo, hi = meta["min"], meta["max"]
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(f"{f.name} must be in [{lo}, {hi}], got {value!r}")
        if meta["choices"] is not None and value not in meta["choices"]:
            raise ValueError(f"{f.name} must be one of {list(meta['choices'])}, got {value!r}")
        if meta["topic"] and (value or not meta["optional"]):
            check_topic(f.name, value)

    def check(self) -> None:
        """Rules between fields (subclasses); raise ValueError quoting the bad value."""

    # --- introspection ---------------------------------------------------------------
    @classmethod
    def field_info(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in fields(cls)}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def defaults_file(cls) -> Path:
        """``config/<node>.yaml``: every parameter with its default."""
        return CONFIG_DIR / f"{cls.NODE_NAME}.yaml"

    # --- ROS side (rclpy reached only through the node passed in) -------------------
    @classmethod
    def declare(cls: type[C], node: Any) -> C:
        """Declare every field as a ROS parameter with a descriptor; return the validated config."""
        # why here: this module is read without ROS (tests, the launch-file check); only a node declares
        from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

        ros_types = {"str": ParameterType.PARAMETER_STRING, "bool": ParameterType.PARAMETER_BOOL,
                     "int": ParameterType.PARAMETER_INTEGER, "float": ParameterType.PARAMETER_DOUBLE}
        for f in fields(cls):
            meta = f.metadata
            constraints = MUTABILITY_TEXT[meta["mutability"]]
            if meta["choices"] is not None:
                constraints += f"; one of {list(meta['choices'])}"
            desc = ParameterDescriptor(name=f.name, type=ros_types[f.type], description=meta["description"],
                                       additional_constraints=constraints,
                                       read_only=meta["mutability"] == READ_ONLY)
            if meta["min"] is not None and f.type == "int" and meta["max"] < 2**63:
                desc.integer_range = [IntegerRange(from_value=int(meta["min"]), to_value=int(meta["max"]), step=0)]
            elif meta["min"] is not None and f.type == "float":
                desc.floating_point_range = [FloatingPointRange(from_value=float(meta["min"]),
                                                                to_value=float(meta["max"]), step=0.0)]
            node.declare_parameter(f.name, f.default, desc)
        return cls.from_node(node)

    @classmethod
    def from_node(cls: type[C], node: Any) -> C:
        """Read every declared parameter into a validated config (ValueError on a bad value)."""
        names = [f.name for f in fields(cls)]
        return cls(**{p.name: p.value for p in node.get_parameters(names)})

    def update(self: C, changes: dict[str, Any], *, unconfigured: bool) -> C:
        """The config after ``changes`` (a set-parameters request), or ValueError saying why not."""
        info = self.field_info()
        for name in changes:
            if name not in info:
                raise ValueError(f"unknown parameter {name!r}")
            mutability = info[name].metadata["mutability"]
            if mutability == READ_ONLY:
                raise ValueError(f"{name} is read-only (fixed at start-up); restart the node to change it")
            if mutability == CONFIGURE and not unconfigured:
                raise ValueError(f"{name} can change only while the node is unconfigured (cleanup first); "
                                 "it takes effect at the next configure")
        return dataclasses.replace(self, **changes)


# --- the policy node -----------------------------------------------------------------
DEFAULT_MODEL_NAME = "default"
_CAMERA_OVERRIDES = ("camera_topic", "use_compressed")  # one camera only; reliability and depth apply to each
CAMERA_RELIABILITY = ("best_effort", "reliable")
_PROVIDER_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_JOINT_RE = re.compile(r"^\S+$")


@dataclass
class PolicyNodeConfig(NodeConfig):
    """Everything the policy node reads from ROS parameters (names = field names)."""

    NODE_NAME: ClassVar[str] = "vla_adapter"

    # --- model (loaded by configure) ---
    model_dir: str = param("", "exported model directory; empty = the bundled models/default", CONFIGURE)
    adapter: str = param("", "adapter active after configure; empty = the manifest's default adapter", CONFIGURE)
    providers: str = param(
        "", "comma-separated onnxruntime providers in order (tensorrt,cuda,cpu); empty = runtime default",
        CONFIGURE,
    )
    # --- the robot (read at configure): a contract file, or the model's own contract + single-camera overrides ---
    contract: str = param(
        "", "robot contract YAML (cameras, state, actions; docs/ROBOTS.md); refused at configure when its cameras, "
            "state or actions differ from the model's. Empty = the model's own contract, with the overrides below",
        CONFIGURE)
    camera_topic: str = param("", "single-camera model without a contract file: the camera topic; empty = the "
                                  "model contract's", CONFIGURE, topic=True, optional=True)
    use_compressed: bool = param(False, "single-camera model: subscribe to sensor_msgs/CompressedImage on "
                                        "<camera topic>/compressed", CONFIGURE)
    camera_reliability: str = param("", "every camera's QoS reliability; empty = the contract's", CONFIGURE,
                                    choices=("",) + CAMERA_RELIABILITY)
    camera_depth: int = param(0, "every camera's QoS history depth (keep last); 0 = the contract's", CONFIGURE,
                              min=0, max=100)
    proprio_topic: str = param("", "the state sensor_msgs/JointState topic; empty = the contract's", CONFIGURE,
                               topic=True, optional=True)
    proprio_joint_names: str = param(
        "", "comma-separated JointState names, in the policy's proprio order (a robot whose joints are named "
            "otherwise); empty = the contract's", CONFIGURE,
    )
    max_state_skew: float = param(
        -1.0, "seconds; a frame is served with the state sample nearest its stamp within this; 0 = the latest "
              "sample whatever its stamp; -1 = the contract's (state.max_skew)", CONFIGURE, min=-1.0, max=60.0,
    )
    # --- outputs ---
    instruction_topic: str = param("/vla/instruction", "instruction std_msgs/String (reliable, transient local)",
                                   topic=True)
    action_topic: str = param("/vla/action", "vla_adapter_interfaces/ActionChunk output", topic=True)
    publish_first_action_array: bool = param(False, "also publish the first action as std_msgs/Float32MultiArray")
    first_action_topic: str = param("/vla/first_action", "Float32MultiArray topic (publish_first_action_array)",
                                    topic=True)
    # --- serving ---
    max_image_age: float = param(
        1.0, "seconds; frames older than this (now - header.stamp) are not served; 0 = no limit", RUNTIME,
        min=0.0, max=3600.0,
    )
    max_rate: float = param(0.0, "Hz; at most this many inferences per second; 0 = as fast as frames come",
                            RUNTIME, min=0.0, max=1000.0)
    # One thread by default: onnxruntime's own default (one pinned, spinning thread per core)
    # fought the ROS threads on the 2-core machines here (benchmarks/bench_ros.py: ROS overhead
    # 1-10 ms instead of ~1 ms, switch p99 9 ms instead of 4 ms, and even slower inference).
    # On a GPU provider it hardly matters; raise it for a large model on a many-core CPU.
    intra_op_threads: int = param(
        1, "onnxruntime intra-op threads per session; 0 = onnxruntime's default (one per core, spinning)",
        CONFIGURE, min=0, max=256,
    )
    # --- GPU serving (onnxruntime CUDA / TensorRT; ignored on the CPU provider) ---
    device_id: int = param(0, "CUDA device that the CUDA and TensorRT providers run on", CONFIGURE, min=0, max=64)
    fp16: bool = param(False, "let TensorRT use fp16 kernels (trt_fp16_enable); CUDA and CPU ignore it", CONFIGURE)
    tf32: bool = param(False, "let CUDA run fp32 matmuls in TF32 (use_tf32): faster on large models, ~1e-3 off", CONFIGURE)
    engine_cache_dir: str = param(
        "", "TensorRT engine cache root; one sub-folder per model content hash (an engine can never serve other "
            "weights); empty = $XDG_CACHE_HOME or ~/.cache, then vla_adapter_ros/tensorrt", CONFIGURE)
    serving: str = param("auto", "auto: a replayed CUDA graph on CUDA, IOBinding (inputs and adapter tensors "
                                 "resident on the device) on TensorRT, plain on the CPU; plain; iobinding; cuda_graph",
                         CONFIGURE, choices=SERVING_MODES)
    trt_max_batch: int = param(8, "TensorRT optimisation profile: batch 1 (min, opt) to this (max)", CONFIGURE,
                               min=1, max=1024)
    # --- lifecycle and diagnostics ---
    autostart: bool = param(True, "configure and activate at start-up (plain `ros2 run` serves right away); "
                                  "exit 1 if that fails. False: a lifecycle manager configures it")
    diagnostics_period: float = param(1.0, "seconds between /diagnostics messages", min=0.1, max=60.0)
    latency_window: int = param(300, "frames in the latency percentile window", min=10, max=100000)

    def check(self) -> None:
        if self.engine_cache_dir and not self.engine_cache_dir.strip():
            raise ValueError(f"engine_cache_dir {self.engine_cache_dir!r} is blank")
        bad = [p for p in self.provider_list if not _PROVIDER_RE.match(p)]
        if bad:
            raise ValueError(f"providers {self.providers!r}: bad provider name(s) {bad}")
        if any(not _JOINT_RE.match(n) for n in self.joint_name_list):
            raise ValueError(f"proprio_joint_names {self.proprio_joint_names!r}: empty or blank joint name")
        if self.adapter:
            validate_adapter_name(self.adapter)

    # --- derived values ---
    @property
    def provider_list(self) -> list[str]:
        return split_list(self.providers)

    @property
    def joint_name_list(self) -> list[str]:
        return split_list(self.proprio_joint_names)

    def robot_contract(self, model: RobotContract) -> RobotContract:
        """The robot this node serves: the ``contract`` file, else the model's own contract with the
        single-camera overrides (topic, compressed transport, QoS) and the state overrides (topic, joint
        names, skew). ContractError / ValueError say what is wrong."""
        robot = RobotContract.load(Path(self.contract).expanduser()) if self.contract else model
        overrides = {k: getattr(self, k) for k in _CAMERA_OVERRIDES if getattr(self, k) != self.field_info()[k].default}
        if overrides and len(robot.cameras) != 1:
            raise ValueError(f"{sorted(overrides)} apply to a single camera; the robot has {list(robot.camera_names)}: "
                             "set each camera in a contract file instead")
        if len(robot.cameras) == 1 and not self.contract:
            cam = robot.cameras[0]
            topic, kind = self.camera_topic or cam.topic, cam.type
            if self.use_compressed:
                topic, kind = f"{topic.rstrip('/')}/compressed", "CompressedImage"
            robot = replace(robot, cameras=(replace(cam, topic=topic, type=kind),))
        robot = replace(robot, cameras=tuple(replace(c, reliability=self.camera_reliability or c.reliability,
                                                     depth=self.camera_depth or c.depth) for c in robot.cameras))
        if robot.state is not None:
            state = robot.state
            fields = tuple(StateField("position", n) for n in self.joint_name_list) or state.fields
            robot = replace(robot, state=replace(
                state, topic=self.proprio_topic or state.topic, fields=fields,
                max_skew=state.max_skew if self.max_state_skew < 0 else self.max_state_skew))
        return robot

    def resolved_model_dir(self) -> Path:
        return Path(self.model_dir).expanduser() if self.model_dir else default_model_dir()


def default_model_dir() -> Path:
    """The bundled model: <source tree>/models/default, else <share>/vla_adapter_ros/models/default."""
    return _package_path("models", DEFAULT_MODEL_NAME)


def config_file(name: str) -> Path:
    """A file of config/: from the source tree, else from the installed share directory."""
    return _package_path("config", name)


def _package_path(*parts: str) -> Path:
    src = Path(__file__).resolve().parents[2].joinpath(*parts)
    if src.exists():
        return src
    try:  # an installed package (colcon/ament); ament_index exists only where ROS does
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return src
    try:
        return Path(get_package_share_directory(PACKAGE)).joinpath(*parts)
    except (PackageNotFoundError, ValueError, LookupError):
        return src  # not installed either: the caller reports this path as missing
