"""The executor's outputs: the contract's ``outputs`` turned into messages, several at once.

Each output carries a subset of the action dimensions (its ``actions``, all when empty):

- ``std_msgs/Float64MultiArray`` (forward_command_controller / JointGroup{Position,Velocity}Controller
  ``~/commands``; also what a simulator can step on): one value per dimension in the output's
  order: positions for position kinds, per-second rates for velocity kinds and, for delta kinds,
  the rate (``delta_output: velocity``) or the increment of this control tick
  (``delta_output: increment`` = rate / control_rate). ``layout.dim[0].label`` lists the names.
- ``geometry_msgs/TwistStamped`` (MoveIt Servo ``~/delta_twist_cmds``): 1 to 6 end-effector
  dimensions (``ee_delta`` / ``ee_velocity``) mapped in order to linear x, y, z, angular x, y, z,
  as rates per second converted to SI from the contract's unit (m, cm, mm; rad, deg; with or
  without ``/s``; other units are sent as they are: use Servo's ``command_in_type: unitless``); ``header.stamp`` = the tick,
  ``frame_id`` from the contract.
- ``trajectory_msgs/JointTrajectory`` (joint_trajectory_controller ``~/joint_trajectory``), joint
  names = the output's action names, all position kinds (positions + velocities) or all rate kinds
  (velocities only: needs ``allow_integration_in_goal_trajectories``). ``trajectory_mode``:
  ``per_tick`` (default): every tick, ``header.stamp`` zero ("start now", as MoveIt Servo streams
  to JTC), first point = the tick's command at ``time_from_start`` = one control period, then the
  newest chunk's remaining knots (strictly increasing, real times); JTC replaces its trajectory
  each message. ``per_chunk``: one message per accepted chunk, ``header.stamp`` = the chunk's
  stamp and knot k at ``k * dt``: JTC itself drops the points already in the past and splices
  (ros2_controllers "Trajectory Replacement"); needs synchronised clocks.
lerobot-ros (ycheng517/lerobot-ros, ``ros_interface.py``) drives the same three controller families
(JointTrajectory with one point per action, Float64MultiArray for a position controller, Twist to MoveIt
Servo, the gripper on its own trajectory or GripperCommand action); here every message comes from the
control-rate executor instead of the policy's own step.
The gripper is an output of its own when the contract lists it alone (a Float64MultiArray for a
forward controller, or a one-joint JointTrajectory); control_msgs/GripperCommand is an action this
project cannot build (no control_msgs wheel): README "Driving a controller" shows the bridge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import TwistStamped
from std_msgs.msg import Float64MultiArray, Header, MultiArrayDimension
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from vla_adapter_ros.contract import OutputSpec
from vla_adapter_ros.execution import Command, Dims, ExecutionError
from vla_adapter_ros.execution.dims import DELTA_KINDS, EE_KINDS, POSITION_KINDS
from vla_adapter_ros.execution.trajectory import ChunkTrajectory
from vla_adapter_ros.ros import qos
from vla_adapter_ros.ros.conversions import ns_to_stamp

TRAJECTORY_MODES = ("per_tick", "per_chunk")
DELTA_OUTPUTS = ("velocity", "increment")
SI = {"m": 1.0, "cm": 0.01, "mm": 0.001, "rad": 1.0, "deg": math.pi / 180.0}
TWIST_FIELDS = (("linear", "x"), ("linear", "y"), ("linear", "z"), ("angular", "x"), ("angular", "y"),
                ("angular", "z"))


@dataclass(frozen=True)
class Output:
    spec: OutputSpec
    index: np.ndarray  # dimensions carried, in the output's order
    names: tuple[str, ...]
    positions: bool  # JointTrajectory: positions (+ velocities) rather than velocities only
    scale: np.ndarray  # per carried dimension: factor applied to the command (units, increments)
    notes: tuple[str, ...] = ()  # what configure logs about it


def plan_outputs(specs: Sequence[OutputSpec], dims: Dims, *, delta_output: str, control_rate: float,
                 source: str = "the contract") -> list[Output]:
    """Check every output against the action kinds; ExecutionError naming the output otherwise."""
    if not specs:
        raise ExecutionError(f"{source} has no outputs: add e.g. `outputs: [{{type: Float64MultiArray, topic: "
                             f"/vla/command}}]` (see docs/DESIGN.md, the executor)")
    if delta_output not in DELTA_OUTPUTS:
        raise ExecutionError(f"delta_output must be one of {list(DELTA_OUTPUTS)}, got {delta_output!r}")
    out = []
    for i, spec in enumerate(specs):
        where = f"{source} outputs[{i}] ({spec.type} on {spec.topic})"
        names = spec.actions or dims.names
        try:
            index = np.array(dims.index(names), int)
        except ExecutionError as exc:
            raise ExecutionError(f"{where}: {exc}") from None
        kinds = [dims.kinds[j] for j in index]
        scale, notes, positions = np.ones(len(index)), [], False
        if spec.type == "JointTrajectory":
            pos = [k in POSITION_KINDS for k in kinds]
            if any(pos) and not all(pos):
                raise ExecutionError(f"{where}: mixes position kinds and rate kinds {dict(zip(names, kinds, strict=True))};"
                                     " give positions and rates outputs of their own")
            positions = all(pos)
        elif spec.type == "TwistStamped":
            bad = {n: k for n, k in zip(names, kinds, strict=True) if k not in EE_KINDS}
            if bad or not 1 <= len(names) <= 6:
                raise ExecutionError(f"{where}: a twist carries 1 to 6 end-effector dimensions ({list(EE_KINDS)}); "
                                     f"got {dict(zip(names, kinds, strict=True))}")
            for j, (n, d) in enumerate(zip(names, index, strict=True)):
                unit = dims.units[d].removesuffix("/s")  # a velocity kind may say m/s, a delta kind m
                if unit in SI:
                    scale[j] = SI[unit]
                else:
                    notes.append(f"{n}: unit {unit!r} sent as it is (no SI conversion known)")
        elif delta_output == "increment":
            scale = np.array([1.0 / control_rate if k in DELTA_KINDS else 1.0 for k in kinds])
        out.append(Output(spec, index, tuple(names), positions, scale, tuple(notes)))
    return out


# --- messages (pure functions: tested without a ROS graph) ------------------------------
def array_msg(cmd: Command, out: Output) -> Float64MultiArray:
    msg = Float64MultiArray()
    n = len(out.index)
    msg.layout.dim = [MultiArrayDimension(label=",".join(out.names), size=n, stride=n)]
    msg.data = (cmd.value[out.index] * out.scale).tolist()
    return msg


def twist_msg(cmd: Command, out: Output) -> TwistStamped:
    msg = TwistStamped(header=Header(stamp=ns_to_stamp(cmd.stamp_ns), frame_id=out.spec.frame_id))
    for (part, axis), v in zip(TWIST_FIELDS, cmd.value[out.index] * out.scale, strict=False):
        setattr(getattr(msg.twist, part), axis, float(v))
    return msg


def _duration(seconds: float) -> Duration:
    ns = int(round(seconds * 1e9))
    return Duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _points(times_s: np.ndarray, values: np.ndarray | None, velocities: np.ndarray | None) -> list[JointTrajectoryPoint]:
    points = []
    for i, t in enumerate(times_s):
        p = JointTrajectoryPoint(time_from_start=_duration(float(t)))
        if values is not None:
            p.positions = values[i].tolist()
        if velocities is not None:
            p.velocities = velocities[i].tolist()
        points.append(p)
    return points


def tick_trajectory_msg(cmd: Command, out: Output) -> JointTrajectory:
    """per_tick: stamp zero (start now), the command one period ahead, then the remaining knots."""
    msg = JointTrajectory(header=Header(stamp=Time()), joint_names=list(out.names))
    velocity = cmd.preview_velocity[:, out.index]
    if out.positions:
        msg.points = _points(cmd.preview_s, cmd.preview_value[:, out.index], velocity)
    else:
        msg.points = _points(cmd.preview_s, None, cmd.preview_value[:, out.index])
    return msg


def chunk_trajectory_msg(chunk: ChunkTrajectory, out: Output, low: np.ndarray, high: np.ndarray,
                         smooth: bool) -> JointTrajectory:
    """per_chunk: the chunk's own stamp and knots; velocities only where they are real (cubic/spline
    positions, any rates), so JTC interpolates linearly otherwise."""
    msg = JointTrajectory(header=Header(stamp=ns_to_stamp(chunk.stamp_ns)), joint_names=list(out.names))
    times = np.arange(chunk.k) * chunk.dt
    values = np.clip(chunk.values, low, high)[:, out.index]
    if out.positions:
        velocities = np.array([chunk.velocity(int(t))[out.index] for t in chunk.knot_times_ns()]) if smooth else None
        msg.points = _points(times, values, velocities)
    else:
        msg.points = _points(times, None, values)
    return msg


class CommandOutputs:
    """The publishers of one configured executor (lifecycle publishers: they send only while active)."""

    def __init__(self, node: Any, outputs: Sequence[Output], trajectory_mode: str) -> None:
        if trajectory_mode not in TRAJECTORY_MODES:
            raise ExecutionError(f"trajectory_mode must be one of {list(TRAJECTORY_MODES)}, got {trajectory_mode!r}")
        self.node, self.outputs, self.mode = node, list(outputs), trajectory_mode
        types = {"JointTrajectory": JointTrajectory, "TwistStamped": TwistStamped,
                 "Float64MultiArray": Float64MultiArray}
        self.publishers = [node.create_lifecycle_publisher(types[o.spec.type], o.spec.topic, qos.command_qos())
                           for o in self.outputs]

    @property
    def wants_preview(self) -> bool:
        return self.mode == "per_tick" and any(o.spec.type == "JointTrajectory" for o in self.outputs)

    @property
    def per_chunk(self) -> bool:
        return self.mode == "per_chunk" and any(o.spec.type == "JointTrajectory" for o in self.outputs)

    def publish(self, cmd: Command) -> None:
        for out, pub in zip(self.outputs, self.publishers, strict=True):
            if out.spec.type == "Float64MultiArray":
                pub.publish(array_msg(cmd, out))
            elif out.spec.type == "TwistStamped":
                pub.publish(twist_msg(cmd, out))
            elif self.mode == "per_tick":
                pub.publish(tick_trajectory_msg(cmd, out))

    def publish_chunk(self, chunk: ChunkTrajectory, low: np.ndarray, high: np.ndarray, smooth: bool) -> None:
        for out, pub in zip(self.outputs, self.publishers, strict=True):
            if out.spec.type == "JointTrajectory":
                pub.publish(chunk_trajectory_msg(chunk, out, low, high, smooth))

    def close(self) -> None:
        for pub in self.publishers:
            self.node.destroy_lifecycle_publisher(pub)
        self.publishers = []
