"""Closed loop through the executor core in virtual time: camera -> policy -> executor -> simulator.

The ROS demo's executor path (``vla-adapter demo --executor ...``) without ROS and without the wall
clock, so its result depends on the executor and the timing parameters only, never on machine load:

- the simulator (:class:`MetaWorldEnv`) steps every ``env.dt`` (12.5 ms) of virtual time on the
  newest command of the executor, exactly as ``vla_adapter_sim`` in ``mode: command`` does: rates
  (delta kinds) times the step, positions (the gripper) as they are; no command, or one older than
  ``command_timeout``, holds the arm still and keeps the last gripper command;
- a camera frame is taken every ``camera_rate``-th of a second (at a simulator step) and stamped with
  its virtual time; the policy (the real bundled model through the runtime) answers it ``latency``
  seconds later with a chunk stamped with the frame's time (the policy node's ActionChunk contract).
  The policy is busy for ``inference`` of that time (the rest is transport); a frame that comes
  while it is busy waits, and a newer one replaces it (the node's depth-1 camera queue);
- the real :class:`~vla_adapter_ros.execution.ChunkExecutor` accepts each chunk at its arrival time
  and is ticked at ``control_rate`` (``tick_lead`` seconds before the simulator's steps, 0 = in
  phase); a tick and an arrival at the same instant: the arrival first.

Nothing sleeps: an episode costs its simulator steps, renders and inferences. Episodes, seeds and
instructions follow the demo and :func:`vla_adapter_ros.core.evaluate.evaluate_task` (seeds from
100000, ``sample_instruction(task, seed, "train")``), so the lockstep baseline of the same seeds is
the in-process evaluation, which the ROS demo reproduces bit for bit. With ``hold``, ``step``
interpolation, latency 0, one frame per chunk (20 Hz for 4 steps of 12.5 ms) and ticks in phase at
the simulator's rate, the loop executes lockstep's actions one for one (tests/core/test_closed_loop.py).

A fresh executor per episode (enabled at the episode's first frame); the demo's node keeps one across
episodes, holding between them, which only changes a blend's first chunk. ROS-free and torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vla_adapter_ros.contract import RobotContract, default_contract
from vla_adapter_ros.core.evaluate import EpisodeResult, PolicySource, TaskResult, summarize
from vla_adapter_ros.core.sim.instructions import sample_instruction
from vla_adapter_ros.core.sim.metaworld_env import (
    ACTION_NAMES,
    PROPRIO_NAMES,
    MetaWorldEnv,
    command_action,
    gripper_of,
    hold_still,
    simulator_views,
)
from vla_adapter_ros.execution import ChunkExecutor, Dims, ExecutionError, ExecutorSettings

NS = 1_000_000_000
T0_NS = NS  # virtual time of an episode's first frame (a stamp of 0 would read as "no stamp")


@dataclass(frozen=True)
class LoopTiming:
    """The closed loop's clocks (seconds, Hz); defaults = the demo's executor path."""

    latency: float = 0.0  # s from a camera frame to its chunk at the executor (inference + transport)
    inference: float = 0.006  # s the policy is busy per frame, at most ``latency`` (bundled model: 5.7 ms p50)
    camera_rate: float = 40.0  # Hz; a frame every round(1 / (camera_rate * env.dt)) steps, like vla_adapter_sim
    tick_lead: float = 0.0  # s the executor's ticks come before the simulator's steps (0 = in phase)
    command_timeout: float = 0.1  # s; an older command holds the arm still (vla_adapter_sim's parameter)

    def __post_init__(self) -> None:
        for name in ("latency", "inference", "camera_rate", "tick_lead", "command_timeout"):
            v = getattr(self, name)
            if not (np.isfinite(v) and 0.0 <= v <= 3600.0):
                raise ValueError(f"{name} must be in [0, 3600], got {v!r}")
        if self.camera_rate <= 0:
            raise ValueError(f"camera_rate must be > 0 Hz, got {self.camera_rate!r}")


@dataclass
class LoopEpisode(EpisodeResult):
    held_steps: int = 0  # simulator steps without a fresh command (the arm held still)
    chunks: int = 0  # chunks the policy answered
    dropped_frames: int = 0  # frames replaced by a newer one while the policy was busy
    command_age_p50_ms: float = float("nan")  # tick time - stamp of the newest chunk in the command
    actions: list[list[float]] = field(default_factory=list, repr=False)  # what the simulator stepped on


def metaworld_dims(contract: RobotContract | None = None) -> Dims:
    """The executor's view of the simulated Sawyer's actions: dx dy dz as ee_delta, the gripper as gripper
    (what config/robots/metaworld_sawyer.yaml says; its names must be the simulator's)."""
    contract = contract or default_contract(PROPRIO_NAMES, ACTION_NAMES)
    names = tuple(a.name for a in contract.actions)
    if names != ACTION_NAMES:
        raise ExecutionError(f"contract actions {list(names)} are not the simulator's {list(ACTION_NAMES)}")
    return Dims.from_actions(contract.actions)


class _Policy:
    """The policy node's timing: one frame at a time, busy ``busy_ns``, answered ``latency_ns`` after it
    started; a frame that comes while it is busy waits, and a newer one replaces it (depth-1 queue)."""

    def __init__(self, source: PolicySource, instruction: str, latency_ns: int, busy_ns: int, frames: str) -> None:
        self.source, self.instruction, self.frames = source, instruction, frames
        self.latency_ns, self.busy_ns = latency_ns, min(busy_ns, latency_ns)
        self.free_at = 0
        self.waiting: tuple[int, dict[str, Any]] | None = None
        self.in_flight: list[tuple[int, int, np.ndarray]] = []  # (arrival, stamp, chunk), arrival order
        self.answered = self.dropped = 0

    def frame(self, t_ns: int, obs: dict[str, Any]) -> None:
        self.poll(t_ns)
        if self.free_at <= t_ns:
            self._start(t_ns, t_ns, obs)
        else:
            self.dropped += self.waiting is not None
            self.waiting = (t_ns, obs)

    def poll(self, t_ns: int) -> None:
        """Start the waiting frame if the policy got free by ``t_ns``."""
        if self.waiting is not None and self.free_at <= t_ns:
            (stamp, obs), self.waiting = self.waiting, None
            self._start(self.free_at, stamp, obs)

    def _start(self, start_ns: int, stamp_ns: int, obs: dict[str, Any]) -> None:
        chunk = np.asarray(self.source.chunk(obs[self.frames], self.instruction, obs["proprio"]))
        if not np.all(np.isfinite(chunk)):
            raise FloatingPointError(f"{self.source.name}: non-finite actions at stamp {stamp_ns}")
        self.free_at = start_ns + self.busy_ns
        self.in_flight.append((start_ns + self.latency_ns, stamp_ns, chunk))
        self.answered += 1

    def arrivals(self, t_ns: int) -> list[tuple[int, int, np.ndarray]]:
        """Chunks that reached the executor by ``t_ns``, in arrival order."""
        self.poll(t_ns)
        due = [c for c in self.in_flight if c[0] <= t_ns]
        self.in_flight = [c for c in self.in_flight if c[0] > t_ns]
        return due


def run_executor_episode(env: MetaWorldEnv, source: PolicySource, instruction: str, seed: int,
                         settings: ExecutorSettings, timing: LoopTiming, dims: Dims, chunk_dt: float,
                         *, adapter: str = "", record_actions: bool = False) -> LoopEpisode:
    """One episode of camera -> ``source`` -> a fresh :class:`ChunkExecutor` -> ``env`` in virtual time.

    The executor ticks at ``settings.control_rate``; ``chunk_dt`` is the policy's step (the manifest's dt)."""
    step_ns = int(round(env.dt * NS))
    tick_ns = int(round(NS / settings.control_rate))
    camera_every = max(1, round(1.0 / (timing.camera_rate * env.dt)))
    lead_ns = int(round(timing.tick_lead * NS)) % tick_ns
    timeout_ns = int(round(timing.command_timeout * NS))
    names = dims.names
    rate = ~dims.is_position  # rates (deltas as rates): a step moves rate * env.dt
    executor = ChunkExecutor(dims, settings, age_window=1_000_000)
    policy = _Policy(source, instruction, int(round(timing.latency * NS)), int(round(timing.inference * NS)),
                     "image" if len(env.views) == 1 else "views")

    obs = env.reset(seed)
    next_tick = T0_NS - lead_ns
    executor.enable(True, next_tick)
    policy.frame(T0_NS, obs)
    command: tuple[int, np.ndarray] | None = None  # (tick time, values)
    gripper = 0.0
    held = 0
    actions: list[list[float]] = []
    success = False
    while not obs["done"]:
        now = T0_NS + env.steps * step_ns
        # Every tick up to this step, each after the chunks that arrived by its time.
        while next_tick <= now:
            for arrival, stamp, chunk in policy.arrivals(next_tick):
                executor.accept(stamp, chunk_dt, names, chunk, adapter, arrival)
            cmd = executor.command(next_tick)
            if cmd.publish:
                command = (next_tick, cmd.value)
            next_tick += tick_ns
        if command is None or now - command[0] > timeout_ns:
            action = hold_still(gripper)
            held += 1
        else:
            action = command_action(command[1], rate, env.dt)
        gripper = gripper_of(action)
        frame_due = (env.steps + 1) % camera_every == 0
        obs, info = env.step(action, render=frame_due)
        if record_actions:
            actions.append(action.tolist())
        if info["success"]:
            success = True
            break
        if frame_due and not obs["done"]:
            policy.frame(T0_NS + env.steps * step_ns, obs)
    return LoopEpisode(env.task, seed, instruction, success, int(obs["step"]), float("nan"), held_steps=held,
                       chunks=policy.answered, dropped_frames=policy.dropped,
                       command_age_p50_ms=float(executor.snapshot()["age_p50_ms"]), actions=actions)


def evaluate_executor_task(task: str, source: PolicySource, settings: ExecutorSettings, timing: LoopTiming, *,
                           episodes: int = 10, seed_start: int = 100_000, instruction_split: str = "train",
                           chunk_dt: float, dims: Dims | None = None, adapter: str = "",
                           max_steps: int | None = None, image_size: int = 96) -> TaskResult:
    """Success of ``source`` through the executor on ``episodes`` seeds of ``task`` (the evaluation's seeds)."""
    dims = dims or metaworld_dims()
    with MetaWorldEnv(task, image_size=image_size, max_steps=max_steps, views=simulator_views(source.cameras)) as env:
        results: list[EpisodeResult] = [
            run_executor_episode(env, source, sample_instruction(env.task, seed, instruction_split), seed, settings,
                                 timing, dims, chunk_dt, adapter=adapter)
            for seed in range(seed_start, seed_start + episodes)]
    return summarize(env.task, f"{source.name} [{settings.strategy}]", instruction_split, results)
