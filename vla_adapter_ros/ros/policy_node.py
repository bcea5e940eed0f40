"""``vla_adapter_node``: camera + instruction (+ proprio) in, ActionChunks out.

A managed (lifecycle) node: ``configure`` loads the exported model with onnxruntime,
``activate`` starts serving; with ``autostart`` (default) both happen at start-up so a
plain ``ros2 run vla_adapter_ros vla_adapter_node`` serves right away.

Thin glue by design: conversions live in :mod:`.conversions`, QoS in :mod:`.qos`,
parameters in :mod:`.params`, the latest-frame-wins inference thread in :mod:`.worker`,
counters in :mod:`.stats`, the adapter services' logic in :mod:`.adapter_commands`, and
inference in :class:`vla_adapter_ros.runtime.policy.OnnxPolicy`. Callbacks on the executor
only hand work over; inference never runs on an executor thread, so services and
subscriptions stay responsive while a frame is in flight.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float32MultiArray, String

from vla_adapter_interfaces.msg import ActionChunk
from vla_adapter_interfaces.srv import ListAdapters, LoadAdapter, SwitchAdapter
from vla_adapter_ros.processing import normalize_instruction
from vla_adapter_ros.ros import conversions, params, qos
from vla_adapter_ros.ros import stats as st
from vla_adapter_ros.ros.adapter_commands import AdapterCommands, quote_name
from vla_adapter_ros.ros.diagnostics import DiagnosticsReport
from vla_adapter_ros.ros.entry import run_node
from vla_adapter_ros.ros.worker import LatestFrameWorker
from vla_adapter_ros.runtime.errors import (
    InputError,
    NonFiniteOutputError,
    PolicyRuntimeError,
    ProviderError,
    ProviderRunError,
)
from vla_adapter_ros.runtime.policy import OnnxPolicy
from vla_adapter_ros.runtime.providers import ProviderConfig

try:  # Iron and newer
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

MAX_INSTRUCTION_CHARS = 2000
# How long a frame may wait on the worker for the first instruction / JointState (see _await_inputs).
INPUT_WAIT_S = 0.25
# Session rebuilds after run-time provider failures with no good inference in between.
MAX_PROVIDER_RECOVERIES = 3


@dataclass(frozen=True)
class Frame:
    """A camera message as received, with the monotonic receive time (for latency)."""

    msg: Image | CompressedImage
    received: float


class PolicyNode(LifecycleNode):
    def __init__(self, **kwargs) -> None:
        super().__init__(params.NODE_NAME, **kwargs)
        self.config = params.declare_parameters(self)  # ValueError on a bad value: main() reports it
        cfg = self.config
        self.stats = st.ServingStats(cfg.latency_window)
        self.problems = st.ProblemLog(self.get_logger().warning)
        self.policy: OnnxPolicy | None = None
        self.adapters: AdapterCommands | None = None
        self.lifecycle_state = "unconfigured"
        self.last_error = ""
        self._serving = False
        self._instruction: str | None = None
        self._proprio: np.ndarray | None = None
        self._proprio_names: list[str] = []
        self._action_names: list[str] = []
        self._dt = 0.0
        self._sequence = 0
        self._provider_failures = 0  # run-time provider failures since the last good inference
        self.fault = ""  # a lasting condition that stops serving, shown as ERROR on /diagnostics
        self._to_rgb = conversions.compressed_msg_to_rgb if cfg.use_compressed else conversions.image_msg_to_rgb
        if cfg.use_compressed:
            # OpenCV prints its own unthrottled "[ERROR] imdecode_ ..." line for some malformed payloads (BMP
            # headers); the node already reports each refusal, counted and throttled (kind compressed_decode).
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        self.worker = LatestFrameWorker(self.serve_frame, min_interval_s=_interval(cfg.max_rate),
                                        on_error=self.on_worker_error)

        # Publishers: actions only while active (lifecycle-managed); diagnostics always.
        self.action_pub = self.create_lifecycle_publisher(ActionChunk, cfg.action_topic, qos.actions_qos())
        self.first_action_pub = (
            self.create_lifecycle_publisher(Float32MultiArray, cfg.first_action_topic, qos.actions_qos())
            if cfg.publish_first_action_array else None
        )
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", qos.diagnostics_qos())
        self.diagnostics = DiagnosticsReport(f"{self.get_fully_qualified_name().lstrip('/')}: policy")

        # Every callback below only hands work over (inference runs on the worker thread), so one
        # executor thread serves them all: measured on this project's machines, rclpy's
        # MultiThreadedExecutor added about 2 ms per frame to the camera -> action path.
        self.create_subscription(
            CompressedImage if cfg.use_compressed else Image, cfg.image_topic, self.on_image,
            qos.camera_qos(cfg.camera_reliability, cfg.camera_depth),
        )
        self.create_subscription(
            String, cfg.instruction_topic, self.on_instruction, qos.instruction_qos(),
            event_callbacks=SubscriptionEventCallbacks(incompatible_qos=self.on_instruction_qos_mismatch),
        )
        if cfg.proprio_topic:
            self.create_subscription(JointState, cfg.proprio_topic, self.on_joint_state, qos.proprio_qos())
        self.create_service(SwitchAdapter, "~/switch_adapter", self.on_switch_adapter)
        self.create_service(ListAdapters, "~/list_adapters", self.on_list_adapters)
        self.create_service(LoadAdapter, "~/load_adapter", self.on_load_adapter)
        self.create_timer(cfg.diagnostics_period, self.on_diagnostics_timer)
        self.add_on_set_parameters_callback(self.on_set_parameters)
        self.worker.start()

    # --- lifecycle --------------------------------------------------------------
    def autostart(self) -> bool:
        """configure + activate (the ``autostart`` parameter); False when either failed."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        return self.trigger_activate() == TransitionCallbackReturn.SUCCESS

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        cfg = self.config
        model_dir = cfg.resolved_model_dir()
        try:
            chain = {"providers": tuple(cfg.provider_list)} if cfg.provider_list else {}
            providers = ProviderConfig(**chain, intra_op_threads=cfg.intra_op_threads)
            policy = OnnxPolicy.from_dir(model_dir, providers=providers, adapter=cfg.adapter or None)
        except (PolicyRuntimeError, ValueError, OSError) as exc:
            return self._configure_failed(f"cannot load the model from {str(model_dir)!r}: {exc}")
        manifest = policy.manifest
        names = cfg.joint_name_list or list(manifest.proprio_names)
        if len(names) != len(manifest.proprio_names):
            policy.close()
            return self._configure_failed(
                f"proprio_joint_names {names} has {len(names)} names; the model needs "
                f"{len(manifest.proprio_names)} ({list(manifest.proprio_names)})")
        if names and not cfg.proprio_topic:
            policy.close()
            return self._configure_failed(f"the model needs proprio {names} but proprio_topic is empty")
        self._proprio_names, self._proprio = names, None
        self._action_names, self._dt = list(manifest.actions.names), float(manifest.actions.dt)
        self.policy, self.adapters, self.last_error = policy, AdapterCommands(policy), ""
        self._provider_failures, self.fault = 0, ""
        self.lifecycle_state = "inactive"
        self.get_logger().info(
            f"loaded {manifest.name!r} from {model_dir} on {policy.provider} in {policy.load_seconds:.2f} s; "
            f"adapters {[a.name for a in policy.adapters]}, active {policy.active_adapter!r}")
        return super().on_configure(state)

    def _configure_failed(self, reason: str) -> TransitionCallbackReturn:
        self.last_error = reason
        self.get_logger().error(f"configure failed: {reason}")
        return TransitionCallbackReturn.FAILURE

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._serving, self.lifecycle_state = True, "active"
        self.get_logger().info(f"serving {self.config.image_topic} -> {self.config.action_topic}")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_serving()
        self.lifecycle_state = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.lifecycle_state = "finalized"
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS  # back to unconfigured; a configure may retry

    def _stop_serving(self) -> None:
        self._serving = False
        self.worker.clear()
        self.worker.wait_idle(timeout=10.0)

    def _release(self) -> None:
        self._stop_serving()
        policy, self.policy, self.adapters = self.policy, None, None
        if policy is not None:
            policy.close()
        self.lifecycle_state = "unconfigured"

    def close(self) -> None:
        """Stop the inference thread and release the model (process exit)."""
        self._release()
        self.worker.stop()

    # --- inputs (executor threads: hand over, never infer) ------------------------
    def on_image(self, msg: Image | CompressedImage) -> None:
        self.stats.incr(st.FRAMES_IN)
        if not self._serving:
            self.stats.incr(st.INACTIVE)
            return
        if self.worker.submit(Frame(msg, time.monotonic())) is not None:
            self.stats.incr(st.SKIPPED)  # an unserved older frame gave way to this one

    def on_instruction(self, msg: String) -> None:
        text = normalize_instruction(msg.data)
        if not text or len(text) > MAX_INSTRUCTION_CHARS:
            kind = "empty_instruction" if not text else "instruction_too_long"
            self.stats.refuse(kind)
            self.problems.report(kind, f"instruction {quote_name(msg.data)} refused; keeping "
                                       f"{self._instruction!r}")
            return
        self.stats.incr(st.INSTRUCTIONS_IN)
        if text != self._instruction:  # throttled: a publisher changing it at 100 Hz must not flood the log
            self.get_logger().info(f"instruction: {text!r}", throttle_duration_sec=1.0)
        self._instruction = text

    def on_instruction_qos_mismatch(self, event) -> None:
        self.problems.report(
            "instruction_qos", f"a publisher on {self.config.instruction_topic} has incompatible QoS "
            f"(policy {event.last_policy_kind}); publish instructions reliable + transient_local")

    def on_joint_state(self, msg: JointState) -> None:
        if not self._proprio_names:
            return  # the model takes no proprio
        try:
            self._proprio = conversions.joint_state_to_proprio(msg, self._proprio_names)
        except conversions.ConversionError as exc:
            self.stats.refuse(exc.kind)
            self.problems.report(exc.kind, str(exc))
            return
        self.stats.incr(st.PROPRIO_IN)

    # --- inference (worker thread) ----------------------------------------------
    def serve_frame(self, frame: Frame) -> None:
        policy, cfg = self.policy, self.config
        if policy is None or not self._serving:
            self.stats.incr(st.INACTIVE)
            return
        stamp_ns = conversions.stamp_to_ns(frame.msg.header.stamp)
        if self._too_old(stamp_ns, cfg.max_image_age, "before inference"):
            return
        instruction, proprio = self._await_inputs()
        if instruction is None:
            self.stats.incr(st.NO_INSTRUCTION)
            self.problems.report("no_instruction", f"no instruction on {cfg.instruction_topic} yet; frames are "
                                                   "not served until one arrives")
            return
        if self._proprio_names and proprio is None:
            self.stats.incr(st.NO_PROPRIO)
            self.problems.report("no_proprio", f"no valid JointState with {self._proprio_names} on "
                                               f"{cfg.proprio_topic} yet; frames are not served")
            return
        try:
            rgb = self._to_rgb(frame.msg)
        except conversions.ConversionError as exc:
            self.stats.refuse(exc.kind)
            self.problems.report(exc.kind, str(exc))
            return
        t0 = time.perf_counter()
        try:
            result = policy.infer(rgb, instruction, proprio)
        except InputError as exc:
            self._inference_failed("policy_input", exc, refused=True)
            return
        except NonFiniteOutputError as exc:
            self._inference_failed("non_finite_output", exc)
            return
        except ProviderRunError as exc:
            self._provider_failed(policy, exc)
            return
        except ProviderError as exc:
            self._inference_failed("provider", exc)
            return
        except PolicyRuntimeError as exc:
            self._inference_failed(type(exc).__name__, exc)
            return
        inference_s = time.perf_counter() - t0
        self._provider_failures, self.fault = 0, ""
        if self._too_old(stamp_ns, cfg.max_image_age, f"after {inference_s * 1e3:.1f} ms of inference"):
            return
        self._sequence += 1
        self.action_pub.publish(conversions.action_chunk_msg(
            frame.msg.header, result.actions, adapter=result.adapter or "", instruction=result.instruction,
            action_names=self._action_names, dt=self._dt, sequence=self._sequence,
            inference_time=inference_s, execution_provider=result.provider,
        ))
        if self.first_action_pub is not None:
            self.first_action_pub.publish(conversions.first_action_msg(result.actions, self._action_names))
        now_ns = self.get_clock().now().nanoseconds
        self.stats.record_output(time.monotonic() - frame.received, inference_s, (now_ns - stamp_ns) * 1e-9)

    def _too_old(self, stamp_ns: int, max_age: float, when: str) -> bool:
        if max_age <= 0:
            return False
        age = (self.get_clock().now().nanoseconds - stamp_ns) * 1e-9
        if age <= max_age:
            return False
        self.stats.incr(st.STALE)
        self.problems.report("stale_image", f"frame stamped {age:.3f} s ago {when} exceeds max_image_age "
                                            f"{max_age:g} s; not served (camera and node clocks in sync?)")
        return True

    def _inference_failed(self, kind: str, exc: Exception, refused: bool = False) -> None:
        (self.stats.refuse if refused else self.stats.error)(kind)
        self.last_error = f"{kind}: {exc}"
        self.problems.report(kind, f"inference failed, frame not served: {exc}")

    def _provider_failed(self, policy: OnnxPolicy, exc: ProviderRunError) -> None:
        """The execution provider failed mid-run: nothing is published for this frame; the
        sessions are rebuilt on the next provider of the chain (the same one, fresh, at the
        end of it). After MAX_PROVIDER_RECOVERIES rebuilds with no good inference between
        them the node stops rebuilding; frames keep failing (nothing published, ERROR on
        /diagnostics) until a run succeeds again or the node is reconfigured."""
        self._inference_failed("provider_run", exc)
        self._provider_failures += 1
        if self._provider_failures > MAX_PROVIDER_RECOVERIES:
            self.last_error = f"provider_run: {exc}"
            self.fault = (f"execution provider failing at run time; gave up rebuilding the sessions after "
                          f"{MAX_PROVIDER_RECOVERIES} attempts; frames are not served while it fails (reconfigure to rebuild)")
            return
        try:
            report = policy.fall_back(str(exc))
        except (PolicyRuntimeError, OSError) as err:
            self.last_error = f"provider_run: {exc}; rebuilding the sessions failed: {err}"
            self.get_logger().error(f"execution provider {exc.provider} failed at run time and the sessions could "
                                    f"not be rebuilt ({err}); frames are not served")
            return
        self.stats.incr(st.PROVIDER_FALLBACKS)
        self.get_logger().warning(f"execution provider {exc.provider} failed at run time ({exc}); sessions rebuilt on "
                                  f"{report.active} (recovery {self._provider_failures}/{MAX_PROVIDER_RECOVERIES})")

    def _await_inputs(self) -> tuple[str | None, np.ndarray | None]:
        """The current instruction and proprio, waiting briefly for the FIRST ones.

        Topics have no ordering between them: a camera frame can overtake the first
        instruction or JointState sent just before it. Rather than lose that frame, the
        worker (idle otherwise) waits up to INPUT_WAIT_S, giving way to any newer frame.
        """
        deadline = time.monotonic() + INPUT_WAIT_S
        while True:
            instruction, proprio = self._instruction, self._proprio
            complete = instruction is not None and (proprio is not None or not self._proprio_names)
            if complete or time.monotonic() >= deadline or self.worker.pending or not self._serving:
                return instruction, proprio
            time.sleep(0.002)

    def on_worker_error(self, exc: BaseException) -> None:
        self.stats.error("internal")
        self.last_error = f"internal: {exc!r}"
        self.problems.report("internal", f"unexpected error while serving a frame: {exc!r}")

    # --- services (never wait for inference: a switch is one reference swap) ------
    def on_switch_adapter(self, request: SwitchAdapter.Request, response: SwitchAdapter.Response):
        if self.adapters is None:
            response.success, response.message = False, f"node is {self.lifecycle_state}: configure it first"
            return response
        reply = self.adapters.switch(request.adapter)
        response.success, response.message = reply.success, reply.message
        response.active_adapter, response.previous_adapter = reply.active_adapter, reply.previous_adapter
        if reply.success and reply.active_adapter != reply.previous_adapter:
            self.stats.incr(st.SWITCHES)
        return response

    def on_list_adapters(self, request: ListAdapters.Request, response: ListAdapters.Response):
        if self.adapters is not None:
            active, specs = self.adapters.listing()
            response.active_adapter = active
            response.adapters = [conversions.adapter_info_msg(s) for s in specs]
        return response

    def on_load_adapter(self, request: LoadAdapter.Request, response: LoadAdapter.Response):
        if self.adapters is None:
            response.success, response.message = False, f"node is {self.lifecycle_state}: configure it first"
            return response
        reply = self.adapters.load(request.adapter, request.activate)
        response.success, response.message, response.active_adapter = reply.success, reply.message, reply.active_adapter
        if reply.success:  # one severity per logging call site (rclpy requires it)
            self.get_logger().info(f"load_adapter: {reply.message}")
        else:
            self.get_logger().warning(f"load_adapter: {reply.message}")
        return response

    # --- diagnostics and parameters ---------------------------------------------
    def on_diagnostics_timer(self) -> None:
        policy = self.policy
        self.diagnostics_pub.publish(self.diagnostics.build(
            stamp=self.get_clock().now().to_msg(), snapshot=self.stats.snapshot(),
            state=self.lifecycle_state, adapter=(policy.active_adapter or "") if policy else "",
            provider=policy.provider if policy else "", model=policy.manifest.name if policy else "",
            model_dir=str(self.config.resolved_model_dir()), instruction=self._instruction or "",
            last_error=self.last_error, config=self.config, fault=self.fault,
        ))

    def on_set_parameters(self, parameters) -> SetParametersResult:
        changes = {p.name: p.value for p in parameters}
        try:
            new = params.check_update(self.config, changes, unconfigured=self.lifecycle_state == "unconfigured")
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self.config = new
        self.worker.min_interval_s = _interval(new.max_rate)
        return SetParametersResult(successful=True)


def _interval(max_rate: float) -> float:
    return 1.0 / max_rate if max_rate > 0 else 0.0


def _autostart(node: PolicyNode) -> int | None:
    if node.config.autostart and not node.autostart():
        # A robot launch must see this (and may respawn); a lifecycle manager that wants the node
        # up while unconfigured starts it with autostart:=false and configures it itself.
        node.get_logger().fatal(f"autostart did not reach 'active' ({node.last_error}); exiting with status 1 "
                                "(with autostart:=false the node stays up unconfigured for a lifecycle manager)")
        return 1
    return None


def main(args: list[str] | None = None) -> int:
    return run_node(PolicyNode, "vla_adapter_node", args, start=_autostart)


if __name__ == "__main__":
    sys.exit(main())
