"""`vla-adapter`: one command line, many subcommands.

Each subcommand lives in its own module that exposes ``add_arguments(parser)``
and ``run(args) -> int``; it is imported only when selected, so
``vla-adapter --help`` and ROS-free commands never load rclpy or torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Modules are imported lazily.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "version": ("vla_adapter_ros.tools.version", "print the package version"),
    "doctor": ("vla_adapter_ros.tools.doctor", "report what this machine has and what is missing"),
    "switch": ("vla_adapter_ros.ros.clients", "switch the policy node's adapter (SwitchAdapter service)"),
    "list": ("vla_adapter_ros.ros.clients", "list the policy node's adapters (ListAdapters service)"),
    "send-instruction": ("vla_adapter_ros.ros.clients", "publish an instruction (reliable, transient local)"),
    "status": ("vla_adapter_ros.ros.clients", "print the policy node's /diagnostics status once"),
    "executor": ("vla_adapter_ros.ros.executor_client", "enable, disable or stop the action executor "
                                                          "(~/enable, ~/stop)"),
    "reset-sim": ("vla_adapter_ros.ros.clients", "start a simulator bridge episode (ResetEpisode service)"),
    "record-sim": ("vla_adapter_ros.core.record", "record Meta-World expert demonstrations as rosbag2 episodes"),
    "train": ("vla_adapter_ros.core.train", "train a backbone, adapter or baseline"),
    "export": ("vla_adapter_ros.core.export", "export backbone + adapters to ONNX with a parity check"),
    "eval": ("vla_adapter_ros.core.evaluate", "closed-loop success rate on Meta-World (checkpoint or ONNX)"),
    "replay": ("vla_adapter_ros.ros.replay", "replay a bag to a running policy node; compare with golden actions"),
    "demo": ("vla_adapter_ros.ros.demo", "sim bridge + policy node: episodes of 3 tasks with adapter switching"),
    "benchmark": ("vla_adapter_ros.core.benchmark", "Meta-World adapter benchmark end to end (resumable)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vla-adapter",
        description="Adapter-tuned VLA policies on ROS 2: train, export, serve, replay.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module, _command=name)
        _module_for(module, name).add_arguments(p)
    return parser


def _module_for(module: str, command: str):
    mod = importlib.import_module(module)
    adder = getattr(mod, f"add_{command.replace('-', '_')}_arguments", None) or mod.add_arguments
    runner = getattr(mod, f"run_{command.replace('-', '_')}", None) or mod.run
    return type("Cmd", (), {"add_arguments": staticmethod(adder), "run": staticmethod(runner)})


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    return int(_module_for(args._module, args._command).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
