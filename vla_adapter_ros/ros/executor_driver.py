"""The policy side and the controller side of a running ``vla_adapter_executor`` in one process:
:class:`ExecutorDriver` publishes ActionChunks and records every command output; :class:`ChunkStream`
plays a policy at a rate. The integration tests, benchmarks/bench_executor.py and the demo drive an
executor through this; everything goes through :mod:`vla_adapter_ros.ros.harness` (one session,
resending service calls, subscriptions that wake ``wait_for``).
"""

from __future__ import annotations

import array
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from geometry_msgs.msg import TwistStamped
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from std_msgs.msg import Float64MultiArray, Header
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

from vla_adapter_interfaces.msg import ActionChunk
from vla_adapter_interfaces.srv import GetStatus
from vla_adapter_ros.ros import qos
from vla_adapter_ros.ros.conversions import diagnostic_level, diagnostic_values, ns_to_stamp
from vla_adapter_ros.ros.harness import RosSession, service_name, wait_for_lifecycle_state


# --- the driver ------------------------------------------------------------------------
class ExecutorDriver:
    """Publishes ActionChunks on ``chunk_topic`` and records every message on ``outputs``
    (``{topic: type name}``: JointTrajectory, TwistStamped or Float64MultiArray) with its
    monotonic receive time."""

    def __init__(self, node_name: str, chunk_topic: str, outputs: dict[str, str]) -> None:
        types = {"JointTrajectory": JointTrajectory, "TwistStamped": TwistStamped,
                 "Float64MultiArray": Float64MultiArray}
        self.node_name = node_name
        self.session = RosSession(f"executor_driver_{node_name.strip('/')}")
        self.chunk_pub = self.session.node.create_publisher(ActionChunk, chunk_topic, qos.actions_qos())
        self._lock = threading.Lock()
        self._received: dict[str, list[tuple[float, Any]]] = {t: [] for t in outputs}
        self._sequence = 0
        for topic, type_name in outputs.items():
            self.session.subscribe(types[type_name], topic, self._recorder(topic), qos.command_qos())

    def _recorder(self, topic: str) -> Callable[[Any], None]:
        def record(msg: Any) -> None:
            t = time.monotonic()
            with self._lock:
                self._received[topic].append((t, msg))
        return record

    # --- the policy side ---
    def now_ns(self) -> int:
        return self.session.now_ns()

    def send_chunk(self, actions: Any, names: Sequence[str], *, dt: float, stamp_ns: int | None = None,
                   adapter: str = "a", chunk_length: int | None = None, action_dim: int | None = None) -> int:
        """Publish one chunk (row-major ``actions``; ``chunk_length`` / ``action_dim`` override the shape
        fields, to send inconsistent ones); returns its stamp."""
        values = np.asarray(actions, np.float32)
        k, a = values.shape if values.ndim == 2 else (values.size, 1)
        stamp = self.now_ns() if stamp_ns is None else stamp_ns
        self._sequence += 1
        msg = ActionChunk(header=Header(stamp=ns_to_stamp(stamp), frame_id="camera"), adapter=adapter,
                          instruction="test", action_names=list(names), dt=float(dt), sequence=self._sequence,
                          chunk_length=k if chunk_length is None else chunk_length,
                          action_dim=a if action_dim is None else action_dim)
        msg.actions = array.array("f", values.tobytes())
        self.chunk_pub.publish(msg)
        return stamp

    def wait_until_connected(self, timeout: float = 30.0) -> None:
        """The executor is active, subscribes to the chunks and publishes every output."""
        wait_for_lifecycle_state(self.session, self.node_name, "active", timeout)
        self.session.wait_for_subscribers(self.chunk_pub, timeout)
        for topic in self._received:
            self.session.wait_for_publishers(topic, timeout)

    # --- services ---
    def enable(self, on: bool = True, timeout: float = 10.0) -> Any:
        return self._call(SetBool, "enable", SetBool.Request(data=on), timeout)

    def stop(self, timeout: float = 10.0) -> Any:
        return self._call(Trigger, "stop", Trigger.Request(), timeout)

    def status(self, timeout: float = 10.0) -> dict[str, Any]:
        """``~/get_status`` as a dict: level, message and every value (numbers as float where they parse)."""
        s = self._call(GetStatus, "get_status", GetStatus.Request(), timeout).status
        values: dict[str, Any] = {"level": diagnostic_level(s), "message": s.message}
        for k, v in diagnostic_values(s).items():
            try:
                values[k] = float(v)
            except ValueError:
                values[k] = v
        return values

    def set_parameter(self, name: str, value: bool | int | float | str, timeout: float = 10.0) -> tuple[bool, str]:
        """``ros2 param set``: (successful, reason)."""
        request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        (result,) = self._call(SetParameters, "set_parameters", request, timeout).results
        return result.successful, result.reason

    def _call(self, srv: Any, service: str, request: Any, timeout: float) -> Any:
        return self.session.call(srv, service_name(self.node_name, service), request, timeout)

    # --- the controller side ---
    def received(self, topic: str, since: float = 0.0) -> list[tuple[float, Any]]:
        with self._lock:
            return [(t, m) for t, m in self._received[topic] if t >= since]

    def count(self, topic: str) -> int:
        with self._lock:
            return len(self._received[topic])

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        return self.session.wait_for(predicate, timeout, what)

    def wait_status(self, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
        """Ask ``~/get_status`` until ``predicate(status)``; returns that status."""
        found: dict[str, Any] = {}

        def check() -> bool:
            status = self.status()
            if predicate(status):
                found.update(status)
                return True
            return False

        self.wait_for(check, timeout, what)
        return found

    def close(self) -> None:
        self.session.close()


class ChunkStream:
    """Publishes ``make(t_seconds) -> (K, A)`` chunks at ``rate_hz`` on a thread of its own (a policy)."""

    def __init__(self, driver: ExecutorDriver, names: Sequence[str], rate_hz: float, dt: float,
                 make: Callable[[float], np.ndarray], *, latency_s: float = 0.0, adapter: str = "a") -> None:
        self.driver, self.names, self.period, self.dt, self.make = driver, list(names), 1.0 / rate_hz, dt, make
        self.latency_ns, self.adapter = int(latency_s * 1e9), adapter
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chunk_stream", daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        n = 0
        while not self._stop.is_set():
            stamp = self.driver.now_ns() - self.latency_ns  # the frame was taken latency_s ago
            self.driver.send_chunk(self.make(stamp * 1e-9), self.names, dt=self.dt, stamp_ns=stamp,
                                   adapter=self.adapter)
            self.sent += 1
            n += 1
            self._stop.wait(max(0.0, start + n * self.period - time.monotonic()))

    def __enter__(self) -> ChunkStream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
