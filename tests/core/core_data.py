"""Tiny configs and a small deterministic in-memory dataset for the core tests.

The dataset yields exactly what the trainer consumes (processing keys, normalised
values); its targets depend on image, instruction and proprio so that training has
something learnable.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from vla_adapter_ros import processing as P
from vla_adapter_ros.core.config import ModelConfig

INSTRUCTIONS = ("pick up the red block", "open the drawer", "push the puck to the goal")


def tiny_config(**overrides) -> ModelConfig:
    base = dict(
        image_size=32, patch_size=8, d_model=32, vision_layers=1, fusion_layers=1,
        n_heads=2, mlp_ratio=2, chunk_length=3,
    )
    base.update(overrides)
    return ModelConfig(**base)


class TinyEpisodes(Dataset):
    """``n`` frames of random images / proprio with actions that are a fixed function of them."""

    def __init__(self, config: ModelConfig, n: int = 16, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        S, K, A, Pd = config.image_size, config.chunk_length, config.action_dim, config.proprio_dim
        self.images = torch.rand(n, 3, S, S, generator=g) * 2 - 1
        self.proprio = torch.randn(n, Pd, generator=g)
        self.task = torch.arange(n) % len(INSTRUCTIONS)
        mean_px = self.images.mean(dim=(1, 2, 3))  # (n,)
        base = self.proprio[:, :A] * 0.5 + mean_px[:, None] + self.task[:, None].float() - 1.0  # (n, A)
        steps = torch.arange(K, dtype=torch.float32)[None, :, None] * 0.1  # (1, K, 1)
        self.actions = base[:, None, :] + steps  # (n, K, A)
        self.mask = torch.ones(n, K, dtype=torch.bool)
        self.mask[::4, -1] = False  # some chunks run past the episode end

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {
            P.IMAGE: self.images[i],
            P.INSTRUCTION: INSTRUCTIONS[int(self.task[i])],
            P.PROPRIO: self.proprio[i],
            P.ACTIONS: self.actions[i],
            P.ACTIONS_MASK: self.mask[i],
        }


def tensors_equal(a: dict, b: dict) -> bool:
    """Same keys and bit-identical tensors."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def train_steps(model, name: str, inputs, steps: int = 3, lr: float = 1e-2) -> None:
    """A few optimiser steps on tuner ``name`` only (everything else frozen), towards all-ones actions."""
    from vla_adapter_ros.core.adapters import mark_only_adapter_trainable

    params = mark_only_adapter_trainable(model, name)
    opt = torch.optim.AdamW(params, lr=lr)
    image, emb, proprio = inputs
    batch = {P.IMAGE: image, P.INSTRUCTION_EMBEDDING: emb, P.PROPRIO: proprio,
             P.ACTIONS: torch.ones(image.shape[0], model.config.chunk_length, model.config.action_dim)}
    model.train()
    for _ in range(steps):
        loss, _ = model(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
