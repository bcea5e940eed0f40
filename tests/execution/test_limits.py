"""Bounds, velocity and acceleration limits per dimension (no ROS)."""

from __future__ import annotations

import numpy as np

from vla_adapter_ros.contract import ActionDim
from vla_adapter_ros.execution.dims import Dims
from vla_adapter_ros.execution.limits import Limiter

PERIOD = 0.01


def limiter(*dims: ActionDim) -> Limiter:
    return Limiter(Dims.from_actions(dims))


def test_bounds_clip_the_target_and_say_so():
    lim = limiter(ActionDim("j", "joint_position", "rad", -1.0, 1.0), ActionDim("w", "joint_velocity", "", -2, 2))
    out = lim.apply(np.array([5.0, -7.0]), np.array([0.9, 0.0]), np.zeros(2), PERIOD)
    np.testing.assert_allclose(out.value, [1.0, -2.0])
    assert out.clamped["bounds"].tolist() == [True, True]
    first = lim.apply(np.array([5.0, 1.0]), None, None, PERIOD)  # first command: no rate limit known
    np.testing.assert_allclose(first.value, [1.0, 1.0])
    np.testing.assert_allclose(first.velocity, [0.0, 1.0])


def test_velocity_limit_caps_the_step_of_a_position_and_the_rate():
    lim = limiter(ActionDim("j", "joint_position", "rad", max_velocity=0.5),
                  ActionDim("w", "ee_velocity", "m/s", max_velocity=0.2))
    out = lim.apply(np.array([1.0, 3.0]), np.array([0.0, 0.0]), np.zeros(2), PERIOD)
    np.testing.assert_allclose(out.value, [0.005, 0.2])
    np.testing.assert_allclose(out.velocity, [0.5, 0.2])
    assert out.clamped["velocity"].all() and not out.clamped["bounds"].any()


def test_a_step_target_is_reached_without_overshoot_under_acceleration_and_velocity_limits():
    lim = limiter(ActionDim("j", "joint_position", "rad", max_velocity=1.0, max_acceleration=4.0))
    p, v, positions, velocities = np.zeros(1), np.zeros(1), [], []
    for _ in range(300):
        out = lim.apply(np.array([0.5]), p, v, PERIOD, target_velocity=np.zeros(1))
        p, v = out.value, out.velocity
        positions.append(p[0])
        velocities.append(v[0])
    assert max(positions) <= 0.5 + 1e-9 and abs(positions[-1] - 0.5) < 1e-6
    assert max(np.abs(velocities)) <= 1.0 + 1e-9
    assert np.abs(np.diff(velocities)).max() <= 4.0 * PERIOD + 1e-9
    assert np.all(np.diff(positions) >= -1e-12), "monotone approach"


def test_a_moving_target_is_tracked_without_lag_under_an_acceleration_limit():
    lim = limiter(ActionDim("j", "joint_position", "rad", max_acceleration=4.0))
    p, v = np.zeros(1), np.full(1, 0.5)
    for i in range(1, 200):
        out = lim.apply(np.array([0.5 * i * PERIOD]), p, v, PERIOD, target_velocity=np.full(1, 0.5))
        p, v = out.value, out.velocity
    assert abs(p[0] - 0.5 * 199 * PERIOD) < 1e-9 and not out.clamped["acceleration"].any()


def test_rates_change_by_at_most_the_acceleration_limit_per_tick():
    lim = limiter(ActionDim("w", "joint_velocity", "rad/s", max_acceleration=2.0))
    out = lim.apply(np.array([1.0]), np.zeros(1), np.zeros(1), PERIOD)
    np.testing.assert_allclose(out.value, [0.02])
    assert out.clamped["acceleration"].all()
    ramp = lim.apply(np.array([0.0]), np.array([1.0]), np.array([1.0]), PERIOD, accelerate=False)
    np.testing.assert_allclose(ramp.value, [0.0])  # a stop is never slowed by the acceleration limit
