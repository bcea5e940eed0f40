"""`vla-adapter train`: a TrainConfig file, or the common case of a new task in flags alone.

    vla-adapter train --backbone models/metaworld_torch/checkpoint --data demos/door-close-v3 \\
        --adapter door_close [--task door-close-v3] [--rank 16] [--steps 1000] [--out-dir runs/door_close]

trains a bottleneck adapter (``--regime`` lora / prefix / head_only / full / pretrain for the others)
with every other TrainConfig field at its default (core/config.py; ``config/train_adapter.yaml`` is
the same run as a commented file). ``--config FILE`` starts from a file instead; the flags then
override its fields, and ``--set KEY=VALUE`` (dotted for sections) overrides anything last. The
tuner's task and instruction examples default to the data's (``core.train.describe_tuner``).
``--lerobot DIR`` trains on a LeRobotDataset v3 as well: converted once to episode bags under
``<out_dir>/lerobot_bags/<name>`` (:func:`vla_adapter_ros.tools.lerobot_dataset.from_lerobot`), so it is
read with the same alignment and normalisation as any bag.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch.distributed as dist

from ..bags.errors import BagError
from ..contract import RobotContract
from ..tools.lerobot_dataset import from_lerobot
from .checkpoint import CONFIG_NAME
from .config import DEFAULT_ADAPTER_RANK, REGIMES, TUNER_REGIMES, TrainConfig
from .train import apply_overrides, train_from_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TrainConfig file (.json, .yaml); without it the flags below describe the run")
    parser.add_argument("--backbone", metavar="DIR", help="pre-trained checkpoint directory to fine-tune "
                        "(init_checkpoint), e.g. models/metaworld_torch/checkpoint")
    parser.add_argument("--data", nargs="+", metavar="BAG", help="episode bags: directories (searched), bags or globs")
    parser.add_argument("--lerobot", nargs="+", metavar="DIR", default=[],
                        help="LeRobotDataset v3 directories to train on as well: converted once to episode bags "
                             "under <out_dir>/lerobot_bags/<name> (vla-adapter dataset from-lerobot; needs the "
                             "LeRobot venv), then read like any bag")
    parser.add_argument("--adapter", metavar="NAME", help="name of the adapter (adapter_name), e.g. door_close")
    parser.add_argument("--task", help="task the adapter is for (default: the task the episodes were recorded for)")
    parser.add_argument("--instruction-example", dest="examples", action="append", metavar="TEXT",
                        help="an instruction to list with the adapter; repeatable (default: the data's first "
                             "distinct instructions)")
    parser.add_argument("--rank", type=int, help=f"adapter / LoRA rank (default {DEFAULT_ADAPTER_RANK})")
    parser.add_argument("--regime", choices=REGIMES, help="what to train (default: adapter with --backbone, "
                                                          "else the config's)")
    parser.add_argument("--steps", type=int, help="optimiser steps (default: the config's, 2000 without one)")
    parser.add_argument("--contract", metavar="FILE", help="robot contract the bags are read through")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, dotted for sections (e.g. adapter.dropout=0.1); repeatable")
    parser.add_argument("--resume", action="store_true", help="continue from <out_dir>/resume if present")
    parser.add_argument("--out-dir", help="where checkpoints, logs and the adapter go (default: the config's; "
                                          "runs/train/<adapter> without one)")
    parser.add_argument("--stop-after", type=int, help="stop after N steps in this call (resume later)")


def flag_overrides(args: argparse.Namespace, base: dict[str, Any]) -> list[str]:
    """The flags as ``KEY=VALUE`` overrides of ``base`` (a TrainConfig dict), in the order they apply."""
    values: dict[str, Any] = {}
    regime = args.regime or ("adapter" if args.backbone and not args.config else base["regime"])
    if regime != base["regime"]:
        values["regime"] = regime
    data = list(args.data or []) + [str(p) for p in lerobot_bag_dirs(args, base)]
    for key, value in (("init_checkpoint", args.backbone), ("data", data or None), ("adapter_name", args.adapter),
                       ("steps", args.steps), ("contract", args.contract), ("out_dir", args.out_dir)):
        if value is not None:
            values[key] = value
    tuner_flags = {"task": args.task, "instruction_examples": args.examples, "rank": args.rank}
    given = {k: v for k, v in tuner_flags.items() if v is not None}
    if given and regime not in TUNER_REGIMES:
        raise ValueError(f"--{'/--'.join(k.replace('_', '-') for k in given)} describe a tuner; regime {regime!r} "
                         f"trains none (tuners: {', '.join(TUNER_REGIMES)})")
    if "rank" in given and regime == "prefix":
        raise ValueError("--rank: a prefix has no rank (set prefix.n_tokens with --set)")
    values |= {f"{regime}.{k}": v for k, v in given.items()}
    if args.resume:
        values["resume"] = True
    if not args.config and args.out_dir is None:
        values["out_dir"] = out_dir_of(args, base)
    return [f"{k}={json.dumps(v)}" for k, v in values.items()]


def out_dir_of(args: argparse.Namespace, base: dict[str, Any]) -> str:
    """Where the run writes: --out-dir, the config's, or runs/train/<adapter> (runs/train/pretrain) without one."""
    if args.out_dir is not None:
        return str(args.out_dir)
    if args.config:
        return str(base["out_dir"])
    regime = args.regime or ("adapter" if args.backbone else base["regime"])
    return f"runs/train/{args.adapter or base['adapter_name']}" if regime in TUNER_REGIMES else "runs/train/pretrain"


def lerobot_bag_dirs(args: argparse.Namespace, base: dict[str, Any]) -> list[Path]:
    """Where the --lerobot datasets' episodes go as bags (``<out_dir>/lerobot_bags/<name>``)."""
    return [Path(out_dir_of(args, base)) / "lerobot_bags" / Path(d).name for d in args.lerobot]


def convert_lerobot(args: argparse.Namespace, base: dict[str, Any]) -> None:
    """Each --lerobot dataset as episode bags, once (a later run, e.g. --resume, reads the same bags)."""
    contract = RobotContract.load(args.contract) if args.contract else None
    for dataset, bags in zip(args.lerobot, lerobot_bag_dirs(args, base), strict=True):
        if not bags.exists():
            done = from_lerobot(dataset, bags, contract=contract)
            print(f"converted {dataset} to {done.episodes} episode bags in {bags} ({done.seconds:.1f} s)",
                  file=sys.stderr)


def check_backbone(path: Path) -> None:
    """A --backbone that is not a training checkpoint directory is an error that says what it is instead."""
    if (path / CONFIG_NAME).is_file():
        return
    if (path / "manifest.json").is_file():
        raise ValueError(f"--backbone {path}: an exported (ONNX) model directory cannot be trained; give its PyTorch "
                         "checkpoint (models/metaworld_torch/checkpoint for the bundled model)")
    raise ValueError(f"--backbone {path}: not a checkpoint directory (no {CONFIG_NAME}); e.g. "
                     "models/metaworld_torch/checkpoint or a pre-training run's <out_dir>/checkpoint")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's TrainConfig: the file (or the defaults), then the flags, then ``--set``."""
    if args.config is None:
        if not args.data and not args.lerobot:
            raise ValueError("give --config FILE, or --data BAG... / --lerobot DIR... (with --backbone DIR and "
                             "--adapter NAME for a new task's adapter)")
        if not args.backbone and args.regime != "pretrain":
            raise ValueError("--backbone DIR is needed to fine-tune (e.g. models/metaworld_torch/checkpoint); "
                             "--regime pretrain trains a backbone from scratch")
        base = TrainConfig().to_dict()
    else:
        base = TrainConfig.load(args.config).to_dict()
    cfg = apply_overrides(base, flag_overrides(args, base) + list(args.overrides))
    if args.backbone:
        check_backbone(Path(args.backbone))
    if args.lerobot:
        convert_lerobot(args, base)
    if not cfg.data:
        raise ValueError(f"{args.config}: 'data' lists no episode directories (or give --data)")
    return cfg


def run(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(args)
        try:
            result = train_from_config(cfg, stop_after=args.stop_after)
        finally:
            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()
    except (FileNotFoundError, ValueError, BagError) as exc:  # config / data problems (ContractError too): say what
        print(f"vla-adapter train: error: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({
            "step": result.step, "loss": result.loss, "out_dir": str(result.out_dir),
            "artifact": str(result.artifact) if result.artifact else None,
            "trainable_params": result.trainable_params, "total_params": result.total_params,
        }, indent=1))
    return 0
