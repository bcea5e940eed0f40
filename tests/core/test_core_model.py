"""VLAPolicy: shapes, masked loss, statistics, fingerprint, select_action."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from core_data import tiny_config

from vla_adapter_ros import processing as P
from vla_adapter_ros.core.config import ModelConfig
from vla_adapter_ros.core.model import VLAPolicy, example_inputs


def _batch(config, inputs):
    image, emb, proprio = inputs
    B = image.shape[0]
    return {
        P.IMAGE: image,
        P.INSTRUCTION_EMBEDDING: emb,
        P.PROPRIO: proprio,
        P.ACTIONS: torch.zeros(B, config.chunk_length, config.action_dim),
        P.ACTIONS_MASK: torch.ones(B, config.chunk_length, dtype=torch.bool),
    }


def test_predict_shape_and_batch_independence(policy, config, inputs):
    out = policy.predict(*inputs)
    assert out.shape == (3, config.chunk_length, config.action_dim)
    single = policy.predict(*(x[1:2] for x in inputs))
    torch.testing.assert_close(single, out[1:2], rtol=1e-5, atol=1e-6)


def test_masked_loss_ignores_padding(policy, config, inputs):
    batch = _batch(config, inputs)
    pred = policy.predict(*inputs).detach()
    batch[P.ACTIONS] = pred.clone()
    batch[P.ACTIONS][:, -1] += 100.0  # wrong only where masked out
    batch[P.ACTIONS_MASK][:, -1] = False
    loss, info = policy(batch)
    assert float(loss.detach()) < 1e-6 and info["mse"] < 1e-6
    batch[P.ACTIONS_MASK][:, -1] = True
    loss, info = policy(batch)
    K = config.chunk_length
    assert abs(float(loss.detach()) - 100.0 / K) < 1e-3  # L1 averaged over K * A valid elements
    mse_policy = VLAPolicy(tiny_config(loss="mse"))
    mse_policy.load_backbone_state_dict(policy.backbone_state_dict())
    loss_mse, _ = mse_policy.eval()(batch)
    assert abs(float(loss_mse.detach()) - info["mse"]) < 1e-2


def test_stats_travel_in_buffers_and_denormalise(policy, config, inputs):
    stats = policy.stats
    assert stats["actions"].mean.tolist() == [0.0, 0.0, 0.0, 0.5]
    assert "action_std" in policy.backbone_state_dict()
    batch = _batch(config, inputs)
    chunk = policy.predict_chunk(batch)
    expected = stats["actions"].denormalize(policy.predict(*inputs).detach().numpy())
    torch.testing.assert_close(chunk, torch.from_numpy(expected))


def test_select_action_replans_every_chunk(policy, config, inputs):
    batch = _batch(config, inputs)
    chunk = policy.predict_chunk(batch)
    policy.reset()
    got = [policy.select_action(batch) for _ in range(config.chunk_length)]
    torch.testing.assert_close(torch.stack(got, dim=1), chunk)
    assert len(policy._action_queue) == 0
    policy.select_action(batch)
    policy.reset()
    assert len(policy._action_queue) == 0


def test_fingerprint_tracks_config_weights_and_stats(policy):
    fp = policy.backbone_fingerprint()
    assert fp == policy.backbone_fingerprint() and len(fp) == 64
    other = VLAPolicy(policy.config)
    other.load_backbone_state_dict(policy.backbone_state_dict())
    assert other.backbone_fingerprint() == fp
    with torch.no_grad():
        other.head.out.bias[0] += 1e-3
    assert other.backbone_fingerprint() != fp
    other.load_backbone_state_dict(policy.backbone_state_dict())
    with torch.no_grad():
        other.action_std[0] *= 2
    assert other.backbone_fingerprint() != fp


def test_default_model_sizes():
    model = VLAPolicy(ModelConfig())
    n = model.num_backbone_parameters()
    assert 1_000_000 < n < 5_000_000
    image, emb, proprio = example_inputs(model.config, 2)
    assert model.predict(image, emb, proprio).shape == (2, 4, 4)


def test_convolutional_stem_keeps_the_token_grid_and_older_fingerprints():
    plain = ModelConfig(image_size=32, patch_size=8, d_model=32, vision_layers=1, fusion_layers=1, n_heads=2)
    stem = ModelConfig.from_dict({**plain.to_dict(), "stem_channels": 8})
    model = VLAPolicy(stem)
    image, emb, proprio = example_inputs(stem, 2)
    assert model.vision(image).shape == (2, stem.n_patches, 32) == (2, 16, 32)
    assert model.predict(image, emb, proprio).shape == (2, stem.chunk_length, stem.action_dim)
    assert VLAPolicy(plain).vision.stem is None and model.vision.patch_embed.in_channels == 16
    # the defaults of fields added later (stem_channels, cameras) are left out of the fingerprint, so
    # backbones saved before they existed still match
    base = VLAPolicy(plain)
    fp = base.backbone_fingerprint()
    h = hashlib.sha256()
    later = ("stem_channels", "cameras")
    h.update(json.dumps({k: v for k, v in plain.to_dict().items() if k not in later}, sort_keys=True).encode())
    for name, t in sorted(base.backbone_state_dict().items()):
        t = t.detach().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    assert h.hexdigest() == fp
    with pytest.raises(ValueError, match="patch_size % 4"):
        ModelConfig(image_size=36, patch_size=6, stem_channels=8)
    with pytest.raises(ValueError, match="stem_channels must be"):
        ModelConfig(stem_channels=-1)
