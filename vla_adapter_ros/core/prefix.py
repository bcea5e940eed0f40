"""Prefix tuning (Li & Liang 2021) in the policy's attention layers, beside adapters and LoRA.

Each attention layer of the configured components gets, per prefix name, ``n_tokens`` learned key and
value vectors that every token's query may attend to. With the default gate the prefix has its own
softmax and enters through a per-head gate ``tanh(g)``, g = 0 at creation (the zero-init attention of
LLaMA-Adapter, Zhang et al. 2023), so a new prefix leaves the backbone's outputs exactly as they were
(the same operations run, plus ``0 * prefix``):

    y = softmax(q K^T / sqrt(d)) V + tanh(g_h) softmax(q P_K^T / sqrt(d)) P_V        (gate: true)
    y = softmax(q [P_K; K]^T / sqrt(d)) [P_V; V]                                      (gate: false)

The wrapper sits on the ``Attention`` module (found structurally, ``isinstance``), not on a linear, and
with no active prefix it calls that module unchanged. Activation, deletion, saving, loading and reports
are shared with the other tuners (``set_adapter``, ``delete_adapter``, ``save_adapter``, ``load_adapter``,
``parameter_report`` in :mod:`vla_adapter_ros.core.adapters`). Not exported to ONNX.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Attention
from .config import PrefixConfig
from .tuners import TunerError, TunerLayer, attach_tuner, component_roots, innermost, iter_backbone_modules


class PrefixUnit(nn.Module):
    """One attention layer's prefix: keys and values (1, P, C), and a per-head gate (H,) when gated."""

    def __init__(self, d_model: int, n_heads: int, config: PrefixConfig) -> None:
        super().__init__()
        self.key = nn.Parameter(torch.randn(1, config.n_tokens, d_model) * config.init_std)  # (1, P, C)
        self.value = nn.Parameter(torch.randn(1, config.n_tokens, d_model) * config.init_std)  # (1, P, C)
        self.gate: nn.Parameter | None
        self.register_parameter("gate", nn.Parameter(torch.zeros(n_heads)) if config.gate else None)

    def heads(self, batch: int, n_heads: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values as (B, nh, P, hs), like the layer's own after their head split."""
        _, P, C = self.key.shape
        k = self.key.expand(batch, P, C).reshape(batch, P, n_heads, C // n_heads).transpose(1, 2)
        v = self.value.expand(batch, P, C).reshape(batch, P, n_heads, C // n_heads).transpose(1, 2)
        return k, v


class PrefixLayer(TunerLayer):
    """Wraps an :class:`Attention`: with prefix ``active_adapter`` its queries also attend to that prefix."""

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.prefixes = nn.ModuleDict()

    @property
    def attention(self) -> Attention:
        return innermost(self.base_layer)  # type: ignore[return-value]

    def tuner_dicts(self) -> list[nn.ModuleDict]:
        return [self.prefixes]

    def add(self, name: str, config: PrefixConfig) -> None:
        attn = self.attention
        weight = innermost(attn.qkv).weight  # (3C, C)
        unit = PrefixUnit(weight.shape[1], attn.n_heads, config)
        self.prefixes[name] = unit.to(device=weight.device, dtype=weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Static Python branch (which prefix is active), as in the other tuner layers.
        if self.active_adapter is None or self.active_adapter not in self.prefixes:
            return self.base_layer(x)
        attn, unit = self.attention, self.prefixes[self.active_adapter]
        B, T, C = x.shape
        nh = attn.n_heads
        q, k, v = attn.qkv(x).split(C, dim=2)  # 3 x (B, T, C); qkv/proj go through their own (inactive) wrappers
        q = q.view(B, T, nh, C // nh).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, nh, C // nh).transpose(1, 2)
        v = v.view(B, T, nh, C // nh).transpose(1, 2)
        pk, pv = unit.heads(B, nh)  # (B, nh, P, hs)
        p = attn.dropout if self.training else 0.0
        if unit.gate is None:  # one softmax over prefix and tokens (Li & Liang)
            y = F.scaled_dot_product_attention(q, torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2), dropout_p=p)
        else:  # the layer's own attention, plus the gated prefix attention (zero at creation)
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # (B, nh, T, hs)
            gate = torch.tanh(unit.gate).view(1, nh, 1, 1)
            y = y + gate * F.scaled_dot_product_attention(q, pk, pv, dropout_p=p)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, nh, T, hs) -> (B, T, C)
        return attn.resid_dropout(attn.proj(y))

    def extra_repr(self) -> str:
        return f"prefixes={self.names()}, active={self.active_adapter!r}"


def attention_slots(model: nn.Module, components: tuple[str, ...]) -> list[tuple[str, nn.Module, str]]:
    """(clean path, owner, attribute) of every :class:`Attention` inside ``components``."""
    slots = []
    for comp, root in component_roots(model, components).items():
        for path, m in iter_backbone_modules(root, comp):
            for attr, child in m._modules.items():
                if child is not None and isinstance(innermost(child), Attention):
                    slots.append((f"{path}.{attr}", m, attr))
    if not slots:
        raise TunerError(f"no attention layers found in components {components}")
    return slots


def add_prefix(model: nn.Module, name: str, config: PrefixConfig | None = None) -> list[str]:
    """Attach prefix ``name`` to every attention layer of ``config.components``; returns the wrapped paths.

    Does not activate it and does not change ``requires_grad`` of anything else
    (use ``set_adapter`` and ``mark_only_adapter_trainable``).
    """
    config = config or PrefixConfig()
    return attach_tuner(model, name, config, (), PrefixLayer, targets=attention_slots(model, config.components))
