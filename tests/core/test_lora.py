"""LoRA baseline: same guarantees as the adapters (identity, isolation, switching, save/load, report)."""

from __future__ import annotations

import json

import pytest
import torch
from core_data import tensors_equal, train_steps

from vla_adapter_ros.core.adapters import (
    CONFIG_NAME,
    AdapterConfig,
    AdapterLoadError,
    adapter_state_dict,
    add_adapter,
    delete_adapter,
    load_adapter,
    parameter_report,
    save_adapter,
    set_adapter,
)
from vla_adapter_ros.core.config import LoraConfig
from vla_adapter_ros.core.lora import LoraLayer, add_lora
from vla_adapter_ros.core.model import VLAPolicy


def test_lora_targets_identity_and_counts(policy, inputs):
    ref = policy.predict(*inputs)
    paths = add_lora(policy, "l", LoraConfig(rank=2))
    assert paths == [
        "vision.blocks.0.attn.qkv", "vision.blocks.0.attn.proj", "vision.blocks.0.mlp.fc", "vision.blocks.0.mlp.proj",
        "fusion.blocks.0.attn.qkv", "fusion.blocks.0.attn.proj", "fusion.blocks.0.mlp.fc", "fusion.blocks.0.mlp.proj",
    ]
    set_adapter(policy, "l")
    assert torch.equal(policy.predict(*inputs), ref)  # B = 0
    # r * (in + out) per linear: qkv 32->96, proj 32->32, fc 32->64, proj 64->32; two blocks
    expected = 2 * 2 * ((32 + 96) + (32 + 32) + (32 + 64) + (64 + 32))
    assert parameter_report(policy).row("l").params == expected
    only_out = add_lora(policy, "o", LoraConfig(rank=2, targets=("attn_out", "ffn_out"), components=("fusion",)))
    assert only_out == ["fusion.blocks.0.attn.proj", "fusion.blocks.0.mlp.proj"]


def test_lora_training_isolation_switch_delete(policy, inputs):
    ref = policy.predict(*inputs)
    backbone = {k: v.clone() for k, v in policy.backbone_state_dict().items()}
    keys = sorted(policy.state_dict())
    add_lora(policy, "l", LoraConfig(rank=2))
    add_adapter(policy, "a", AdapterConfig(rank=2))  # adapters and LoRA can share a slot
    set_adapter(policy, "l")
    before_a = adapter_state_dict(policy, "a")
    train_steps(policy, "l", inputs)
    assert tensors_equal(policy.backbone_state_dict(), backbone)
    assert tensors_equal(adapter_state_dict(policy, "a"), before_a)
    lora_out = policy.predict(*inputs)
    assert not torch.equal(lora_out, ref)
    set_adapter(policy, "a")
    assert torch.equal(policy.predict(*inputs), ref)  # zero-init adapter active, LoRA inactive
    set_adapter(policy, None)
    assert torch.equal(policy.predict(*inputs), ref)
    delete_adapter(policy, "a")
    set_adapter(policy, "l")
    assert torch.equal(policy.predict(*inputs), lora_out)
    delete_adapter(policy, "l")
    assert sorted(policy.state_dict()) == keys and not any(isinstance(m, LoraLayer) for m in policy.modules())
    assert torch.equal(policy.predict(*inputs), ref)


def test_lora_save_load_exact_and_fingerprint(policy, inputs, tmp_path):
    add_lora(policy, "l", LoraConfig(rank=2, alpha=4, task="drawer"))
    set_adapter(policy, "l")
    train_steps(policy, "l", inputs)
    out = policy.predict(*inputs)
    save_adapter(policy, "l", tmp_path / "l")
    meta = json.loads((tmp_path / "l" / CONFIG_NAME).read_text())
    assert meta["method"] == "lora" and meta["rank"] == 2 and meta["alpha"] == 4 and meta["task"] == "drawer"
    fresh = VLAPolicy(policy.config).eval()
    fresh.load_backbone_state_dict(policy.backbone_state_dict())
    load_adapter(fresh, tmp_path / "l", activate=True)
    assert isinstance(fresh.tuner_configs["l"], LoraConfig)
    assert torch.equal(fresh.predict(*inputs), out)
    with pytest.raises(AdapterLoadError, match="trained on backbone"):
        load_adapter(VLAPolicy(policy.config), tmp_path / "l")
