"""``vla_adapter_executor``: ActionChunks (camera rate) in, controller commands (100-500 Hz) out.

A managed (lifecycle) node, thin glue around :class:`vla_adapter_ros.execution.ChunkExecutor`:
``configure`` reads the robot contract (action dimensions, limits, outputs) and builds the
executor and its publishers; ``activate`` starts the control loop; with ``autostart`` (default)
both happen at start-up. Commands go out only while *enabled*: the node starts disabled unless
``start_enabled`` is true; ``~/enable`` (std_srvs/SetBool) enables or disables (one final hold /
zero-velocity command, then silence), ``~/stop`` (std_srvs/Trigger) holds position / zeroes
velocities at the next tick and ignores chunks until enabled again. A stale-policy watchdog and
the chunk age limit live in the core; every state change is logged and on /diagnostics.

The control loop is a dedicated thread with absolute deadlines (``control_loop: thread``,
default) or an rclpy timer on the node's executor (``timer``); docs/BENCHMARKS.md has the numbers
that chose the default. Chunk callbacks only convert the message and hand it to the core.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from std_srvs.srv import SetBool, Trigger

from vla_adapter_interfaces.msg import ActionChunk
from vla_adapter_ros.contract import ContractError, RobotContract
from vla_adapter_ros.execution import (
    DURATIONS,
    INTERPOLATIONS,
    STRATEGIES,
    ChunkExecutor,
    DeadlineLoop,
    Dims,
    ExecutionError,
    ExecutorSettings,
    PeriodStats,
)
from vla_adapter_ros.ros import conversions, qos
from vla_adapter_ros.ros.command_outputs import DELTA_OUTPUTS, TRAJECTORY_MODES, CommandOutputs, plan_outputs
from vla_adapter_ros.ros.diagnostics import ExecutorReport, serve_status
from vla_adapter_ros.ros.entry import run_node
from vla_adapter_ros.ros.lifecycle import ReleasingLifecycleNode
from vla_adapter_ros.ros.params import CONFIGURE, RUNTIME, NodeConfig, config_file, param
from vla_adapter_ros.serving.stats import ProblemLog

try:  # Jazzy and later tell a timer callback when it was due (rclpy.timer.TimerInfo); Humble does not
    from rclpy.timer import TimerInfo
except ImportError:  # pragma: no cover - Humble: missed ticks are then judged by the intervals
    TimerInfo = None

DEFAULT_CONTRACT = "robots/metaworld_sawyer.yaml"
CONTROL_LOOPS = ("thread", "timer")
FALLBACK_RATE = 100.0  # Hz when neither the parameter nor the contract gives one


@dataclass
class ExecutorConfig(NodeConfig):
    """Every parameter of the executor (names = field names)."""

    NODE_NAME: ClassVar[str] = "vla_adapter_executor"

    # --- what to execute (read by configure) ---
    contract: str = param("", f"robot contract YAML (actions, limits, outputs); empty = config/{DEFAULT_CONTRACT}",
                          CONFIGURE)
    control_rate: float = param(0.0, "Hz of the control loop; 0 = the contract's control_rate (100 Hz if none)",
                                CONFIGURE, min=0.0, max=1000.0)
    control_loop: str = param("thread", "thread: a dedicated thread with absolute deadlines; timer: an rclpy "
                                        "timer on the node's executor", CONFIGURE, choices=CONTROL_LOOPS)
    # SCHED_FIFO 50 like ros2_control's controller_manager: tried, and the node says so and carries on at
    # normal priority where the user has no rtprio. Only it kept 100 Hz under a loaded machine (BENCHMARKS.md).
    realtime_priority: int = param(50, "SCHED_FIFO priority of the control thread (the ROS executor thread one "
                                       "below); 0 = normal scheduling", CONFIGURE, min=0, max=99)
    strategy: str = param("blend", "how chunks combine: hold (newest replaces), temporal_ensemble (ACT's "
                                   "weighted vote), blend (cross-fade over blend_window)", CONFIGURE, choices=STRATEGIES)
    interpolation: str = param("cubic", "between chunk steps: step, linear, cubic (C1 Hermite), spline (C2); "
                                        "cubic/spline for joint positions only, linear at most elsewhere",
                               CONFIGURE, choices=INTERPOLATIONS)
    # --- outputs (the contract's outputs section says which and where) ---
    trajectory_mode: str = param("per_tick", "JointTrajectory outputs: per_tick (every tick, stamp 0, remaining "
                                             "horizon) or per_chunk (one per chunk, its own stamp)", CONFIGURE,
                                 choices=TRAJECTORY_MODES)
    trajectory_points: int = param(20, "most points of a per-tick JointTrajectory (the command + the chunk's "
                                       "remaining knots)", CONFIGURE, min=1, max=1000)
    delta_output: str = param("velocity", "Float64MultiArray value of delta kinds: velocity (per second) or "
                                          "increment (per control tick)", CONFIGURE, choices=DELTA_OUTPUTS)
    # --- chunk acceptance and combination (take effect at once) ---
    max_chunk_age: float = param(0.5, "s; chunks older than this (now - header.stamp) are ignored; 0 = no limit",
                                 RUNTIME, min=0.0, max=3600.0)
    max_clock_skew: float = param(0.05, "s a chunk stamp may lie in the future before it is refused", RUNTIME,
                                  min=0.0, max=3600.0)
    ensemble_m: float = param(0.01, "temporal_ensemble: weight exp(-m*i), i = 0 for the oldest chunk", RUNTIME,
                              min=-100.0, max=100.0)
    blend_window: float = param(0.1, "blend: seconds over which a new chunk cross-fades in", RUNTIME,
                                min=0.0, max=10.0)
    # --- safety ---
    start_enabled: bool = param(False, "send commands from start-up; false = only after ~/enable true")
    stale_policy_timeout: float = param(0.5, "s without any chunk before holding / ramping down; 0 = off",
                                        RUNTIME, min=0.0, max=3600.0)
    ramp_time: float = param(0.2, "s within which every velocity reaches zero when no fresh chunk is left; "
                                  "0 = hold at once", RUNTIME, min=0.0, max=60.0)
    chunk_end_grace: float = param(0.025, "s velocity kinds keep the newest chunk's last rate past its end before the "
                                        "ramp (zero within chunk_end_grace + ramp_time of the end); positions hold",
                                   RUNTIME, min=0.0, max=1.0)
    # --- topics ---
    chunk_topic: str = param("/vla/action", "vla_adapter_interfaces/ActionChunk input", topic=True)
    # --- lifecycle and diagnostics ---
    autostart: bool = param(True, "configure and activate at start-up; exit 1 if that fails. False: a "
                                  "lifecycle manager configures it")
    diagnostics_period: float = param(1.0, "seconds between /diagnostics messages", min=0.1, max=60.0)
    timing_window: int = param(1000, "ticks in the period and command-age percentile windows", min=10,
                               max=10_000_000)

    def contract_path(self) -> Path:
        return Path(self.contract).expanduser() if self.contract else config_file(DEFAULT_CONTRACT)

    def settings(self, control_rate: float) -> ExecutorSettings:
        return ExecutorSettings(control_rate=control_rate, strategy=self.strategy, interpolation=self.interpolation,
                                max_chunk_age=self.max_chunk_age, max_clock_skew=self.max_clock_skew,
                                ensemble_m=self.ensemble_m, blend_window=self.blend_window,
                                stale_policy_timeout=self.stale_policy_timeout, ramp_time=self.ramp_time,
                                chunk_end_grace=self.chunk_end_grace)


RUNTIME_SETTINGS = (*DURATIONS, "ensemble_m")


class ExecutorNode(ReleasingLifecycleNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(ExecutorConfig.NODE_NAME, **kwargs)
        self.config = cfg = ExecutorConfig.declare(self)  # ValueError on a bad value: main() reports it
        self.core: ChunkExecutor | None = None
        self.outputs: CommandOutputs | None = None
        self.contract: RobotContract | None = None
        self.timing: PeriodStats | None = None
        self.rate = 0.0
        self.last_error = ""
        self._loop: DeadlineLoop | None = None
        self._timer = None
        self._enabled_once = False
        self._spin_thread_id = threading.get_native_id()  # run_node spins the executor on the constructing thread
        self._lock = threading.Lock()
        self.node_counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.problems = ProblemLog(self.get_logger().warning)
        self.report = ExecutorReport(f"{self.get_fully_qualified_name().lstrip('/')}: executor")
        self.create_subscription(ActionChunk, cfg.chunk_topic, self.on_chunk, qos.actions_qos())
        self.create_service(SetBool, "~/enable", self.on_enable)
        self.create_service(Trigger, "~/stop", self.on_stop)
        serve_status(self, cfg.diagnostics_period, self.status)
        self.add_on_set_parameters_callback(self.on_set_parameters)

    # --- lifecycle --------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        cfg = self.config
        path = cfg.contract_path()
        try:
            contract = RobotContract.load(path)
            dims = Dims.from_actions(contract.actions)
            rate = cfg.control_rate or contract.control_rate or FALLBACK_RATE
            settings = cfg.settings(rate)
            plan = plan_outputs(contract.outputs, dims, delta_output=cfg.delta_output, control_rate=rate,
                                source=str(path))
        except (ContractError, ExecutionError) as exc:
            self.last_error = str(exc)
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        log = self.get_logger()
        self.core = ChunkExecutor(dims, settings, info=log.info, warning=log.warning, age_window=cfg.timing_window)
        self.outputs = CommandOutputs(self, plan, cfg.trajectory_mode)
        self.contract, self.rate, self.last_error = contract, rate, ""
        self.timing = PeriodStats(1.0 / rate, cfg.timing_window)
        self.lifecycle_state = "inactive"
        for out in plan:
            log.info(f"output {out.spec.type} on {out.spec.topic}: {list(out.names)}"
                     + "".join(f"; {note}" for note in out.notes))
        log.info(f"contract {contract.robot!r} from {path}: {list(dims.names)} ({', '.join(dims.kinds)}); "
                 f"{cfg.strategy} + {cfg.interpolation} at {rate:g} Hz ({cfg.control_loop})")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # lifecycle publishers on first, then the loop
        self.lifecycle_state = "active"
        self.timing.restart()
        self.timing.gc.install()  # a missed tick is checked against the collections (diagnostics: missed_gc)
        if self.config.control_loop == "thread":
            # The loop thread waits for the GIL when it wakes; CPython makes the holder (the ROS executor
            # thread) let go only every switch interval, 5 ms by default: half a 100 Hz period. A twentieth
            # of the period bounds that wait (docs/BENCHMARKS.md measured both).
            sys.setswitchinterval(min(sys.getswitchinterval(), 0.05 / self.rate))
            if self.config.realtime_priority > 1:
                self._raise_spin_thread(self.config.realtime_priority - 1)
            self._loop = DeadlineLoop(1.0 / self.rate, self.tick, name="executor_control", on_error=self.on_tick_error,
                                      priority=self.config.realtime_priority, on_priority=self.get_logger().info)
            self._loop.start()
        else:
            self._timer = self.create_timer(1.0 / self.rate, self._timer_callback())
        if self.config.start_enabled and not self._enabled_once:
            self._enabled_once = True
            self.get_logger().info(f"start_enabled: {self.core.enable(True, self._now())}")
        return result

    def _raise_spin_thread(self, priority: int) -> None:
        """The ROS executor thread one step below the control thread: when it holds the GIL the control
        thread waits for it, so other processes must not preempt it then (a priority inversion that
        cost missed ticks under load, docs/BENCHMARKS.md)."""
        try:
            os.sched_setscheduler(self._spin_thread_id, os.SCHED_FIFO, os.sched_param(priority))
        except (AttributeError, OSError) as exc:
            self.get_logger().info(f"ROS executor thread stays at normal priority ({exc})")

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_loop()
        self.core.enable(False, self._now())
        self.tick()  # the final hold / zero velocity while the publishers are still on
        self.lifecycle_state = "inactive"
        return super().on_deactivate(state)

    def _stop_loop(self) -> None:
        if self.timing is not None:
            self.timing.gc.remove()
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.stop()
        timer, self._timer = self._timer, None
        if timer is not None:
            self.destroy_timer(timer)

    def _release(self) -> None:
        self._stop_loop()
        outputs, self.outputs, self.core = self.outputs, None, None
        if outputs is not None:
            outputs.close()
        self.lifecycle_state = "unconfigured"

    def close(self) -> None:
        """Process exit: stop the loop (a final hold goes out if commands were flowing)."""
        if self.lifecycle_state == "active":
            self._stop_loop()
            self.core.enable(False, self._now())
            try:
                self.tick()
            except RuntimeError as exc:  # rclpy's RCLError: the context is already shut down
                self.get_logger().warning(f"no final hold sent at exit: {exc}")
        self._release()

    # --- control ticks (the loop thread, or the timer) ----------------------------
    def _now(self) -> int:
        return self.get_clock().now().nanoseconds

    def tick(self, deadline: float | None = None) -> None:
        """One control tick; ``deadline``: when it was due (monotonic clock), if the loop knows."""
        core, outputs = self.core, self.outputs
        if core is None or outputs is None:
            return
        self.timing.record(deadline=deadline)
        try:
            points = self.config.trajectory_points if outputs.wants_preview else 0
            cmd = core.command(self._now(), preview_points=points)
            if cmd.publish:
                outputs.publish(cmd)
        finally:
            self.timing.done()

    def _timer_callback(self) -> Any:
        if TimerInfo is None:
            return self.on_timer

        def on_timer(info: Any) -> None:
            late_s = (self._now() - info.expected_call_time.nanoseconds) * 1e-9  # on the timer's clock
            self.on_timer(time.monotonic() - late_s)

        # rclpy passes the TimerInfo to a parameter annotated with that class (it compares the annotation
        # objects; this module's annotations are strings, from __future__ import annotations)
        on_timer.__annotations__ = {"info": TimerInfo, "return": None}
        return on_timer

    def on_timer(self, deadline: float | None = None) -> None:
        try:
            self.tick(deadline)
        except Exception as exc:  # noqa: BLE001 - one failing tick must not end the timer; counted and logged
            self.on_tick_error(exc)

    def on_tick_error(self, exc: BaseException) -> None:
        with self._lock:
            self.errors["tick"] += 1
        self.last_error = f"control tick: {exc!r}"
        self.problems.report("tick", f"a control tick failed: {exc!r}")

    # --- chunks (executor thread: convert and hand over) ----------------------------
    def on_chunk(self, msg: ActionChunk) -> None:
        core = self.core
        if core is None or self.lifecycle_state != "active":
            with self._lock:
                self.node_counts["chunks_while_inactive"] += 1
            return
        now = self._now()
        try:
            actions = conversions.action_chunk_to_array(msg)
        except conversions.ConversionError as exc:
            verdict = core.refuse("action_shape", str(exc))
        else:
            verdict = core.accept(conversions.stamp_to_ns(msg.header.stamp), float(msg.dt), list(msg.action_names),
                                  actions, msg.adapter, now)
        if verdict.note:
            self.get_logger().info(verdict.note)
        if not verdict.accepted and verdict.kind != "not_enabled":
            self.problems.report(verdict.kind, verdict.reason)
        if verdict.accepted and self.outputs is not None and self.outputs.per_chunk:
            low, high = core.dims.command_bounds(verdict.chunk.dt)
            self.outputs.publish_chunk(verdict.chunk, low, high, self.config.interpolation in ("cubic", "spline"))

    # --- safety services ------------------------------------------------------------
    def on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        core = self.core
        if core is None or self.lifecycle_state != "active":
            response.success, response.message = False, f"node is {self.lifecycle_state}: activate it first"
            return response
        response.success, response.message = True, core.enable(bool(request.data), self._now())
        self.get_logger().info(f"~/enable {bool(request.data)}: {response.message}")
        return response

    def on_stop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        core = self.core
        if core is None:
            response.success, response.message = False, f"node is {self.lifecycle_state}: nothing to stop"
            return response
        response.success, response.message = True, core.stop(self._now())
        self.get_logger().warning(f"~/stop: {response.message}")
        return response

    # --- diagnostics and parameters -----------------------------------------------
    def status(self, new_period: bool):
        core, timing, contract = self.core, self.timing, self.contract
        timing_snap = {**timing.snapshot(), "rate_hz": self.rate} if timing is not None and core is not None else None
        with self._lock:
            node_counts, errors = dict(self.node_counts), dict(self.errors)
        return self.report.build(
            core=core.snapshot() if core is not None else None, timing=timing_snap, node_counts=node_counts,
            errors=errors, lifecycle_state=self.lifecycle_state, contract=str(self.config.contract_path()),
            robot=contract.robot if contract is not None else "", last_error=self.last_error, config=self.config,
            new_period=new_period)

    def on_set_parameters(self, parameters) -> SetParametersResult:
        changes = {p.name: p.value for p in parameters}
        try:
            new = self.config.update(changes, unconfigured=self.lifecycle_state == "unconfigured")
            if self.core is not None:
                self.core.update(**{k: getattr(new, k) for k in RUNTIME_SETTINGS if k in changes})
        except ValueError as exc:  # ExecutionError is a ValueError
            return SetParametersResult(successful=False, reason=str(exc))
        self.config = new
        return SetParametersResult(successful=True)


def _autostart(node: ExecutorNode) -> int | None:
    if not node.config.autostart or node.autostart():
        return None
    node.get_logger().fatal(f"autostart did not reach 'active' ({node.last_error}); exiting with status 1")
    return 1


def main(args: list[str] | None = None) -> int:
    return run_node(ExecutorNode, "vla_adapter_executor", args, start=_autostart)


if __name__ == "__main__":
    sys.exit(main())
