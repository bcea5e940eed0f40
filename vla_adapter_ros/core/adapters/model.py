"""Adapter operations on a policy: add, state dicts, save / load, parameter report.

Activation, deletion and freezing are shared with LoRA and live in ``core/tuners.py``
(re-exported from this package). Weights go to safetensors, metadata to JSON: no
pickle anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from safetensors.torch import save_file
from torch import nn

from ...names import validate_adapter_name
from ..config import AdapterConfig, LoraConfig, PrefixConfig
from ..lora import add_lora
from ..prefix import add_prefix
from ..tuners import (
    POSITION_KIND,
    TunerError,
    attach_tuner,
    backbone_tensors,
    delete_adapter,
    set_adapter,
    tuner_parameters,
    tuner_state_dict,
)
from .config import WEIGHTS_NAME, SavedAdapter, method_of
from .layer import AdapterLayer


class AdapterLoadError(TunerError):
    """A saved adapter does not fit this backbone (fingerprint, shapes or files)."""


def add_adapter(model: nn.Module, name: str, config: AdapterConfig | None = None) -> list[str]:
    """Attach bottleneck adapter ``name`` at ``config.positions`` in ``config.components``.

    Returns the wrapped slot paths. Does not activate the adapter and does not touch
    ``requires_grad`` elsewhere (see ``set_adapter`` / ``mark_only_adapter_trainable``).
    """
    config = config or AdapterConfig()
    return attach_tuner(model, name, config, tuple(POSITION_KIND[p] for p in config.positions), AdapterLayer)


def add_tuner(model: nn.Module, name: str, config: AdapterConfig | LoraConfig | PrefixConfig) -> list[str]:
    """Attach tuner ``name`` of the method ``config`` belongs to (bottleneck adapter, LoRA or prefix)."""
    if isinstance(config, LoraConfig):
        return add_lora(model, name, config)
    if isinstance(config, PrefixConfig):
        return add_prefix(model, name, config)
    return add_adapter(model, name, config)


def adapter_state_dict(model: nn.Module, name: str) -> dict[str, torch.Tensor]:
    """Adapter (or LoRA) ``name``'s tensors keyed by clean slot path: detached CPU copies (a snapshot)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tuner_state_dict(model, name).items()}


@torch.no_grad()
def load_adapter_state_dict(model: nn.Module, name: str, state: Mapping[str, torch.Tensor]) -> None:
    """Copy ``state`` into the attached adapter ``name``; keys and shapes must match exactly."""
    own = tuner_state_dict(model, name)
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise AdapterLoadError(
            f"adapter {name!r} tensors do not match this model: missing {missing[:6]}"
            f"{'...' if len(missing) > 6 else ''}, unexpected {unexpected[:6]}{'...' if len(unexpected) > 6 else ''}"
        )
    for k, t in own.items():
        src = state[k]
        if tuple(src.shape) != tuple(t.shape):
            raise AdapterLoadError(
                f"adapter {name!r} tensor {k!r}: saved shape {tuple(src.shape)}, this model needs {tuple(t.shape)}"
            )
        t.copy_(src)


def _metadata(saved: SavedAdapter) -> dict[str, str]:
    return {
        "format": "pt",
        "method": saved.method,
        "name": saved.name,
        "backbone_fingerprint": saved.backbone_fingerprint,
    }


def _saved(model: nn.Module, name: str) -> tuple[SavedAdapter, dict[str, torch.Tensor]]:
    if name not in model.tuner_configs:
        raise TunerError(f"unknown adapter {name!r}; attached: {sorted(model.tuner_configs)}")
    state = adapter_state_dict(model, name)
    saved = SavedAdapter(
        name=name,
        config=model.tuner_configs[name],
        backbone_fingerprint=model.backbone_fingerprint(),
        num_parameters=sum(t.numel() for t in state.values()),
        model_config=model.config.to_dict(),
    )
    return saved, state


def save_adapter(model: nn.Module, name: str, directory: str | Path) -> Path:
    """Write ``adapter_config.json`` + ``adapter_model.safetensors`` for ``name`` into ``directory``."""
    saved, state = _saved(model, name)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(state, str(directory / WEIGHTS_NAME), metadata=_metadata(saved))
    saved.save(directory)
    return directory


def load_adapter(
    model: nn.Module,
    directory: str | Path,
    name: str | None = None,
    *,
    check_fingerprint: bool = True,
    activate: bool = False,
) -> str:
    """Attach the adapter (or LoRA) saved in ``directory``; returns its name.

    Refuses, with both sides in the message, a backbone with another fingerprint
    (``check_fingerprint=False`` skips only that check) or tensors of other shapes.
    """
    directory = Path(directory)
    try:
        saved = SavedAdapter.load(directory)
    except (FileNotFoundError, ValueError) as exc:
        raise AdapterLoadError(str(exc)) from exc
    name = validate_adapter_name(name or saved.name)
    if name in model.tuner_configs:
        raise AdapterLoadError(f"adapter {name!r} is already attached; delete it first or load under another name")
    if check_fingerprint:
        ours = model.backbone_fingerprint()
        if saved.backbone_fingerprint != ours:
            diff = {
                k: (v, model.config.to_dict().get(k))
                for k, v in saved.model_config.items()
                if model.config.to_dict().get(k) != v and not isinstance(v, list)
            }
            raise AdapterLoadError(
                f"adapter {str(directory)!r} was trained on backbone {saved.backbone_fingerprint[:16]}, "
                f"this model is {ours[:16]}"
                + (f"; config differs (saved, ours): {diff}" if diff else " (same config, different weights)")
            )
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise AdapterLoadError(f"no {WEIGHTS_NAME} in {directory}")
    try:
        state = {}
        with safe_open(str(weights), framework="pt") as f:
            for k in f.keys():
                state[k] = f.get_tensor(k)
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types; re-raised with the file name
        raise AdapterLoadError(f"{weights}: cannot read safetensors ({exc})") from exc
    try:
        add_tuner(model, name, saved.config)
    except TunerError as exc:
        raise AdapterLoadError(f"adapter {str(directory)!r} does not fit this model: {exc}") from exc
    try:
        load_adapter_state_dict(model, name, state)
    except AdapterLoadError:
        delete_adapter(model, name)
        raise
    if activate:
        set_adapter(model, name)
    return name


# ----------------------------------------------------------------------------- report


@dataclass
class ReportRow:
    name: str
    kind: str  # "component" | "bottleneck" | "lora" | "total"
    params: int
    trainable: int
    backbone_percent: float  # params as % of the policy backbone
    bytes: int  # on disk (safetensors file size for adapters, raw tensor bytes otherwise)
    active: bool = False

    @property
    def trainable_percent(self) -> float:
        return 100.0 * self.trainable / self.params if self.params else 0.0


@dataclass
class ParameterReport:
    """Trainable vs total parameters per component and per adapter."""

    backbone_params: int
    rows: list[ReportRow] = field(default_factory=list)

    def row(self, name: str) -> ReportRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no row {name!r}; rows: {[r.name for r in self.rows]}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "backbone_params": self.backbone_params,
            "rows": [{**r.__dict__, "trainable_percent": r.trainable_percent} for r in self.rows],
        }

    def __str__(self) -> str:
        header = ("name", "kind", "params", "trainable", "train %", "% backbone", "bytes")
        lines = [
            (
                r.name + (" *" if r.active else ""),
                r.kind,
                f"{r.params:,}",
                f"{r.trainable:,}",
                f"{r.trainable_percent:.2f}",
                f"{r.backbone_percent:.2f}",
                _human_bytes(r.bytes),
            )
            for r in self.rows
        ]
        widths = [max(len(h), *(len(row[i]) for row in lines)) for i, h in enumerate(header)]

        def fmt(cells: tuple[str, ...]) -> str:
            return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

        sep = "  ".join("-" * w for w in widths)
        body = [fmt(header), sep, *(fmt(c) for c in lines[:-1]), sep, fmt(lines[-1])]
        return "\n".join(body) + "\n(* = active adapter; % backbone relative to the policy backbone, language encoder excluded)"


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def parameter_report(model: nn.Module) -> ParameterReport:
    """Count backbone parameters per component and each attached adapter's parameters."""
    backbone = model.num_backbone_parameters()
    rows: list[ReportRow] = []
    for comp, root in model.component_modules().items():
        if root is None:
            continue
        params = [p for p in backbone_tensors(root, comp).values() if isinstance(p, nn.Parameter)]
        n = sum(p.numel() for p in params)
        rows.append(
            ReportRow(
                name=comp,
                kind="component",
                params=n,
                trainable=sum(p.numel() for p in params if p.requires_grad),
                backbone_percent=100.0 * n / backbone if backbone else 0.0,
                bytes=sum(p.numel() * p.element_size() for p in params),
            )
        )
    for name, cfg in model.tuner_configs.items():
        saved, state = _saved(model, name)
        params = tuner_parameters(model, name)
        n = sum(p.numel() for p in params)
        rows.append(
            ReportRow(
                name=name,
                kind=method_of(cfg),
                params=n,
                trainable=sum(p.numel() for p in params if p.requires_grad),
                backbone_percent=100.0 * n / backbone if backbone else 0.0,
                bytes=len(safetensors_bytes(state, metadata=_metadata(saved))),
                active=model.active_adapter == name,
            )
        )
    all_params = list(model.parameters())
    total = sum(p.numel() for p in all_params)
    rows.append(
        ReportRow(
            name="total",
            kind="total",
            params=total,
            trainable=sum(p.numel() for p in all_params if p.requires_grad),
            backbone_percent=100.0 * total / backbone if backbone else 0.0,
            bytes=sum(p.numel() * p.element_size() for p in all_params),
        )
    )
    return ParameterReport(backbone_params=backbone, rows=rows)
