"""`vla-adapter version`."""

from __future__ import annotations

import argparse

from vla_adapter_ros import __version__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    del args
    print(f"vla_adapter_ros {__version__}")
    return 0
