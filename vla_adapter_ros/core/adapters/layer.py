"""Bottleneck adapter layer (Houlsby et al. 2019), PEFT-style wrapper around a sublayer's output linear."""

from __future__ import annotations

import torch
from torch import nn

from ..config import AdapterConfig
from ..tuners import TunerLayer, innermost

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


class Bottleneck(nn.Module):
    """``scaling * W_up act(W_down dropout(h))``: d -> r -> d, with biases."""

    def __init__(self, dim: int, config: AdapterConfig) -> None:
        super().__init__()
        self.dropout = nn.Dropout(config.dropout)
        self.down = nn.Linear(dim, config.rank)  # W_down: default (Kaiming-uniform) random init
        self.act = ACTIVATIONS[config.activation]()
        self.up = nn.Linear(config.rank, dim)  # W_up
        self.scaling = float(config.scaling)
        with torch.no_grad():
            if config.init == "zeros":
                # Zero up-projection: the new adapter is an exact identity, training starts at the backbone.
                nn.init.zeros_(self.up.weight)
                nn.init.zeros_(self.up.bias)
            else:  # "small_random": both projections N(0, init_std), biases zero
                nn.init.normal_(self.down.weight, std=config.init_std)
                nn.init.zeros_(self.down.bias)
                nn.init.normal_(self.up.weight, std=config.init_std)
                nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.scaling * self.up(self.act(self.down(self.dropout(h))))


class AdapterLayer(TunerLayer):
    """Wraps an output projection: ``h = base(x); return h + adapter[active](h)``.

    One :class:`Bottleneck` per adapter name in ``self.adapters``; with no active adapter
    (or one this layer does not hold) it is exactly the base layer.
    """

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.adapters = nn.ModuleDict()

    @property
    def features(self) -> int:
        return innermost(self.base_layer).out_features

    def tuner_dicts(self) -> list[nn.ModuleDict]:
        return [self.adapters]

    def add(self, name: str, config: AdapterConfig) -> None:
        weight = innermost(self.base_layer).weight
        self.adapters[name] = Bottleneck(self.features, config).to(device=weight.device, dtype=weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.base_layer(x)
        # Static Python branch (which adapter is active), not data-dependent: export-safe.
        if self.active_adapter is not None and self.active_adapter in self.adapters:
            h = h + self.adapters[self.active_adapter](h)
        return h

    def extra_repr(self) -> str:
        return f"features={self.features}, adapters={self.names()}, active={self.active_adapter!r}"
