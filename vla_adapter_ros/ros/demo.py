"""``make demo``: the simulator bridge and the policy node as separate processes, driven over DDS.

What it does, from nothing but the bundled model:

1. starts ``vla_adapter_sim`` and ``vla_adapter_node`` (the console entry points the launch
   file ``launch/sim_demo.launch.py`` starts, with the same parameters: :data:`SIM_PARAMETERS`,
   :data:`POLICY_PARAMETERS`) on loopback DDS in a domain of their own
   (:func:`vla_adapter_ros.dds_env.localhost_env`);
2. for each task: switches the adapter through ``switch_adapter`` (timed), and for each
   episode resets the simulator through ``~/reset`` (task + seed >= 100000), sends the
   suggested instruction (reliable, transient local) and waits for ``EpisodeStatus.done``;
   a live progress line shows task, episode, step and success so far;
3. prints a table: per task success, episodes, action latency p50/p95 (camera stamp ->
   ActionChunk received here), switch time; with ``--compare-in-process`` also the success of
   :func:`vla_adapter_ros.core.evaluate.evaluate_task` on the same seeds (no ROS);
4. stops both processes (SIGINT, wait, kill on timeout): nothing is left running.

The simulator runs in lockstep (see :mod:`vla_adapter_ros.ros.sim_node`), so an episode takes
as long as the policy needs and its result does not depend on machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vla_adapter_ros import dds_env
from vla_adapter_ros.ros.clients import RESEND_S, await_reply

SIM_EXECUTABLE = "vla_adapter_sim"
POLICY_EXECUTABLE = "vla_adapter_node"
SIM_NODE = "vla_adapter_sim"
POLICY_NODE = "vla_adapter"
DEFAULT_TASKS = ("coffee-button-v3", "faucet-open-v3", "handle-press-v3")
SEED_START = 100_000
# The parameters launch/sim_demo.launch.py gives the two nodes (tests/ros/test_demo.py checks they agree).
SIM_PARAMETERS: dict[str, Any] = {"mode": "lockstep", "autostart": False, "actions_per_chunk": 0,
                                  "image_size": 96, "action_timeout": 2.0, "end_on_success": True}
POLICY_PARAMETERS: dict[str, Any] = {"providers": "cpu", "intra_op_threads": 1, "camera_reliability": "reliable",
                                     "camera_depth": 1}


# --- processes ---------------------------------------------------------------------
def node_command(executable: str, node_name: str, parameters: dict[str, Any]) -> list[str]:
    """argv for a console entry point with ``--ros-args -r __node:=NAME -p k:=v ...``."""
    exe = Path(sys.executable).parent / executable
    args = [str(exe) if exe.exists() else executable, "--ros-args", "-r", f"__node:={node_name}"]
    for k, v in parameters.items():
        args += ["-p", f"{k}:={str(v).lower() if isinstance(v, bool) else v}"]
    return args


class NodeProcess:
    """One node in its own process, output to a log file; :meth:`stop` always reaps it."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv, self.log_path = argv, log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT, text=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # the node's orderly shutdown path
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode


# --- the driver: an rclpy node in this process ---------------------------------------
@dataclass
class EpisodeOutcome:
    task: str
    seed: int
    instruction: str
    success: bool
    steps: int
    stale_action_steps: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)


class DemoDriver:
    """Reset/switch clients, instruction publisher, status + action subscribers (own rclpy context)."""

    def __init__(self, sim_node: str = SIM_NODE, policy_node: str = POLICY_NODE,
                 instruction_topic: str = "/vla/instruction", action_topic: str = "/vla/action",
                 status_topic: str = "/vla/episode") -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from std_msgs.msg import String

        from vla_adapter_interfaces.msg import ActionChunk, EpisodeStatus
        from vla_adapter_ros.ros import qos
        from vla_adapter_ros.ros.entry import spin_in_background
        from vla_adapter_ros.ros.sim_node import status_qos

        self.sim_node, self.policy_node = sim_node.strip("/"), policy_node.strip("/")
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"vla_adapter_demo_{time.monotonic_ns() % 10**9}", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self.status: Any = None
        self.latencies_ms: list[float] = []
        self.instruction_pub = self.node.create_publisher(String, instruction_topic, qos.instruction_qos())
        self.node.create_subscription(EpisodeStatus, status_topic, self._on_status, status_qos())
        self.node.create_subscription(ActionChunk, action_topic, self._on_action, qos.actions_qos(100))
        self._spin = spin_in_background(self.executor, self.context, 0.05)

    def _on_status(self, msg: Any) -> None:
        with self._lock:
            self.status = msg

    def _on_action(self, msg: Any) -> None:
        now = self.node.get_clock().now().nanoseconds
        stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        with self._lock:
            self.latencies_ms.append((now - stamp) * 1e-6)

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 30.0, resend_s: float = RESEND_S) -> Any:
        """A service round trip; ``resend_s`` > 0 resends until a reply (idempotent requests only).

        One client per service, kept for the driver's life: only a client's first requests race
        discovery (see clients.await_reply), not every call.
        """
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = self.node.create_client(srv_type, name)
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {name} not available after {timeout:.0f} s")
        future = await_reply(client, request, timeout, resend_s=resend_s)
        if future is None:
            raise TimeoutError(f"service {name} did not answer within {timeout:.0f} s")
        return future.result()

    def list_adapters(self, timeout: float = 60.0) -> Any:
        from vla_adapter_interfaces.srv import ListAdapters

        return self.call(ListAdapters, f"/{self.policy_node}/list_adapters", ListAdapters.Request(), timeout)

    def switch(self, adapter: str) -> tuple[Any, float]:
        """SwitchAdapter reply and the round-trip time in ms."""
        from vla_adapter_interfaces.srv import SwitchAdapter

        t0 = time.perf_counter()
        reply = self.call(SwitchAdapter, f"/{self.policy_node}/switch_adapter", SwitchAdapter.Request(adapter=adapter))
        return reply, (time.perf_counter() - t0) * 1e3

    def send_instruction(self, text: str, timeout: float = 10.0) -> None:
        from rclpy.duration import Duration
        from std_msgs.msg import String

        deadline = time.monotonic() + timeout
        while self.instruction_pub.get_subscription_count() == 0:
            if time.monotonic() > deadline:
                raise TimeoutError("nobody subscribes to the instruction topic (is the policy node up?)")
            time.sleep(0.01)
        self.instruction_pub.publish(String(data=text))
        if not self.instruction_pub.wait_for_all_acked(Duration(seconds=timeout)):
            raise TimeoutError("the instruction was not acknowledged")
        time.sleep(0.05)  # the policy node's executor hands it over before the first frame arrives

    def run_episode(self, task: str, seed: int, timeout: float = 300.0,
                    progress: Callable[[Any], None] | None = None) -> EpisodeOutcome:
        """Reset the sim to task/seed, send its suggested instruction, wait until the episode is done."""
        from vla_adapter_interfaces.srv import ResetEpisode
        from vla_adapter_ros.core.sim.instructions import sample_instruction

        name = f"/{self.sim_node}/reset"
        # The instruction the reset reply will suggest (same function): sent BEFORE the reset, so the
        # policy node holds it when the first frame of the episode arrives.
        instruction = sample_instruction(task, seed)
        self.send_instruction(instruction)
        with self._lock:
            self.latencies_ms = []
        t0 = time.monotonic()
        # Resent until answered; the request id makes a resend that arrives after the reset a no-op.
        reply = self.call(ResetEpisode, name, ResetEpisode.Request(task=task, seed=seed,
                                                                   request_id=uuid.uuid4().hex))
        if not reply.success:
            raise RuntimeError(f"reset refused: {reply.message}")
        episode = int(reply.message.split(":")[0].split()[-1])
        deadline = t0 + timeout
        while True:
            with self._lock:
                status = self.status
            if status is not None and status.episode == episode:
                if progress is not None:
                    progress(status)
                if status.done:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{task} seed {seed}: episode not done after {timeout:.0f} s")
            time.sleep(0.02)
        with self._lock:
            lat = list(self.latencies_ms)
        return EpisodeOutcome(task, seed, reply.instruction or instruction, bool(status.success), int(status.step),
                              int(status.stale_action_steps), time.monotonic() - t0, lat)

    def close(self) -> None:
        import rclpy

        rclpy.try_shutdown(context=self.context)
        self._spin.join(timeout=5)
        self.node.destroy_node()


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
    stale_steps: int
    in_process_successes: int | None = None
    outcomes: list[EpisodeOutcome] = field(default_factory=list)


def adapters_by_task(reply: Any) -> dict[str, str]:
    """Canonical Meta-World task -> adapter name, from a ListAdapters reply's AdapterInfo.task."""
    from vla_adapter_ros.core.sim.metaworld_env import UnknownTaskError, canonical_task

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
            f"{'switch':>8} {'steps':>6} {'stale':>5}")
    lines = [head + (f" {'in-process':>10}" if show_ip else ""), "-" * (len(head) + (11 if show_ip else 0))]
    for r in rows:
        line = (f"{r.task:<20} {r.adapter:<14} {r.successes:>4}/{r.episodes:<3} {r.episodes:>8} "
                f"{r.latency_p50_ms:>6.1f}ms {r.latency_p95_ms:>6.1f}ms {r.switch_ms:>6.1f}ms {r.steps_mean:>6.0f} "
                f"{r.stale_steps:>5}")
        if show_ip:
            line += f" {r.in_process_successes:>6}/{r.episodes:<3}" if r.in_process_successes is not None else ""
        lines.append(line)
    total = sum(r.successes for r in rows), sum(r.episodes for r in rows)
    lines.append(f"{'total':<20} {'':<14} {total[0]:>4}/{total[1]:<3}")
    return "\n".join(lines)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_session(model_dir: Path, tasks: Sequence[str], episodes: int, seed_start: int, log_dir: Path,
             compare_in_process: bool = False, episode_timeout: float = 300.0,
             out: Callable[[str], None] = print, env: dict[str, str] | None = None) -> list[TaskRow]:
    """Run the demo; ``env`` (default: a fresh loopback domain) is used for the nodes and this process."""
    from vla_adapter_ros.core.sim.metaworld_env import canonical_task

    tasks = [canonical_task(t) for t in tasks]
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(env) if env is not None else dds_env.localhost_env(dds_env.pick_domain_id(salt=7))
    env.setdefault("OMP_NUM_THREADS", "1")
    sim = NodeProcess(node_command(SIM_EXECUTABLE, SIM_NODE, {**SIM_PARAMETERS, "task": tasks[0]}), env,
                      log_dir / "sim.log")
    policy = NodeProcess(node_command(POLICY_EXECUTABLE, POLICY_NODE, {**POLICY_PARAMETERS,
                                                                       "model_dir": str(model_dir)}),
                         env, log_dir / "policy.log")
    rows: list[TaskRow] = []
    driver = None
    try:
        # The driver joins the same domain: set it in this process before its rclpy context starts.
        os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID",
                                               "FASTDDS_DEFAULT_PROFILES_FILE", "RMW_IMPLEMENTATION")})
        driver = DemoDriver()
        out(f"domain {env['ROS_DOMAIN_ID']}: started {SIM_EXECUTABLE} (pid {sim.proc.pid}) and "
            f"{POLICY_EXECUTABLE} (pid {policy.proc.pid}); logs in {log_dir}")
        listing = driver.list_adapters()
        if not listing.adapters:
            raise RuntimeError(f"the policy node has no adapters; its log:\n{policy.log()[-2000:]}")
        by_task = adapters_by_task(listing)
        missing = [t for t in tasks if t not in by_task]
        if missing:
            raise RuntimeError(f"no adapter for {missing}; the model has {sorted(by_task.items())}")
        for task in tasks:
            adapter = by_task[task]
            reply, switch_ms = driver.switch(adapter)
            if not reply.success:
                raise RuntimeError(f"switch to {adapter} refused: {reply.message}")
            outcomes = []
            for i in range(episodes):
                seed = seed_start + i

                def show(status: Any, task: str = task, i: int = i, adapter: str = adapter,
                         outcomes: list = outcomes) -> None:
                    wins = sum(o.success for o in outcomes)
                    sys.stdout.write(f"\r{task:<20} [{adapter}] episode {i + 1}/{episodes} step {status.step:>3}/"
                                     f"{status.max_steps} success so far {wins}/{len(outcomes)}   ")
                    sys.stdout.flush()

                outcomes.append(driver.run_episode(task, seed, episode_timeout, progress=show))
                o = outcomes[-1]
                sys.stdout.write(f"\r{task:<20} [{adapter}] episode {i + 1}/{episodes} seed {seed}: "
                                 f"{'SUCCESS' if o.success else 'fail   '} in {o.steps:>3} steps "
                                 f"({o.seconds:.1f} s)          \n")
            lat = [x for o in outcomes for x in o.latencies_ms]
            rows.append(TaskRow(task, adapter, len(outcomes), sum(o.success for o in outcomes),
                                _percentile(lat, 50), _percentile(lat, 95), switch_ms,
                                float(np.mean([o.steps for o in outcomes])),
                                sum(o.stale_action_steps for o in outcomes), outcomes=outcomes))
    finally:
        if driver is not None:
            driver.close()
        codes = {SIM_EXECUTABLE: sim.stop(), POLICY_EXECUTABLE: policy.stop()}
        out(f"stopped: {codes}")
    if compare_in_process:
        from vla_adapter_ros.core.evaluate import OnnxPolicySource, evaluate_task

        source = OnnxPolicySource(model_dir, providers=["cpu"])
        k = source.policy.manifest.actions.chunk_length
        for row in rows:
            source.policy.switch(row.adapter)
            res = evaluate_task(row.task, source, episodes=row.episodes, seed_start=seed_start, n_action_steps=k,
                                progress=False)
            row.in_process_successes = res.successes
        source.policy.close()
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vla_adapter_ros.ros.params import default_model_dir

    parser.add_argument("--model-dir", type=Path, default=default_model_dir(), help="exported model (default: bundled)")
    parser.add_argument("--task", action="append", default=None, help=f"task (repeat; default {list(DEFAULT_TASKS)})")
    parser.add_argument("--episodes", type=int, default=3, help="episodes per task (default 3)")
    parser.add_argument("--seed-start", type=int, default=SEED_START, help="first seed (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="1 episode per task")
    parser.add_argument("--compare-in-process", action="store_true",
                        help="also run vla-adapter eval's in-process loop on the same seeds (no ROS)")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="logs + results.json (default runs/demo)")
    parser.add_argument("--episode-timeout", type=float, default=300.0, help="seconds per episode at most")


def run(args: argparse.Namespace) -> int:
    episodes = 1 if args.quick else args.episodes
    if not (args.model_dir / "manifest.json").is_file():
        print(f"demo: no exported model at {args.model_dir} (manifest.json missing)", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    rows = run_session(args.model_dir, args.task or DEFAULT_TASKS, episodes, args.seed_start, args.out / "logs",
                    compare_in_process=args.compare_in_process, episode_timeout=args.episode_timeout)
    print()
    print(format_table(rows))
    print(f"demo finished in {time.monotonic() - t0:.0f} s")
    (args.out / "results.json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    print(f"wrote {args.out / 'results.json'}")
    return 0
