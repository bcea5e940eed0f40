"""`vla-adapter executor enable|disable|stop`: the executor's services from the command line
(the driver that tests and benchmarks use is :mod:`vla_adapter_ros.ros.executor_driver`)."""

from __future__ import annotations

import argparse
import sys

# rclpy and the message packages are imported in run(): `vla-adapter executor --help` builds its
# parser from this module without loading ROS.

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
