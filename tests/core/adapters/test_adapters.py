"""Bottleneck adapters: identity at init, isolation of the backbone, switching, save/load, report."""

from __future__ import annotations

import json

import pytest
import torch
from core_data import tensors_equal, tiny_config, train_steps
from safetensors.torch import load_file

from vla_adapter_ros.core.adapters import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    AdapterConfig,
    AdapterLayer,
    AdapterLoadError,
    TunerError,
    adapter_state_dict,
    add_adapter,
    delete_adapter,
    load_adapter,
    mark_only_adapter_trainable,
    parameter_report,
    save_adapter,
    set_adapter,
)
from vla_adapter_ros.core.blocks import MLP, Attention
from vla_adapter_ros.core.model import VLAPolicy


def test_zero_init_adapter_is_exact_identity(policy, inputs):
    ref = policy.predict(*inputs)
    paths = add_adapter(policy, "a", AdapterConfig(rank=4))
    # attn + ffn output projections of 1 vision + 1 fusion block
    assert paths == ["vision.blocks.0.attn.proj", "vision.blocks.0.mlp.proj", "fusion.blocks.0.attn.proj", "fusion.blocks.0.mlp.proj"]
    set_adapter(policy, "a")
    assert torch.equal(policy.predict(*inputs), ref)


def test_adapters_found_structurally_per_position_and_component(policy):
    paths = add_adapter(policy, "v", AdapterConfig(rank=4, positions=("ffn",), components=("vision",)))
    assert paths == ["vision.blocks.0.mlp.proj"]
    assert isinstance(policy.vision.blocks[0].mlp.proj, AdapterLayer)
    assert not isinstance(policy.vision.blocks[0].attn.proj, AdapterLayer)
    assert not isinstance(policy.fusion.blocks[0].mlp.proj, AdapterLayer)
    owners = {type(m) for m in policy.modules() if any(isinstance(c, AdapterLayer) for c in m.children())}
    assert owners == {MLP}
    paths = add_adapter(policy, "f", AdapterConfig(rank=4, positions=("attn",), components=("fusion",)))
    assert paths == ["fusion.blocks.0.attn.proj"] and isinstance(policy.fusion.blocks[0].attn, Attention)
    with pytest.raises(TunerError, match="language"):
        add_adapter(policy, "l", AdapterConfig(components=("language",)))
    with pytest.raises(TunerError, match="already exists"):
        add_adapter(policy, "v", AdapterConfig())
    with pytest.raises(ValueError, match="a.b"):
        add_adapter(policy, "a.b", AdapterConfig())


def test_training_changes_only_the_adapter(policy, inputs):
    backbone = {k: v.clone() for k, v in policy.backbone_state_dict().items()}
    fingerprint = policy.backbone_fingerprint()
    add_adapter(policy, "a", AdapterConfig(rank=4))
    add_adapter(policy, "b", AdapterConfig(rank=4))
    before_a = adapter_state_dict(policy, "a")
    before_b = adapter_state_dict(policy, "b")
    set_adapter(policy, "a")
    train_steps(policy, "a", inputs)
    assert tensors_equal(policy.backbone_state_dict(), backbone)  # every backbone tensor bit-identical
    assert policy.backbone_fingerprint() == fingerprint
    assert tensors_equal(adapter_state_dict(policy, "b"), before_b)  # the inactive adapter too
    after_a = adapter_state_dict(policy, "a")
    changed = [k for k in after_a if not torch.equal(after_a[k], before_a[k])]
    assert len(changed) == len(after_a)  # every adapter tensor moved (zero up-proj gets gradient first)


def test_deactivate_and_delete_restore_the_backbone_exactly(policy, inputs):
    ref = policy.predict(*inputs)
    keys = sorted(policy.state_dict())
    add_adapter(policy, "a", AdapterConfig(rank=4, init="small_random"))
    set_adapter(policy, "a")
    train_steps(policy, "a", inputs)
    assert not torch.equal(policy.predict(*inputs), ref)
    set_adapter(policy, None)
    assert torch.equal(policy.predict(*inputs), ref)
    set_adapter(policy, "a")
    delete_adapter(policy, "a")
    assert policy.active_adapter is None and policy.tuner_configs == {}
    assert torch.equal(policy.predict(*inputs), ref)
    assert sorted(policy.state_dict()) == keys  # wrappers removed, structure as before
    assert not any(isinstance(m, AdapterLayer) for m in policy.modules())
    with pytest.raises(TunerError, match="'a'"):
        set_adapter(policy, "a")


def test_small_random_init_and_head_copy(policy, inputs):
    ref = policy.predict(*inputs)
    add_adapter(policy, "h", AdapterConfig(rank=4, train_head=True))
    set_adapter(policy, "h")
    assert torch.equal(policy.predict(*inputs), ref)  # zero-init adapter + exact head copy
    head_before = {k: v.clone() for k, v in policy.backbone_state_dict().items() if k.startswith("head.")}
    train_steps(policy, "h", inputs)
    sd = adapter_state_dict(policy, "h")
    assert "head.out.weight" in sd and "head.out.bias" in sd
    assert tensors_equal({k: v for k, v in policy.backbone_state_dict().items() if k.startswith("head.")}, head_before)
    add_adapter(policy, "r", AdapterConfig(rank=4, init="small_random", init_std=1e-2))
    set_adapter(policy, "r")
    diff = (policy.predict(*inputs) - ref).abs().max()
    assert 0 < float(diff.detach()) < 0.1


def test_save_load_round_trip_is_exact(policy, inputs, tmp_path):
    cfg = AdapterConfig(rank=4, activation="gelu", task="pick-place", instruction_examples=("pick up the block",))
    add_adapter(policy, "pick", cfg)
    set_adapter(policy, "pick")
    train_steps(policy, "pick", inputs)
    out = policy.predict(*inputs)
    save_adapter(policy, "pick", tmp_path / "pick")
    meta = json.loads((tmp_path / "pick" / CONFIG_NAME).read_text())
    assert meta["method"] == "bottleneck" and meta["rank"] == 4 and meta["activation"] == "gelu"
    assert meta["positions"] == ["attn", "ffn"] and meta["components"] == ["vision", "fusion"]
    assert meta["task"] == "pick-place" and meta["instruction_examples"] == ["pick up the block"]
    assert meta["backbone_fingerprint"] == policy.backbone_fingerprint()
    weights = load_file(str(tmp_path / "pick" / WEIGHTS_NAME))
    assert meta["num_parameters"] == sum(t.numel() for t in weights.values())
    assert not list(tmp_path.glob("**/*.pt")) and not list(tmp_path.glob("**/*.bin"))

    fresh = VLAPolicy(policy.config).eval()
    fresh.load_backbone_state_dict(policy.backbone_state_dict())
    name = load_adapter(fresh, tmp_path / "pick", activate=True)
    assert name == "pick" and fresh.tuner_configs["pick"] == cfg
    assert tensors_equal(adapter_state_dict(fresh, "pick"), adapter_state_dict(policy, "pick"))
    assert torch.equal(fresh.predict(*inputs), out)
    load_adapter(fresh, tmp_path / "pick", name="pick2")
    assert sorted(fresh.tuner_configs) == ["pick", "pick2"]


def test_foreign_backbone_and_shapes_are_refused(policy, tmp_path):
    add_adapter(policy, "a", AdapterConfig(rank=4))
    save_adapter(policy, "a", tmp_path / "a")
    other = VLAPolicy(policy.config)  # same config, different weights
    with pytest.raises(AdapterLoadError, match="trained on backbone .* this model is .*different weights"):
        load_adapter(other, tmp_path / "a")
    wider = VLAPolicy(tiny_config(d_model=64))
    with pytest.raises(AdapterLoadError, match="d_model"):
        load_adapter(wider, tmp_path / "a")
    with pytest.raises(AdapterLoadError, match="saved shape"):
        load_adapter(wider, tmp_path / "a", check_fingerprint=False)
    assert wider.tuner_configs == {} and not any(isinstance(m, AdapterLayer) for m in wider.modules())
    with pytest.raises(AdapterLoadError, match="no adapter_config.json"):
        load_adapter(policy, tmp_path / "missing")


def test_parameter_report_counts_by_hand(policy, tmp_path):
    # Tiny config: d=32, N=16 patches, hidden=64, K=3, A=4, P=4, E=384, one block per stack.
    block = 2 * 32 * 2 + (32 * 96 + 96) + (32 * 32 + 32) + (32 * 64 + 64) + (64 * 32 + 32)  # 8544
    vision = (3 * 8 * 8 * 32 + 32) + 16 * 32 + block + 2 * 32  # conv, pos, block, norm
    fusion = (384 * 32 + 32) + (4 * 32 + 32) + 3 * 32 + (3 + 16 + 2) * 32 + block + 2 * 32
    head = 32 * 4 + 4
    backbone = vision + fusion + head
    assert (block, backbone) == (8544, 37284)
    assert policy.num_backbone_parameters() == backbone

    add_adapter(policy, "a", AdapterConfig(rank=4))
    add_adapter(policy, "b", AdapterConfig(rank=8, positions=("ffn",), components=("fusion",)))
    mark_only_adapter_trainable(policy, "a")
    set_adapter(policy, "a")
    per_slot = (32 * 4 + 4) + (4 * 32 + 32)  # down + up with biases = 292
    n_a, n_b = 4 * per_slot, (32 * 8 + 8) + (8 * 32 + 32)
    report = parameter_report(policy)
    assert report.backbone_params == backbone
    assert [(r.name, r.params, r.trainable) for r in report.rows] == [
        ("vision", vision, 0), ("fusion", fusion, 0), ("head", head, 0),
        ("a", n_a, n_a), ("b", n_b, 0), ("total", backbone + n_a + n_b, n_a),
    ]
    row = report.row("a")
    assert row.active and abs(row.backbone_percent - 100 * n_a / backbone) < 1e-9
    assert row.trainable_percent == 100.0
    assert abs(report.row("total").trainable_percent - 100 * n_a / (backbone + n_a + n_b)) < 1e-9
    save_adapter(policy, "a", tmp_path / "a")
    assert row.bytes == (tmp_path / "a" / WEIGHTS_NAME).stat().st_size
    text = str(report)
    assert "a *" in text and f"{n_a:,}" in text and "total" in text



@pytest.mark.parametrize("stem_channels", [0, 4])
def test_module_copies_of_patch_embedding_and_norms(stem_channels, tmp_path):
    """train_modules: per-adapter trainable copies (PEFT modules_to_save); the backbone never changes."""
    from torch import nn

    from vla_adapter_ros.core.model import example_inputs

    torch.manual_seed(0)
    policy = VLAPolicy(tiny_config(stem_channels=stem_channels)).eval()
    inputs = example_inputs(policy.config, batch_size=3, seed=1)
    ref, fingerprint = policy.predict(*inputs), policy.backbone_fingerprint()
    backbone = {k: v.clone() for k, v in policy.backbone_state_dict().items()}
    norms = sorted(n for n, m in policy.named_modules() if isinstance(m, nn.LayerNorm) and n.split(".")[0] != "head")
    cfg = AdapterConfig(rank=4, train_modules=("norms", "patch_embed"))
    assert cfg.train_modules == ("patch_embed", "norms")  # canonical order
    paths = add_adapter(policy, "a", cfg)
    embed = ["vision.stem", "vision.patch_embed"] if stem_channels else ["vision.patch_embed"]
    assert paths[4:4 + len(embed)] == embed
    assert sorted(paths[4 + len(embed):]) == norms and len(norms) == 6  # 2 per block + each stack's final norm
    set_adapter(policy, "a")
    assert torch.equal(policy.predict(*inputs), ref)  # exact copies + zero adapters = the backbone
    train_steps(policy, "a", inputs)
    out = policy.predict(*inputs)
    sd = adapter_state_dict(policy, "a")
    moved = [k for k in sd if k.startswith(("vision.patch_embed.", "vision.blocks.0.ln_1.")) and not torch.equal(sd[k], backbone[k])]
    assert moved, "the copies did not train"
    assert tensors_equal(policy.backbone_state_dict(), backbone) and policy.backbone_fingerprint() == fingerprint
    set_adapter(policy, None)
    assert torch.equal(policy.predict(*inputs), ref)

    save_adapter(policy, "a", tmp_path / "a")
    fresh = VLAPolicy(policy.config).eval()
    fresh.load_backbone_state_dict(backbone)
    load_adapter(fresh, tmp_path / "a", activate=True)
    assert fresh.tuner_configs["a"] == cfg and torch.equal(fresh.predict(*inputs), out)
    delete_adapter(fresh, "a")
    assert torch.equal(fresh.predict(*inputs), ref) and sorted(fresh.state_dict()) == sorted(backbone)


def test_train_modules_are_validated():
    with pytest.raises(ValueError, match="train_modules must be a subset"):
        AdapterConfig(train_modules=("stem",))
    from vla_adapter_ros.core.config import LoraConfig

    assert LoraConfig(train_modules="norms").train_modules == ("norms",)
