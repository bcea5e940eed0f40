"""`vla-adapter contract check FILE` and `vla-adapter contract from-bag BAG`: a robot engineer's tools.

``check`` validates a robot contract and prints what the policy node does with it: its subscriptions
(topic, type, QoS), what it publishes, what an executor publishes and where training reads the
demonstrated actions. Exit 1 with the error (file and key path) when the contract is not valid.

``from-bag`` writes a starter contract from a bag's topics and types (``ros2 bag record`` of the
robot's own topics): cameras, state, instruction and action source found by message type, joint
names, image sizes and rates read from the bag. Where it must guess it says so in a ``# TODO``
comment; every action's ``kind`` is left ``TODO`` (what a number commands cannot be read from a
bag), so ``contract check`` refuses the file until the marked places are edited. A bag recorded
with a contract (``record-sim --contract``) gives that contract back.

ROS-free: PyYAML, rosbags and the package's contract, bags and decoding modules.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla_adapter_ros import decoding
from vla_adapter_ros.bags import typestore as ts
from vla_adapter_ros.bags.errors import BagError
from vla_adapter_ros.bags.reader import contract_in, custom_info, open_reader
from vla_adapter_ros.contract import ACTION_KINDS, ContractError, RobotContract
from vla_adapter_ros.ros.params import PolicyNodeConfig

NODE = PolicyNodeConfig()  # the policy node's defaults (plain Python; no rclpy)
QOS_TEXT = {  # ros/qos.py: what the node offers and requests
    "instruction": "reliable, keep_last 1, transient_local",
    "state": "best_effort, keep_last 1, volatile",
    "actions": "reliable, keep_last 10, volatile",
}
_GENERIC = {"image_raw", "image", "compressed", "image_rect", "image_rect_color", "camera", "cameras", "raw"}


# --- check ---------------------------------------------------------------------------------------
def describe(contract: RobotContract) -> str:
    """What a policy node and an executor do with ``contract``, as ``contract check`` prints it."""
    c = contract
    lines = [f"contract {c.path or '(in memory)'}: robot {c.robot!r}" + (f" ({c.description})" if c.description else ""),
             f"policy inputs: cameras {list(c.camera_names)} (frame set stamp: {c.reference_camera!r}, cameras "
             f"within {1000 * c.max_camera_skew:g} ms), state {list(c.state_names)}",
             f"policy outputs: actions {list(c.action_names)}",
             "the policy node subscribes to:"]
    rows = [(cam.topic, ts.CONTRACT_TYPES[cam.type], f"{cam.reliability}, keep_last {cam.depth}, volatile",
             f"camera {cam.name!r}, " + (f"{cam.size[1]}x{cam.size[0]}" if cam.size else "any size"))
            for cam in c.cameras]
    rows.append((c.instruction_topic, ts.STRING, QOS_TEXT["instruction"], "instruction"))
    if c.state is not None:
        rows.append((c.state.topic, ts.CONTRACT_TYPES[c.state.type], QOS_TEXT["state"],
                     f"state {[f.name for f in c.state.fields]}, nearest within {1000 * c.state.max_skew:g} ms"))
    lines += _table(rows)
    lines.append("it publishes (action_topic parameter):")
    lines += _table([(NODE.action_topic, ts.ACTION_CHUNK, QOS_TEXT["actions"],
                      "header stamp = the reference camera's; " + ", ".join(_action_text(a) for a in c.actions))])
    if c.outputs:
        lines.append("an executor publishes:")
        lines += _table([(o.topic, _OUTPUT_TYPES[o.type], "(the executor's QoS)",
                          f"actions {list(o.actions) or list(c.action_names)}"
                          + (f" in frame {o.frame_id!r}" if o.frame_id else "")) for o in c.outputs])
    source = c.action_source
    if source is not None:
        how = {"ActionChunk": "by the frame set's stamp", "JointState": f"nearest within {1000 * source.max_skew:g} ms",
               "TwistStamped": f"nearest within {1000 * source.max_skew:g} ms"}.get(source.type,
                                                                                      "the first after each frame set")
        entries = f" {[f.name for f in source.fields]}" if source.fields else ""
        lines.append("training reads the demonstrated actions from:")
        lines += _table([(source.topic, ts.CONTRACT_TYPES[source.type], "(bag)", f"{how}{entries}")])
    return "\n".join(lines)


_OUTPUT_TYPES = {"JointTrajectory": "trajectory_msgs/msg/JointTrajectory", "TwistStamped": ts.TWIST_STAMPED,
                 "Float64MultiArray": ts.FLOAT64_MULTI_ARRAY}


def _action_text(a: Any) -> str:
    bounds = f" [{a.low:g}, {a.high:g}]" if a.low > float("-inf") or a.high < float("inf") else ""
    return f"{a.name} ({a.kind}{', ' + a.unit if a.unit else ''}{bounds})"


def _table(rows: list[tuple[str, str, str, str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return ["  " + "  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]


def run_check(path: Path) -> int:
    try:
        contract = RobotContract.load(path)
    except ContractError as exc:
        print(f"vla-adapter contract check: {exc}", file=sys.stderr)
        return 1
    print(describe(contract))
    return 0


# --- from-bag ------------------------------------------------------------------------------------
@dataclass
class _Topic:
    name: str
    msgtype: str
    count: int
    rate: float  # Hz over the bag's duration
    first: Any  # the first message, decoded


def _topics(path: Path) -> tuple[list[_Topic], dict[str, Any]]:
    reader = open_reader(path)
    store = ts.make_typestore()
    try:
        info = custom_info(path, reader)
        seconds = max(reader.duration / 1e9, 1e-9)
        out = []
        for conn in reader.connections:
            short = ts.SHORT_TYPES.get(conn.msgtype)
            first = None
            if short is not None and conn.msgcount:
                _, _, raw = next(reader.messages(connections=[conn]))
                first = store.deserialize_cdr(raw, conn.msgtype)
            out.append(_Topic(conn.topic, conn.msgtype, conn.msgcount, conn.msgcount / seconds, first))
        return out, info
    finally:
        reader.close()


def _name(text: str, taken: set[str], fallback: str = "camera") -> str:
    """A contract name (a letter, then letters, digits or _) from a topic's last telling part or a joint name."""
    parts = [p for p in text.strip("/").split("/") if p and p not in _GENERIC]
    name = re.sub(r"[^A-Za-z0-9_]", "_", parts[-1] if parts else fallback)
    name = name if re.match(r"[A-Za-z]", name) else f"{fallback}_{name}"
    base, i = name, 2
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


def _skew(rate: float) -> float:
    """Two periods of a stream, between 5 ms and 100 ms: the nearest sample always lies within it."""
    return round(min(max(2.0 / rate, 0.005), 0.1), 3) if rate > 0 else 0.1


def _by_type(topics: list[_Topic], *types: str) -> list[_Topic]:
    return [t for t in topics if t.msgtype in types and t.count]


def starter_contract(path: str | Path) -> str:
    """A starter contract (YAML text with TODO comments) for the robot that recorded ``path``."""
    path = Path(path)
    topics, info = _topics(path)
    stored = contract_in(path, info)
    if stored is not None:
        return f"# the contract {path} was recorded with (stored in the bag)\n{stored.to_yaml()}"
    cameras = _by_type(topics, ts.IMAGE, ts.COMPRESSED_IMAGE)
    if not cameras:
        have = sorted(f"{t.name} ({t.msgtype})" for t in topics)
        raise BagError(path, f"no camera topic (sensor_msgs/Image or CompressedImage with messages); topics: {have}")
    joint_states = _by_type(topics, ts.JOINT_STATE)
    leader = [t for t in joint_states if re.search(r"leader|teleop|master", t.name)]
    state = next((t for t in joint_states if t not in leader), None)
    robot = re.sub(r"[^A-Za-z0-9_]", "_", path.name)
    lines = [f"# Starter contract from {path} ({len(topics)} topics). Edit every line marked TODO, then run",
             "#   vla-adapter contract check <this file>",
             "# docs/ROBOTS.md explains every key.",
             "version: 1",
             f"robot: {robot if re.match(r'[A-Za-z]', robot) else 'robot_' + robot}  # TODO: your robot's name",
             "cameras:"]
    taken: set[str] = set()
    for cam in cameras:
        lines += [f"  {_name(cam.name, taken)}:  # {_image_text(cam)}, ~{cam.rate:.1f} Hz",
                  f"    topic: {cam.name}",
                  f"    type: {ts.SHORT_TYPES[cam.msgtype]}",
                  "    qos: {reliability: best_effort, depth: 1}"]
    fastest = max(c.rate for c in cameras)
    lines += [f"max_camera_skew: {round(min(0.45 / fastest, 0.05), 3) if fastest > 0 else 0.02}"
              "  # TODO check: below half a camera period"]
    strings = _by_type(topics, ts.STRING)
    if strings:
        lines.append(f"instruction_topic: {strings[0].name}  # TODO check: the task instruction (std_msgs/String)")
    else:
        lines.append("instruction_topic: /vla/instruction  # the bag has no std_msgs/String: give "
                     "TrainConfig.instruction when training")
    if state is not None:
        lines += _state_lines(state)
    else:
        lines.append("# TODO: no sensor_msgs/JointState in the bag: add a state (see docs/ROBOTS.md) if the robot has one")
    lines += _action_lines(topics, leader)
    return "\n".join(lines) + "\n"


def _image_text(cam: _Topic) -> str:
    if cam.msgtype == ts.IMAGE:
        return f"{cam.first.width}x{cam.first.height} {cam.first.encoding}"
    try:
        h, w = decoding.compressed_msg_to_rgb(cam.first).shape[:2]
    except decoding.DecodeError as exc:
        return f"format {cam.first.format!r}, not decodable: {exc}"
    return f"{w}x{h} {cam.first.format}"


def _state_lines(state: _Topic) -> list[str]:
    names = list(state.first.name)
    fields = ", ".join(f"position.{n}" for n in names) if names else "TODO (the JointState carries no names)"
    return ["state:",
            f"  topic: {state.name}  # ~{state.rate:.1f} Hz",
            "  type: JointState",
            f"  fields: [{fields}]  # TODO check: the entries the policy sees (velocity.<joint>, effort.<joint> too)",
            f"  max_skew: {_skew(state.rate)}"]


def _action_lines(topics: list[_Topic], leader: list[_Topic]) -> list[str]:
    """``actions`` and ``action_source``: an ActionChunk topic, else a leader arm, a TwistStamped, a MultiArray."""
    chunks = _by_type(topics, ts.ACTION_CHUNK)
    twists = _by_type(topics, ts.TWIST_STAMPED)
    arrays = _by_type(topics, ts.FLOAT64_MULTI_ARRAY, ts.FLOAT32_MULTI_ARRAY)
    kinds = "|".join(ACTION_KINDS)
    if chunks:
        src, names, fields, hint = chunks[0], list(chunks[0].first.action_names), [], "as the policy node published"
    elif leader:
        src, names = leader[0], list(leader[0].first.name)
        fields, hint = [f"position.{n}" for n in names], "joint_position? (a leader arm's positions; gripper for one)"
    elif twists:
        src, names = twists[0], ["vx", "vy", "vz", "wx", "wy", "wz"]
        fields = ["linear.x", "linear.y", "linear.z", "angular.x", "angular.y", "angular.z"]
        hint = "ee_velocity? (a twist command)"
    elif arrays:
        src, size = arrays[0], len(arrays[0].first.data)
        names, fields, hint = [f"a{i}" for i in range(size)], [f"data.{i}" for i in range(size)], "what does it command?"
    else:
        return ["actions:  # TODO: no action topic found (ActionChunk, leader JointState, TwistStamped, MultiArray)",
                "  - {name: TODO, kind: TODO}"]
    lines = [f"actions:  # TODO: for each, kind ({kinds}), and unit, low, high, max_velocity where known"]
    lines += [f"  - {{name: {_name(n, set(), 'a')}, kind: TODO}}  # {hint}" for n in names]
    short = ts.SHORT_TYPES[src.msgtype]
    lines += ["action_source:", f"  topic: {src.name}  # ~{src.rate:.1f} Hz", f"  type: {short}"]
    if fields:
        lines.append(f"  fields: [{', '.join(fields)}]")
    if short in ("JointState", "TwistStamped"):
        lines.append(f"  max_skew: {_skew(src.rate)}")
    return lines


def run_from_bag(bag: Path, out: Path | None) -> int:
    try:
        text = starter_contract(bag)
    except (BagError, ContractError) as exc:
        print(f"vla-adapter contract from-bag: {exc}", file=sys.stderr)
        return 1
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        print(f"wrote {out}; edit the TODO lines, then: vla-adapter contract check {out}")
    return 0


# --- command line --------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    # a plain parser class: the CLI's own lazy-loading one would be inherited otherwise
    sub = parser.add_subparsers(dest="contract_command", metavar="ACTION", required=True,
                                parser_class=argparse.ArgumentParser)
    check = sub.add_parser("check", help="validate a robot contract; print the node's topics and QoS")
    check.add_argument("file", type=Path, help="contract YAML (config/robots/*.yaml)")
    start = sub.add_parser("from-bag", help="a starter contract from a bag's topics and types (TODOs to edit)")
    start.add_argument("bag", type=Path, help="a rosbag2 directory (ros2 bag record of the robot's topics)")
    start.add_argument("--out", type=Path, default=None, help="write the YAML here (default: stdout)")


def run(args: argparse.Namespace) -> int:
    if args.contract_command == "check":
        return run_check(args.file)
    return run_from_bag(args.bag, args.out)
