"""Fixtures for the ROS integration tests: a tiny exported model, policy-node processes, a driver.

Everything is real: the policy node runs as its console script in its own process,
the test drives it through rclpy on loopback DDS (the domain and the Fast DDS profile
pinned by tests/conftest.py), and the model is exported with the project's exporter and
served by onnxruntime.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vla_adapter_ros.ros.harness import NodeProcess, RosSession, node_command, send_until

_instances = itertools.count()


# --- policy node processes -------------------------------------------------------
class PolicyProcess(NodeProcess):
    """A running ``vla_adapter_node`` with its own node name and topics (so tests never cross)."""

    def __init__(self, env: dict[str, str], model_dir: Path | None, log_dir: Path, **overrides: Any) -> None:
        i = next(_instances)
        self.name = f"vla_adapter_t{os.getpid()}_{i}"
        prefix = f"/t{os.getpid()}_{i}"
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
        super().__init__(node_command("vla_adapter_node", self.name, self.params), env,
                         log_dir / f"{self.name}.log")

    @property
    def fqn(self) -> str:
        return f"/{self.name}"


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
JOINTS = ("ee_x", "ee_y", "ee_z", "gripper")


class Driver:
    """Camera/instruction/proprio publishers, action/diagnostics subscribers, service clients."""

    def __init__(self, node_name: str, topics: dict[str, str], *, camera_reliable: bool = True,
                 compressed: bool = False) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image, JointState
        from std_msgs.msg import String

        from vla_adapter_interfaces.msg import ActionChunk
        from vla_adapter_ros.ros import qos

        self.node_name, self.topics = node_name, topics
        self.session = RosSession(f"driver_{node_name}")
        self.node = self.session.node
        cam_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE if camera_reliable
                             else ReliabilityPolicy.BEST_EFFORT)
        cam_topic = topics["camera_topic"] + ("/compressed" if compressed else "")
        self.camera = self.node.create_publisher(CompressedImage if compressed else Image, cam_topic, cam_qos)
        self.instruction = self.node.create_publisher(String, topics["instruction_topic"], qos.instruction_qos())
        self.joints = self.node.create_publisher(JointState, topics["proprio_topic"], 10)
        self.actions: list[tuple[float, Any]] = []  # (monotonic receive time, ActionChunk)
        self.statuses: list[Any] = []
        self._lock = threading.Lock()
        self.session.subscribe(ActionChunk, topics["action_topic"], self._on_action, qos.actions_qos(100))
        self.session.subscribe(DiagnosticArray, "/diagnostics", self._on_diagnostics, qos.diagnostics_qos())

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

    def send_joints(self, names=JOINTS, values=(0.1, 0.2, 0.3, 0.5), stamp_ns: int | None = None) -> None:
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Header

        from vla_adapter_ros.ros.conversions import ns_to_stamp

        header = Header(stamp=ns_to_stamp(self.now_ns() if stamp_ns is None else stamp_ns))
        self.joints.publish(JointState(header=header, name=list(names), position=[float(v) for v in values]))

    def send_frame(self, rgb: np.ndarray, stamp_ns: int | None = None, frame_id: str = "cam",
                   joints: bool = True) -> int:
        """An Image (and, like a robot, the JointState with the same stamp); returns the stamp."""
        from std_msgs.msg import Header

        from vla_adapter_ros.ros.conversions import ns_to_stamp, rgb_to_image_msg

        stamp_ns = self.now_ns() if stamp_ns is None else stamp_ns
        if joints:
            self.send_joints(stamp_ns=stamp_ns)
        self.camera.publish(rgb_to_image_msg(rgb, Header(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id)))
        return stamp_ns

    def now_ns(self) -> int:
        return self.session.now_ns()

    # --- outputs ---
    def action_count(self) -> int:
        with self._lock:
            return len(self.actions)

    def answered(self, stamp_ns: int) -> bool:
        from vla_adapter_ros.ros.conversions import stamp_to_ns

        with self._lock:
            return any(stamp_to_ns(m.header.stamp) == stamp_ns for _, m in self.actions)

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        try:
            return self.session.wait_for(predicate, timeout, what)
        except TimeoutError as exc:
            raise AssertionError(str(exc)) from None

    def wait_actions(self, n: int, timeout: float = 10.0) -> list[Any]:
        self.wait_for(lambda: self.action_count() >= n, timeout, f"{n} actions (have {self.action_count()})")
        with self._lock:
            return [m for _, m in self.actions]

    def status(self, timeout: float = 10.0) -> dict[str, Any]:
        """The node's status now, from its ~/get_status service, as a dict with level/message."""
        from vla_adapter_interfaces.srv import GetStatus
        from vla_adapter_ros.ros.conversions import diagnostic_level, diagnostic_values

        s = self.call(GetStatus, "get_status", GetStatus.Request(), timeout).status
        return {"level": diagnostic_level(s), "message": s.message, **diagnostic_values(s)}

    def latest_status(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next status published on /diagnostics from now on (what a monitor sees)."""
        from vla_adapter_ros.ros.conversions import diagnostic_level, diagnostic_values

        with self._lock:
            start = len(self.statuses)
        self.wait_for(lambda: len(self.statuses) > start, timeout, f"/diagnostics from {self.node_name}")
        with self._lock:
            s = self.statuses[-1]
        return {"level": diagnostic_level(s), "message": s.message, **diagnostic_values(s)}

    def call(self, srv_type: Any, service: str, request: Any, timeout: float = 10.0, **kwargs: Any) -> Any:
        """One round trip, resent until a reply (harness.await_reply); ``resend_s=0`` for requests that are
        not idempotent (lifecycle transitions)."""
        return self.session.call(srv_type, f"/{self.node_name}/{service}", request, timeout, **kwargs)

    def wait_until_serving(self, timeout: float = 30.0) -> None:
        """The node reports lifecycle state 'active' and its topics are matched."""
        from vla_adapter_ros.ros.harness import wait_for_lifecycle_state

        wait_for_lifecycle_state(self.session, self.node_name, "active", timeout)
        self.session.wait_for_subscribers(self.camera, timeout)
        self.session.wait_for_publishers(self.topics["action_topic"], timeout)

    def prime(self, instruction: str = "open the drawer", timeout: float = 20.0) -> None:
        """Send the instruction, then frames (with joint states) until one is answered: serving."""
        self.session.wait_for_subscribers(self.instruction, timeout)
        self.send_instruction(instruction)
        rgb = np.zeros((16, 16, 3), np.uint8)
        send_until(lambda: self.send_frame(rgb), self.answered, self.session, timeout=timeout, interval=0.2,
                   what="a priming frame")

    def close(self) -> None:
        self.session.close()


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
