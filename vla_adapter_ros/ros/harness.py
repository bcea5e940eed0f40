"""How this package's tools and tests talk to ROS nodes: one place.

- :class:`RosSession`: a context manager owning an rclpy context, one node, a
  single-threaded executor spun on a background thread, persistent service clients with
  idempotent resend (:meth:`RosSession.call`) and a condition that every subscription
  callback made through :meth:`RosSession.subscribe` notifies, so :meth:`RosSession.wait_for`
  wakes when a message changes what it waits for (graph changes are re-checked every 50 ms).
  Closed in the right order: context shutdown, spin thread joined, node destroyed.
- :class:`NodeProcess`: a console-script node in a process of its own (argv from
  :func:`node_command`), output to a log file, stopped with a bounded SIGINT -> SIGTERM ->
  SIGKILL.
- Readiness is observed, never slept: :func:`wait_for_lifecycle_state` asks the node's
  ``get_state`` service, :func:`send_until` repeats a request (a probe frame, a lockstep
  frame) until its answer is observed.

Single-threaded executors only: a MultiThreadedExecutor spun beside a publishing thread
stalled that thread's publishing for ~1.3 s in several of 18 runs on 2 cores (ENVIRONMENT.md).
The demo driver, ``vla-adapter replay``, the CLI clients, bench_ros, soak and the test
drivers all use this module.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import rclpy
from lifecycle_msgs.srv import GetState
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

T = TypeVar("T")
RESEND_S = 1.0  # see await_reply
GRAPH_POLL_S = 0.05  # how often wait_for re-checks what no callback reports (graph matches, processes)


class ServiceUnavailableError(RuntimeError):
    """The service did not appear or did not answer within the timeout."""


def service_name(node: str, service: str) -> str:
    """`/ns/node` + `switch_adapter` -> `/ns/node/switch_adapter` (the node's private `~/` service)."""
    return f"/{node.strip('/')}/{service}"


def unique_name(prefix: str) -> str:
    """A node name no other process of this machine uses at the same time."""
    return f"{prefix}_{os.getpid()}_{time.monotonic_ns() % 10**6}"


def await_reply(client: Any, request: Any, timeout_s: float, resend_s: float = RESEND_S) -> Any:
    """Send ``request`` on ``client`` (spun by another thread) and return the first reply's
    future, None after ``timeout_s``.

    A request sent right after discovery can lose its reply: the server may not yet match
    this client's response reader and drops the response (Fast DDS logs "failed to send
    response (timeout)"; ros2/rclcpp#2760). So the request is sent again every ``resend_s``
    seconds until a reply arrives: for idempotent requests only (switch, list, load, status,
    and a sim reset carrying a ``request_id``; not lifecycle transitions, pass 0).
    """
    answered = threading.Event()
    futures = []
    deadline = time.monotonic() + timeout_s
    while not answered.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        future = client.call_async(request)
        future.add_done_callback(lambda _f: answered.set())
        futures.append(future)
        answered.wait(min(left, resend_s) if resend_s > 0 else left)
    done = next((f for f in futures if f.done()), None)
    for f in futures:
        if f is not done and not f.done():
            client.remove_pending_request(f)
    return done


class RosSession:
    """An rclpy context + node + background single-threaded executor; see the module docstring."""

    def __init__(self, name: str, *, unique: bool = True, make_node: Callable[[Any], Any] | None = None) -> None:
        """``make_node(context)``: spin a node of one's own (e.g. a PolicyNode in this process) instead."""
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        try:
            self.node = make_node(self.context) if make_node is not None else rclpy.create_node(
                unique_name(name) if unique else name, context=self.context)
        except BaseException:
            rclpy.try_shutdown(context=self.context)
            raise
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.changed = threading.Condition()  # notified after every callback made by subscribe()
        self._generation = 0  # counts notifications (so a waiter never misses one between check and wait)
        self._clients: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._spin, name=f"{name}_spin", daemon=True)
        self._thread.start()

    # --- lifetime --------------------------------------------------------------------
    def _spin(self) -> None:
        try:
            while self.context.ok():
                self.executor.spin_once(timeout_sec=GRAPH_POLL_S)
        except (ExternalShutdownException, RuntimeError):
            pass  # the context was shut down meanwhile

    def close(self) -> None:
        rclpy.try_shutdown(context=self.context)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.node.destroy_node()
        self.notify()

    def __enter__(self) -> RosSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- topics ----------------------------------------------------------------------
    def subscribe(self, msg_type: Any, topic: str, callback: Callable[[Any], None], qos: Any, **kwargs: Any) -> Any:
        """A subscription whose callback also wakes :meth:`wait_for`."""

        def on_message(msg: Any) -> None:
            callback(msg)
            self.notify()

        return self.node.create_subscription(msg_type, topic, on_message, qos, **kwargs)

    def notify(self) -> None:
        with self.changed:
            self._generation += 1
            self.changed.notify_all()

    def generation(self) -> int:
        with self.changed:
            return self._generation

    def wait_change(self, generation: int, timeout: float) -> None:
        """Return when something was observed after ``generation`` (or ``timeout``, at most GRAPH_POLL_S)."""
        with self.changed:
            if self._generation == generation:
                self.changed.wait(min(timeout, GRAPH_POLL_S))

    def wait_for(self, predicate: Callable[[], T], timeout: float, what: str) -> T:
        """Block until ``predicate()`` is truthy (returned); TimeoutError naming ``what`` after ``timeout``.

        ``predicate`` runs without any lock held, so it may itself call services or read state
        that the spin thread updates."""
        deadline = time.monotonic() + timeout
        while True:
            generation = self.generation()
            if value := predicate():
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
            self.wait_change(generation, left)

    def wait_for_subscribers(self, publisher: Any, timeout: float, what: str = "") -> None:
        self.wait_for(lambda: publisher.get_subscription_count() > 0, timeout,
                      what or f"a subscriber on {publisher.topic_name}")

    def wait_for_publishers(self, topic: str, timeout: float) -> None:
        self.wait_for(lambda: self.node.count_publishers(topic) > 0, timeout, f"a publisher on {topic}")

    def now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    # --- services --------------------------------------------------------------------
    def client(self, srv_type: Any, name: str) -> Any:
        """One client per service for the session's life: only a client's first requests race
        discovery (see await_reply), not every call."""
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = self.node.create_client(srv_type, name)
        return client

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 10.0,
             resend_s: float = RESEND_S) -> Any:
        """A service round trip; ServiceUnavailableError when the service is absent, silent or fails.
        ``resend_s`` > 0 resends until a reply (idempotent requests only; 0 = send once)."""
        client = self.client(srv_type, name)
        deadline = time.monotonic() + timeout
        if not client.wait_for_service(timeout_sec=timeout):
            raise ServiceUnavailableError(f"service {name} not available after {timeout:g} s")
        future = await_reply(client, request, max(0.0, deadline - time.monotonic()), resend_s)
        if future is None:
            raise ServiceUnavailableError(f"service {name} did not answer within {timeout:g} s")
        if future.exception() is not None:
            raise ServiceUnavailableError(f"service {name} failed: {future.exception()}")
        return future.result()


def send_until(send: Callable[[], T], answered: Callable[[T], bool], session: RosSession, *, timeout: float,
               interval: float, what: str) -> T:
    """Call ``send()`` and wait up to ``interval`` for ``answered(token)``; repeat until answered.

    The primitive behind every "until it answers" of the package: a probe frame sent until
    a serving node answers it, a lockstep frame re-sent until its action arrives. Returns the
    token of the send that was answered (or any earlier one whose answer came late). Tokens are
    hashable (a stamp; None when ``answered`` looks at something else, e.g. a status counter).
    """
    deadline = time.monotonic() + timeout
    tokens: list[T] = []
    while True:
        tokens.append(send())
        end = min(deadline, time.monotonic() + interval)
        while True:
            generation = session.generation()
            for token in dict.fromkeys(reversed(tokens)):  # newest first, each once (a token may be None)
                if answered(token):
                    return token
            left = end - time.monotonic()
            if left <= 0:
                break
            session.wait_change(generation, left)
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no answer to {what} after {len(tokens)} send(s) in {timeout:g} s")


def wait_for_lifecycle_state(session: RosSession, node: str, state: str, timeout: float,
                             alive: Callable[[], bool] | None = None) -> None:
    """Ask ``node``'s ``get_state`` until it reports ``state`` (e.g. "active"); ``alive()`` False
    (the node's process ended) stops the wait at once with the reason."""
    deadline = time.monotonic() + timeout
    label = ""
    while label != state:
        if alive is not None and not alive():
            raise RuntimeError(f"{node} exited while waiting for lifecycle state {state!r} (last: {label or '-'})")
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{node} not {state!r} after {timeout:g} s (last state: {label or 'unknown'})")
        try:
            reply = session.call(GetState, service_name(node, "get_state"), GetState.Request(), min(left, 2.0))
        except ServiceUnavailableError:
            continue
        label = reply.current_state.label
        if label != state:
            _pause(session, min(0.1, left))  # between two queries of an observed state


def _pause(session: RosSession, seconds: float) -> None:
    """Wait up to ``seconds`` (between two state queries)."""
    session.wait_change(session.generation(), seconds)


# --- node processes ---------------------------------------------------------------------
def node_command(executable: str, node_name: str, parameters: Mapping[str, Any] | None = None,
                 params_file: str | Path | None = None) -> list[str]:
    """argv for a console entry point: ``--ros-args -r __node:=NAME [--params-file F] -p k:=v ...``.

    The venv's script beside this interpreter when it exists (tests, demo), else the name on PATH.
    """
    exe = Path(sys.executable).parent / executable
    args = [str(exe) if exe.exists() else executable, "--ros-args", "-r", f"__node:={node_name}"]
    if params_file is not None:
        args += ["--params-file", str(params_file)]
    for k, v in (parameters or {}).items():
        args += ["-p", f"{k}:={str(v).lower() if isinstance(v, bool) else v}"]
    return args


class NodeProcess:
    """One node in its own process, output to a log file; :meth:`stop` always reaps it."""

    def __init__(self, argv: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.argv, self.log_path = list(argv), Path(log_path)
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.argv, env=dict(env), stdout=self._log, stderr=subprocess.STDOUT,
                                     text=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT (the node's orderly shutdown), then SIGTERM, then SIGKILL; the exit status."""
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is not None:
                break
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
