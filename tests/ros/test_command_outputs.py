"""The executor's outputs planned from a contract and turned into real messages (no ROS graph)."""

from __future__ import annotations

import numpy as np
import pytest

from vla_adapter_ros.contract import ActionDim, OutputSpec, RobotContract
from vla_adapter_ros.execution import ChunkExecutor, Command, Dims, ExecutionError, ExecutorSettings
from vla_adapter_ros.ros.command_outputs import (
    array_msg,
    chunk_trajectory_msg,
    plan_outputs,
    tick_trajectory_msg,
    twist_msg,
)
from vla_adapter_ros.ros.params import config_file

DIMS = Dims.from_actions([ActionDim("j1", "joint_position", "rad"), ActionDim("vx", "ee_velocity", "m/s"),
                          ActionDim("dz", "ee_delta", "cm"), ActionDim("wz", "ee_velocity", "deg/s"),
                          ActionDim("g", "gripper", "m")])


def plan(*specs: OutputSpec, delta_output: str = "velocity"):
    return plan_outputs(specs, DIMS, delta_output=delta_output, control_rate=100.0)


@pytest.mark.parametrize("specs, needle", [
    ((), "has no outputs: add e.g."),
    ((OutputSpec("JointTrajectory", "/t", ("j1", "vx")),), "mixes position kinds and rate kinds"),
    ((OutputSpec("TwistStamped", "/t", ("j1",), "base"),), "a twist carries 1 to 6 end-effector dimensions"),
    ((OutputSpec("Float64MultiArray", "/t", ("j1", "nope")),), "['nope'] are not action names"),
])
def test_outputs_that_cannot_carry_their_actions_are_refused_naming_them(specs, needle):
    with pytest.raises(ExecutionError) as err:
        plan(*specs)
    assert needle in str(err.value)


def test_the_bundled_contracts_plan_cleanly():
    for name in ("metaworld_sawyer", "example_jtc_arm", "example_servo_arm"):
        c = RobotContract.load(config_file(f"robots/{name}.yaml"))
        assert plan_outputs(c.outputs, Dims.from_actions(c.actions), delta_output="velocity", control_rate=100.0)


def command(value) -> Command:
    value = np.asarray(value, float)
    return Command(123_000_000_456, "executing", True, value, value * 0 + 0.5)


def test_array_carries_command_space_values_and_increments_on_request():
    out, = plan(OutputSpec("Float64MultiArray", "/c"))
    msg = array_msg(command([0.1, 0.2, 40.0, 10.0, 0.03]), out)
    assert list(msg.data) == pytest.approx([0.1, 0.2, 40.0, 10.0, 0.03])
    assert msg.layout.dim[0].label == "j1,vx,dz,wz,g" and msg.layout.dim[0].size == 5
    inc, = plan(OutputSpec("Float64MultiArray", "/c"), delta_output="increment")
    assert list(array_msg(command([0.1, 0.2, 40.0, 10.0, 0.03]), inc).data) == pytest.approx([0.1, 0.2, 0.4, 10.0, 0.03])


def test_twist_maps_in_order_and_converts_units_to_si():
    out, = plan(OutputSpec("TwistStamped", "/s", ("vx", "dz", "wz"), "tool0"))
    msg = twist_msg(command([0.0, 0.2, 40.0, 90.0, 0.0]), out)
    assert msg.header.frame_id == "tool0" and (msg.header.stamp.sec, msg.header.stamp.nanosec) == (123, 456)
    assert (msg.twist.linear.x, msg.twist.linear.y) == pytest.approx((0.2, 0.4))
    assert msg.twist.linear.z == pytest.approx(np.pi / 2)  # the third dimension: deg/s -> rad/s
    unknown = Dims.from_actions([ActionDim("v", "ee_velocity", "furlong")])
    note = plan_outputs([OutputSpec("TwistStamped", "/s", (), "f")], unknown, delta_output="velocity",
                        control_rate=100.0)[0].notes
    assert note == ("v: unit 'furlong' sent as it is (no SI conversion known)",)


def _executor(interpolation: str = "cubic") -> ChunkExecutor:
    ex = ChunkExecutor(DIMS, ExecutorSettings(control_rate=100.0, interpolation=interpolation))
    ex.enable(True, 0)
    return ex


def test_tick_trajectory_is_stamped_zero_with_increasing_real_times():
    ex = _executor()
    t = 10**10
    ex.accept(t - 20_000_000, 0.05, DIMS.names, np.tile(np.linspace(0, 1, 10)[:, None], (1, 5)), "a", t)
    cmd = ex.command(t, preview_points=20)
    arm, rates = plan(OutputSpec("JointTrajectory", "/a", ("j1",)), OutputSpec("JointTrajectory", "/v", ("vx", "wz")))
    msg = tick_trajectory_msg(cmd, arm)
    times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points]
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (0, 0) and msg.joint_names == ["j1"]
    assert times[0] == pytest.approx(0.01) and np.all(np.diff(times) > 0) and len(times) == 10
    assert len(msg.points[3].positions) == 1 and len(msg.points[3].velocities) == 1
    velocities_only = tick_trajectory_msg(cmd, rates)
    assert list(velocities_only.points[0].positions) == [] and len(velocities_only.points[0].velocities) == 2


def test_chunk_trajectory_keeps_the_chunk_stamp_and_knots():
    ex = _executor("spline")
    verdict = ex.accept(10**10, 0.05, DIMS.names, np.tile(np.linspace(0, 1, 10)[:, None], (1, 5)) * 9, "a", 10**10)
    arm, = plan(OutputSpec("JointTrajectory", "/a", ("j1",)))
    low, high = DIMS.command_bounds(0.05)
    msg = chunk_trajectory_msg(verdict.chunk, arm, low, high, smooth=True)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (10, 0) and len(msg.points) == 10
    assert msg.points[4].time_from_start.nanosec == 200_000_000 and msg.points[4].positions[0] == pytest.approx(4.0)
    assert msg.points[4].velocities[0] == pytest.approx(20.0, rel=0.05)  # 1 per 0.05 s
