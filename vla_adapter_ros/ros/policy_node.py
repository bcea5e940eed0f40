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
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float32MultiArray, Float64MultiArray, String

from vla_adapter_interfaces.msg import ActionChunk
from vla_adapter_interfaces.srv import GetStatus, ListAdapters, LoadAdapter, SwitchAdapter
from vla_adapter_ros import decoding
from vla_adapter_ros.contract import ContractError, RobotContract
from vla_adapter_ros.pairing import FrameSetPairer
from vla_adapter_ros.processing import normalize_instruction
from vla_adapter_ros.ros import conversions, qos
from vla_adapter_ros.ros.adapter_commands import AdapterCommands, quote_name
from vla_adapter_ros.ros.diagnostics import DiagnosticsReport
from vla_adapter_ros.ros.entry import run_node
from vla_adapter_ros.ros.lifecycle import ReleasingLifecycleNode
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
CAMERA_TYPES = {"Image": Image, "CompressedImage": CompressedImage}
STATE_TYPES = {"JointState": JointState, "Float64MultiArray": Float64MultiArray,
               "Float32MultiArray": Float32MultiArray}
# A camera that sent nothing for this many diagnostics periods while serving turns the status WARN.
SILENT_PERIODS = 2.0


class PolicyNode(ReleasingLifecycleNode):
    def __init__(self, **kwargs) -> None:
        super().__init__(PolicyNodeConfig.NODE_NAME, **kwargs)
        self.config = PolicyNodeConfig.declare(self)  # ValueError on a bad value: main() reports it
        cfg = self.config
        self.stats = st.ServingStats(cfg.latency_window)
        self.problems = st.ProblemLog(self.get_logger().warning)
        self.policy: OnnxPolicy | None = None
        self.adapters: AdapterCommands | None = None
        self.server: FrameServer | None = None
        self.inputs = InputBuffer(needs_state=False, max_skew_s=0.0)
        self.robot: RobotContract | None = None
        self.pairer: FrameSetPairer | None = None
        self._input_subs: list = []  # camera and state subscriptions, made by configure for its robot
        self._last_frame: dict[str, float] = {}  # camera -> monotonic time of its last frame
        self._unpaired = 0
        self.lifecycle_state = "unconfigured"
        self.last_error = ""
        self._serving = False
        self._action_names: list[str] = []
        self._dt = 0.0
        self._sequence = 0
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

        # Every callback only hands work over (inference runs on the worker thread), so one executor
        # thread serves them all: measured on this project's machines, rclpy's MultiThreadedExecutor
        # added about 2 ms per frame to the camera -> action path. Camera and state subscriptions
        # follow the robot contract, so configure makes them (_subscribe).
        self.create_subscription(
            String, cfg.instruction_topic, self.on_instruction, qos.instruction_qos(),
            event_callbacks=SubscriptionEventCallbacks(incompatible_qos=self.on_instruction_qos_mismatch),
        )
        self.create_service(SwitchAdapter, "~/switch_adapter", self.on_switch_adapter)
        self.create_service(ListAdapters, "~/list_adapters", self.on_list_adapters)
        self.create_service(LoadAdapter, "~/load_adapter", self.on_load_adapter)
        self.create_service(GetStatus, "~/get_status", self.on_get_status)
        self.create_timer(cfg.diagnostics_period, self.on_diagnostics_timer)
        self.add_on_set_parameters_callback(self.on_set_parameters)
        self.worker.start()

    # --- lifecycle (cleanup, shutdown, error and autostart: ReleasingLifecycleNode) -------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        cfg = self.config
        model_dir = cfg.resolved_model_dir()
        try:
            providers = ProviderConfig.from_params(
                providers=cfg.providers, device_id=cfg.device_id, fp16=cfg.fp16, tf32=cfg.tf32,
                engine_cache_dir=cfg.engine_cache_dir, serving=cfg.serving, max_batch=cfg.trt_max_batch,
                intra_op_threads=cfg.intra_op_threads)
            policy = OnnxPolicy.from_dir(model_dir, providers=providers, adapter=cfg.adapter or None)
        except (PolicyRuntimeError, ValueError, OSError) as exc:
            return self._configure_failed(f"cannot load the model from {str(model_dir)!r}: {exc}")
        manifest = policy.manifest
        problem = self._check_robot(manifest)
        if problem:
            policy.close()
            return self._configure_failed(problem)
        robot = self.robot
        self._action_names, self._dt = list(manifest.actions.names), float(manifest.actions.dt)
        instruction = self.inputs.instruction  # kept across reconfigures (transient local sent it once)
        self.inputs = InputBuffer(needs_state=robot.state is not None,
                                  max_skew_s=robot.state.max_skew if robot.state is not None else 0.0)
        if instruction is not None:
            self.inputs.set_instruction(instruction)
        self._subscribe(robot)
        self.server = FrameServer(
            policy, self.inputs, self.stats, self.problems, now_ns=lambda: self.get_clock().now().nanoseconds,
            max_image_age=lambda: self.config.max_image_age, serving=lambda: self._serving,
            newer_frame_waiting=lambda: self.worker.pending, log_warning=self.get_logger().warning,
            log_error=self.get_logger().error,
            topics={"instruction": cfg.instruction_topic, "proprio": robot.state.topic if robot.state else ""})
        self.policy, self.adapters, self.last_error = policy, AdapterCommands(policy), ""
        self.lifecycle_state = "inactive"
        self.get_logger().info(
            f"loaded {manifest.name!r} from {model_dir} on {policy.provider_report.summary()} ({policy.serving} "
            f"serving, language encoder on {policy.language_provider}) in {policy.load_seconds:.2f} s; "
            f"adapters {[a.name for a in policy.adapters]}, active {policy.active_adapter!r}")
        return super().on_configure(state)

    def _check_robot(self, manifest) -> str:
        """Settle the robot contract (self.robot) against the model's; the reason when they cannot work together."""
        try:
            robot = self.config.robot_contract(manifest.contract)
        except (ContractError, ValueError) as exc:
            return f"robot contract: {exc}"
        if self.config.contract:
            mismatches = manifest.contract.mismatches(robot)
            if mismatches:
                return (f"the model's contract ({manifest.contract.robot!r}) and the robot's "
                        f"({self.config.contract!r}) disagree: " + "; ".join(mismatches))
        model_state = manifest.proprio_names
        robot_state = robot.state.fields if robot.state is not None else ()
        if len(robot_state) != len(model_state):
            return (f"the robot's state has {len(robot_state)} entries ({[f.name for f in robot_state]}); the model "
                    f"needs {len(model_state)} ({list(model_state)})")
        self.robot = robot
        return ""

    def _subscribe(self, robot: RobotContract) -> None:
        """A subscription per camera of the robot, paired into frame sets, and one for its state."""
        self.pairer = FrameSetPairer(robot.camera_names, robot.max_camera_skew, robot.reference_camera)
        self._last_frame, self._unpaired = {}, 0
        for cam in robot.cameras:
            if cam.type == "CompressedImage":
                # OpenCV prints its own unthrottled "[ERROR] imdecode_ ..." line for some malformed payloads;
                # the node already reports each refusal, counted and throttled (kind compressed_decode).
                cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
            self._input_subs.append(self.create_subscription(
                CAMERA_TYPES[cam.type], cam.topic, lambda msg, c=cam.name: self.on_image(c, msg),
                qos.camera_qos(cam.reliability, cam.depth)))
        if robot.state is not None:
            self._input_subs.append(self.create_subscription(
                STATE_TYPES[robot.state.type], robot.state.topic, self.on_state, qos.proprio_qos()))

    def _unsubscribe(self) -> None:
        for sub in self._input_subs:
            self.destroy_subscription(sub)
        self._input_subs, self.pairer = [], None

    def _configure_failed(self, reason: str) -> TransitionCallbackReturn:
        self.last_error = reason
        self.get_logger().error(f"configure failed: {reason}")
        return TransitionCallbackReturn.FAILURE

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._serving, self.lifecycle_state = True, "active"
        topics = ", ".join(f"{c.name}: {c.topic}" for c in self.robot.cameras)
        self.get_logger().info(f"serving {topics} -> {self.config.action_topic}")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_serving()
        self.lifecycle_state = "inactive"
        return super().on_deactivate(state)

    def _stop_serving(self) -> None:
        self._serving = False
        self.worker.clear()
        self.inputs.wake()  # a frame waiting for its inputs gives up now
        self.worker.wait_idle(timeout=10.0)

    def _release(self) -> None:
        self._stop_serving()
        self._unsubscribe()
        policy, self.policy, self.adapters, self.server = self.policy, None, None, None
        if policy is not None:
            policy.close()
        self.lifecycle_state = "unconfigured"

    def close(self) -> None:
        """Stop the inference thread and release the model (process exit)."""
        self._release()
        self.worker.stop()

    # --- inputs (executor threads: hand over, never infer) ------------------------
    def on_image(self, camera: str, msg: Image | CompressedImage) -> None:
        arrived = time.perf_counter()
        self.stats.incr(st.FRAMES_IN)
        self._last_frame[camera] = time.monotonic()
        pairer = self.pairer
        if not self._serving or pairer is None:
            self.stats.incr(st.INACTIVE)
            return
        frame_set = pairer.add(camera, conversions.stamp_to_ns(msg.header.stamp), msg)
        if pairer.unpaired != self._unpaired:  # frames that will never be part of a set
            self.stats.incr(st.UNPAIRED, pairer.unpaired - self._unpaired)
            self._unpaired = pairer.unpaired
        if frame_set is None:
            return
        types = {c.name: c.type for c in self.robot.cameras}
        frame = Frame(frame_set.stamp_ns, time.monotonic(), decode=lambda: {
            c: decoding.camera_msg_to_rgb(m, types[c]) for c, m in frame_set.items.items()})
        header = frame_set.items[self.robot.reference_camera].header
        if self.worker.submit((frame, header)) is not None:
            self.stats.incr(st.SKIPPED)  # an unserved older frame set gave way to this one
        self.stats.record_pairing(time.perf_counter() - arrived)  # last frame in -> set handed to inference
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

    def on_state(self, msg: JointState | Float64MultiArray | Float32MultiArray) -> None:
        state = self.robot.state if self.robot is not None else None
        if state is None:
            return
        try:
            values = decoding.state_vector(msg, state.type, state.fields)
        except decoding.DecodeError as exc:
            self.stats.refuse(exc.kind)
            self.problems.report(exc.kind, str(exc))
            return
        header = getattr(msg, "header", None)  # MultiArrays carry none: stamped on arrival, like an unset stamp
        stamp = conversions.stamp_to_ns(header.stamp) if header is not None else 0
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
            **self._camera_report(),
        )

    def _camera_report(self) -> dict:
        """Per camera: its topic and how long ago its last frame came; the cameras silent while serving."""
        robot, now = self.robot, time.monotonic()
        if robot is None:
            return {}
        cameras, silent = {}, []
        for cam in robot.cameras:
            last = self._last_frame.get(cam.name)
            age = f"{now - last:.2f} s ago" if last is not None else "never"
            cameras[cam.name] = f"{cam.topic} ({cam.type}), last frame {age}"
            if self._serving and (last is None or now - last > SILENT_PERIODS * self.config.diagnostics_period):
                silent.append(cam.name)
        # one silent camera among others that send is the warning; all silent is "no camera frames"
        partial = silent if len(silent) < len(robot.cameras) else []
        return {"cameras": cameras, "silent": partial}

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
