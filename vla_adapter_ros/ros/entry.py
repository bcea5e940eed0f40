"""Spinning shared by the console entry points (init, build, spin until SIGINT, clean up) and by
in-process clients that spin an executor of their own context on a background thread."""

from __future__ import annotations

import sys
import threading
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
    The node's ``close()`` runs on every way out.
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
    finally:
        node.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def spin_in_background(executor: Any, context: Any, period: float = 0.05) -> threading.Thread:
    """Spin ``executor`` on a daemon thread until ``context`` is shut down (then join it)."""

    def spin() -> None:
        try:
            while context.ok():
                executor.spin_once(timeout_sec=period)
        except (ExternalShutdownException, RuntimeError):
            pass  # the context was shut down meanwhile

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    return thread
