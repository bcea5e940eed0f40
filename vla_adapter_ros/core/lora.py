"""LoRA baseline (Hu et al. 2021) on the same block linears the adapters use.

``y = W x + b + (alpha / r) * B A dropout(x)`` with ``A`` random (Kaiming-uniform) and
``B`` zero, so a new LoRA starts as an exact identity. Same API shape as the bottleneck
adapters: ``add_lora`` here; activation, deletion, saving, loading and reports are
shared (``set_adapter``, ``delete_adapter``, ``save_adapter``, ``load_adapter``,
``parameter_report`` in :mod:`vla_adapter_ros.core.adapters`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import LoraConfig
from .tuners import TunerLayer, attach_tuner, innermost


class LoraUnit(nn.Module):
    """``scaling * B(A(dropout(x)))``: in -> r -> out, no biases."""

    def __init__(self, in_features: int, out_features: int, config: LoraConfig) -> None:
        super().__init__()
        self.dropout = nn.Dropout(config.dropout)
        self.lora_A = nn.Linear(in_features, config.rank, bias=False)
        self.lora_B = nn.Linear(config.rank, out_features, bias=False)
        self.scaling = config.scaling
        with torch.no_grad():
            nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
            nn.init.zeros_(self.lora_B.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scaling * self.lora_B(self.lora_A(self.dropout(x)))


class LoraLayer(TunerLayer):
    """Wraps a linear: ``base(x) + lora[active](x)``; one :class:`LoraUnit` per name."""

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.loras = nn.ModuleDict()

    def tuner_dicts(self) -> list[nn.ModuleDict]:
        return [self.loras]

    def add(self, name: str, config: LoraConfig) -> None:
        lin = innermost(self.base_layer)
        unit = LoraUnit(lin.in_features, lin.out_features, config)
        self.loras[name] = unit.to(device=lin.weight.device, dtype=lin.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        if self.active_adapter is not None and self.active_adapter in self.loras:
            y = y + self.loras[self.active_adapter](x)
        return y

    def extra_repr(self) -> str:
        return f"loras={self.names()}, active={self.active_adapter!r}"


def add_lora(model: nn.Module, name: str, config: LoraConfig | None = None) -> list[str]:
    """Attach LoRA ``name`` to every targeted linear; returns the wrapped slot paths.

    Does not activate it and does not change ``requires_grad`` of anything else
    (use ``set_adapter`` and ``mark_only_adapter_trainable``).
    """
    config = config or LoraConfig()
    return attach_tuner(model, name, config, tuple(config.targets), LoraLayer)
