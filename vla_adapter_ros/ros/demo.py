"""``make demo``: the simulator bridge and the policy node as separate processes, driven over DDS.

What it does, from nothing but the bundled model:

1. starts ``vla_adapter_sim`` and ``vla_adapter_node`` (the console entry points the launch
   file ``launch/sim_demo.launch.py`` starts) with the parameters of ``config/sim_demo.yaml``
   (the file the launch file reads too), on loopback DDS in a domain leased for this run
   (:func:`vla_adapter_ros.dds_env.lease_domain`);
2. for each task: switches the adapter through ``switch_adapter`` (timed), and for each
   episode sends the suggested instruction (reliable, transient local), resets the simulator
   through ``~/reset`` (task + seed >= 100000) and waits for ``EpisodeStatus.done`` of the
   episode the reply names; progress is a live line on a terminal and one line per episode in
   a log;
3. prints a table: per task success, episodes, action latency p50/p95 (camera stamp ->
   ActionChunk received here), switch time, re-sent frames; with ``--compare-in-process`` also
   the success of :func:`vla_adapter_ros.core.evaluate.evaluate_task` on the same seeds (no
   ROS) and whether every action chunk was bit-identical to the in-process one;
4. stops both processes (SIGINT, then SIGTERM, then SIGKILL): nothing is left running;
5. with a recording directory (``make demo``: ``runs/demo/bags``) the driver also subscribes to the
   camera and joint states and writes every lockstep episode as an episode bag (the frames the policy
   node answered, its ActionChunks, the instruction and the outcome), then renders one video per task
   (``runs/demo/<task>.mp4``) and a short GIF of the first episode of every task with the adapter
   switched between them (``runs/demo/demo.gif``, the one in README) with ``vla-adapter render``.

The simulator runs in lockstep (see :mod:`vla_adapter_ros.ros.sim_node`), so an episode takes
as long as the policy needs and its result does not depend on machine load or message loss.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rclpy.duration import Duration
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from tqdm import tqdm

from vla_adapter_interfaces.msg import ActionChunk, EpisodeStatus
from vla_adapter_interfaces.srv import GetStatus, ListAdapters, ResetEpisode, SwitchAdapter
from vla_adapter_ros import dds_env, decoding
from vla_adapter_ros.bags.episodes import EpisodeWriter
from vla_adapter_ros.core.evaluate import OnnxPolicySource, run_episode
from vla_adapter_ros.core.sim.instructions import sample_instruction
from vla_adapter_ros.core.sim.metaworld_env import (
    ACTION_NAMES,
    PROPRIO_NAMES,
    MetaWorldEnv,
    UnknownTaskError,
    canonical_task,
)
from vla_adapter_ros.processing import normalize_instruction
from vla_adapter_ros.ros import qos
from vla_adapter_ros.ros.conversions import action_chunk_to_array, diagnostic_values, stamp_to_ns
from vla_adapter_ros.ros.harness import NodeProcess, RosSession, node_command, wait_for_lifecycle_state
from vla_adapter_ros.ros.params import config_file, default_model_dir
from vla_adapter_ros.tools.render import render as render_video

SIM_EXECUTABLE = "vla_adapter_sim"
POLICY_EXECUTABLE = "vla_adapter_node"
SIM_NODE = "vla_adapter_sim"
POLICY_NODE = "vla_adapter"
DEFAULT_TASKS = ("coffee-button-v3", "faucet-open-v3", "handle-press-v3")
SEED_START = 100_000
DEMO_PARAMS_FILE = "sim_demo.yaml"


def demo_parameters(node: str) -> dict[str, Any]:
    """The parameters config/sim_demo.yaml gives ``node`` (vla_adapter_sim or vla_adapter)."""
    path = config_file(DEMO_PARAMS_FILE)
    return dict(yaml.safe_load(path.read_text())[node]["ros__parameters"])


# --- the driver: the robot operator's side, in this process ------------------------------
@dataclass
class EpisodeOutcome:
    task: str
    seed: int
    instruction: str
    success: bool
    steps: int
    resent_frames: int
    end_reason: str
    seconds: float
    stale_steps: int = 0  # timer and command modes: steps without a fresh action (the arm held still)
    latencies_ms: list[float] = field(default_factory=list)
    chunks: list[list[list[float]]] = field(default_factory=list, repr=False)  # answers in step order
    bag: str = ""  # the episode bag the driver recorded ("" when not recording)


class DemoDriver:
    """Reset/switch clients, instruction publisher, status + action subscribers (a RosSession)."""

    def __init__(self, sim_node: str = SIM_NODE, policy_node: str = POLICY_NODE,
                 instruction_topic: str = "/vla/instruction", action_topic: str = "/vla/action",
                 status_topic: str = "/vla/episode", record_dir: Path | None = None,
                 camera_topic: str = "/camera/image_raw", proprio_topic: str = "/joint_states") -> None:
        self.sim_node, self.policy_node = sim_node.strip("/"), policy_node.strip("/")
        self.session = RosSession("vla_adapter_demo")
        self.node = self.session.node
        self._lock = threading.Lock()
        self.status: Any = None
        self._answers: dict[int, tuple[float, np.ndarray]] = {}  # stamp -> (latency ms, chunk), first answer
        self._adapters: dict[int, str] = {}  # stamp -> the adapter that answered it
        self.instruction_pub = self.node.create_publisher(String, instruction_topic, qos.instruction_qos())
        self.session.subscribe(EpisodeStatus, status_topic, self._on_status, qos.status_qos())
        self.session.subscribe(ActionChunk, action_topic, self._on_action, qos.actions_qos(100))
        self.action_topic = action_topic
        # Recording (record_dir): the frames and joint states of the episode, by stamp (a re-sent frame
        # keeps its stamp and pixels: the first copy is kept).
        self.record_dir = record_dir
        self._frames: dict[int, Any] = {}
        self._states: dict[int, Any] = {}
        if record_dir is not None:
            self.session.subscribe(Image, camera_topic, self._on_image, qos.recorder_qos(reliable=True))
            self.session.subscribe(JointState, proprio_topic, self._on_state, qos.recorder_qos())

    def _on_image(self, msg: Any) -> None:
        with self._lock:
            self._frames.setdefault(stamp_to_ns(msg.header.stamp), msg)

    def _on_state(self, msg: Any) -> None:
        with self._lock:
            self._states.setdefault(stamp_to_ns(msg.header.stamp), msg)

    def _on_status(self, msg: Any) -> None:
        with self._lock:
            self.status = msg

    def _on_action(self, msg: Any) -> None:
        stamp = stamp_to_ns(msg.header.stamp)
        latency = (self.session.now_ns() - stamp) * 1e-6
        with self._lock:
            self._answers.setdefault(stamp, (latency, action_chunk_to_array(msg)))
            self._adapters.setdefault(stamp, str(msg.adapter))

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 30.0, **kwargs: Any) -> Any:
        return self.session.call(srv_type, name, request, timeout, **kwargs)

    def list_adapters(self, timeout: float = 60.0) -> Any:
        return self.call(ListAdapters, f"/{self.policy_node}/list_adapters", ListAdapters.Request(), timeout)

    def switch(self, adapter: str) -> tuple[Any, float]:
        """SwitchAdapter reply and the round-trip time in ms."""
        t0 = time.perf_counter()
        reply = self.call(SwitchAdapter, f"/{self.policy_node}/switch_adapter", SwitchAdapter.Request(adapter=adapter))
        return reply, (time.perf_counter() - t0) * 1e3

    def send_instruction(self, text: str, timeout: float = 10.0) -> None:
        """Publish (reliable, transient local) and wait until the policy node HOLDS it.

        An acknowledgement only says the sample reached the node's reader; its callback may run after
        a camera frame's, and that frame would be served with the previous instruction. So the node's
        own status is read until it reports this instruction (``~/get_status``): only then can the
        episode's first frame be sent, and the episode stays a function of its instruction."""
        self.session.wait_for_subscribers(self.instruction_pub, timeout,
                                          "a subscriber to the instruction (is the policy node up?)")
        self.instruction_pub.publish(String(data=text))
        if not self.instruction_pub.wait_for_all_acked(Duration(seconds=timeout)):
            raise TimeoutError("the instruction was not acknowledged")
        want = normalize_instruction(text)
        self.session.wait_for(lambda: self.policy_status().get("instruction") == want, timeout,
                              f"the policy node to hold the instruction {want!r}")

    def executor_status(self, timeout: float = 10.0) -> dict[str, str]:
        """The executor's status now (its ``~/get_status`` values)."""
        reply = self.call(GetStatus, f"/{EXECUTOR_NODE}/get_status", GetStatus.Request(), timeout)
        return diagnostic_values(reply.status)

    def policy_status(self, timeout: float = 10.0) -> dict[str, str]:
        """The policy node's status now (its ``~/get_status`` values)."""
        reply = self.call(GetStatus, f"/{self.policy_node}/get_status", GetStatus.Request(), timeout)
        return diagnostic_values(reply.status)

    def run_episode(self, task: str, seed: int, timeout: float = 300.0,
                    progress: Callable[[Any], None] | None = None, lockstep: bool = True) -> EpisodeOutcome:
        """Send the task's suggested instruction, reset the sim to task/seed, wait until the episode is done.

        The episode's answers are the chunks stamped after the reset was asked for (a late answer to the
        previous episode's last frame is older). In ``lockstep`` every frame of the episode was answered
        before the simulator went on, so the outcome waits for all ``EpisodeStatus.frames`` of them: the
        done status and the last answer come on different topics, in either order."""
        # The instruction the reset reply will suggest (same function): acknowledged by the policy node
        # BEFORE the reset, so it holds it when the first frame of the episode arrives.
        instruction = sample_instruction(task, seed)
        self.send_instruction(instruction)
        # Answers are volatile: whoever publishes them must be known (matched) before the episode starts.
        self.session.wait_for_publishers(self.action_topic, 30)
        start_ns = self.session.now_ns()
        with self._lock:  # forget older episodes' answers and frames
            self._answers = {k: v for k, v in self._answers.items() if k >= start_ns}
            self._adapters = {k: v for k, v in self._adapters.items() if k >= start_ns}
            self._frames = {k: v for k, v in self._frames.items() if k >= start_ns}
            self._states = {k: v for k, v in self._states.items() if k >= start_ns}
        t0 = time.monotonic()
        # Resent until answered; the request id makes a resend that arrives after the reset a no-op.
        reply = self.call(ResetEpisode, f"/{self.sim_node}/reset",
                          ResetEpisode.Request(task=task, seed=seed, request_id=uuid.uuid4().hex))
        if not reply.success:
            raise RuntimeError(f"reset refused: {reply.message}")

        def finished() -> Any:
            with self._lock:
                status = self.status
            if status is None or status.episode != reply.episode:
                return None
            if progress is not None:
                progress(status)
            return status if status.done else None

        status = self.session.wait_for(finished, timeout, f"{task} seed {seed} to finish")

        def episode_answers() -> list:
            with self._lock:
                return sorted((k, v) for k, v in self._answers.items() if k >= start_ns)

        if lockstep:
            self.session.wait_for(lambda: len(episode_answers()) >= status.frames, 10,
                                  f"the answers to all {status.frames} frames of {task} seed {seed}")
        answers = episode_answers()
        outcome = EpisodeOutcome(task, seed, reply.instruction or instruction, bool(status.success), int(status.step),
                                 int(status.resent_frames), status.end_reason, time.monotonic() - t0,
                                 int(status.stale_action_steps), [lat for _, (lat, _) in answers],
                                 [c.tolist() for _, (_, c) in answers])
        if self.record_dir is not None and lockstep:
            outcome.bag = str(self._write_bag(outcome, answers, int(reply.episode)))
        return outcome

    def _write_bag(self, o: EpisodeOutcome, answers: list[tuple[int, tuple[float, np.ndarray]]], episode: int) -> Path:
        """The episode as the robot saw it: every answered frame with its joint state and ActionChunk."""
        assert self.record_dir is not None
        path = self.record_dir / o.task / f"{o.task}_seed{o.seed:06d}"
        if path.exists():  # a re-run of the demo into the same directory replaces its bags
            shutil.rmtree(path)
        with self._lock:
            frames, states, adapters = dict(self._frames), dict(self._states), dict(self._adapters)
        steps = [(stamp, frames[stamp], states[stamp], chunk) for stamp, (_, chunk) in answers
                 if stamp in frames and stamp in states]  # a JointState lost on the way here (best effort): skipped
        adapter = next((adapters[s] for s, *_ in steps if adapters.get(s)), "")
        with EpisodeWriter(path, task=o.task, seed=o.seed, episode=episode, proprio_names=PROPRIO_NAMES,
                           action_names=ACTION_NAMES, action_source=adapter,
                           metadata={"instruction": o.instruction, "recorder": "vla-adapter demo",
                                     "source": "policy node over ROS (lockstep simulator)",
                                     "end_reason": o.end_reason, "steps": o.steps,
                                     "unrecorded_frames": len(answers) - len(steps)}) as writer:
            for stamp, image, state, chunk in steps:
                writer.write_step(stamp, decoding.image_msg_to_rgb(image),
                                  decoding.joint_state_to_proprio(state, PROPRIO_NAMES), chunk,
                                  instruction=o.instruction)
            writer.finish(success=o.success)
        return path

    def close(self) -> None:
        self.session.close()


# --- the demo ------------------------------------------------------------------------
@dataclass
class TaskRow:
    task: str
    adapter: str
    episodes: int
    successes: int
    latency_p50_ms: float
    latency_p95_ms: float
    switch_ms: float
    steps_mean: float
    resent_frames: int
    in_process_successes: int | None = None
    identical_episodes: int | None = None  # every chunk bit-identical to the in-process run
    differences: list[str] = field(default_factory=list)  # per episode: where it first differs ("" = identical)
    outcomes: list[EpisodeOutcome] = field(default_factory=list)


def adapters_by_task(reply: Any) -> dict[str, str]:
    """Canonical Meta-World task -> adapter name, from a ListAdapters reply's AdapterInfo.task."""
    out = {}
    for info in reply.adapters:
        try:
            out[canonical_task(info.task or info.name.replace("_", "-"))] = info.name
        except UnknownTaskError:
            continue
    return out


def format_table(rows: Sequence[TaskRow]) -> str:
    show_ip = any(r.in_process_successes is not None for r in rows)
    head = (f"{'task':<20} {'adapter':<14} {'success':>8} {'episodes':>8} {'lat p50':>8} {'lat p95':>8} "
            f"{'switch':>8} {'steps':>6} {'resent':>6}")
    extra = f" {'in-process':>10} {'same actions':>12}" if show_ip else ""
    lines = [head + extra, "-" * len(head + extra)]
    for r in rows:
        line = (f"{r.task:<20} {r.adapter:<14} {r.successes:>4}/{r.episodes:<3} {r.episodes:>8} "
                f"{r.latency_p50_ms:>6.1f}ms {r.latency_p95_ms:>6.1f}ms {r.switch_ms:>6.1f}ms {r.steps_mean:>6.0f} "
                f"{r.resent_frames:>6}")
        if show_ip and r.in_process_successes is not None:
            line += f" {r.in_process_successes:>6}/{r.episodes:<3} {r.identical_episodes:>8}/{r.episodes:<3}"
        lines.append(line)
    total = sum(r.successes for r in rows), sum(r.episodes for r in rows)
    lines.append(f"{'total':<20} {'':<14} {total[0]:>4}/{total[1]:<3}")
    return "\n".join(lines)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


class Progress:
    """A live line on a terminal (tqdm); one line per finished episode when stdout is a log."""

    def __init__(self, total: int, out: Callable[[str], None]) -> None:
        self.out = out
        self.bar = tqdm(total=total, unit="episode", dynamic_ncols=True) if sys.stdout.isatty() else None

    def step(self, task: str, adapter: str, i: int, episodes: int, status: Any) -> None:
        if self.bar is not None:
            self.bar.set_description_str(f"{task} [{adapter}] episode {i + 1}/{episodes} step {status.step}/"
                                         f"{status.max_steps}", refresh=False)
            self.bar.refresh()

    def episode(self, i: int, episodes: int, adapter: str, o: EpisodeOutcome) -> None:
        line = (f"{o.task:<20} [{adapter}] episode {i + 1}/{episodes} seed {o.seed}: "
                f"{'SUCCESS' if o.success else 'fail'} in {o.steps} steps ({o.seconds:.1f} s, "
                f"{o.resent_frames} re-sent, {o.end_reason})")
        if self.bar is not None:
            self.bar.write(line)
            self.bar.update(1)
        else:
            self.out(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_session(model_dir: Path, tasks: Sequence[str], episodes: int, seed_start: int, log_dir: Path,
                compare_in_process: bool = False, episode_timeout: float = 300.0,
                out: Callable[[str], None] = print, strategies: Sequence[str] = (),
                record_dir: Path | None = None) -> tuple[list[TaskRow], list[ExecutorRow]]:
    """Run the demo in a freshly leased loopback domain (the nodes and this process): the lockstep
    episodes (each written as a bag under ``record_dir`` when given), then with ``strategies`` the same
    seeds through the executor on a real-time simulator."""
    tasks = [canonical_task(t) for t in tasks]
    log_dir.mkdir(parents=True, exist_ok=True)
    lease = dds_env.lease_domain(salt=7)
    env = dds_env.localhost_env(lease.domain_id)
    env.setdefault("OMP_NUM_THREADS", "1")
    # The driver joins the same domain: set it in this process before its rclpy context starts.
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID",
                                           "FASTDDS_DEFAULT_PROFILES_FILE", "RMW_IMPLEMENTATION")})
    sim = NodeProcess(node_command(SIM_EXECUTABLE, SIM_NODE, {**demo_parameters(SIM_NODE), "task": tasks[0]}),
                      env, log_dir / "sim.log")
    policy = NodeProcess(node_command(POLICY_EXECUTABLE, POLICY_NODE, {**demo_parameters(POLICY_NODE),
                                                                       "model_dir": str(model_dir)}),
                         env, log_dir / "policy.log")
    driver, progress = None, Progress(len(tasks) * episodes, out)
    try:
        driver = DemoDriver(record_dir=record_dir)
        out(f"domain {env['ROS_DOMAIN_ID']}: started {SIM_EXECUTABLE} (pid {sim.pid}) and "
            f"{POLICY_EXECUTABLE} (pid {policy.pid}); logs in {log_dir}")
        rows = _run_tasks(driver, policy, tasks, episodes, seed_start, episode_timeout, progress)
        sim.stop()  # the executor path runs a real-time simulator of its own
        executor_rows = [row for strategy in strategies for row in _run_executor(
            driver, env, log_dir, strategy, rows, episode_timeout, out)]
    finally:
        progress.close()
        if driver is not None:
            driver.close()
        codes = {SIM_EXECUTABLE: sim.stop(), POLICY_EXECUTABLE: policy.stop()}
        out(f"stopped: {codes}")
        lease.release()
    if compare_in_process:
        compare_with_in_process(model_dir, rows, seed_start)
    return rows, executor_rows


# --- the executor path: camera -> policy -> executor -> a simulator on its own 80 Hz clock ---------
EXECUTOR_EXECUTABLE = "vla_adapter_executor"
EXECUTOR_NODE = "vla_adapter_executor"
COMMAND_SIM_NODE = "vla_adapter_sim_realtime"
# 40 Hz camera: a chunk (4 actions of 12.5 ms = 50 ms) always outlives a camera period plus the latency.
COMMAND_SIM_PARAMETERS = {"mode": "command", "camera_rate": 40.0, "command_timeout": 0.1}


@dataclass
class ExecutorRow:
    task: str
    strategy: str
    episodes: int
    successes: int
    lockstep_successes: int
    command_rate_hz: float  # the executor's command ticks per second of episode time
    command_age_p50_ms: float
    command_age_p99_ms: float
    held_steps: int  # simulator steps without a fresh command (arm held still)
    outcomes: list[EpisodeOutcome] = field(default_factory=list)

    @property
    def sim_rate_hz(self) -> float:
        """Median simulator steps per second of the episodes: 1 / SIM_STEP_S when it kept real time.
        Below that the physics ran slower than the executor's clock (a loaded machine), and the
        success count is not a closed-loop result."""
        rates = sorted(o.steps / o.seconds for o in self.outcomes if o.seconds > 0)
        return rates[len(rates) // 2] if rates else 0.0

    @property
    def real_time(self) -> bool:
        return self.sim_rate_hz >= REAL_TIME_FRACTION / SIM_STEP_S


def _run_executor(driver: DemoDriver, env: dict[str, str], log_dir: Path, strategy: str, lockstep: list[TaskRow],
                  episode_timeout: float, out: Callable[[str], None]) -> list[ExecutorRow]:
    """The lockstep rows' tasks and seeds again, through the executor (``strategy``) on a real-time sim."""
    sim = NodeProcess(node_command(SIM_EXECUTABLE, COMMAND_SIM_NODE, {
        **demo_parameters(SIM_NODE), **COMMAND_SIM_PARAMETERS, "task": lockstep[0].task}), env,
        log_dir / f"sim_realtime_{strategy}.log")
    executor = NodeProcess(node_command(EXECUTOR_EXECUTABLE, EXECUTOR_NODE, {
        "strategy": strategy, "start_enabled": True, "delta_output": "velocity"}), env,
        log_dir / f"executor_{strategy}.log")
    lockstep_sim, driver.sim_node = driver.sim_node, COMMAND_SIM_NODE
    rows = []
    try:
        wait_for_lifecycle_state(driver.session, EXECUTOR_NODE, "active", 60, alive=executor.alive)
        for row in lockstep:
            driver.switch(row.adapter)
            outcomes, ticks = [], 0.0
            for o in row.outcomes:
                before = driver.executor_status()
                outcome = driver.run_episode(row.task, o.seed, episode_timeout, lockstep=False)
                after = driver.executor_status()
                outcomes.append(outcome)
                ticks += (int(after["ticks"]) - int(before["ticks"])) / max(outcome.seconds, 1e-9)
                out(f"{row.task:<20} [{row.adapter}] executor ({strategy}) seed {o.seed}: "
                    f"{'SUCCESS' if outcome.success else 'fail'} in {outcome.steps} steps ({outcome.seconds:.1f} s, "
                    f"{outcome.stale_steps} held)")
            rows.append(ExecutorRow(row.task, strategy, len(outcomes), sum(o.success for o in outcomes),
                                    row.successes, ticks / max(len(outcomes), 1),
                                    float(after["command_age_p50_ms"]), float(after["command_age_p99_ms"]),
                                    sum(o.stale_steps for o in outcomes), outcomes))
    finally:
        driver.sim_node = lockstep_sim
        for name, proc in ((EXECUTOR_EXECUTABLE, executor), (COMMAND_SIM_NODE, sim)):
            if proc.stop() != 0:
                out(f"{name} exited with {proc.proc.returncode}; its log:\n{proc.log()[-2000:]}")
    return rows


def format_executor_table(rows: Sequence[ExecutorRow]) -> str:
    head = (f"{'task':<20} {'strategy':<18} {'success':>8} {'lockstep':>9} {'cmd rate':>9} {'sim rate':>9} "
            f"{'age p50':>8} {'age p99':>8} {'held':>6}")
    lines = ["executor path: camera -> policy -> vla_adapter_executor -> simulator stepping at 80 Hz on its commands",
             head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.task:<20} {r.strategy:<18} {r.successes:>4}/{r.episodes:<3} {r.lockstep_successes:>5}/"
                     f"{r.episodes:<3} {r.command_rate_hz:>6.1f}Hz {r.sim_rate_hz:>6.1f}Hz "
                     f"{r.command_age_p50_ms:>6.1f}ms {r.command_age_p99_ms:>6.1f}ms {r.held_steps:>6}"
                     + ("" if r.real_time else "  (sim below real time)"))
    if not all(r.real_time for r in rows):
        lines.append(f"(sim below real time): the simulator stepped slower than {REAL_TIME_FRACTION:.0%} of "
                     f"{1 / SIM_STEP_S:.0f} Hz while the executor ran on the wall clock (a loaded machine): that "
                     "row's success is not a closed-loop result; rerun it on a quieter machine")
    return "\n".join(lines)


def _run_tasks(driver: DemoDriver, policy: Any, tasks: Sequence[str], episodes: int, seed_start: int,
               episode_timeout: float, progress: Progress) -> list[TaskRow]:
    listing = driver.list_adapters()
    if not listing.adapters:
        raise RuntimeError(f"the policy node has no adapters; its log:\n{policy.log()[-2000:]}")
    by_task = adapters_by_task(listing)
    missing = [t for t in tasks if t not in by_task]
    if missing:
        raise RuntimeError(f"no adapter for {missing}; the model has {sorted(by_task.items())}")
    rows = []
    for task in tasks:
        adapter = by_task[task]
        reply, switch_ms = driver.switch(adapter)
        if not reply.success:
            raise RuntimeError(f"switch to {adapter} refused: {reply.message}")
        outcomes: list[EpisodeOutcome] = []
        for i in range(episodes):
            outcome = driver.run_episode(
                task, seed_start + i, episode_timeout,
                progress=lambda status, i=i, task=task, adapter=adapter: progress.step(task, adapter, i, episodes,
                                                                                        status))
            outcomes.append(outcome)
            progress.episode(i, episodes, adapter, outcome)
        lat = [x for o in outcomes for x in o.latencies_ms]
        rows.append(TaskRow(task, adapter, len(outcomes), sum(o.success for o in outcomes),
                            _percentile(lat, 50), _percentile(lat, 95), switch_ms,
                            float(np.mean([o.steps for o in outcomes])),
                            sum(o.resent_frames for o in outcomes), outcomes=outcomes))
    return rows


class RecordingSource:
    """A policy source that keeps every chunk it returns (to compare with the ROS run)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.chunks = inner, inner.name, []

    def chunk(self, rgb: np.ndarray, instruction: str, proprio: np.ndarray) -> np.ndarray:
        out = self.inner.chunk(rgb, instruction, proprio)
        self.chunks.append(np.array(out, np.float32))
        return out


def first_difference(local: list[np.ndarray], ros: list, local_outcome: tuple, ros_outcome: tuple) -> str:
    """Where a ROS episode first differs from the in-process one ("" when identical)."""
    for k, (a, b) in enumerate(zip(local, ros, strict=False)):
        b = np.asarray(b, np.float32)
        if not np.array_equal(a, b):
            return f"chunk {k}: max |diff| {np.abs(a - b).max():.3g}"
    if len(local) != len(ros):
        return f"{len(local)} chunks in process, {len(ros)} through ROS"
    return "" if local_outcome == ros_outcome else f"outcome {local_outcome} vs {ros_outcome}"


def compare_with_in_process(model_dir: Path, rows: list[TaskRow], seed_start: int,
                            max_steps: int | None = None) -> None:
    """``vla-adapter eval``'s loop on the same seeds: successes, and episodes whose every chunk equals the
    ROS run's bit for bit (same frames, same proprio, same model: lockstep promises exactly that)."""
    source = OnnxPolicySource(model_dir, providers=["cpu"])
    k = source.policy.manifest.actions.chunk_length
    for row in rows:
        source.policy.switch(row.adapter)
        row.in_process_successes, row.identical_episodes = 0, 0
        with MetaWorldEnv(row.task, max_steps=max_steps) as env:
            for o in row.outcomes:
                rec = RecordingSource(source)
                res = run_episode(env, rec, o.instruction, o.seed, k)
                row.in_process_successes += res.success
                diff = first_difference(rec.chunks, o.chunks, (res.success, res.steps), (o.success, o.steps))
                row.differences.append(diff)
                row.identical_episodes += not diff
    source.policy.close()


GIF_FRAMES = 60  # at most (about) this many frames in demo.gif: ~25 kB each, the README's GIF stays < 2 MB
GIF_FPS = 5.0  # a frame is a chunk (4 steps of 12.5 ms = 20 fps real time): the GIF plays 4x slower to be watched
REAL_TIME_FRACTION = 0.8  # an executor row is closed loop when its sim kept this share of real time (episode
# wall time includes the reset and the first answer, ~0.4 s: 406 steps in 5.84 s on a quiet machine = 87 %)
SIM_STEP_S = 0.0125  # Meta-World's control step (80 Hz): the lockstep simulator stamps frames by wall clock instead


def render_videos(rows: Sequence[TaskRow], out_dir: Path, log: Callable[[str], None] = print) -> list[Path]:
    """One video per task of its recorded episodes (``out_dir/<task>.mp4``) and ``out_dir/demo.gif``: the
    first successful (else the first) episode of every task, one after another (the adapter switched
    between them), every n-th frame so it has about :data:`GIF_FRAMES` frames, slowed to :data:`GIF_FPS`."""
    written = []
    for row in rows:
        bags = [Path(o.bag) for o in row.outcomes if o.bag]
        if bags:  # at the simulated robot's own speed: a frame per executed chunk
            steps = sum(o.steps for o in row.outcomes if o.bag)
            fps = sum(len(o.chunks) for o in row.outcomes if o.bag) / max(steps * SIM_STEP_S, 1e-9)
            written.append(render_video(bags, out_dir / f"{row.task}.mp4", fps=fps).out)
    firsts = [next((o for o in r.outcomes if o.success and o.bag), r.outcomes[0]) for r in rows if r.outcomes]
    firsts = [o for o in firsts if o.bag]
    if firsts:
        every = max(1, -(-sum(len(o.chunks) for o in firsts) // GIF_FRAMES))
        written.append(render_video([Path(o.bag) for o in firsts], out_dir / "demo.gif", every=every,
                                     fps=GIF_FPS).out)
    for path in written:
        log(f"video: {path} ({path.stat().st_size / 2**20:.2f} MiB)")
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", type=Path, default=default_model_dir(), help="exported model (default: bundled)")
    parser.add_argument("--task", action="append", default=None, help=f"task (repeat; default {list(DEFAULT_TASKS)})")
    parser.add_argument("--episodes", type=int, default=3, help="episodes per task (default 3)")
    parser.add_argument("--seed-start", type=int, default=SEED_START, help="first seed (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="1 episode per task")
    parser.add_argument("--compare-in-process", action="store_true",
                        help="also run vla-adapter eval's in-process loop on the same seeds (no ROS) and compare "
                             "every action chunk")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="logs + results.json (default runs/demo)")
    parser.add_argument("--episode-timeout", type=float, default=300.0, help="seconds per episode at most")
    parser.add_argument("--executor", default="", metavar="STRATEGIES",
                        help="then the same seeds through vla_adapter_executor on a real-time (80 Hz) simulator, "
                             "per strategy, e.g. blend or hold,temporal_ensemble,blend (default: none)")
    parser.add_argument("--no-video", action="store_true",
                        help="do not record the episodes as bags (OUT/bags) nor render OUT/<task>.mp4 and OUT/demo.gif")


def run(args: argparse.Namespace) -> int:
    episodes = 1 if args.quick else args.episodes
    if not (args.model_dir / "manifest.json").is_file():
        print(f"demo: no exported model at {args.model_dir} (manifest.json missing)", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    strategies = [x.strip() for x in args.executor.split(",") if x.strip()]
    rows, executor_rows = run_session(args.model_dir, args.task or DEFAULT_TASKS, episodes, args.seed_start,
                                      args.out / "logs", compare_in_process=args.compare_in_process,
                                      episode_timeout=args.episode_timeout, strategies=strategies,
                                      record_dir=None if args.no_video else args.out / "bags")
    print()
    print(format_table(rows))
    if executor_rows:
        print()
        print(format_executor_table(executor_rows))
    print(f"demo finished in {time.monotonic() - t0:.0f} s")
    (args.out / "results.json").write_text(json.dumps({"lockstep": [asdict(r) for r in rows],
                                                       "executor": [asdict(r) for r in executor_rows]}, indent=1))
    print(f"wrote {args.out / 'results.json'}")
    if not args.no_video:
        render_videos(rows, args.out)
    return 0
