"""Vision encoder: a small ViT (conv patch embedding, optionally after a conv stem, + pre-LN blocks)."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import make_blocks
from .config import ModelConfig


class VisionEncoder(nn.Module):
    """(B, 3, H, W) image in [-1, 1] -> (B, N, C) image tokens, N = (H / patch)^2."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        C = config.d_model
        c = config.stem_channels
        if c:  # two stride-2 3x3 convs, then a (patch/4)-strided projection: same token grid
            self.stem: nn.Module | None = nn.Sequential(
                nn.Conv2d(3, c, 3, stride=2, padding=1), nn.ReLU(),
                nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.ReLU(),
            )
            self.patch_embed = nn.Conv2d(2 * c, C, kernel_size=config.patch_size // 4, stride=config.patch_size // 4)
        else:
            self.stem = None
            # A strided conv is exactly "flatten non-overlapping patches + linear".
            self.patch_embed = nn.Conv2d(3, C, kernel_size=config.patch_size, stride=config.patch_size)
        # Learned positions at a fixed grid: no interpolation, no shape-dependent control flow.
        self.pos_embed = nn.Parameter(torch.zeros(1, config.n_patches, C))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = make_blocks(config, config.vision_layers)
        self.norm = nn.LayerNorm(C)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(image if self.stem is None else self.stem(image))  # (B, C, H/p, W/p)
        x = x.flatten(2).transpose(1, 2)  # (B, N, C)
        x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x)  # (B, N, C)
