"""Service/topic clients behind `vla-adapter switch|load|list|...`.

The same things a robot user does with `ros2 service call` / `ros2 topic pub`,
for machines without the ROS CLI, over :mod:`vla_adapter_ros.ros.harness`.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from typing import Any

from rclpy.duration import Duration
from std_msgs.msg import String

from vla_adapter_interfaces.srv import GetStatus, ListAdapters, LoadAdapter, ResetEpisode, SwitchAdapter
from vla_adapter_ros.ros.harness import RosSession, ServiceUnavailableError, service_name
from vla_adapter_ros.ros.qos import instruction_qos

# rclpy is imported inside the functions until cli.py imports only the chosen subcommand.

DEFAULT_NODE = "/vla_adapter"
DEFAULT_TIMEOUT_S = 5.0


def call_service(srv_type: Any, name: str, request: Any, timeout_s: float = DEFAULT_TIMEOUT_S) -> Any:
    """One round trip to ``name`` from a short-lived node (resending, see harness.await_reply);
    raises ServiceUnavailableError on timeout."""
    with RosSession("vla_adapter_cli") as session:
        return session.call(srv_type, name, request, timeout_s)


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
    return _adapter_call(args, SwitchAdapter, "switch_adapter", SwitchAdapter.Request(adapter=args.adapter))


def _adapter_call(args: argparse.Namespace, srv_type: Any, service: str, request: Any) -> int:
    """`switch` and `load`: one call to the node's adapter service, its reply printed; exit 0 ok, 1 refused,
    3 no answer."""
    try:
        reply = call_service(srv_type, service_name(args.node, service), request, args.timeout)
    except ServiceUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    status = "ok" if reply.success else "refused"
    previous = getattr(reply, "previous_adapter", None)  # SwitchAdapter only
    print(f"{status}: {reply.message} (active: {reply.active_adapter or '-'}"
          + (f", previous: {previous or '-'})" if previous is not None else ")"))
    return 0 if reply.success else 1


# --- load ---------------------------------------------------------------------
def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("adapter", help="adapter name listed in the model directory's manifest.json (a name, "
                                        "never a path): e.g. one just exported into the node's model_dir")
    parser.add_argument("--no-activate", dest="activate", action="store_false",
                        help="only load it (switch later); default: make it the active adapter")
    _common(parser)


def run_load(args: argparse.Namespace) -> int:
    """Hot-add an adapter to a running node (``~/load_adapter``): it re-reads the manifest for new names."""
    return _adapter_call(args, LoadAdapter, "load_adapter", LoadAdapter.Request(adapter=args.adapter,
                                                                                  activate=args.activate))


# --- list ---------------------------------------------------------------------
def add_list_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)


def run_list(args: argparse.Namespace) -> int:
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
    if not args.text.strip():
        print("error: the instruction is empty", file=sys.stderr)
        return 2
    with RosSession("vla_adapter_instruction") as session:
        publisher = session.node.create_publisher(String, args.topic, instruction_qos())
        publisher.publish(String(data=args.text))  # kept by transient local for late joiners
        deadline = time.monotonic() + args.timeout
        try:
            session.wait_for_subscribers(publisher, args.timeout)
        except TimeoutError:
            print(f"error: no subscriber on {args.topic} after {args.timeout:.1f} s; "
                  "nothing received the instruction", file=sys.stderr)
            return 3
        matched = publisher.get_subscription_count()
        if not publisher.wait_for_all_acked(Duration(seconds=max(0.1, deadline - time.monotonic()))):
            print(f"error: {matched} subscriber(s) on {args.topic} did not acknowledge within "
                  f"{args.timeout:.1f} s", file=sys.stderr)
            return 3
        print(f"sent {args.text!r} on {args.topic} ({matched} subscriber(s) acknowledged)")
        if args.hold:
            try:  # keep the publisher (and its transient local sample) up; nothing to wait for but the end
                session.wait_for(lambda: False, float("inf") if args.hold < 0 else args.hold, "")
            except (TimeoutError, KeyboardInterrupt):
                pass
        return 0


# --- status -------------------------------------------------------------------
def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)


def get_status(node_name: str, timeout_s: float) -> Any:
    """The node's current DiagnosticStatus from its ``~/get_status`` service (the same keys and
    values as its /diagnostics message, built on demand): a value read when it is true, not up
    to a diagnostics period old. Raises ServiceUnavailableError."""
    return call_service(GetStatus, service_name(node_name, "get_status"), GetStatus.Request(), timeout_s).status


def run_status(args: argparse.Namespace) -> int:
    try:
        status = get_status(args.node, args.timeout)
    except ServiceUnavailableError as exc:
        print(f"error: no status from {args.node}: {exc} (is the node running, in this ROS_DOMAIN_ID?)",
              file=sys.stderr)
        return 3
    level = int.from_bytes(status.level, "little") if isinstance(status.level, bytes) else int(status.level)
    level_name = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}.get(level, str(level))
    print(f"{status.name}: {level_name}: {status.message}")
    width = max((len(kv.key) for kv in status.values), default=0)
    for kv in status.values:
        print(f"  {kv.key:<{width}}  {kv.value}")
    return 0 if level_name == "OK" else 1
