"""Fixtures for the ROS integration tests: a tiny exported model, policy-node processes, a driver.

Everything is real: the policy node runs as its console script in its own process,
the test drives it through rclpy on loopback DDS (the domain and the Fast DDS profile
pinned by tests/conftest.py), and the model is exported with the project's exporter and
served by onnxruntime.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vla_adapter_ros.ros.clients import RESEND_S

NODE_EXE = Path(sys.executable).parent / "vla_adapter_node"
_instances = itertools.count()


# --- the model -------------------------------------------------------------------
ADAPTERS = ("pick", "place", "open")


def export_tiny_model(root: Path, adapters: tuple[str, ...] = ADAPTERS) -> Path:
    """Random tiny backbone + distinct random adapters, exported with the project's exporter."""
    from vla_adapter_ros.core.config import AdapterConfig, ModelConfig
    from vla_adapter_ros.core.export import export_model, make_random_checkpoint

    config = ModelConfig(image_size=32, patch_size=8, d_model=32, vision_layers=1, fusion_layers=1, n_heads=2,
                         mlp_ratio=2, chunk_length=3)
    checkpoint, adapter_dirs = make_random_checkpoint(
        root / "src", config, {n: AdapterConfig(rank=4, task=f"test/{n}") for n in adapters}, seed=0)
    return export_model(checkpoint, adapter_dirs, root / "model", log=lambda _msg: None).out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny model with three adapters (pick = default, place, open), exported once per session."""
    return export_tiny_model(tmp_path_factory.mktemp("tiny_model"))


# --- policy node processes -------------------------------------------------------
class PolicyProcess:
    """A running ``vla_adapter_node`` with its own node name and topics (so tests never cross)."""

    def __init__(self, env: dict[str, str], model_dir: Path | None, log_dir: Path, **overrides: Any) -> None:
        i = next(_instances)
        self.name = f"vla_adapter_t{os.getpid()}_{i}"
        prefix = f"/t{i}"
        self.topics = {
            "camera_topic": f"{prefix}/camera/image_raw", "instruction_topic": f"{prefix}/vla/instruction",
            "proprio_topic": f"{prefix}/joint_states", "action_topic": f"{prefix}/vla/action",
            "first_action_topic": f"{prefix}/vla/first_action",
        }
        self.params: dict[str, Any] = {**self.topics, "diagnostics_period": 0.5}
        if model_dir is not None:
            self.params["model_dir"] = str(model_dir)
        self.params.update(overrides)
        self.topics.update({k: v for k, v in overrides.items() if k.endswith("_topic")})
        args = [str(NODE_EXE), "--ros-args", "-r", f"__node:={self.name}"]
        for k, v in self.params.items():
            v = str(v).lower() if isinstance(v, bool) else v
            args += ["-p", f"{k}:={v}"]
        self.log_path = log_dir / f"{self.name}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT, text=True)

    @property
    def fqn(self) -> str:
        return f"/{self.name}"

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(2)  # SIGINT: the node's orderly shutdown path
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()
        return self.proc.returncode


@pytest.fixture()
def start_policy(ros_env, tmp_path) -> Iterator[Callable[..., PolicyProcess]]:
    started: list[PolicyProcess] = []

    def start(model_dir: Path | None, **overrides: Any) -> PolicyProcess:
        p = PolicyProcess(ros_env, model_dir, tmp_path, **overrides)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


# --- the driver: the robot side, in this process ----------------------------------
class Driver:
    """Camera/instruction/proprio publishers, action/diagnostics subscribers, service clients."""

    def __init__(self, node_name: str, topics: dict[str, str], *, camera_reliable: bool = True,
                 compressed: bool = False) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image, JointState
        from std_msgs.msg import String

        from vla_adapter_interfaces.msg import ActionChunk
        from vla_adapter_ros.ros import qos
        from vla_adapter_ros.ros.entry import spin_in_background

        self.node_name, self.topics = node_name, topics
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"driver_{node_name}", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        cam_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE if camera_reliable
                             else ReliabilityPolicy.BEST_EFFORT)
        cam_topic = topics["camera_topic"] + ("/compressed" if compressed else "")
        self.camera = self.node.create_publisher(CompressedImage if compressed else Image, cam_topic, cam_qos)
        self.instruction = self.node.create_publisher(String, topics["instruction_topic"], qos.instruction_qos())
        self.joints = self.node.create_publisher(JointState, topics["proprio_topic"], 10)
        self.actions: list[tuple[float, Any]] = []  # (monotonic receive time, ActionChunk)
        self.statuses: list[Any] = []
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self.node.create_subscription(ActionChunk, topics["action_topic"], self._on_action, qos.actions_qos(100))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, qos.diagnostics_qos())
        self._spin = spin_in_background(self.executor, self.context, 0.05)

    def _on_action(self, msg: Any) -> None:
        with self._lock:
            self.actions.append((time.monotonic(), msg))

    def _on_diagnostics(self, msg: Any) -> None:
        prefix = f"{self.node_name}:"
        with self._lock:
            self.statuses.extend(s for s in msg.status if s.name.startswith(prefix))

    # --- inputs ---
    def send_instruction(self, text: str) -> None:
        from std_msgs.msg import String

        self.instruction.publish(String(data=text))

    def send_joints(self, names=("ee_x", "ee_y", "ee_z", "gripper"), values=(0.1, 0.2, 0.3, 0.5)) -> None:
        from sensor_msgs.msg import JointState

        self.joints.publish(JointState(name=list(names), position=[float(v) for v in values]))

    def send_frame(self, rgb: np.ndarray, stamp_ns: int | None = None, frame_id: str = "cam") -> int:
        from std_msgs.msg import Header

        from vla_adapter_ros.ros.conversions import ns_to_stamp, rgb_to_image_msg

        stamp_ns = self.now_ns() if stamp_ns is None else stamp_ns
        self.camera.publish(rgb_to_image_msg(rgb, Header(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id)))
        return stamp_ns

    def now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    # --- outputs ---
    def action_count(self) -> int:
        with self._lock:
            return len(self.actions)

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.01)

    def wait_actions(self, n: int, timeout: float = 10.0) -> list[Any]:
        self.wait_for(lambda: self.action_count() >= n, timeout, f"{n} actions (have {self.action_count()})")
        with self._lock:
            return [m for _, m in self.actions]

    def latest_status(self, timeout: float = 5.0, after: float | None = None) -> dict[str, Any]:
        """The next diagnostics status received after now (or ``after``), as a dict with level/message."""
        from vla_adapter_ros.ros.conversions import diagnostic_values

        with self._lock:
            start = len(self.statuses)
        self.wait_for(lambda: len(self.statuses) > start, timeout, f"/diagnostics from {self.node_name}")
        with self._lock:
            s = self.statuses[-1]
        level = int.from_bytes(s.level, "little") if isinstance(s.level, bytes) else int(s.level)
        return {"level": level, "message": s.message, **diagnostic_values(s)}

    def call(self, srv_type: Any, service: str, request: Any, timeout: float = 10.0,
             resend_s: float = RESEND_S) -> Any:
        """One round trip, resent every ``resend_s`` until a reply (see clients.await_reply); pass
        ``resend_s=0`` for requests that are not idempotent (lifecycle transitions). One client per
        service for the driver's life, like a robot's own clients."""
        from vla_adapter_ros.ros.clients import await_reply

        client = self._clients.get(service)
        if client is None:
            client = self._clients[service] = self.node.create_client(srv_type, f"/{self.node_name}/{service}")
        assert client.wait_for_service(timeout_sec=timeout), f"{service} not available"
        future = await_reply(client, request, timeout, resend_s=resend_s)
        assert future is not None, f"timed out after {timeout} s waiting for {service} reply"
        return future.result()

    def wait_until_serving(self, timeout: float = 30.0) -> None:
        """The node is up and active: its diagnostics say so and the action subscription is matched."""
        from vla_adapter_interfaces.srv import ListAdapters

        reply = self.call(ListAdapters, "list_adapters", ListAdapters.Request(), timeout)
        assert reply.adapters, "node has no adapters (configure failed?)"
        self.wait_for(lambda: self.camera.get_subscription_count() > 0, timeout, "camera subscription")
        self.wait_for(lambda: self.node.count_publishers(self.topics["action_topic"]) > 0, timeout,
                      "action publisher")
        self.wait_for(lambda: self.latest_status(timeout)["lifecycle_state"] == "active", timeout, "active state")

    def prime(self, instruction: str = "open the drawer", timeout: float = 20.0) -> None:
        """Send the instruction and joint states, then frames until the first action comes back."""
        self.wait_for(lambda: self.instruction.get_subscription_count() > 0, timeout, "instruction subscription")
        self.send_instruction(instruction)
        rgb = np.zeros((16, 16, 3), np.uint8)
        deadline = time.monotonic() + timeout
        start = self.action_count()
        while self.action_count() == start:
            assert time.monotonic() < deadline, "the node never answered a frame"
            self.send_joints()
            self.send_frame(rgb)
            time.sleep(0.2)
        time.sleep(0.2)  # let stragglers of the priming frames arrive before a test counts

    def close(self) -> None:
        import rclpy

        rclpy.try_shutdown(context=self.context)
        self._spin.join(timeout=5)
        self.node.destroy_node()


@pytest.fixture(scope="session")
def shared_policy(ros_env, tiny_model_dir, tmp_path_factory) -> Iterator[tuple[PolicyProcess, Driver]]:
    """One serving node (reliable camera QoS, so DDS never drops a frame) shared by the ROS tests."""
    proc = PolicyProcess(ros_env, tiny_model_dir, tmp_path_factory.mktemp("policy_logs"), providers="cpu",
                         camera_reliability="reliable", camera_depth=10,
                         publish_first_action_array=True)
    driver = Driver(proc.name, proc.topics)
    try:
        driver.wait_until_serving()
        driver.prime()
        yield proc, driver
    except BaseException:
        print(proc.log())
        raise
    finally:
        driver.close()
        died = proc.proc.poll()
        proc.stop()
        if died is not None:
            print(f"policy node exited early with {died}; its log:\n{proc.log_path.read_text()}")


@pytest.fixture()
def make_driver() -> Iterator[Callable[..., Driver]]:
    drivers: list[Driver] = []

    def make(proc: PolicyProcess, **kwargs: Any) -> Driver:
        d = Driver(proc.name, proc.topics, **kwargs)
        drivers.append(d)
        return d

    yield make
    for d in drivers:
        d.close()
