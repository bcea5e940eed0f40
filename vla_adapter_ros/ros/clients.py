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


class ServiceUnavailableError(RuntimeError):
    """The service did not appear or did not answer within the timeout."""


def service_name(node: str, service: str) -> str:
    """`/ns/node` + `switch_adapter` -> `/ns/node/switch_adapter` (the node's private `~/` service)."""
    return f"{node.rstrip('/')}/{service}" if node.startswith("/") else f"/{node.rstrip('/')}/{service}"


def call_service(srv_type: Any, name: str, request: Any, timeout_s: float = DEFAULT_TIMEOUT_S) -> Any:
    """One round trip to ``name`` from a short-lived node; raises ServiceUnavailableError on timeout."""
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
            future = client.call_async(request)
            executor.spin_until_future_complete(future, timeout_sec=max(0.0, deadline - time.monotonic()))
            if not future.done():
                client.remove_pending_request(future)
                raise ServiceUnavailableError(f"service {name} did not answer within {timeout_s:.1f} s")
            if future.exception() is not None:
                raise ServiceUnavailableError(f"service {name} failed: {future.exception()}")
            return future.result()
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
