"""The console entry points' main(): init, build the node, spin until SIGINT, clean up.
(In-process clients and tests spin through :class:`vla_adapter_ros.ros.harness.RosSession`.)"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor


def run_node(make_node: Callable[[], Any], label: str, args: list[str] | None = None,
             start: Callable[[Any], int | None] | None = None) -> int:
    """Run ``make_node()`` on a single-threaded executor; returns the process exit status.

    A bad parameter value at start-up exits 2 with ``label: bad parameter: ...``;
    ``start(node)`` runs before spinning and may return an exit status to stop right away.
    The node's ``close()`` (when it has one) runs on every way out.
    """
    rclpy.init(args=args)
    try:
        node = make_node()
    except (ValueError, ParameterException) as exc:
        print(f"{label}: bad parameter: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    try:
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        if start is not None and (code := start(node)) is not None:
            return code
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # SIGINT shuts the context down from rclpy's signal handler; a spin between its checks can
        # then fail creating its wait set ("the given context is not valid", RCLError) instead of
        # raising ExternalShutdownException (seen under load). That is the same clean stop.
        if rclpy.ok():
            raise
    finally:
        if hasattr(node, "close"):
            node.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
