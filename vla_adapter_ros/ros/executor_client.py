"""Talking to a running ``vla_adapter_executor``: `vla-adapter executor enable|disable|stop`, and
:class:`ExecutorDriver`, the policy side and the controller side of an executor in one process
(the integration tests, benchmarks/bench_executor.py and a demo drive it through this).

Everything goes through :mod:`vla_adapter_ros.ros.harness` (one session, resending service
calls, subscriptions that wake ``wait_for``).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# rclpy and message packages are imported inside the functions: cli.py imports this module to
# build its parser.

DEFAULT_NODE = "/vla_adapter_executor"
DEFAULT_TIMEOUT_S = 5.0


# --- `vla-adapter executor enable|disable|stop` ----------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("request", choices=("enable", "disable", "stop"),
                        help="enable: execute chunks; disable: one final hold, then no commands; stop: hold now")
    parser.add_argument("--node", default=DEFAULT_NODE, help="executor node name (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds to wait (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    from std_srvs.srv import SetBool, Trigger

    from vla_adapter_ros.ros.clients import call_service
    from vla_adapter_ros.ros.harness import ServiceUnavailableError, service_name

    if args.request == "stop":
        srv, name, request = Trigger, service_name(args.node, "stop"), Trigger.Request()
    else:
        srv, name, request = SetBool, service_name(args.node, "enable"), SetBool.Request(data=args.request == "enable")
    try:
        reply = call_service(srv, name, request, args.timeout)
    except ServiceUnavailableError as exc:
        print(f"error: {exc} (is the executor running, in this ROS_DOMAIN_ID?)", file=sys.stderr)
        return 3
    print(f"{'ok' if reply.success else 'refused'}: {reply.message}")
    return 0 if reply.success else 1


# --- the driver ------------------------------------------------------------------------
class ExecutorDriver:
    """Publishes ActionChunks on ``chunk_topic`` and records every message on ``outputs``
    (``{topic: type name}``: JointTrajectory, TwistStamped or Float64MultiArray) with its
    monotonic receive time."""

    def __init__(self, node_name: str, chunk_topic: str, outputs: dict[str, str]) -> None:
        from geometry_msgs.msg import TwistStamped
        from std_msgs.msg import Float64MultiArray
        from trajectory_msgs.msg import JointTrajectory

        from vla_adapter_interfaces.msg import ActionChunk
        from vla_adapter_ros.ros import qos
        from vla_adapter_ros.ros.harness import RosSession

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
        import array

        from std_msgs.msg import Header

        from vla_adapter_interfaces.msg import ActionChunk
        from vla_adapter_ros.ros.conversions import ns_to_stamp

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
        from vla_adapter_ros.ros.harness import wait_for_lifecycle_state

        wait_for_lifecycle_state(self.session, self.node_name, "active", timeout)
        self.session.wait_for_subscribers(self.chunk_pub, timeout)
        for topic in self._received:
            self.session.wait_for_publishers(topic, timeout)

    # --- services ---
    def enable(self, on: bool = True, timeout: float = 10.0) -> Any:
        from std_srvs.srv import SetBool

        return self._call(SetBool, "enable", SetBool.Request(data=on), timeout)

    def stop(self, timeout: float = 10.0) -> Any:
        from std_srvs.srv import Trigger

        return self._call(Trigger, "stop", Trigger.Request(), timeout)

    def status(self, timeout: float = 10.0) -> dict[str, Any]:
        """``~/get_status`` as a dict: level, message and every value (numbers as float where they parse)."""
        from vla_adapter_interfaces.srv import GetStatus
        from vla_adapter_ros.ros.conversions import diagnostic_level, diagnostic_values

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
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        (result,) = self._call(SetParameters, "set_parameters", request, timeout).results
        return result.successful, result.reason

    def _call(self, srv: Any, service: str, request: Any, timeout: float) -> Any:
        from vla_adapter_ros.ros.harness import service_name

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
