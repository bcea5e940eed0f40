"""Prefix tuning: the same guarantees as the adapters and LoRA (identity at creation when gated, isolation,
switching beside other tuners, save / load, report, training), a zero-effect deactivation, no ONNX export."""

from __future__ import annotations

import json

import pytest
import torch
from core_data import tensors_equal, train_steps

from vla_adapter_ros.core.adapters import (
    CONFIG_NAME,
    AdapterConfig,
    adapter_state_dict,
    add_adapter,
    delete_adapter,
    load_adapter,
    mark_only_adapter_trainable,
    parameter_report,
    save_adapter,
    set_adapter,
)
from vla_adapter_ros.core.config import LoraConfig, PrefixConfig, TrainConfig
from vla_adapter_ros.core.export import ExportError, export_model
from vla_adapter_ros.core.lora import add_lora
from vla_adapter_ros.core.model import VLAPolicy
from vla_adapter_ros.core.prefix import PrefixLayer, PrefixUnit, add_prefix


def test_a_gated_prefix_is_an_exact_identity_at_creation(policy, inputs):
    ref = policy.predict(*inputs)
    paths = add_prefix(policy, "p", PrefixConfig(n_tokens=5))
    assert paths == ["fusion.blocks.0.attn"]  # the fusion transformer by default
    assert add_prefix(policy, "pv", PrefixConfig(n_tokens=5, components=("vision", "fusion"))) == [
        "vision.blocks.0.attn", "fusion.blocks.0.attn"]
    for name in ("p", "pv"):
        set_adapter(policy, name)
        assert torch.equal(policy.predict(*inputs), ref)  # tanh(0) * prefix attention
    # 5 keys + 5 values of d=32 and one gate per head (2) per attention layer
    assert parameter_report(policy).row("p").params == 2 * 5 * 32 + 2
    assert parameter_report(policy).row("pv").params == 2 * (2 * 5 * 32 + 2)
    assert parameter_report(policy).row("p").kind == "prefix"


def test_an_ungated_prefix_shares_the_softmax_and_changes_the_output(policy, inputs):
    ref = policy.predict(*inputs)
    add_prefix(policy, "p", PrefixConfig(n_tokens=4, gate=False))
    set_adapter(policy, "p")
    unit = next(u for m in policy.modules() if isinstance(m, PrefixLayer) for u in m.prefixes.values())
    assert isinstance(unit, PrefixUnit) and unit.gate is None
    out = policy.predict(*inputs)
    assert not torch.allclose(out, ref, atol=1e-6)  # the prefix takes attention mass from the tokens (Li & Liang)
    train_steps(policy, "p", inputs)
    assert not torch.equal(policy.predict(*inputs), out)
    set_adapter(policy, None)
    assert torch.equal(policy.predict(*inputs), ref)


def test_prefix_training_isolation_switch_delete(policy, inputs):
    ref = policy.predict(*inputs)
    backbone = {k: v.clone() for k, v in policy.backbone_state_dict().items()}
    fingerprint = policy.backbone_fingerprint()
    keys = sorted(policy.state_dict())
    add_prefix(policy, "p", PrefixConfig(n_tokens=3, components=("vision", "fusion")))
    add_adapter(policy, "a", AdapterConfig(rank=2))  # beside an adapter inside the same attention
    add_lora(policy, "l", LoraConfig(rank=2))  # and a LoRA on its qkv / proj
    set_adapter(policy, "p")
    trainable = mark_only_adapter_trainable(policy, "p")
    assert {id(p) for p in trainable} == {id(p) for m in policy.modules() if isinstance(m, PrefixUnit)
                                          for p in m.parameters()}
    before_a, before_l = adapter_state_dict(policy, "a"), adapter_state_dict(policy, "l")
    train_steps(policy, "p", inputs)
    assert tensors_equal(policy.backbone_state_dict(), backbone) and policy.backbone_fingerprint() == fingerprint
    assert tensors_equal(adapter_state_dict(policy, "a"), before_a)
    assert tensors_equal(adapter_state_dict(policy, "l"), before_l)
    gates = [m.gate for m in policy.modules() if isinstance(m, PrefixUnit)]
    assert all(bool((g != 0).all()) for g in gates)  # the gates opened
    prefix_out = policy.predict(*inputs)
    assert not torch.equal(prefix_out, ref)
    for other in ("a", "l", None):  # zero-init adapter, zero-init LoRA, no tuner: the backbone bit for bit
        set_adapter(policy, other)
        assert torch.equal(policy.predict(*inputs), ref)
    delete_adapter(policy, "a")
    delete_adapter(policy, "l")
    set_adapter(policy, "p")
    assert torch.equal(policy.predict(*inputs), prefix_out)
    delete_adapter(policy, "p")
    assert sorted(policy.state_dict()) == keys and not any(isinstance(m, PrefixLayer) for m in policy.modules())
    assert torch.equal(policy.predict(*inputs), ref)


def test_prefix_save_load_exact(policy, inputs, tmp_path):
    add_prefix(policy, "p", PrefixConfig(n_tokens=3, task="drawer", train_head=True))
    set_adapter(policy, "p")
    train_steps(policy, "p", inputs)
    out = policy.predict(*inputs)
    save_adapter(policy, "p", tmp_path / "p")
    meta = json.loads((tmp_path / "p" / CONFIG_NAME).read_text())
    assert meta["method"] == "prefix" and meta["n_tokens"] == 3 and meta["gate"] is True and meta["task"] == "drawer"
    fresh = VLAPolicy(policy.config).eval()
    fresh.load_backbone_state_dict(policy.backbone_state_dict())
    assert load_adapter(fresh, tmp_path / "p", activate=True) == "p"
    assert isinstance(fresh.tuner_configs["p"], PrefixConfig)
    assert torch.equal(fresh.predict(*inputs), out)
    assert sorted(adapter_state_dict(fresh, "p")) == [
        "fusion.blocks.0.attn.gate", "fusion.blocks.0.attn.key", "fusion.blocks.0.attn.value",
        "head.out.bias", "head.out.weight"]


def test_prefix_config_is_validated_and_lives_in_the_train_config():
    with pytest.raises(ValueError, match="n_tokens must be a positive int, got 0"):
        PrefixConfig(n_tokens=0)
    with pytest.raises(ValueError, match=r"components must be a subset of \('vision', 'fusion'\)"):
        PrefixConfig(components=("language",))
    cfg = TrainConfig.from_dict({"regime": "prefix", "init_checkpoint": "x", "prefix": {"n_tokens": 4}})
    assert cfg.tuner == PrefixConfig(n_tokens=4) and cfg.peak_lr == 1e-3
    assert TrainConfig.from_json(cfg.to_json()).prefix.n_tokens == 4
    assert TrainConfig.from_dict({"regime": "full", "init_checkpoint": "x"}).tuner is None


def test_prefix_tuning_is_not_exported(policy, inputs, tmp_path):
    from vla_adapter_ros.core.checkpoint import save_checkpoint

    checkpoint = save_checkpoint(policy, tmp_path / "checkpoint", adapters=False)
    add_prefix(policy, "p", PrefixConfig(n_tokens=2))
    save_adapter(policy, "p", tmp_path / "p")
    with pytest.raises(ExportError, match="'p' is a prefix tuner; ONNX export covers"):
        export_model(checkpoint, [tmp_path / "p"], tmp_path / "model", log=lambda _: None)
    assert not (tmp_path / "model").exists()
