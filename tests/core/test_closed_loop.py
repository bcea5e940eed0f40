"""The executor's closed loop in virtual time (core/closed_loop.py): it reproduces lockstep exactly where
it should, keeps blend's motion as fast as lockstep's on the bundled model, and models the policy's
timing (latency, busy time, depth-1 frame queue)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vla_adapter_ros.core.closed_loop import LoopTiming, metaworld_dims, run_executor_episode
from vla_adapter_ros.core.evaluate import OnnxPolicySource, run_episode
from vla_adapter_ros.core.sim.instructions import sample_instruction
from vla_adapter_ros.core.sim.metaworld_env import MetaWorldEnv
from vla_adapter_ros.execution import ExecutorSettings

MODEL = Path(__file__).resolve().parents[2] / "models" / "default"
TASK, ADAPTER, SEEDS = "faucet-open-v3", "faucet_open", (100000, 100001, 100002)


class Recording(MetaWorldEnv):
    """The environment, keeping every action it was stepped with."""

    def reset(self, seed, *, render=True):
        self.log: list[list[float]] = []
        return super().reset(seed, render=render)

    def step(self, action, *, render=True):
        self.log.append(np.asarray(action, np.float32).tolist())
        return super().step(action, render=render)


@pytest.fixture(scope="module")
def bundled():
    source = OnnxPolicySource(MODEL, providers=["CPUExecutionProvider"])
    source.policy.switch(ADAPTER)
    yield source
    source.policy.close()


@pytest.mark.slow
def test_hold_at_latency_0_with_one_frame_per_chunk_executes_lockstep_action_for_action(bundled):
    """hold + step interpolation, a frame every 4 steps (20 Hz), no latency, ticks in phase at 80 Hz: the
    executor's rate commands times the simulator's step are Meta-World's actions one for one (the
    delta-as-rate semantics integrates exactly), so the episode is lockstep's."""
    settings = ExecutorSettings(80.0, strategy="hold", interpolation="step")
    with Recording(TASK) as env:
        for seed in SEEDS[:2]:
            instruction = sample_instruction(env.task, seed)
            lock = run_episode(env, bundled, instruction, seed, 4)
            expected = list(env.log)
            loop = run_executor_episode(env, bundled, instruction, seed, settings, LoopTiming(camera_rate=20.0),
                                        metaworld_dims(), 0.0125, record_actions=True)
            assert (loop.success, loop.steps) == (lock.success, lock.steps)
            assert loop.actions == expected and loop.held_steps == 0
            assert loop.chunks == -(-lock.steps // 4)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["hold", "temporal_ensemble", "blend"])
def test_every_strategy_at_20_ms_moves_about_as_fast_as_lockstep(bundled, strategy):
    """The demo's executor path (40 Hz camera, 20 ms latency, cubic, 0.1 s blend window): as many successes
    as lockstep on three seeds, in at most 15 % more steps. Before the blend fixes, blend took 101 steps
    where lockstep took 62 (its fades ran into old chunks whose rates stopped at their end)."""
    settings = ExecutorSettings(80.0, strategy=strategy)
    timing = LoopTiming(latency=0.02, camera_rate=40.0)
    lock, loop = [], []
    with MetaWorldEnv(TASK) as env:
        for seed in SEEDS:
            instruction = sample_instruction(env.task, seed)
            lock.append(run_episode(env, bundled, instruction, seed, 4))
            loop.append(run_executor_episode(env, bundled, instruction, seed, settings, timing, metaworld_dims(),
                                             0.0125))
    assert sum(r.success for r in loop) >= sum(r.success for r in lock)
    lock_steps, loop_steps = np.mean([r.steps for r in lock]), np.mean([r.steps for r in loop])
    assert loop_steps <= 1.15 * lock_steps, (strategy, loop_steps, lock_steps)
    assert all(r.held_steps == 2 for r in loop)  # the first frame's 20 ms: the arm waits for its first chunk
    assert all(22.0 <= r.command_age_p50_ms <= 40.0 for r in loop)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["hold", "temporal_ensemble", "blend"])
def test_ticks_out_of_phase_with_the_simulator_do_as_well_as_ticks_in_phase(bundled, strategy):
    """33 ms latency: each 4-step chunk ends 8 ms before the next arrives. With the executor's ticks half a
    period (6.25 ms) ahead of the simulator's steps, the tick overlapping a chunk's end used to command half
    the rate and the ramp started from that half: 6/10 in 260 steps against 10/10 in 65 in phase (hold and
    temporal_ensemble, docs/BENCHMARKS.md). Now the chunk's last rate runs to its end and the ramp is timed
    from there: the same successes, at most 10 % more steps (the new chunk reaches the simulator one of its
    steps later when the tick that takes it in comes after the step)."""
    steps, successes = {}, {}
    with MetaWorldEnv(TASK) as env:
        for lead in (0.0, 0.00625):
            settings = ExecutorSettings(80.0, strategy=strategy)
            timing = LoopTiming(latency=0.033, camera_rate=40.0, tick_lead=lead)
            runs = [run_executor_episode(env, bundled, sample_instruction(env.task, seed), seed, settings, timing,
                                         metaworld_dims(), 0.0125) for seed in SEEDS]
            steps[lead], successes[lead] = np.mean([r.steps for r in runs]), sum(r.success for r in runs)
    assert successes[0.00625] == successes[0.0] == len(SEEDS), successes
    assert steps[0.00625] <= 1.1 * steps[0.0], steps


class Constant:
    """A policy answering every frame with the same chunk (moves +x, gripper open)."""

    name, cameras = "constant", ("camera",)

    def __init__(self) -> None:
        self.proprio: list[np.ndarray] = []

    def chunk(self, images, instruction, proprio):
        self.proprio.append(np.array(proprio))
        return np.tile(np.array([0.5, 0.0, 0.0, 1.0], np.float32), (4, 1))


def test_a_busy_policy_keeps_only_the_newest_frame_and_its_chunks_run_out():
    """Inference 30 ms at a 40 Hz camera: a frame waits while the policy is busy and a newer one replaces
    it (dropped); the answers come ever later after their frames until a drop catches up, so chunks run
    out and the executor ramps the rate down in between (never a held step after the first chunk)."""
    source = Constant()
    settings = ExecutorSettings(80.0, strategy="hold", interpolation="step")
    with MetaWorldEnv("reach", max_steps=40) as env:
        ep = run_executor_episode(env, source, "reach", 100000, settings,
                                  LoopTiming(latency=0.03, inference=0.03, camera_rate=40.0), metaworld_dims(),
                                  0.0125, record_actions=True)
    assert ep.steps == 40 and ep.held_steps == 3  # 30 ms to the first chunk: steps 0, 1, 2 hold still
    assert ep.dropped_frames > 0 and ep.chunks + ep.dropped_frames <= 20  # 20 frames (every 2nd step)
    dx = np.array(ep.actions)[3:, 0]
    assert dx[0] == pytest.approx(0.5) and dx.min() < 0.25 and np.all(dx > 0)  # chunks, then ramps
    assert np.allclose(np.array(ep.actions)[3:, 3], 1.0)  # the gripper command is held through the ramps
    assert ep.command_age_p50_ms >= 30.0


@pytest.mark.parametrize("bad", [dict(latency=-0.01), dict(camera_rate=0.0), dict(tick_lead=float("nan"))])
def test_loop_timing_refuses_bad_values(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        LoopTiming(**bad)
