"""Transformer building blocks shared by the vision encoder and the fusion transformer.

nanoGPT-style pre-LN blocks. Each sublayer ends in its own ``nn.Linear`` output
projection (``Attention.proj``, ``MLP.proj``): that is the module adapters and LoRA
wrap, found structurally through :data:`SUBLAYER_LINEARS`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig


class Attention(nn.Module):
    """Multi-head self-attention: one fused qkv projection, one output projection."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)  # output projection (adapter / LoRA target)
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        # (B, T, C) -> (B, nh, T, hs)
        q = q.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
        k = k.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
        v = v.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, nh, T, hs) -> (B, T, C)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward: fc -> GELU -> proj."""

    def __init__(self, d_model: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc = nn.Linear(d_model, hidden)
        self.act = nn.GELU()
        self.proj = nn.Linear(hidden, d_model)  # output projection (adapter / LoRA target)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(self.act(self.fc(x))))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn = Attention(d_model, n_heads, dropout)
        self.ln_2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model, mlp_ratio * d_model, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


def make_blocks(config: ModelConfig, n_layers: int) -> nn.ModuleList:
    return nn.ModuleList(
        Block(config.d_model, config.n_heads, config.mlp_ratio, config.dropout) for _ in range(n_layers)
    )


def init_weights(module: nn.Module) -> None:
    """GPT-2 / ViT style init: N(0, 0.02) for linear and conv weights, zero biases, unit LayerNorm."""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _bert_linears() -> dict[type, dict[str, tuple[str, ...]]]:
    """The same four kinds of linear inside a BERT layer (the MiniLM language encoder)."""
    try:  # why here: transformers takes ~1 s to import and only models with a language encoder need it
        from transformers.models.bert import modeling_bert as mb
    except ImportError:  # transformers is optional until the language encoder is used
        return {}
    return {
        mb.BertSelfAttention: {"qkv": ("query", "key", "value")},
        mb.BertSelfOutput: {"attn_out": ("dense",)},
        mb.BertIntermediate: {"ffn_in": ("dense",)},
        mb.BertOutput: {"ffn_out": ("dense",)},
    }


# Structural map from sublayer class to its linears by kind. Adapters wrap the output
# projections ("attn_out" for position "attn", "ffn_out" for "ffn"); LoRA can target
# any kind. Lookup is by isinstance on the owning module, never by parameter name.
SUBLAYER_LINEARS: dict[type, dict[str, tuple[str, ...]]] = {
    Attention: {"qkv": ("qkv",), "attn_out": ("proj",)},
    MLP: {"ffn_in": ("fc",), "ffn_out": ("proj",)},
}


def sublayer_linears() -> dict[type, dict[str, tuple[str, ...]]]:
    """SUBLAYER_LINEARS plus the BERT classes when transformers is importable."""
    table = dict(SUBLAYER_LINEARS)
    table.update(_bert_linears())
    return table
