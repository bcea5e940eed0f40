"""The robot contract: what a robot's ROS graph offers a policy and takes from it, in one YAML file.

A contract names the robot's cameras (topic, message type, QoS, optional size), its state
(a JointState's selected ``position.<joint>`` / ``velocity.<joint>`` / ``effort.<joint>`` entries
in order, or a Float64/Float32MultiArray's ``data.<index>`` entries), the instruction topic, the
action space (names in order with kind, unit, bounds and rate limits), where a bag's recorded
actions come from (the node's ActionChunk, a teleoperation leader arm's JointState, ...) and the
executor's outputs. The same file drives recording, training from a robot's own bags, export
(the manifest carries it), the policy node and the executor, so a model trained on one camera
layout is never served on another: :meth:`RobotContract.mismatches` names every difference.

Loading is strict: unknown or misspelt keys (with the nearest valid key), duplicate keys, wrong
types and inconsistent entries raise :class:`ContractError` naming the file and the key path.
ROS-free (PyYAML only); ``vla-adapter contract check FILE`` prints what a node will do with it.

Example (``config/robots/metaworld_sawyer.yaml`` is the simulator's)::

    robot: my_arm
    control_rate: 100.0
    cameras:
      front: {topic: /front/image_raw}
      wrist: {topic: /wrist/image_raw/compressed, type: CompressedImage}
    state:
      topic: /joint_states
      fields: [position.joint1, position.joint2, position.gripper]
    actions:
      - {name: joint1, kind: joint_position, unit: rad, low: -3.1, high: 3.1, max_velocity: 2.0}
      - {name: joint2, kind: joint_position, unit: rad, low: -2.0, high: 2.0, max_velocity: 2.0}
      - {name: gripper, kind: gripper, unit: m, low: 0.0, high: 0.08}
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

CONTRACT_VERSION = 1
CAMERA_TYPES = ("Image", "CompressedImage")
STATE_TYPES = ("JointState", "Float64MultiArray", "Float32MultiArray")
JOINT_STATE_FIELDS = ("position", "velocity", "effort")
RELIABILITY = ("best_effort", "reliable")
# Per action dimension: what the number commands. *_position / gripper are absolute targets,
# *_delta are increments per step, *_velocity are rates.
ACTION_KINDS = ("joint_position", "joint_delta", "joint_velocity", "ee_delta", "ee_velocity", "gripper")
ACTION_SOURCE_TYPES = ("ActionChunk", "Float32MultiArray", "Float64MultiArray", "JointState", "TwistStamped")
TWIST_FIELDS = ("linear", "angular")  # TwistStamped entries: linear.x ... angular.z
OUTPUT_TYPES = ("JointTrajectory", "TwistStamped", "Float64MultiArray")
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_TOPIC_RE = re.compile(r"^/?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")


class ContractError(ValueError):
    """A contract that cannot be used; the message names the file (if any) and the key path."""


class _UniqueKeyLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no type hints
    """PyYAML keeps the last of two equal keys silently; a contract must not (two cameras named alike)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ContractError(f"duplicate key {key!r} (lines {seen[key] + 1} and {key_node.start_mark.line + 1})")
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


# --- reading helpers: every error names the key path --------------------------------------
class _Reader:
    """Typed access to one mapping of the file, refusing unknown keys with the nearest valid one."""

    def __init__(self, data: Any, where: str, keys: Sequence[str]) -> None:
        if not isinstance(data, Mapping):
            raise ContractError(f"{where}: expected a mapping with keys {list(keys)}, got {type(data).__name__} "
                                f"{data!r}")
        unknown = [k for k in data if k not in keys]
        if unknown:
            k = unknown[0]
            near = difflib.get_close_matches(str(k), keys, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; known keys: {list(keys)}"
            raise ContractError(f"{where}: unknown key {k!r}{hint}")
        self.data, self.where = data, where

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise ContractError(f"{self.where}.{key}: required")
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        ok = isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, float))
        if not ok:
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise ContractError(f"{self.where}.{key}: expected {names}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ContractError(f"{self.where}.{key}: must be finite, got {value!r}")
        return value

    def choice(self, key: str, choices: Sequence[str], default: Any = ...) -> str:
        value = self.get(key, str, default)
        if value not in choices:
            raise ContractError(f"{self.where}.{key}: {value!r} is not one of {list(choices)}")
        return value

    def topic(self, key: str, default: Any = ...) -> str:
        value = self.get(key, str, default)
        if not _TOPIC_RE.match(value):
            raise ContractError(f"{self.where}.{key}: {value!r} is not a ROS topic name")
        return value


def _name(value: str, where: str) -> str:
    if not _NAME_RE.match(value):
        raise ContractError(f"{where}: {value!r} is not a valid name (a letter, then letters, digits or _)")
    return value


# --- the parts ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CameraSpec:
    name: str
    topic: str
    type: str = "Image"
    reliability: str = "best_effort"
    depth: int = 1
    size: tuple[int, int] | None = None  # (height, width) the robot publishes; None = any

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"topic": self.topic, "type": self.type,
                               "qos": {"reliability": self.reliability, "depth": self.depth}}
        if self.size is not None:
            out["size"] = list(self.size)
        return out


@dataclass(frozen=True)
class StateField:
    """One selected entry: ``position.<joint>`` (JointState) or ``data.<index>`` (a MultiArray)."""

    source: str  # position | velocity | effort | data
    key: str  # joint name, or the index as text

    @property
    def name(self) -> str:
        return f"{self.source}.{self.key}"

    @property
    def short_name(self) -> str:
        """The policy's name for this entry: the joint name (position) or ``<source>.<key>`` otherwise."""
        return self.key if self.source == "position" else self.name


@dataclass(frozen=True)
class StateSpec:
    topic: str
    type: str
    fields: tuple[StateField, ...]
    max_skew: float = 0.1  # s: the sample nearest a frame's stamp within this serves the frame

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.short_name for f in self.fields)

    def to_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "type": self.type, "fields": [f.name for f in self.fields],
                "max_skew": self.max_skew}


@dataclass(frozen=True)
class ActionDim:
    name: str
    kind: str
    unit: str = ""
    low: float = -math.inf
    high: float = math.inf
    max_velocity: float = 0.0  # per second; 0 = no limit
    max_acceleration: float = 0.0  # per second squared; 0 = no limit

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.unit:
            out["unit"] = self.unit
        if math.isfinite(self.low):
            out["low"] = self.low
        if math.isfinite(self.high):
            out["high"] = self.high
        if self.max_velocity:
            out["max_velocity"] = self.max_velocity
        if self.max_acceleration:
            out["max_acceleration"] = self.max_acceleration
        return out


@dataclass(frozen=True)
class ActionSource:
    """Where a robot's bags hold the demonstrated actions (training from ``ros2 bag record``).

    An ActionChunk answers the frame whose stamp its header carries; a MultiArray (no header) is
    the first one logged at or after a frame; a JointState (a teleoperation leader arm) or a
    TwistStamped (a teleoperated end-effector velocity) is the sample nearest the frame's stamp
    within ``max_skew`` seconds.
    """

    topic: str
    type: str = "ActionChunk"
    fields: tuple[StateField, ...] = ()  # JointState / MultiArray / TwistStamped sources: the entries, in order
    max_skew: float = 0.1  # s: JointState / TwistStamped sources

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"topic": self.topic, "type": self.type}
        if self.fields:
            out["fields"] = [f.name for f in self.fields]
        if self.type in ("JointState", "TwistStamped"):
            out["max_skew"] = self.max_skew
        return out


@dataclass(frozen=True)
class OutputSpec:
    """An executor output: ``type`` on ``topic``; ``actions`` = the action names it carries (all if empty)."""

    type: str
    topic: str
    actions: tuple[str, ...] = ()
    frame_id: str = ""  # TwistStamped

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "topic": self.topic}
        if self.actions:
            out["actions"] = list(self.actions)
        if self.frame_id:
            out["frame_id"] = self.frame_id
        return out


# --- the contract --------------------------------------------------------------------------
_TOP_KEYS = ("version", "robot", "description", "control_rate", "cameras", "reference_camera", "max_camera_skew",
             "instruction_topic", "state", "actions", "action_source", "outputs")


@dataclass(frozen=True)
class RobotContract:
    robot: str
    cameras: tuple[CameraSpec, ...]
    state: StateSpec | None
    actions: tuple[ActionDim, ...]
    control_rate: float = 0.0  # Hz the robot's controllers run at; 0 = unknown
    reference_camera: str = ""  # whose stamp the ActionChunk header carries; default the first camera
    max_camera_skew: float = 0.02  # s between the stamps of one frame set
    instruction_topic: str = "/vla/instruction"
    action_source: ActionSource | None = None
    outputs: tuple[OutputSpec, ...] = ()
    description: str = ""
    path: Path | None = field(default=None, compare=False)

    # --- names the policy sees ---
    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cameras)

    @property
    def state_names(self) -> tuple[str, ...]:
        return self.state.names if self.state is not None else ()

    @property
    def action_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.actions)

    def camera(self, name: str) -> CameraSpec:
        for c in self.cameras:
            if c.name == name:
                return c
        raise KeyError(f"no camera {name!r} in contract {self.robot!r}; cameras: {list(self.camera_names)}")

    # --- loading ---
    @classmethod
    def load(cls, path: str | Path) -> RobotContract:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ContractError(f"{path}: cannot read the contract: {exc}") from exc
        try:
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
        except ContractError as exc:
            raise ContractError(f"{path}: {exc}") from None
        except yaml.YAMLError as exc:
            raise ContractError(f"{path}: not valid YAML: {exc}") from exc
        try:
            contract = cls.from_dict(data)
        except ContractError as exc:
            raise ContractError(f"{path}: {exc}") from None
        return _with_path(contract, path)

    @classmethod
    def from_dict(cls, data: Any) -> RobotContract:
        r = _Reader(data, "contract", _TOP_KEYS)
        version = r.get("version", int, CONTRACT_VERSION)
        if version != CONTRACT_VERSION:
            raise ContractError(f"contract.version: {version} is not supported; this release reads version "
                                f"{CONTRACT_VERSION}")
        cameras = _cameras(r.get("cameras", Mapping))
        names = [c.name for c in cameras]
        reference = r.get("reference_camera", str, names[0])
        if reference not in names:
            raise ContractError(f"contract.reference_camera: {reference!r} is not one of the cameras {names}")
        state = _state(r.get("state", Mapping)) if "state" in r.data else None
        actions = _actions(r.get("actions", list))
        action_names = [a.name for a in actions]
        source = _action_source(r.get("action_source", Mapping), len(actions)) if "action_source" in r.data else None
        outputs = tuple(_output(o, f"contract.outputs[{i}]", action_names)
                        for i, o in enumerate(r.get("outputs", list, [])))
        rate = r.get("control_rate", float, 0.0)
        skew = r.get("max_camera_skew", float, 0.02)
        if rate < 0 or skew < 0:
            raise ContractError(f"contract: control_rate and max_camera_skew must be >= 0, got {rate}, {skew}")
        return cls(robot=_name(r.get("robot", str), "contract.robot"), cameras=cameras, state=state, actions=actions,
                   control_rate=rate, reference_camera=reference, max_camera_skew=skew,
                   instruction_topic=r.topic("instruction_topic", "/vla/instruction"), action_source=source,
                   outputs=outputs, description=r.get("description", str, ""))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": CONTRACT_VERSION, "robot": self.robot}
        if self.description:
            out["description"] = self.description
        out.update({"control_rate": self.control_rate, "cameras": {c.name: c.to_dict() for c in self.cameras},
                    "reference_camera": self.reference_camera, "max_camera_skew": self.max_camera_skew,
                    "instruction_topic": self.instruction_topic})
        if self.state is not None:
            out["state"] = self.state.to_dict()
        out["actions"] = [a.to_dict() for a in self.actions]
        if self.action_source is not None:
            out["action_source"] = self.action_source.to_dict()
        if self.outputs:
            out["outputs"] = [o.to_dict() for o in self.outputs]
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    # --- compatibility ---
    def mismatches(self, robot: RobotContract) -> list[str]:
        """What keeps a model trained with this contract from serving ``robot`` (empty: compatible).

        The policy's inputs and outputs must agree by name and order: cameras (a model never sees a
        camera layout it was not trained on), state entries and action names. Topics, QoS, bounds and
        outputs are the robot's own business.
        """
        problems = []
        for what, mine, theirs in (("cameras", self.camera_names, robot.camera_names),
                                   ("state", self.state_names, robot.state_names),
                                   ("actions", self.action_names, robot.action_names)):
            if mine != theirs:
                problems.append(f"{what}: the model has {list(mine)}, the robot {robot.robot!r} has {list(theirs)}")
        for c in self.cameras:
            other = next((o for o in robot.cameras if o.name == c.name), None)
            if other is not None and c.size and other.size and c.size != other.size:
                problems.append(f"camera {c.name!r}: the model was trained on {c.size[1]}x{c.size[0]} images, the "
                                f"robot publishes {other.size[1]}x{other.size[0]} (resized: say so by removing size)")
        return problems


def _with_path(contract: RobotContract, path: Path) -> RobotContract:
    return replace(contract, path=path)


def _cameras(data: Mapping[str, Any]) -> tuple[CameraSpec, ...]:
    if not data:
        raise ContractError("contract.cameras: at least one camera is required")
    if len(data) > 4:
        raise ContractError(f"contract.cameras: at most 4 cameras, got {len(data)} ({list(data)})")
    out = []
    for name, spec in data.items():
        where = f"contract.cameras.{name}"
        _name(str(name), where)
        r = _Reader(spec, where, ("topic", "type", "qos", "size"))
        qos = _Reader(r.get("qos", Mapping, {}), f"{where}.qos", ("reliability", "depth"))
        depth = qos.get("depth", int, 1)
        if depth < 1:
            raise ContractError(f"{where}.qos.depth: must be >= 1, got {depth}")
        size = r.get("size", list, None)
        if size is not None and (len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size)):
            raise ContractError(f"{where}.size: expected [height, width] in pixels, got {size!r}")
        out.append(CameraSpec(str(name), r.topic("topic"), r.choice("type", CAMERA_TYPES, "Image"),
                              qos.choice("reliability", RELIABILITY, "best_effort"), depth,
                              tuple(size) if size is not None else None))
    topics = [c.topic for c in out]
    if len(set(topics)) != len(topics):
        raise ContractError(f"contract.cameras: two cameras share a topic: {topics}")
    return tuple(out)


def _fields(values: Any, where: str, msg_type: str) -> tuple[StateField, ...]:
    if not isinstance(values, list) or not values:
        raise ContractError(f"{where}: expected a non-empty list of entries, got {values!r}")
    allowed, example = {
        "JointState": (JOINT_STATE_FIELDS, "position.<joint>, velocity.<joint> or effort.<joint>"),
        "TwistStamped": (TWIST_FIELDS, "linear.<x|y|z> or angular.<x|y|z>"),
    }.get(msg_type, (("data",), "data.<index>"))
    out = []
    for i, v in enumerate(values):
        source, _, key = str(v).partition(".")
        if source not in allowed or not key or source in TWIST_FIELDS and key not in ("x", "y", "z"):
            raise ContractError(f"{where}[{i}]: {v!r} is not an entry of a {msg_type} (use {example})")
        if source == "data" and not key.isdigit():
            raise ContractError(f"{where}[{i}]: {v!r}: the index after 'data.' must be a number")
        out.append(StateField(source, key))
    names = [f.name for f in out]
    if len(set(names)) != len(names):
        raise ContractError(f"{where}: an entry is listed twice: {names}")
    return tuple(out)


def _state(data: Mapping[str, Any]) -> StateSpec:
    r = _Reader(data, "contract.state", ("topic", "type", "fields", "max_skew"))
    msg_type = r.choice("type", STATE_TYPES, "JointState")
    skew = r.get("max_skew", float, 0.1)
    if skew < 0:
        raise ContractError(f"contract.state.max_skew: must be >= 0, got {skew}")
    return StateSpec(r.topic("topic"), msg_type, _fields(r.get("fields", list), "contract.state.fields", msg_type), skew)


def _actions(items: list[Any]) -> tuple[ActionDim, ...]:
    if not items:
        raise ContractError("contract.actions: at least one action dimension is required")
    out = []
    for i, item in enumerate(items):
        where = f"contract.actions[{i}]"
        r = _Reader(item, where, ("name", "kind", "unit", "low", "high", "max_velocity", "max_acceleration"))
        dim = ActionDim(_name(r.get("name", str), f"{where}.name"), r.choice("kind", ACTION_KINDS),
                        r.get("unit", str, ""), r.get("low", float, -math.inf), r.get("high", float, math.inf),
                        r.get("max_velocity", float, 0.0), r.get("max_acceleration", float, 0.0))
        if not dim.low < dim.high:
            raise ContractError(f"{where}: low {dim.low} must be below high {dim.high}")
        if dim.max_velocity < 0 or dim.max_acceleration < 0:
            raise ContractError(f"{where}: max_velocity / max_acceleration must be >= 0")
        out.append(dim)
    names = [a.name for a in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ContractError(f"contract.actions: duplicate action names {dupes}")
    return tuple(out)


def _action_source(data: Mapping[str, Any], n_actions: int) -> ActionSource:
    r = _Reader(data, "contract.action_source", ("topic", "type", "fields", "max_skew"))
    msg_type = r.choice("type", ACTION_SOURCE_TYPES, "ActionChunk")
    stamped = msg_type in ("JointState", "TwistStamped")  # matched to frames by stamp, within max_skew
    fields: tuple[StateField, ...] = ()
    if msg_type != "ActionChunk" and "fields" in r.data:
        fields = _fields(r.get("fields", list), "contract.action_source.fields",
                         msg_type if stamped else "MultiArray")
        if len(fields) != n_actions:
            raise ContractError(f"contract.action_source.fields: {len(fields)} entries for {n_actions} actions")
    elif stamped:
        raise ContractError(f"contract.action_source.fields: a {msg_type} source needs its entries in action order")
    elif "fields" in r.data:
        raise ContractError(f"contract.action_source.fields: an {msg_type} source carries its actions; no fields")
    if "max_skew" in r.data and not stamped:
        raise ContractError(f"contract.action_source.max_skew: an {msg_type} source is matched without a skew "
                            "(ActionChunk: by stamp; MultiArray: the first after the frame); remove it")
    skew = r.get("max_skew", float, 0.1)
    if skew < 0:
        raise ContractError(f"contract.action_source.max_skew: must be >= 0, got {skew}")
    return ActionSource(r.topic("topic"), msg_type, fields, skew)


def _output(data: Any, where: str, action_names: Sequence[str]) -> OutputSpec:
    r = _Reader(data, where, ("type", "topic", "actions", "frame_id"))
    actions = tuple(r.get("actions", list, []))
    unknown = [a for a in actions if a not in action_names]
    if unknown:
        raise ContractError(f"{where}.actions: {unknown} are not action names {list(action_names)}")
    msg_type = r.choice("type", OUTPUT_TYPES)
    frame_id = r.get("frame_id", str, "")
    if msg_type == "TwistStamped" and not frame_id:
        raise ContractError(f"{where}.frame_id: a TwistStamped output needs the frame its twist is expressed in")
    return OutputSpec(msg_type, r.topic("topic"), actions, frame_id)


def default_contract(proprio_names: Sequence[str], action_names: Sequence[str], *,
                     camera_topic: str = "/camera/image_raw", robot: str = "robot") -> RobotContract:
    """The contract of a single-camera model exported before contracts existed: one camera named
    ``camera`` on ``camera_topic``, JointState positions by name, end-effector deltas + a gripper."""
    actions = tuple(ActionDim(n, "gripper" if n == "gripper" else "ee_delta", "", -1.0, 1.0) for n in action_names)
    state = StateSpec("/joint_states", "JointState", tuple(StateField("position", n) for n in proprio_names)) \
        if proprio_names else None
    return RobotContract(robot=robot, cameras=(CameraSpec("camera", camera_topic),), state=state, actions=actions,
                         reference_camera="camera")
