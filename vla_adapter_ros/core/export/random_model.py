"""Random-weight models for tests, benchmarks and demos (never a trained policy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vla_adapter_ros import processing
from vla_adapter_ros.core.adapters import add_tuner, save_adapter
from vla_adapter_ros.core.checkpoint import save_checkpoint
from vla_adapter_ros.core.config import AdapterConfig, ModelConfig
from vla_adapter_ros.core.model import VLAPolicy
from vla_adapter_ros.core.tuners import tuner_parameters


def make_random_checkpoint(
    directory: str | Path,
    config: Any = None,
    adapters: dict[str, Any] | None = None,
    *,
    seed: int = 0,
    adapter_std: float = 0.05,
) -> tuple[Path, list[Path]]:
    """A random-weight backbone checkpoint plus saved, non-identity random adapters.

    For tests, benchmarks and demos until a trained model exists: NOT a trained policy.
    Returns ``(checkpoint_dir, [adapter_dir, ...])``; ``adapters`` maps names to
    AdapterConfig / LoraConfig / PrefixConfig (default: one bottleneck adapter of the default rank named ``"default"``).
    Statistics are Meta-World-like so de-normalisation and clipping are exercised.
    """
    directory = Path(directory)
    config = config or ModelConfig()
    adapters = adapters if adapters is not None else {"default": AdapterConfig()}
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    p, a = config.proprio_dim, config.action_dim
    stats = {
        "proprio": processing.Normalizer(rng.normal(0.2, 0.2, p), rng.uniform(0.05, 0.3, p)),
        "actions": processing.Normalizer(rng.normal(0.0, 0.05, a), rng.uniform(0.2, 0.6, a)),
    }
    model = VLAPolicy(config, stats=stats).eval()
    checkpoint = save_checkpoint(model, directory / "checkpoint", adapters=False)
    out = []
    with torch.no_grad():
        for name, cfg in adapters.items():
            add_tuner(model, name, cfg)
            for param in tuner_parameters(model, name):
                param.normal_(0.0, adapter_std)  # a visible, distinct effect per adapter
            out.append(save_adapter(model, name, directory / "adapters" / name))
    return checkpoint, out
