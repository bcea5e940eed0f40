"""Fusion transformer over [readout tokens, image tokens, language token, proprio token]."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import make_blocks
from .config import ModelConfig


class FusionTransformer(nn.Module):
    """Fuses the modalities; returns the K readout tokens (B, K, C) that the head decodes."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        C, K = config.d_model, config.chunk_length
        self.lang_proj = nn.Linear(config.lang_dim, C)  # sentence embedding -> 1 token
        self.proprio_proj = nn.Linear(config.proprio_dim, C)  # proprio vector -> 1 token
        # One learned query per future action step (ACT / Octo style readouts).
        self.readout = nn.Parameter(torch.zeros(1, K, C))
        # Learned position / modality embedding for every token of the fused sequence.
        self.n_tokens = K + config.n_patches + 2
        self.pos_embed = nn.Parameter(torch.zeros(1, self.n_tokens, C))
        nn.init.trunc_normal_(self.readout, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = make_blocks(config, config.fusion_layers)
        self.norm = nn.LayerNorm(C)

    def forward(
        self, image_tokens: torch.Tensor, instruction_embedding: torch.Tensor, proprio: torch.Tensor
    ) -> torch.Tensor:
        B = image_tokens.shape[0]
        K = self.readout.shape[1]
        lang = self.lang_proj(instruction_embedding).unsqueeze(1)  # (B, 1, C)
        prop = self.proprio_proj(proprio).unsqueeze(1)  # (B, 1, C)
        readout = self.readout.expand(B, -1, -1)  # (B, K, C)
        x = torch.cat([readout, image_tokens, lang, prop], dim=1)  # (B, K + N + 2, C)
        x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x[:, :K])  # (B, K, C)
