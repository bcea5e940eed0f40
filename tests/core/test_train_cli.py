"""`vla-adapter train --config FILE` end to end on rosbag2 episodes written to tmp_path."""

from __future__ import annotations

import json

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
