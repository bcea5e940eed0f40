"""ChunkExecutor: every acceptance rule, strategy, state, watchdog and safety request, on made-up
clocks (no ROS). The Meta-World contract (ee deltas + gripper) and a joint-position arm."""

from __future__ import annotations

import numpy as np
import pytest

from vla_adapter_ros.contract import ActionDim, RobotContract
from vla_adapter_ros.execution import ChunkExecutor, Dims, ExecutionError, ExecutorSettings
from vla_adapter_ros.execution.trajectory import NS
from vla_adapter_ros.ros.params import config_file

SAWYER = RobotContract.load(config_file("robots/metaworld_sawyer.yaml"))
MW_NAMES = ["dx", "dy", "dz", "gripper"]
ARM = [ActionDim("j1", "joint_position", "rad", -2.0, 2.0), ActionDim("j2", "joint_position", "rad", -2.0, 2.0),
       ActionDim("gripper", "gripper", "m", 0.0, 0.08)]
ARM_NAMES = ["j1", "j2", "gripper"]
T0 = 1000 * NS


def executor(actions=ARM, enable=True, logs=None, **settings) -> ChunkExecutor:
    settings.setdefault("control_rate", 100.0)
    log = logs.append if logs is not None else (lambda _m: None)
    ex = ChunkExecutor(Dims.from_actions(actions), ExecutorSettings(**settings), info=log, warning=log)
    if enable:
        ex.enable(True, T0)
    return ex


def ticks(ex: ChunkExecutor, start: int, n: int, rate: float = 100.0) -> list:
    return [ex.command(start + int(i * NS / rate)) for i in range(n)]


# --- acceptance -----------------------------------------------------------------
GOOD = dict(stamp_ns=T0 - 20_000_000, dt=0.05, names=ARM_NAMES, actions=np.zeros((10, 3)), adapter="a", now_ns=T0)


@pytest.mark.parametrize("change, kind, needle", [
    (dict(names=["j2", "j1", "gripper"]), "action_names", "['j2', 'j1', 'gripper'] differ from the contract's"),
    (dict(names=["j1", "j2"]), "action_names", "same order"),
    (dict(actions=np.zeros((10, 2))), "action_shape", "shape (10, 2): need (K, 3)"),
    (dict(actions=np.zeros((0, 3))), "action_shape", "1 <= K"),
    (dict(actions=np.zeros(3)), "action_shape", "shape (3,)"),
    (dict(actions=np.array([[0, 0, 0], [0, np.nan, 0]])), "non_finite", "['j2'] at step(s) [1]"),
    (dict(actions=np.array([[np.inf, 0, -np.inf]])), "non_finite", "2 NaN/Inf value(s) in ['gripper', 'j1']"),
    (dict(dt=0.0), "bad_dt", "dt 0.0 s"),
    (dict(dt=-0.05), "bad_dt", "dt -0.05 s"),
    (dict(dt=float("nan")), "bad_dt", "dt nan"),
    (dict(dt=50.0), "bad_dt", "not in [0.0001, 10.0]"),
    (dict(stamp_ns=T0 + NS), "future_stamp", "1.000 s in the future"),
    (dict(stamp_ns=T0 - 2 * NS), "stale", "2.000 s old (max_chunk_age 0.5 s)"),
    (dict(stamp_ns=0), "stale", "stamp unset?"),
    (dict(stamp_ns=T0 - 400_000_000, actions=np.zeros((2, 3))), "expired", "all of it is in the past"),
])
def test_bad_or_unusable_chunks_are_refused_with_the_reason_and_counted(change, kind, needle):
    ex = executor()
    verdict = ex.accept(**{**GOOD, **change})
    assert not verdict.accepted and verdict.kind == kind and needle in verdict.reason, verdict
    snap = ex.snapshot()
    assert snap["refused"].get(kind, 0) + snap["ignored"].get(kind, 0) == 1
    assert ex.accept(**GOOD).accepted, "the next good chunk is taken"


def test_older_and_repeated_stamps_are_ignored_and_counted():
    ex = executor()
    assert ex.accept(**GOOD).accepted
    dup = ex.accept(**GOOD)
    older = ex.accept(**{**GOOD, "stamp_ns": GOOD["stamp_ns"] - 1})
    assert (dup.kind, older.kind) == ("duplicate", "out_of_order") and not dup.refused
    assert ex.snapshot()["ignored"] == {"duplicate": 1, "out_of_order": 1}


def test_chunks_are_ignored_until_enabled_and_while_stopped():
    ex = executor(enable=False)
    assert ex.accept(**GOOD).kind == "not_enabled"
    assert not ex.command(T0).publish and ex.state == "disabled"
    ex.enable(True, T0)
    assert ex.accept(**GOOD).accepted
    ex.stop(T0)
    assert ex.accept(**{**GOOD, "stamp_ns": GOOD["stamp_ns"] + 1}).kind == "not_enabled"


def test_a_chunk_from_a_newly_switched_adapter_is_accepted_and_says_so():
    logs: list[str] = []
    ex = executor(logs=logs)
    assert ex.accept(**GOOD).note == ""
    v = ex.accept(**{**GOOD, "stamp_ns": GOOD["stamp_ns"] + 1, "adapter": "b"})
    assert v.accepted and v.note.startswith("adapter switched 'a' -> 'b'")
    assert ex.snapshot()["counts"]["adapter_switches"] == 1


def test_ensemble_forgets_the_previous_adapters_chunks():
    ex = executor(strategy="temporal_ensemble", interpolation="step")
    ex.accept(**{**GOOD, "actions": np.full((10, 3), 0.01)})
    ex.command(T0)
    ex.accept(**{**GOOD, "stamp_ns": GOOD["stamp_ns"] + 1, "actions": np.full((10, 3), 0.05), "adapter": "b"})
    np.testing.assert_allclose(ex.command(T0 + 10_000_000).value, 0.05)


def test_a_burst_before_one_tick_executes_only_the_newest_chunk():
    ex = executor(strategy="blend")
    for i in range(100):
        assert ex.accept(**{**GOOD, "stamp_ns": GOOD["stamp_ns"] + i, "actions": np.full((10, 3), i / 2000)}).accepted
    cmd = ex.command(T0)
    np.testing.assert_allclose(cmd.value, 99 / 2000)
    assert ex.snapshot()["counts"]["superseded"] == 99 and cmd.source_stamp_ns == GOOD["stamp_ns"] + 99


# --- timing, strategies, interpolation ------------------------------------------------
def test_hold_applies_action_k_from_stamp_plus_k_dt():
    ex = executor(strategy="hold", interpolation="step")
    actions = np.array([[0.1 * k, 0.0, 0.0] for k in range(10)])
    ex.accept(**{**GOOD, "stamp_ns": T0, "actions": actions})
    cmds = ticks(ex, T0, 30)
    assert [round(c.value[0], 3) for c in cmds[::5]] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert all(c.state == "executing" for c in cmds)


def test_delta_kinds_integrate_to_the_chunk_displacement_at_any_control_rate():
    """Meta-World: a delta per 12.5 ms step, executed at 100 Hz (ticks do not align with steps)."""
    deltas = np.array([[0.5, -0.25, 1.0, 0.3], [0.2, 0.0, -1.0, 0.3], [0.1, 0.4, 0.0, 0.3], [1.0, 1.0, 1.0, 0.3]])
    for rate in (100.0, 80.0, 500.0):
        ex = executor(SAWYER.actions, strategy="hold", interpolation="step", control_rate=rate)
        stamp = T0
        ex.accept(stamp, 0.0125, MW_NAMES, deltas, "a", stamp)
        cmds = ticks(ex, stamp, int(rate * 0.05) + 1, rate)
        moved = sum(c.value[:3] / rate for c in cmds if c.state == "executing")
        np.testing.assert_allclose(moved, deltas[:, :3].sum(0), atol=1.01 * np.abs(deltas).max() * 12.5e-3 * rate / 80)
        assert cmds[0].value[3] == pytest.approx(0.3), "the gripper is an absolute command"


@pytest.mark.parametrize("strategy", ["hold", "temporal_ensemble", "blend"])
@pytest.mark.parametrize("latency_ms", [0, 5, 20, 24])  # < a camera period: chunks never run out
def test_a_stream_of_equal_delta_chunks_moves_as_far_as_lockstep_under_every_strategy(strategy, latency_ms):
    """The demo's executor path: 4-step chunks of 12.5 ms from a 40 Hz camera, answered ``latency`` later,
    80 Hz ticks. Equal chunks mean a constant rate, so every strategy must move exactly rate x time, as
    lockstep's steps do. Before the fix a blend's old side stopped at its chunk's end (its rates integrated
    to zero past it) and the fade ran into that: 16.0 of 32 at 20 ms, 27.5 at 0 ms."""
    ex = executor(SAWYER.actions, strategy=strategy, interpolation="linear", control_rate=80.0)
    chunk = np.tile([0.5, -0.25, 0.0, 1.0], (4, 1))
    frames = [T0 + k * 25_000_000 for k in range(40)]
    moved, arrived = np.zeros(3), 0
    for i in range(80):
        t = T0 + i * 12_500_000
        while arrived < len(frames) and frames[arrived] + latency_ms * 1_000_000 <= t:
            ex.accept(frames[arrived], 0.0125, MW_NAMES, chunk, "a", frames[arrived] + latency_ms * 1_000_000)
            arrived += 1
        cmd = ex.command(t)
        if i >= 16:  # after the start-up
            assert cmd.state == "executing", (i, cmd.state)
            moved += cmd.value[:3] * 0.0125
    np.testing.assert_allclose(moved, 64 * chunk[0, :3], rtol=1e-9)


def test_the_blend_leaves_the_last_tick_of_a_short_chunk_to_the_chunk_alone():
    """A new chunk with two ticks left: the fade takes the first, the second executes the new chunk alone
    (a fade ending with the chunk left every command a mix of older predictions: the lag that cost
    faucet-open 12 of 30 episodes through the executor)."""
    ex = executor(SAWYER.actions, strategy="blend", interpolation="step", control_rate=80.0, blend_window=0.1)
    ex.accept(T0, 0.0125, MW_NAMES, np.full((4, 4), 0.1), "a", T0)
    ticks(ex, T0, 2, 80.0)
    stamp = T0 + 25_000_000
    ex.accept(stamp, 0.0125, MW_NAMES, np.full((4, 4), 0.9), "a", stamp + 20_000_000)
    fading, last = ticks(ex, stamp + 25_000_000, 2, 80.0)  # 25 ms of the new chunk left at the first tick
    assert 0.1 / 0.0125 < fading.value[0] < 0.9 / 0.0125
    assert last.value[0] == pytest.approx(0.9 / 0.0125) and last.value[3] == pytest.approx(0.9)
    # one period or less left: nothing to fade over, the chunk takes over at once
    ex.accept(stamp + 50_000_000, 0.0125, MW_NAMES, np.full((4, 4), 0.5), "a", stamp + 85_000_000)
    assert ex.command(stamp + 87_500_000).value[0] == pytest.approx(0.5 / 0.0125)


def test_delta_bounds_are_per_step_and_clamping_is_counted():
    ex = executor(SAWYER.actions, interpolation="step")
    ex.accept(T0, 0.0125, MW_NAMES, np.array([[3.0, 0.0, 0.0, 5.0]] * 4), "a", T0)
    cmd = ex.command(T0)
    np.testing.assert_allclose(cmd.value, [80.0, 0.0, 0.0, 1.0])  # 1 cm per 12.5 ms step, gripper 1
    assert set(cmd.clamped) == {"dx:bounds", "gripper:bounds"} and ex.snapshot()["clamped"] == {"bounds": 1}


def _smoothness(strategy: str, interpolation: str = "cubic") -> float:
    """Max |velocity change| between ticks: a 10 Hz policy whose chunks disagree by a few cm."""
    ex = executor(strategy=strategy, interpolation=interpolation)
    rng = np.random.default_rng(3)
    values, next_chunk = [], T0
    for i in range(1500):
        t = T0 + i * 10_000_000
        if t >= next_chunk:
            stamp = next_chunk - 30_000_000
            ts = stamp / NS + np.arange(20) * 0.05
            actions = np.stack([0.5 * np.sin(2 * ts), 0.3 * np.cos(ts), np.full(20, 0.04)], 1)
            actions[:, :2] += rng.normal(0, 0.02, 2)
            assert ex.accept(stamp, 0.05, ARM_NAMES, actions, "a", next_chunk).accepted
            next_chunk += 100_000_000
        values.append(ex.command(t).value)
    v = np.diff(np.array(values), axis=0) * 100
    return float(np.abs(np.diff(v[5:], axis=0)).max())


def test_blend_keeps_velocity_jumps_at_chunk_boundaries_below_a_fifth_of_hold():
    hold, ensemble, blend = (_smoothness(s) for s in ("hold", "temporal_ensemble", "blend"))
    assert blend <= hold / 5, (hold, ensemble, blend)
    assert ensemble < hold


def test_cubic_and_spline_are_smoother_than_linear_within_a_chunk():
    ex = {m: executor(strategy="hold", interpolation=m, stale_policy_timeout=0.0) for m in ("linear", "cubic", "spline")}
    ts = T0 / NS + np.arange(20) * 0.05
    actions = np.stack([np.sin(3 * ts), np.cos(3 * ts), np.full(20, 0.04)], 1)
    jumps = {}
    for m, e in ex.items():
        e.accept(T0, 0.05, ARM_NAMES, actions, "a", T0)
        values = np.array([c.value for c in ticks(e, T0, 90)])[2:]  # from rest: the first ticks jump
        jumps[m] = np.abs(np.diff(np.diff(values[:, :2], axis=0), axis=0)).max() * 100 * 100
    assert jumps["cubic"] < jumps["linear"] / 2 and jumps["spline"] < jumps["linear"] / 2, jumps


# --- no fresh chunk, watchdog, safety --------------------------------------------------
def test_no_fresh_chunk_ramps_rates_to_zero_within_ramp_time_and_stops_positions_after_v_t_over_2():
    ex = executor([ActionDim("j", "joint_position", "rad"), ActionDim("w", "joint_velocity", "rad/s")],
                  strategy="hold", interpolation="linear", ramp_time=0.2, stale_policy_timeout=0.1)
    steps = np.arange(20)
    ex.accept(T0, 0.05, ["j", "w"], np.stack([steps * 0.05, np.ones(20)], 1), "a", T0)  # j moves at 1 rad/s
    cmds = ticks(ex, T0, 50)
    states = [c.state for c in cmds]
    assert states[:11] == ["executing"] * 11 and states[11] == "ramping" and states[-1] == "holding"
    ramp = [c for c in cmds if c.state == "ramping"]
    assert len(ramp) <= 21 and all(0 <= c.velocity[1] <= 1.0 for c in ramp)
    held = [c for c in cmds if c.state == "holding"]
    assert all(c.value[1] == 0.0 and c.velocity[0] == 0.0 for c in held[1:])  # held[0]: the ramp's last bit
    assert held[0].value[0] == pytest.approx(cmds[10].value[0] + 1.0 * 0.2 / 2, abs=0.011), "stops after v*T/2"


PERIOD_80 = 12_500_000  # ns, Meta-World's step and the executor's 80 Hz


@pytest.mark.parametrize("phase", [0.0, 0.25, 0.5, 0.75])
@pytest.mark.parametrize("grace", [0.0, 0.025])
def test_the_tick_overlapping_a_chunks_end_integrates_the_last_rate_then_the_ramp(phase, grace):
    """A tick [t, t + P) with the chunk's end at t + f*P: the chunk's last rate over f*P, then the no-fresh-chunk
    tail from the end (the last rate up to end + grace, then the linear ramp over ramp_time). Before, the part
    past the end counted zero (the tick commanded f of the rate) and the ramp started from that fraction."""
    ex = executor(SAWYER.actions, strategy="hold", interpolation="step", control_rate=80.0, ramp_time=0.2,
                  chunk_end_grace=grace)
    rate = 0.5 / 0.0125  # 40 m/s in command space: 4 steps of 0.5
    end = T0 + 4 * PERIOD_80
    ex.accept(T0, 0.0125, MW_NAMES, np.tile([0.5, -0.25, 0.0, 1.0], (4, 1)), "a", T0)
    cmds = [ex.command(T0 + int(round((phase + i) * PERIOD_80))) for i in range(30)]  # ticks at T0 + (phase + i) P
    straddle = 3 if phase > 0 else None  # [T0 + (3 + phase) P, T0 + (4 + phase) P) holds the end
    covered = 1.0 - phase  # the part of the straddling tick before the end

    def tail_mean(a: float, b: float) -> float:  # mean rate factor over [a, b) s after the end
        def travelled(s: float) -> float:
            s -= grace
            return s if s <= 0 else min(s, 0.2) - min(s, 0.2) ** 2 / 0.4
        return (travelled(b) - travelled(a)) / (b - a)

    if straddle is not None:
        c = cmds[straddle]
        assert c.state == "executing"
        want = covered + phase * tail_mean(0.0, phase * 0.0125)
        assert c.value[0] == pytest.approx(rate * want, rel=1e-9), (c.value[0] / rate, want)
        assert c.value[0] >= 0.98 * rate, "a chunk's end costs no motion"
    # afterwards: the tail, monotone down to zero by end + grace + ramp_time, the gripper (a position) held
    after = [c for c in cmds if c.stamp_ns >= end]
    assert after[0].state == "ramping"
    for c in after:
        a = (c.stamp_ns - end) / NS
        assert c.value[0] == pytest.approx(rate * tail_mean(a, a + 0.0125), rel=1e-9, abs=1e-9)
        assert c.value[3] == 1.0
    xs = [c.value[0] for c in cmds[3:]]
    assert all(b <= a + 1e-9 for a, b in zip(xs, xs[1:], strict=False))
    done = [c for c in cmds if c.stamp_ns >= end + int((grace + 0.2) * NS)]
    assert done and all(c.value[0] == 0.0 and c.state == "holding" for c in done), "the ramp bound holds"
    # from the first tick on: the chunk's 4 deltas less the phase*P before that tick, plus the tail's v*(grace + T/2)
    moved = sum(c.value[0] for c in cmds) * 0.0125
    assert moved == pytest.approx(4 * 0.5 - rate * phase * 0.0125 + rate * (grace + 0.1), rel=1e-9)


@pytest.mark.parametrize("strategy", ["hold", "temporal_ensemble", "blend"])
@pytest.mark.parametrize("phase", [0.0, 0.25, 0.5, 0.75])
def test_chunks_that_run_out_before_the_next_arrives_move_alike_at_every_tick_phase(strategy, phase):
    """The demo's timing at 33 ms (4-step chunks from a 40 Hz camera: each ends 8 ms before the next arrives),
    with the ticks ``phase`` of a period ahead of the simulator's steps. With chunk_end_grace 25 ms (the gap
    plus a tick) equal chunks keep their rate exactly; with none the ramp costs a few percent, whatever the
    phase. Before, half a period out of phase every other tick commanded half the rate."""
    moved = {}
    for grace in (0.025, 0.0):
        ex = executor(SAWYER.actions, strategy=strategy, interpolation="linear", control_rate=80.0,
                      chunk_end_grace=grace)
        chunk = np.tile([0.5, -0.25, 0.0, 1.0], (4, 1))
        frames = [T0 + k * 25_000_000 for k in range(40)]
        lead = int(round(phase * PERIOD_80))
        total, arrived, rates = np.zeros(3), 0, []
        for i in range(80):
            t = T0 + i * PERIOD_80 - lead
            while arrived < len(frames) and frames[arrived] + 33_000_000 <= t:
                ex.accept(frames[arrived], 0.0125, MW_NAMES, chunk, "a", frames[arrived] + 33_000_000)
                arrived += 1
            cmd = ex.command(t)
            if i >= 16:
                total += cmd.value[:3] * 0.0125
                rates.append(cmd.value[0])
        moved[grace] = total
        if grace:
            np.testing.assert_allclose(total, 64 * chunk[0, :3], rtol=1e-9)
        else:
            assert min(rates) >= 0.9 * 40.0, (phase, min(rates) / 40.0)
    assert moved[0.0][0] >= 0.95 * moved[0.025][0]


def test_a_chunk_that_ends_leaves_positions_where_it_ended():
    ex = executor(strategy="hold", interpolation="linear", ramp_time=0.2)
    ex.accept(T0, 0.05, ARM_NAMES, np.array([[0.0, 0.0, 0.04], [0.05, -0.05, 0.0]]), "a", T0)
    cmds = ticks(ex, T0, 40)
    assert [c.state for c in cmds].count("executing") == 10 and cmds[-1].state == "holding"
    np.testing.assert_allclose(cmds[-1].value, [0.05, -0.05, 0.0])


def test_a_dead_policy_is_caught_by_the_watchdog_before_the_chunk_ends():
    logs: list[str] = []
    ex = executor(strategy="hold", interpolation="step", stale_policy_timeout=0.1, ramp_time=0.0, logs=logs)
    ex.accept(T0, 0.05, ARM_NAMES, np.full((40, 3), 0.04), "a", T0)  # covers 2 s
    cmds = ticks(ex, T0, 30)
    assert [c.state for c in cmds].index("holding") == 11
    assert any("policy stale: no chunk for 0.110 s" in line for line in logs), logs
    # a fresh chunk resumes execution
    ex.accept(T0 + 300_000_000, 0.05, ARM_NAMES, np.full((40, 3), 0.05), "a", T0 + 300_000_000)
    assert ex.command(T0 + 300_000_000).state == "executing"


def test_stop_holds_at_once_then_enable_resumes_by_blending_from_the_held_position():
    ex = executor(strategy="blend", interpolation="linear", blend_window=0.1)
    ts = np.arange(20) * 0.05
    ex.accept(T0, 0.05, ARM_NAMES, np.stack([ts, -ts, np.full(20, 0.02)], 1), "a", T0)  # 1 rad/s
    moving = ticks(ex, T0, 20)[-1]
    assert moving.velocity[0] == pytest.approx(1.0)
    ex.stop(T0 + 200_000_000)
    stopped = ticks(ex, T0 + 200_000_000, 5)
    assert all(c.state == "stopped" and c.publish and np.all(c.velocity == 0) for c in stopped)
    np.testing.assert_allclose(stopped[0].value, moving.value)
    ex.enable(True, T0 + 300_000_000)
    ex.accept(T0 + 290_000_000, 0.05, ARM_NAMES, np.tile([[1.0, -1.0, 0.02]], (20, 1)), "a", T0 + 300_000_000)
    resumed = ticks(ex, T0 + 300_000_000, 15)
    assert resumed[0].state == "executing"
    assert abs(resumed[0].value[0] - moving.value[0]) < 0.01, "no jump: the blend starts at the held position"
    assert resumed[-1].value[0] == pytest.approx(1.0)


def test_disable_sends_one_final_hold_then_nothing():
    ex = executor(SAWYER.actions, interpolation="step")
    ex.accept(T0, 0.0125, MW_NAMES, np.full((8, 4), 0.5), "a", T0)
    assert ex.command(T0).value[0] == pytest.approx(40.0)
    ex.enable(False, T0)
    final, after = ex.command(T0 + 10_000_000), ex.command(T0 + 20_000_000)
    assert final.publish and final.state == "disabled" and np.all(final.value[:3] == 0) and final.value[3] == 0.5
    assert not after.publish


def test_enable_and_stop_storms_end_in_the_last_requested_state():
    ex = executor(enable=False)
    rng = np.random.default_rng(1)
    for i in range(500):
        t = T0 + i * 1_000_000
        r = rng.integers(3)
        _ = ex.enable(bool(r), t) if r < 2 else ex.stop(t)
        ex.accept(**{**GOOD, "stamp_ns": t - 10_000_000, "now_ns": t})
        ex.command(t)
    ex.enable(True, T0 + NS)
    assert ex.accept(**{**GOOD, "stamp_ns": T0 + NS, "now_ns": T0 + NS}).accepted
    assert ex.command(T0 + NS).state == "executing"
    ex.stop(T0 + NS)
    assert ex.command(T0 + NS + 10_000_000).state == "stopped"


def test_preview_points_are_strictly_increasing_and_start_one_period_ahead():
    ex = executor(interpolation="cubic")
    ex.accept(T0 - 30_000_000, 0.05, ARM_NAMES, np.tile(np.linspace(0, 1, 20)[:, None], (1, 3)) * 0.05, "a", T0)
    cmd = ex.command(T0, preview_points=50)
    assert cmd.preview_s[0] == pytest.approx(0.01) and np.all(np.diff(cmd.preview_s) > 0)
    assert len(cmd.preview_s) == 20 and cmd.preview_value.shape == (20, 3)  # + the 19 knots still ahead
    np.testing.assert_allclose(cmd.preview_value[0], cmd.value)


def test_bad_settings_are_refused_quoting_the_value():
    with pytest.raises(ExecutionError, match="strategy must be one of .* got 'fast'"):
        ExecutorSettings(control_rate=100.0, strategy="fast")
    with pytest.raises(ExecutionError, match="control_rate must be in .* got 0.0"):
        ExecutorSettings(control_rate=0.0)
    ex = executor()
    with pytest.raises(ExecutionError, match="ramp_time .* got -1"):
        ex.update(ramp_time=-1)
    assert ex.settings.ramp_time == 0.2
    with pytest.raises(ExecutionError, match="chunk_end_grace .* got nan"):
        ex.update(chunk_end_grace=float("nan"))


def test_a_blend_never_outlasts_the_new_chunk():
    """Short chunks arriving late (Meta-World: 4 steps of 12.5 ms, the frame 30 ms old): the cross-fade ends
    while the new chunk still covers the time, so the robot follows the newest prediction instead of a
    mixture of predictions that have run out (measured: 0/3 -> 2-3/3 on faucet-open through the executor)."""
    ex = executor(SAWYER.actions, strategy="blend", interpolation="linear", blend_window=0.1)
    slow, fast = np.full((4, 4), 0.1), np.full((4, 4), 0.9)
    ex.accept(T0, 0.0125, MW_NAMES, slow, "a", T0)
    ticks(ex, T0, 2)
    late = T0 + 60_000_000
    ex.accept(late - 30_000_000, 0.0125, MW_NAMES, fast, "a", late)  # its frame is 30 ms old: 20 ms are left
    mid = ticks(ex, late, 2)[-1]  # 10 ms into the cross-fade: half way when it lasts the 20 ms left
    slow_rate, fast_rate = 0.1 / 0.0125, 0.9 / 0.0125
    assert mid.value[0] > slow_rate + 0.4 * (fast_rate - slow_rate), (mid.value[0], "a 100 ms fade would be at 1 %")
