"""Service/topic clients behind `vla-adapter switch|list|...`.

The same things a robot user does with `ros2 service call` / `ros2 topic pub`,
for machines without the ROS CLI. rclpy is imported inside the functions so
building the CLI parser stays ROS-free.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

DEFAULT_NODE = "/vla_adapter"
DEFAULT_TIMEOUT_S = 5.0
RESEND_S = 1.0  # see call_service


class ServiceUnavailableError(RuntimeError):
    """The service did not appear or did not answer within the timeout."""


def service_name(node: str, service: str) -> str:
    """`/ns/node` + `switch_adapter` -> `/ns/node/switch_adapter` (the node's private `~/` service)."""
    return f"{node.rstrip('/')}/{service}" if node.startswith("/") else f"/{node.rstrip('/')}/{service}"


def await_reply(client: Any, request: Any, timeout_s: float, resend_s: float = RESEND_S,
                spin: Any = None) -> Any:
    """Send ``request`` on ``client`` and return the first reply's future (None after ``timeout_s``).

    A request sent right after discovery can lose its reply: the server may not yet match
    this client's response reader and drops the response (Fast DDS logs "failed to send
    response (timeout)"; ros2/rclcpp#2760). So the request is sent again every ``resend_s``
    seconds until a reply arrives: for idempotent requests only (switch, list, load, and a
    sim reset carrying a ``request_id``; not lifecycle transitions). ``spin(timeout)``
    drives the client's executor; None when another thread spins it.
    """
    futures = [client.call_async(request)]
    deadline = time.monotonic() + timeout_s
    next_send = time.monotonic() + resend_s
    while not any(f.done() for f in futures) and time.monotonic() < deadline:
        if spin is None:
            time.sleep(0.002)
        else:
            spin(min(0.05, max(0.0, deadline - time.monotonic())))
        if resend_s > 0 and time.monotonic() >= next_send and not any(f.done() for f in futures):
            futures.append(client.call_async(request))
            next_send = time.monotonic() + resend_s
    done = next((f for f in futures if f.done()), None)
    for f in futures:
        if f is not done and not f.done():
            client.remove_pending_request(f)
    return done


def call_service(srv_type: Any, name: str, request: Any, timeout_s: float = DEFAULT_TIMEOUT_S) -> Any:
    """One round trip to ``name`` from a short-lived node (resending, see await_reply);
    raises ServiceUnavailableError on timeout."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node(f"vla_adapter_cli_{time.monotonic_ns() % 10**9}", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        try:
            client = node.create_client(srv_type, name)
            deadline = time.monotonic() + timeout_s
            if not client.wait_for_service(timeout_sec=timeout_s):
                raise ServiceUnavailableError(f"service {name} not available after {timeout_s:.1f} s")
            done = await_reply(client, request, max(0.0, deadline - time.monotonic()),
                               spin=lambda t: executor.spin_once(timeout_sec=t))
            if done is None:
                raise ServiceUnavailableError(f"service {name} did not answer within {timeout_s:.1f} s")
            if done.exception() is not None:
                raise ServiceUnavailableError(f"service {name} failed: {done.exception()}")
            return done.result()
        finally:
            executor.shutdown()
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node", default=DEFAULT_NODE, help="policy node name (default %(default)s)")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds to wait (default %(default)s)"
    )


# --- switch -------------------------------------------------------------------
def add_switch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("adapter", help="adapter name, as listed by `vla-adapter list`")
    _common(parser)


def run_switch(args: argparse.Namespace) -> int:
    from vla_adapter_interfaces.srv import SwitchAdapter

    name = service_name(args.node, "switch_adapter")
    try:
        reply = call_service(SwitchAdapter, name, SwitchAdapter.Request(adapter=args.adapter), args.timeout)
    except ServiceUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    status = "ok" if reply.success else "refused"
    print(
        f"{status}: {reply.message} (active: {reply.active_adapter or '-'}, "
        f"previous: {reply.previous_adapter or '-'})"
    )
    return 0 if reply.success else 1


# --- list ---------------------------------------------------------------------
def add_list_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)


def run_list(args: argparse.Namespace) -> int:
    from vla_adapter_interfaces.srv import ListAdapters

    name = service_name(args.node, "list_adapters")
    try:
        reply = call_service(ListAdapters, name, ListAdapters.Request(), args.timeout)
    except ServiceUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    if not reply.adapters:
        print("no adapters loaded (is the node configured?)")
        return 1
    for info in reply.adapters:
        mark = "*" if info.name == reply.active_adapter else " "
        example = f'  e.g. "{info.instruction_examples[0]}"' if info.instruction_examples else ""
        print(f"{mark} {info.name:<24} {info.task or '-':<32} rank {info.rank:<3} "
              f"{info.num_parameters:>9} params{example}")
    print(f"active: {reply.active_adapter or '- (backbone)'}")
    return 0


# --- reset-sim ----------------------------------------------------------------
def add_reset_sim_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", nargs="?", default="",
                        help="Meta-World task, e.g. faucet-open (default: keep the current one)")
    parser.add_argument("--seed", type=int, default=0, help="episode seed (default %(default)s)")
    parser.add_argument("--node", default="/vla_adapter_sim", help="simulator node name (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait (a new task builds a new environment; default %(default)s)")


def run_reset_sim(args: argparse.Namespace) -> int:
    """Start a new episode on the simulator bridge; prints the instruction it suggests."""
    import uuid

    from vla_adapter_interfaces.srv import ResetEpisode

    if not 0 <= args.seed < 2**32:
        print(f"error: --seed must be in [0, 2^32), got {args.seed}", file=sys.stderr)
        return 2
    name = service_name(args.node, "reset")
    # The request id makes the resends of call_service safe: a repeat is answered, not re-run.
    request = ResetEpisode.Request(task=args.task, seed=args.seed, request_id=uuid.uuid4().hex)
    try:
        reply = call_service(ResetEpisode, name, request, args.timeout)
    except ServiceUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    if not reply.success:
        print(f"refused: {reply.message}")
        return 1
    print(f"ok: {reply.message}")
    if reply.instruction:
        print(f"suggested instruction: {reply.instruction}")
    return 0


# --- send-instruction ---------------------------------------------------------
def add_send_instruction_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", help="instruction text, e.g. 'open the drawer'")
    parser.add_argument("--topic", default="/vla/instruction", help="instruction topic (default %(default)s)")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S,
        help="seconds to wait for a subscriber and its acknowledgement (default %(default)s)",
    )
    parser.add_argument(
        "--hold", type=float, default=0.0,
        help="keep the (transient local) publisher up this many seconds after delivery, so nodes that "
             "start meanwhile still get the instruction; -1 = until Ctrl-C (default %(default)s)",
    )


def run_send_instruction(args: argparse.Namespace) -> int:
    """Publish one instruction reliable + transient local; exit once a subscriber has acknowledged it."""
    import rclpy
    from rclpy.duration import Duration
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from std_msgs.msg import String

    from vla_adapter_ros.ros.qos import instruction_qos

    if not args.text.strip():
        print("error: the instruction is empty", file=sys.stderr)
        return 2
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node(f"vla_adapter_instruction_{time.monotonic_ns() % 10**9}", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        try:
            publisher = node.create_publisher(String, args.topic, instruction_qos())
            publisher.publish(String(data=args.text))  # kept by transient local for late joiners
            deadline = time.monotonic() + args.timeout
            while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.05)
            matched = publisher.get_subscription_count()
            if matched == 0:
                print(f"error: no subscriber on {args.topic} after {args.timeout:.1f} s; "
                      "nothing received the instruction", file=sys.stderr)
                return 3
            acked = publisher.wait_for_all_acked(Duration(seconds=max(0.1, deadline - time.monotonic())))
            if not acked:
                print(f"error: {matched} subscriber(s) on {args.topic} did not acknowledge within "
                      f"{args.timeout:.1f} s", file=sys.stderr)
                return 3
            print(f"sent {args.text!r} on {args.topic} ({matched} subscriber(s) acknowledged)")
            if args.hold:
                end = float("inf") if args.hold < 0 else time.monotonic() + args.hold
                while time.monotonic() < end:
                    executor.spin_once(timeout_sec=0.1)
            return 0
        except (KeyboardInterrupt, ExternalShutdownException):
            return 0
        finally:
            executor.shutdown()
            node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


# --- status -------------------------------------------------------------------
def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)


def wait_for_diagnostics(node_name: str, timeout_s: float) -> Any:
    """The first DiagnosticStatus on /diagnostics whose name belongs to ``node_name`` (None on timeout)."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor

    from vla_adapter_ros.ros.qos import diagnostics_qos

    prefix = f"{node_name.strip('/')}:"
    found: list[Any] = []

    def on_diagnostics(msg: DiagnosticArray) -> None:
        found.extend(s for s in msg.status if s.name.startswith(prefix))

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node(f"vla_adapter_status_{time.monotonic_ns() % 10**9}", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        try:
            node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, diagnostics_qos())
            deadline = time.monotonic() + timeout_s
            while not found and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.05)
            return found[0] if found else None
        finally:
            executor.shutdown()
            node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def run_status(args: argparse.Namespace) -> int:
    status = wait_for_diagnostics(args.node, args.timeout)
    if status is None:
        print(f"error: no /diagnostics status from {args.node} within {args.timeout:.1f} s "
              "(is the node running, in this ROS_DOMAIN_ID?)", file=sys.stderr)
        return 3
    level = int.from_bytes(status.level, "little") if isinstance(status.level, bytes) else int(status.level)
    level_name = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}.get(level, str(level))
    print(f"{status.name}: {level_name}: {status.message}")
    width = max((len(kv.key) for kv in status.values), default=0)
    for kv in status.values:
        print(f"  {kv.key:<{width}}  {kv.value}")
    return 0 if level_name == "OK" else 1
