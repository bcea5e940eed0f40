"""Fusion transformer over [readout tokens, image tokens of every view, language token, proprio token]."""

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
        C, K, N, V = config.d_model, config.chunk_length, config.n_patches, len(config.cameras)
        self.lang_proj = nn.Linear(config.lang_dim, C)  # sentence embedding -> 1 token
        self.proprio_proj = nn.Linear(config.proprio_dim, C)  # proprio vector -> 1 token
        # One learned query per future action step (ACT / Octo style readouts).
        self.readout = nn.Parameter(torch.zeros(1, K, C))
        # Learned position / modality embedding: K readouts, one grid of N image positions, language,
        # proprio. Every view's tokens share the grid's positions (the views go through one encoder)...
        self.pos_embed = nn.Parameter(torch.zeros(1, K + N + 2, C))
        # ... and a learned per-view embedding says which camera a token comes from. None for one view:
        # a single-camera model has exactly the tensors (so outputs and fingerprint) it had before views.
        self.view_embed: nn.Parameter | None
        self.register_parameter("view_embed", nn.Parameter(torch.zeros(1, V, 1, C)) if V > 1 else None)
        self.n_tokens = K + V * N + 2
        nn.init.trunc_normal_(self.readout, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.view_embed is not None:
            nn.init.trunc_normal_(self.view_embed, std=0.02)
        self.blocks = make_blocks(config, config.fusion_layers)
        self.norm = nn.LayerNorm(C)

    def forward(
        self, image_tokens: torch.Tensor, instruction_embedding: torch.Tensor, proprio: torch.Tensor
    ) -> torch.Tensor:
        B, V, N, C = image_tokens.shape  # (B, V, N, C)
        K = self.readout.shape[1]
        pos_readout, pos_image, pos_lang, pos_prop = self.pos_embed.split([K, N, 1, 1], dim=1)
        # Positions are added per part, then concatenated: element for element the same sums as adding
        # one (K + N + 2)-long table to the concatenation, so one view reproduces older models bit for bit.
        image = image_tokens + pos_image.unsqueeze(1)  # (B, V, N, C)
        if self.view_embed is not None:
            image = image + self.view_embed  # (B, V, N, C) + (1, V, 1, C)
        readout = self.readout.expand(B, -1, -1) + pos_readout  # (B, K, C)
        lang = self.lang_proj(instruction_embedding).unsqueeze(1) + pos_lang  # (B, 1, C)
        prop = self.proprio_proj(proprio).unsqueeze(1) + pos_prop  # (B, 1, C)
        x = torch.cat([readout, image.reshape(B, V * N, C), lang, prop], dim=1)  # (B, K + V*N + 2, C)
        for block in self.blocks:
            x = block(x)
        return self.norm(x[:, :K])  # (B, K, C)
