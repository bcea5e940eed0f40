"""Backbone checkpoints: exact round trip, adapters alongside, corruption detected, no pickle."""

from __future__ import annotations

import json

import pytest
import torch
from core_data import tensors_equal
from safetensors.torch import load_file, save_file

from vla_adapter_ros.core.adapters import AdapterConfig, add_adapter, set_adapter
from vla_adapter_ros.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def test_round_trip_is_exact(policy, inputs, tmp_path):
    add_adapter(policy, "a", AdapterConfig(rank=4, init="small_random"))
    save_checkpoint(policy, tmp_path / "ck")
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["adapters", "config.json", "model.safetensors", "stats.json"]
    assert json.loads((tmp_path / "ck" / "stats.json").read_text())["actions"]["mean"] == [0.0, 0.0, 0.0, 0.5]
    loaded = load_checkpoint(tmp_path / "ck").eval()
    assert loaded.config == policy.config
    assert tensors_equal(loaded.backbone_state_dict(), policy.backbone_state_dict())
    assert loaded.backbone_fingerprint() == policy.backbone_fingerprint()
    assert torch.equal(loaded.predict(*inputs), policy.predict(*inputs))
    set_adapter(loaded, "a")
    set_adapter(policy, "a")
    assert torch.equal(loaded.predict(*inputs), policy.predict(*inputs))
    bare = load_checkpoint(tmp_path / "ck", adapters=False)
    assert bare.tuner_configs == {}


def test_tampering_and_missing_files_are_errors(policy, tmp_path):
    save_checkpoint(policy, tmp_path / "ck", adapters=False)
    weights = tmp_path / "ck" / "model.safetensors"
    state = load_file(str(weights))
    state["head.out.bias"] = state["head.out.bias"] + 1
    save_file(state, str(weights), metadata={"backbone_fingerprint": policy.backbone_fingerprint()})
    with pytest.raises(CheckpointError, match="fingerprint"):
        load_checkpoint(tmp_path / "ck")
    del state["head.out.bias"]
    save_file(state, str(weights))
    with pytest.raises(CheckpointError, match="head.out.bias"):
        load_checkpoint(tmp_path / "ck")
    weights.unlink()
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(tmp_path / "ck")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")


def test_stats_file_must_agree(policy, tmp_path):
    save_checkpoint(policy, tmp_path / "ck")
    stats = json.loads((tmp_path / "ck" / "stats.json").read_text())
    stats["proprio"]["mean"][0] = 42.0
    (tmp_path / "ck" / "stats.json").write_text(json.dumps(stats))
    with pytest.raises(CheckpointError, match="proprio statistics"):
        load_checkpoint(tmp_path / "ck")
