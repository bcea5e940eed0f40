"""Interpolation within a chunk, holds/ramps, cross-fades and ACT's ensemble (no ROS)."""

from __future__ import annotations

import numpy as np
import pytest

from vla_adapter_ros.contract import ActionDim
from vla_adapter_ros.execution.dims import Dims, ExecutionError
from vla_adapter_ros.execution.trajectory import (
    NS,
    BlendTrajectory,
    ChunkTrajectory,
    EnsembleTrajectory,
    HoldTrajectory,
    natural_spline_second_derivatives,
    settle,
    smootherstep,
)

RNG = np.random.default_rng(0)
STAMP = 5 * NS
DT = 0.05


def chunk(values, interpolation, is_position=None, stamp=STAMP, dt=DT, adapter="a") -> ChunkTrajectory:
    values = np.asarray(values, float).reshape(len(values), -1)
    pos = np.ones(values.shape[1], bool) if is_position is None else np.asarray(is_position)
    return ChunkTrajectory(stamp, dt, values, [interpolation] * values.shape[1], pos, adapter)


def at(step: float, stamp=STAMP, dt=DT) -> int:
    return stamp + int(round(step * dt * NS))


def test_step_holds_action_k_over_its_step_and_the_chunk_covers_k_steps():
    c = chunk([1.0, 2.0, 3.0], "step")
    assert c.value(at(0))[0] == 1.0 and c.value(at(0.99))[0] == 1.0 and c.value(at(1))[0] == 2.0
    assert c.value(at(2.5))[0] == 3.0
    assert c.covers(at(0)) and c.covers(at(2.99)) and not c.covers(at(3)) and not c.covers(at(-0.01))
    assert c.value(at(10))[0] == 3.0 and c.value(at(-1))[0] == 1.0  # ends extended


@pytest.mark.parametrize("method", ["linear", "cubic", "spline"])
def test_smooth_interpolations_pass_through_every_knot_and_hold_the_last_step(method):
    values = RNG.normal(size=(6, 3))
    c = chunk(values, method)
    for k in range(6):
        np.testing.assert_allclose(c.value(at(k)), values[k], atol=1e-12)
    np.testing.assert_allclose(c.value(at(5.7)), values[5])


def _velocity_jumps_at_knots(c: ChunkTrajectory, knots) -> float:
    h = 1e-6
    jumps = []
    for k in knots:
        left = (c.value(at(k)) - c.value(at(k - h))) / (h * DT)
        right = (c.value(at(k + h)) - c.value(at(k))) / (h * DT)
        jumps.append(np.abs(right - left).max())
    return max(jumps)


def test_linear_has_velocity_jumps_cubic_and_spline_do_not():
    values = np.array([[0.0], [1.0], [0.0], [2.0], [1.0]])
    assert _velocity_jumps_at_knots(chunk(values, "linear"), [1, 2, 3]) > 10
    assert _velocity_jumps_at_knots(chunk(values, "cubic"), [1, 2, 3]) < 1e-3
    assert _velocity_jumps_at_knots(chunk(values, "spline"), [1, 2, 3]) < 1e-3


def test_spline_is_the_natural_cubic_spline():
    values = RNG.normal(size=(7, 2))
    m = natural_spline_second_derivatives(values)
    # Dense reference solve of the same tridiagonal system.
    n = 5
    a = np.diag(np.full(n, 4.0)) + np.diag(np.ones(n - 1), 1) + np.diag(np.ones(n - 1), -1)
    rhs = 6 * (values[2:] - 2 * values[1:-1] + values[:-2])
    np.testing.assert_allclose(m[1:-1], np.linalg.solve(a, rhs), atol=1e-12)
    assert np.all(m[0] == 0) and np.all(m[-1] == 0)
    c = chunk(values, "spline")
    h = 1e-3  # second difference continuous across a knot (C2)
    for k in (1, 2, 3):
        left = c.value(at(k)) - 2 * c.value(at(k - h)) + c.value(at(k - 2 * h))
        right = c.value(at(k + 2 * h)) - 2 * c.value(at(k + h)) + c.value(at(k))
        np.testing.assert_allclose(left / h**2, right / h**2, atol=0.05)


def test_linear_rates_keep_the_total_displacement_of_the_chunk():
    rates = RNG.normal(size=(5, 2))
    c = chunk(rates, "linear", is_position=[False, False])
    ts = np.linspace(0, 5, 50_001)
    integral = np.trapezoid([c.value(at(s)) for s in ts], ts * DT, axis=0)
    np.testing.assert_allclose(integral, rates.sum(0) * DT, rtol=1e-4)
    # and the rate at a step's midpoint is that step's rate
    np.testing.assert_allclose(c.value(at(2.5)), rates[2])


def test_interpolation_per_kind():
    dims = Dims.from_actions([ActionDim("j", "joint_position"), ActionDim("g", "gripper"),
                              ActionDim("dx", "ee_delta"), ActionDim("w", "joint_velocity")])
    assert dims.interpolation("spline") == ("spline", "linear", "linear", "linear")
    assert dims.interpolation("step") == ("step",) * 4
    assert dims.modes == ("position", "position", "velocity", "velocity")
    with pytest.raises(ExecutionError, match="'quintic'"):
        dims.interpolation("quintic")


def test_deltas_become_rates_per_second_and_their_bounds_follow_dt():
    dims = Dims.from_actions([ActionDim("dx", "ee_delta", "cm", -1.0, 1.0), ActionDim("g", "gripper", "", 0, 1)])
    np.testing.assert_allclose(dims.to_command_space(np.array([[0.5, 0.5]]), 0.0125), [[40.0, 0.5]])
    low, high = dims.command_bounds(0.0125)
    np.testing.assert_allclose(low, [-80.0, 0.0])
    np.testing.assert_allclose(high, [80.0, 1.0])


def test_hold_ramps_every_velocity_to_zero_within_the_ramp_time():
    hold = HoldTrajectory(0, np.array([1.0, 0.0]), np.array([2.0, 3.0]), np.array([True, False]), ramp_s=0.2)
    np.testing.assert_allclose(hold.value(0), [1.0, 3.0])
    np.testing.assert_allclose(hold.value(int(0.1 * NS)), [1.0 + 2.0 * (0.1 - 0.01 / 0.4), 1.5])
    np.testing.assert_allclose(hold.value(int(0.2 * NS)), [1.2, 0.0])  # travelled v * T / 2
    np.testing.assert_allclose(hold.value(int(5 * NS)), [1.2, 0.0])
    assert hold.ramping(int(0.1 * NS)) and not hold.ramping(int(0.2 * NS))
    stop = HoldTrajectory(0, np.array([1.0, 0.0]), np.array([2.0, 3.0]), np.array([True, False]), ramp_s=0.0)
    np.testing.assert_allclose(stop.value(0), [1.0, 0.0])
    assert not stop.ramping(0)


def test_smootherstep_has_flat_ends():
    assert smootherstep(0) == 0 and smootherstep(1) == 1 and smootherstep(-3) == 0 and smootherstep(7) == 1
    h = 1e-4
    assert smootherstep(h) < 1e-10 and 1 - smootherstep(1 - h) < 1e-10


def test_blend_keeps_position_and_velocity_continuous_at_both_ends_of_the_window():
    old = chunk(np.linspace(0, 1, 20)[:, None], "cubic")
    new = chunk(np.linspace(0.3, -0.5, 20)[:, None], "cubic", stamp=STAMP + int(0.2 * NS))
    start = STAMP + int(0.25 * NS)
    b = BlendTrajectory(old, new, start, 0.1)
    h = 100_000  # 0.1 ms
    for t, side in ((start, old), (start + int(0.1 * NS), new)):
        np.testing.assert_allclose(b.value(t), side.value(t), atol=1e-9)
        v_left = (b.value(t) - b.value(t - h)) / h
        v_right = (b.value(t + h) - b.value(t)) / h
        assert abs(v_left - v_right)[0] * NS < 0.05  # rad/s, against slopes of ~1 rad/s
    assert b.covers(start + int(0.3 * NS)) == new.covers(start + int(0.3 * NS))


def test_settle_drops_finished_blends_and_bounds_the_nesting():
    chunks = [chunk([[float(i)]] * 10, "step", stamp=STAMP + i * 1000) for i in range(6)]
    plan = chunks[0]
    for i, c in enumerate(chunks[1:], 1):
        plan = BlendTrajectory(plan, c, STAMP + i * 1000, 1.0)
    assert plan.depth() == 5
    settled, cut = settle(plan, STAMP + 6000, max_depth=3)
    assert settled.depth() == 3 and cut == 1
    done, cut = settle(plan, STAMP + 10 * NS, max_depth=3)
    assert done is chunks[-1] and cut == 0


def test_temporal_ensemble_weights_older_chunks_by_exp_minus_m_i():
    a = chunk([[1.0]] * 20, "step", stamp=STAMP)
    b = chunk([[3.0]] * 20, "step", stamp=STAMP + int(0.1 * NS))
    t = STAMP + int(0.2 * NS)
    for m in (0.0, 0.01, 1.0, -1.0):
        w = np.exp(-m * np.arange(2))
        expect = (w[0] * 1.0 + w[1] * 3.0) / w.sum()
        assert EnsembleTrajectory([a, b], m).value(t)[0] == pytest.approx(expect)
    ens = EnsembleTrajectory([a, b], 0.01)
    assert ens.value(STAMP + int(0.05 * NS))[0] == 1.0  # only a covers that time
    assert ens.voters(a.end_ns + 1) == [b]


def test_a_hold_timed_from_a_chunk_end_keeps_the_rate_until_then_and_ramps_after():
    """``rates_from_ns`` (the chunk's end + grace) may lie before or after the hold's first tick: rates keep
    v0 up to it and reach zero ``ramp_s`` after it; positions ramp from the hold's start as before."""
    start, rates_from = int(0.1 * NS), int(0.05 * NS)
    hold = HoldTrajectory(start, np.array([1.0, 0.0]), np.array([2.0, 4.0]), np.array([True, False]), ramp_s=0.2,
                          rates_from_ns=rates_from)
    np.testing.assert_allclose(hold.value(start), [1.0, 4.0 * (1 - 0.05 / 0.2)])
    np.testing.assert_allclose(hold.value(int(0.25 * NS)), [1.0 + 2.0 * (0.15 - 0.0225 / 0.4), 0.0])
    assert hold.ramping(int(0.24 * NS)) and hold.ramping(int(0.26 * NS)) and not hold.ramping(int(0.3 * NS))
    # the mean over an interval straddling rates_from: the full rate before it, the ramp after it
    mean = hold.mean(0, int(0.1 * NS))[1]
    assert mean == pytest.approx(4.0 * (0.05 + 0.05 - 0.0025 / 0.4) / 0.1)
    # a grace: rates_from after the start; with ramp 0 the rate drops to zero there
    step = HoldTrajectory(0, np.zeros(2), np.array([0.0, 4.0]), np.array([True, False]), ramp_s=0.0,
                          rates_from_ns=int(0.02 * NS))
    np.testing.assert_allclose([step.value(int(0.01 * NS))[1], step.value(int(0.02 * NS))[1]], [4.0, 0.0])
    assert step.mean(0, int(0.04 * NS))[1] == pytest.approx(2.0)
    assert step.ramping(int(0.01 * NS)) and not step.ramping(int(0.02 * NS))
