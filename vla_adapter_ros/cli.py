"""`vla-adapter`: one command line, many subcommands.

Subcommands are registered by name in :data:`SUBCOMMANDS` (module path + one-line help).
Each module exposes ``add_<command>_arguments(parser)`` and ``run_<command>(args) -> int``
(or plain ``add_arguments`` / ``run`` when it serves one command). Only the module of the
command being parsed is imported: ``vla-adapter --help`` lists the table without importing
anything, ``vla-adapter train --help`` imports ``core.train_cli`` (and core.train). So every subcommand
module imports what it needs at its top, like any other module.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "version": ("vla_adapter_ros.tools.version", "print the package version"),
    "doctor": ("vla_adapter_ros.tools.doctor", "report what this machine has and what is missing"),
    "contract": ("vla_adapter_ros.tools.contract_cli",
                 "check a robot contract (the node's topics and QoS), or start one from a bag"),
    "switch": ("vla_adapter_ros.ros.clients", "switch the policy node's adapter (SwitchAdapter service)"),
    "load": ("vla_adapter_ros.ros.clients", "hot-add an adapter of the model directory to the running policy node "
                                             "(LoadAdapter service)"),
    "list": ("vla_adapter_ros.ros.clients", "list the policy node's adapters (ListAdapters service)"),
    "send-instruction": ("vla_adapter_ros.ros.clients", "publish an instruction (reliable, transient local)"),
    "status": ("vla_adapter_ros.ros.clients", "print the policy node's /diagnostics status once"),
    "executor": ("vla_adapter_ros.ros.executor_client", "enable, disable or stop the action executor "
                                                          "(~/enable, ~/stop)"),
    "reset-sim": ("vla_adapter_ros.ros.clients", "start a simulator bridge episode (ResetEpisode service)"),
    "record-sim": ("vla_adapter_ros.core.record", "record Meta-World expert demonstrations as rosbag2 episodes"),
    "train": ("vla_adapter_ros.core.train_cli", "train a backbone, adapter or baseline (a config file, or flags: "
                                                "--backbone --data --adapter [--task --rank])"),
    "export": ("vla_adapter_ros.core.export", "export backbone + adapters to ONNX with a parity check"),
    "smolvla-train": ("vla_adapter_ros.core.smolvla", "train a bottleneck adapter (or the LoRA / full fine-tuning baselines) of a LeRobot SmolVLA on bag episodes"),
    "eval": ("vla_adapter_ros.core.evaluate", "closed-loop success rate on Meta-World (checkpoint or ONNX)"),
    "replay": ("vla_adapter_ros.ros.replay", "replay a bag to a running policy node; compare with golden actions"),
    "dataset": ("vla_adapter_ros.tools.lerobot_dataset", "convert episode bags to a LeRobotDataset v3 and back "
                                                          "(to-lerobot, from-lerobot; LeRobot's own code)"),
    "render": ("vla_adapter_ros.tools.render", "render episode bags as a video (.mp4, .gif): cameras, instruction, "
                                                 "adapter, actions, success"),
    "demo": ("vla_adapter_ros.ros.demo", "sim bridge + policy node: episodes of 3 tasks with adapter switching"),
    "benchmark": ("vla_adapter_ros.core.benchmark", "Meta-World adapter benchmark end to end (resumable)"),
}


def command_functions(command: str) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[[Any], int]]:
    """(add_arguments, run) of ``command``: imports its module (and nothing else)."""
    module: ModuleType = importlib.import_module(SUBCOMMANDS[command][0])
    suffix = command.replace("-", "_")
    adder = getattr(module, f"add_{suffix}_arguments", None) or module.add_arguments
    runner = getattr(module, f"run_{suffix}", None) or module.run
    return adder, runner


class _CommandParser(argparse.ArgumentParser):
    """A subcommand's parser; it gets its arguments from the command's module when it is used."""

    def __init__(self, *args: Any, command: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.command = command
        self._loaded = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        # argparse hands the chosen subcommand's arguments (and --help) to this method.
        if not self._loaded:
            self._loaded = True
            add_arguments, _ = command_functions(self.command)
            add_arguments(self)
        return super().parse_known_args(args, namespace)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; building it imports no subcommand module."""
    parser = argparse.ArgumentParser(
        prog="vla-adapter",
        description="Adapter-tuned VLA policies on ROS 2: train, export, serve, replay.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)
    for name, (_module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, command=name)
        p.set_defaults(_command=name)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_command", None):
        parser.print_help()
        return 2
    _, run = command_functions(args._command)
    return int(run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
