"""`vla-adapter train --config FILE` end to end on rosbag2 episodes written to tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from core_data import tiny_config

from vla_adapter_ros.cli import main
from vla_adapter_ros.core.adapters import load_adapter
from vla_adapter_ros.core.checkpoint import load_checkpoint
from vla_adapter_ros.core.config import AdapterConfig, TrainConfig


def _write_bags(root, n_episodes=2, frames=8):
    from vla_adapter_ros.bags.episodes import EpisodeWriter
    from vla_adapter_ros.bags.typestore import make_typestore

    store = make_typestore()
    rng = np.random.default_rng(0)
    for e in range(n_episodes):
        with EpisodeWriter(root / f"ep{e}", task="drawer-open-v3", seed=e, typestore=store, dt=0.0125) as w:
            for t in range(frames):
                w.write_step(
                    1_000_000_000 + t * 12_500_000,
                    rng.integers(0, 256, (40, 40, 3), dtype=np.uint8),
                    rng.normal(size=4).astype(np.float32),
                    rng.uniform(-1, 1, 4).astype(np.float32),
                    instruction="open the drawer",
                )
            w.finish(success=True)


@pytest.mark.slow
def test_train_cli_pretrain_then_adapter_on_bags(tmp_path, capsys):
    pytest.importorskip("vla_adapter_ros.core.data")
    _write_bags(tmp_path / "bags")
    common = dict(model=tiny_config(), data=(str(tmp_path / "bags" / "ep*"),), steps=3, batch_size=4,
                  warmup_steps=1, log_every=1, progress=False, plot=False)
    pre = TrainConfig(out_dir=str(tmp_path / "pre"), **common).save(tmp_path / "pre.yaml")
    assert main(["train", "--config", str(pre)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["step"] == 3 and summary["artifact"].endswith("checkpoint")
    backbone = load_checkpoint(tmp_path / "pre" / "checkpoint")
    assert not np.allclose(backbone.stats["actions"].std, 1.0)  # statistics fitted on the episodes

    ad = TrainConfig(regime="adapter", init_checkpoint=str(tmp_path / "pre" / "checkpoint"),
                     adapter_name="drawer", adapter=AdapterConfig(rank=4, task="drawer-open-v3"),
                     out_dir=str(tmp_path / "ad"), **common).save(tmp_path / "ad.json")
    assert main(["train", "--config", str(ad), "--set", "steps=2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["artifact"].endswith("adapters/drawer")
    assert load_adapter(backbone, summary["artifact"]) == "drawer"  # fits the backbone it was trained on


def test_train_cli_reports_config_and_data_errors(tmp_path, capsys):
    cfg = TrainConfig(data=(str(tmp_path / "none" / "ep*"),), out_dir=str(tmp_path / "o")).save(tmp_path / "c.json")
    assert main(["train", "--config", str(cfg)]) == 2
    assert "matches nothing" in capsys.readouterr().err
    assert main(["train", "--config", str(cfg), "--set", "steps=-1"]) == 2
    assert "steps must be a positive int, got -1" in capsys.readouterr().err


# --- the new-task path: flags instead of a config file ------------------------------------------
def test_train_an_adapter_from_flags_alone(tmp_path, capsys):
    from vla_adapter_ros.core.adapters.config import SavedAdapter
    from vla_adapter_ros.core.config import DEFAULT_ADAPTER_RANK
    from vla_adapter_ros.core.export import make_random_checkpoint

    _write_bags(tmp_path / "bags", frames=6)
    backbone, _ = make_random_checkpoint(tmp_path / "src", tiny_config(), {}, seed=0)
    out = tmp_path / "door"
    assert main(["train", "--backbone", str(backbone), "--data", str(tmp_path / "bags"), "--adapter", "drawer",
                 "--steps", "2", "--out-dir", str(out), "--set", "batch_size=4", "--set", "warmup_steps=1",
                 "--set", "progress=false", "--set", "plot=false"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["artifact"] == str(out / "adapters" / "drawer") and summary["step"] == 2
    saved = SavedAdapter.load(out / "adapters" / "drawer")
    # the default rank, and the task and instructions of the data, stored with the adapter (list_adapters shows them)
    assert saved.config.rank == DEFAULT_ADAPTER_RANK == 16
    assert (saved.config.task, saved.config.instruction_examples) == ("drawer-open-v3", ("open the drawer",))
    assert load_adapter(load_checkpoint(backbone), out / "adapters" / "drawer") == "drawer"


def test_train_flags_override_a_config_and_set_overrides_flags(tmp_path):
    from vla_adapter_ros.cli import build_parser
    from vla_adapter_ros.core.train_cli import config_from_args

    path = TrainConfig(regime="lora", init_checkpoint="ckpt", data=("a",), adapter_name="x",
                       out_dir="keep").save(tmp_path / "c.yaml")
    args = build_parser().parse_args(["train", "--config", str(path), "--rank", "4", "--task", "t",
                                      "--instruction-example", "do it", "--set", "lora.rank=2"])
    cfg = config_from_args(args)
    assert (cfg.regime, cfg.lora.rank, cfg.lora.task, cfg.lora.instruction_examples, cfg.out_dir) == (
        "lora", 2, "t", ("do it",), "keep")
    from vla_adapter_ros.core.export import make_random_checkpoint

    backbone, _ = make_random_checkpoint(tmp_path / "src", tiny_config(), {}, seed=0)
    args = build_parser().parse_args(["train", "--backbone", str(backbone), "--data", "b1", "b2", "--adapter",
                                      "door_close"])
    cfg = config_from_args(args)
    assert (cfg.regime, cfg.init_checkpoint, cfg.data, cfg.adapter_name, cfg.adapter.rank, cfg.out_dir) == (
        "adapter", str(backbone), ("b1", "b2"), "door_close", 16, "runs/train/door_close")


@pytest.mark.parametrize("argv, needle", [
    ([], "give --config FILE, or --data BAG"),
    (["--data", "b"], "--backbone DIR is needed to fine-tune"),
    (["--data", "b", "--backbone", "c", "--regime", "head_only", "--rank", "4"],
     "--rank describe a tuner; regime 'head_only' trains none"),
    (["--data", "b", "--backbone", "c", "--regime", "prefix", "--rank", "4"], "a prefix has no rank"),
    (["--data", "b", "--backbone", "c", "--adapter", "../x"], "adapter_name"),
    (["--data", "b", "--backbone", "/nonexistent/ckpt"], "--backbone /nonexistent/ckpt: not a checkpoint directory"),
    (["--data", "b", "--backbone", str(Path(__file__).resolve().parents[2] / "models" / "default")],
     "an exported (ONNX) model directory cannot be trained"),
])
def test_train_flags_errors_say_what_is_wrong(argv, needle, capsys):
    assert main(["train", *argv]) == 2
    assert needle in capsys.readouterr().err


def test_the_example_config_is_the_flag_run_it_documents():
    """config/train_adapter.yaml and the command in its header describe the same TrainConfig."""
    from vla_adapter_ros.cli import build_parser
    from vla_adapter_ros.core.train_cli import config_from_args

    root = Path(__file__).resolve().parents[2]
    from_file = TrainConfig.load(root / "config" / "train_adapter.yaml")
    backbone = str(root / "models" / "metaworld_torch" / "checkpoint")
    args = build_parser().parse_args(["train", "--backbone", backbone, "--data", "demos/door-close-v3", "--adapter",
                                      "door_close", "--steps", "1000", "--out-dir", "runs/train/door_close"])
    from_flags = config_from_args(args)
    assert from_flags.to_dict() == {**from_file.to_dict(), "init_checkpoint": backbone}
