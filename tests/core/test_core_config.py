"""ModelConfig / AdapterConfig / LoraConfig / TrainConfig: validation and round trips."""

from __future__ import annotations

import pytest

from vla_adapter_ros.core.config import (
    DEFAULT_ADAPTER_RANK,
    DEFAULT_LR,
    AdapterConfig,
    LoraConfig,
    ModelConfig,
    TrainConfig,
)


def test_defaults_match_the_design():
    c = ModelConfig()
    assert (c.image_size, c.patch_size, c.d_model, c.vision_layers, c.fusion_layers) == (96, 12, 128, 4, 3)
    assert (c.proprio_dim, c.action_dim, c.chunk_length, c.lang_dim, c.n_patches) == (4, 4, 4, 384, 64)
    a = AdapterConfig()
    assert (a.rank, a.positions, a.components, a.activation, a.init) == (16, ("attn", "ffn"), ("vision", "fusion"), "relu", "zeros")
    assert LoraConfig().rank == a.rank == DEFAULT_ADAPTER_RANK and LoraConfig().scaling == 2.0  # one default rank


@pytest.mark.parametrize(
    "kwargs, quoted",
    [
        (dict(image_size=100), "100"),
        (dict(d_model=130), "130"),
        (dict(dropout=1.5), "1.5"),
        (dict(action_dim=3), "action_names"),
        (dict(loss="huber"), "'huber'"),
        (dict(n_heads=0), "0"),
    ],
)
def test_model_config_rejects_bad_values_quoting_them(kwargs, quoted):
    with pytest.raises(ValueError, match=quoted):
        ModelConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs, quoted",
    [
        (dict(rank=0), "0"),
        (dict(positions=("attn", "mlp")), "'mlp'"),
        (dict(components=("audio",)), "'audio'"),
        (dict(components=()), "must not be empty"),
        (dict(activation="tanh"), "'tanh'"),
        (dict(init="ones"), "'ones'"),
    ],
)
def test_adapter_config_rejects_bad_values(kwargs, quoted):
    with pytest.raises(ValueError, match=quoted):
        AdapterConfig(**kwargs)


def test_presets_and_canonical_order():
    assert [AdapterConfig.preset(r).rank for r in (8, 16, 32)] == [8, 16, 32]
    with pytest.raises(ValueError, match="12"):
        AdapterConfig.preset(12)
    assert AdapterConfig(positions=("ffn", "attn")).positions == ("attn", "ffn")
    assert LoraConfig(rank=4, alpha=8).scaling == 2.0


def test_train_config_lr_defaults_and_validation():
    assert TrainConfig().peak_lr == DEFAULT_LR["pretrain"]
    assert TrainConfig(regime="adapter", init_checkpoint="x").peak_lr == 1e-3
    assert TrainConfig(regime="full", init_checkpoint="x").peak_lr == 1e-4
    assert DEFAULT_LR["adapter"] > DEFAULT_LR["full"] and DEFAULT_LR["lora"] > DEFAULT_LR["full"]
    assert TrainConfig(lr=5e-4).peak_lr == 5e-4
    with pytest.raises(ValueError, match="init_checkpoint"):
        TrainConfig(regime="adapter")
    with pytest.raises(ValueError, match="'sgd'"):
        TrainConfig(regime="sgd")
    with pytest.raises(ValueError, match="bad name"):
        TrainConfig(adapter_name="bad name")


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_round_trip_through_files(tmp_path, suffix):
    cfg = TrainConfig(
        regime="adapter", init_checkpoint="runs/base", data=("a/*", "b"), steps=7,
        model=ModelConfig(image_size=64, patch_size=8),
        adapter=AdapterConfig(rank=16, task="pick", instruction_examples=("pick it",)),
        topics={"image": "/cam"},
    )
    path = cfg.save(tmp_path / f"train{suffix}")
    back = TrainConfig.load(path)
    assert back == cfg
    assert isinstance(back.adapter, AdapterConfig) and back.adapter.instruction_examples == ("pick it",)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_unknown_fields_are_refused(tmp_path):
    with pytest.raises(ValueError, match="bogus"):
        ModelConfig.from_dict({"bogus": 1})
    (tmp_path / "c.json").write_text('{"adapter": {"rnak": 8}}')
    with pytest.raises(ValueError, match="rnak"):
        TrainConfig.load(tmp_path / "c.json")
