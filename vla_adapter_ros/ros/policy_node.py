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

import cv2
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float32MultiArray, String

from vla_adapter_interfaces.msg import ActionChunk
from vla_adapter_interfaces.srv import GetStatus, ListAdapters, LoadAdapter, SwitchAdapter
from vla_adapter_ros.processing import normalize_instruction
from vla_adapter_ros.ros import conversions, qos
from vla_adapter_ros.ros.adapter_commands import AdapterCommands, quote_name
from vla_adapter_ros.ros.diagnostics import DiagnosticsReport
from vla_adapter_ros.ros.entry import run_node
from vla_adapter_ros.ros.params import PolicyNodeConfig
from vla_adapter_ros.runtime.errors import PolicyRuntimeError
from vla_adapter_ros.runtime.policy import OnnxPolicy
from vla_adapter_ros.runtime.providers import ProviderConfig
from vla_adapter_ros.serving import stats as st
from vla_adapter_ros.serving.frame_server import Frame, FrameServer, Served
from vla_adapter_ros.serving.inputs import InputBuffer
from vla_adapter_ros.serving.worker import LatestFrameWorker

try:  # Iron and newer
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

MAX_INSTRUCTION_CHARS = 2000


class PolicyNode(LifecycleNode):
    def __init__(self, **kwargs) -> None:
        super().__init__(PolicyNodeConfig.NODE_NAME, **kwargs)
        self.config = PolicyNodeConfig.declare(self)  # ValueError on a bad value: main() reports it
        cfg = self.config
        self.stats = st.ServingStats(cfg.latency_window)
        self.problems = st.ProblemLog(self.get_logger().warning)
        self.policy: OnnxPolicy | None = None
        self.adapters: AdapterCommands | None = None
        self.server: FrameServer | None = None
        self.inputs = InputBuffer(needs_state=False, max_skew_s=cfg.max_state_skew)
        self.lifecycle_state = "unconfigured"
        self.last_error = ""
        self._serving = False
        self._proprio_names: list[str] = []
        self._action_names: list[str] = []
        self._dt = 0.0
        self._sequence = 0
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
        self.create_service(GetStatus, "~/get_status", self.on_get_status)
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
            providers = ProviderConfig.from_params(
                providers=cfg.providers, device_id=cfg.device_id, fp16=cfg.fp16,
                engine_cache_dir=cfg.engine_cache_dir, serving=cfg.serving, max_batch=cfg.trt_max_batch,
                intra_op_threads=cfg.intra_op_threads)
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
        self._proprio_names = names
        self._action_names, self._dt = list(manifest.actions.names), float(manifest.actions.dt)
        instruction = self.inputs.instruction  # kept across reconfigures (transient local sent it once)
        self.inputs = InputBuffer(needs_state=bool(names), max_skew_s=cfg.max_state_skew)
        if instruction is not None:
            self.inputs.set_instruction(instruction)
        self.server = FrameServer(
            policy, self.inputs, self.stats, self.problems, now_ns=lambda: self.get_clock().now().nanoseconds,
            max_image_age=lambda: self.config.max_image_age, serving=lambda: self._serving,
            newer_frame_waiting=lambda: self.worker.pending, log_warning=self.get_logger().warning,
            log_error=self.get_logger().error,
            topics={"instruction": cfg.instruction_topic, "proprio": cfg.proprio_topic})
        self.policy, self.adapters, self.last_error = policy, AdapterCommands(policy), ""
        self.lifecycle_state = "inactive"
        self.get_logger().info(
            f"loaded {manifest.name!r} from {model_dir} on {policy.provider_report.summary()} ({policy.serving} "
            f"serving, language encoder on {policy.language_provider}) in {policy.load_seconds:.2f} s; "
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
        self.inputs.wake()  # a frame waiting for its inputs gives up now
        self.worker.wait_idle(timeout=10.0)

    def _release(self) -> None:
        self._stop_serving()
        policy, self.policy, self.adapters, self.server = self.policy, None, None, None
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
        frame = Frame(conversions.stamp_to_ns(msg.header.stamp), time.monotonic(),
                      decode=lambda: self._to_rgb(msg))
        if self.worker.submit((frame, msg.header)) is not None:
            self.stats.incr(st.SKIPPED)  # an unserved older frame gave way to this one
        self.inputs.wake()  # a frame waiting for its inputs gives way to this newer one

    def on_instruction(self, msg: String) -> None:
        text = normalize_instruction(msg.data)
        if not text or len(text) > MAX_INSTRUCTION_CHARS:
            kind = "empty_instruction" if not text else "instruction_too_long"
            self.stats.refuse(kind)
            self.problems.report(kind, f"instruction {quote_name(msg.data)} refused; keeping "
                                       f"{self.inputs.instruction!r}")
            return
        self.stats.incr(st.INSTRUCTIONS_IN)
        if text != self.inputs.instruction:  # throttled: a publisher changing it at 100 Hz must not flood the log
            self.get_logger().info(f"instruction: {text!r}", throttle_duration_sec=1.0)
        self.inputs.set_instruction(text)

    def on_instruction_qos_mismatch(self, event) -> None:
        self.problems.report(
            "instruction_qos", f"a publisher on {self.config.instruction_topic} has incompatible QoS "
            f"(policy {event.last_policy_kind}); publish instructions reliable + transient_local")

    def on_joint_state(self, msg: JointState) -> None:
        if not self._proprio_names:
            return  # the model takes no proprio
        try:
            values = conversions.joint_state_to_proprio(msg, self._proprio_names)
        except conversions.ConversionError as exc:
            self.stats.refuse(exc.kind)
            self.problems.report(exc.kind, str(exc))
            return
        stamp = conversions.stamp_to_ns(msg.header.stamp)  # unset (0): stamped on arrival
        self.inputs.add_state(stamp or self.get_clock().now().nanoseconds, values)
        self.stats.incr(st.PROPRIO_IN)

    # --- inference (worker thread) ----------------------------------------------
    def serve_frame(self, item: tuple[Frame, object]) -> None:
        frame, header = item
        server = self.server
        if server is None:
            self.stats.incr(st.INACTIVE)
            return
        served = server.serve(frame)
        if served is not None:
            self.publish(served, header)

    def publish(self, served: Served, header: object) -> None:
        result = served.result
        self._sequence += 1
        self.action_pub.publish(conversions.action_chunk_msg(
            header, result.actions, adapter=result.adapter or "", instruction=result.instruction,
            action_names=self._action_names, dt=self._dt, sequence=self._sequence,
            inference_time=served.inference_s, execution_provider=result.provider,
        ))
        if self.first_action_pub is not None:
            self.first_action_pub.publish(conversions.first_action_msg(result.actions, self._action_names))
        now_ns = self.get_clock().now().nanoseconds
        self.stats.record_output(time.monotonic() - served.frame.received, served.inference_s,
                                 (now_ns - served.frame.stamp_ns) * 1e-9)

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

    def on_get_status(self, request: GetStatus.Request, response: GetStatus.Response):
        response.status = self.status(new_period=False)
        return response

    # --- diagnostics and parameters ---------------------------------------------
    def status(self, new_period: bool):
        policy, server = self.policy, self.server
        return self.diagnostics.build(
            snapshot=self.stats.snapshot(new_period=new_period), state=self.lifecycle_state,
            adapter=(policy.active_adapter or "") if policy else "", provider=policy.provider if policy else "",
            model=policy.manifest.name if policy else "", model_dir=str(self.config.resolved_model_dir()),
            instruction=self.inputs.instruction or "",
            last_error=(server.last_error if server and server.last_error else self.last_error),
            config=self.config, fault=server.fault if server else "", new_period=new_period,
            runtime={"serving": policy.serving, "language_provider": policy.language_provider,
                     "provider_report": policy.provider_report.summary()} if policy else None,
        )

    def on_diagnostics_timer(self) -> None:
        self.diagnostics_pub.publish(conversions.diagnostic_array(self.get_clock().now().to_msg(),
                                                                  self.status(new_period=True)))

    def on_set_parameters(self, parameters) -> SetParametersResult:
        changes = {p.name: p.value for p in parameters}
        try:
            new = self.config.update(changes, unconfigured=self.lifecycle_state == "unconfigured")
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
