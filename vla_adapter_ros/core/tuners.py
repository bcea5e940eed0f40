"""Machinery shared by bottleneck adapters and LoRA (PEFT's ``tuners_utils``).

A :class:`TunerLayer` wraps one backbone module (``base_layer``) and keeps one weight
set per adapter name in ``nn.ModuleDict``s. Everything here finds modules
structurally: wrappers by ``isinstance(m, TunerLayer)``, targets through
:func:`blocks.sublayer_linears` (class of the owning sublayer -> its linears), never by
matching parameter names. Backbone tensors are named as if no wrapper existed, so a
backbone checkpoint, its fingerprint and adapter keys do not depend on which tuners
happen to be attached.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ..names import validate_adapter_name
from .blocks import SUBLAYER_LINEARS, sublayer_linears

POSITION_KIND = {"attn": "attn_out", "ffn": "ffn_out"}  # adapter position -> linear kind


class TunerError(ValueError):
    """An adapter / LoRA operation cannot be done; the message says why."""


class TunerLayer(nn.Module):
    """Base for wrappers: ``base_layer`` plus per-name weight sets; ``active_adapter`` selects."""

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.active_adapter: str | None = None

    def tuner_dicts(self) -> list[nn.ModuleDict]:
        raise NotImplementedError

    def names(self) -> list[str]:
        return sorted({k for d in self.tuner_dicts() for k in d.keys()})

    def tuner_modules(self, name: str) -> list[nn.Module]:
        return [d[name] for d in self.tuner_dicts() if name in d]

    def delete(self, name: str) -> None:
        for d in self.tuner_dicts():
            if name in d:
                del d[name]
        if self.active_adapter == name:
            self.active_adapter = None

    def is_active(self) -> bool:
        return self.active_adapter is not None and any(self.active_adapter in d for d in self.tuner_dicts())


class ModuleCopies(TunerLayer):
    """PEFT's ``ModulesToSaveWrapper``: a trainable copy of a module per adapter name.

    Used for the action head (``train_head=True``) and the modules named in
    ``train_modules`` (patch embedding, LayerNorms): the backbone module stays untouched,
    the active adapter's copy is used instead.
    """

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.copies = nn.ModuleDict()

    def tuner_dicts(self) -> list[nn.ModuleDict]:
        return [self.copies]

    def add(self, name: str) -> None:
        # Copy the innermost module: the clone must not carry other adapters' wrappers.
        clone = copy.deepcopy(innermost(self.base_layer))
        for p in clone.parameters():
            p.requires_grad_(True)
        self.copies[name] = clone

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.active_adapter is not None and self.active_adapter in self.copies:
            return self.copies[self.active_adapter](*args, **kwargs)
        return self.base_layer(*args, **kwargs)


# ----------------------------------------------------------------------------- walking


def iter_backbone_modules(
    module: nn.Module, prefix: str = "", skip: tuple[nn.Module, ...] = ()
) -> Iterator[tuple[str, nn.Module]]:
    """(clean path, module) for every backbone module; wrappers are see-through, tuner weights skipped."""
    if any(module is s for s in skip):
        return
    if isinstance(module, TunerLayer):
        yield from iter_backbone_modules(module.base_layer, prefix, skip)
        return
    yield prefix, module
    for name, child in module._modules.items():
        if child is not None:
            yield from iter_backbone_modules(child, f"{prefix}.{name}" if prefix else name, skip)


def backbone_tensors(
    module: nn.Module, prefix: str = "", skip: tuple[nn.Module, ...] = ()
) -> dict[str, torch.Tensor]:
    """Parameters and persistent buffers of the backbone, keyed as if no tuner were attached."""
    out: dict[str, torch.Tensor] = {}
    for path, m in iter_backbone_modules(module, prefix, skip):
        dot = f"{path}." if path else ""
        for n, p in m._parameters.items():
            if p is not None:
                out[dot + n] = p
        for n, b in m._buffers.items():
            if b is not None and n not in m._non_persistent_buffers_set:
                out[dot + n] = b
    return out


def iter_tuner_layers(module: nn.Module, prefix: str = "") -> Iterator[tuple[str, TunerLayer]]:
    """(clean path of the wrapped slot, layer) for every TunerLayer, outermost first."""
    if isinstance(module, TunerLayer):
        yield prefix, module
        yield from iter_tuner_layers(module.base_layer, prefix)
        return
    for name, child in module._modules.items():
        if child is not None:
            yield from iter_tuner_layers(child, f"{prefix}.{name}" if prefix else name)


def find_in_chain(module: nn.Module, cls: type) -> nn.Module | None:
    """The first wrapper of type ``cls`` in ``module``'s chain of base_layers, if any."""
    while True:
        if isinstance(module, cls):
            return module
        if not isinstance(module, TunerLayer):
            return None
        module = module.base_layer


def innermost(module: nn.Module) -> nn.Module:
    while isinstance(module, TunerLayer):
        module = module.base_layer
    return module


def component_roots(model: nn.Module, components: tuple[str, ...]) -> dict[str, nn.Module]:
    roots = model.component_modules()
    out = {}
    for comp in components:
        root = roots.get(comp)
        if root is None:
            if comp == "language":
                raise TunerError(
                    "component 'language' needs the language encoder attached to the policy: "
                    "policy.attach_language(LanguageEncoder())"
                )
            raise TunerError(f"model has no component {comp!r}; it has {sorted(k for k, v in roots.items() if v is not None)}")
        out[comp] = root
    return out


def find_targets(
    model: nn.Module, components: tuple[str, ...], kinds: tuple[str, ...]
) -> list[tuple[str, str, nn.Module, str]]:
    """(clean path, kind, owner module, attribute) of every linear of the given kinds.

    The owner is the sublayer (e.g. ``Attention``) and ``getattr(owner, attribute)`` is the
    linear or the outermost wrapper around it.
    """
    targets = []
    for comp, root in component_roots(model, components).items():
        # BERT classes only for the language encoder (importing transformers is slow).
        table = sublayer_linears() if comp == "language" else SUBLAYER_LINEARS
        for path, m in iter_backbone_modules(root, comp):
            for cls, by_kind in table.items():
                if isinstance(m, cls):
                    for kind in kinds:
                        for attr in by_kind.get(kind, ()):
                            if not isinstance(innermost(getattr(m, attr)), nn.Linear):
                                raise TunerError(f"{path}.{attr} is not an nn.Linear: {getattr(m, attr)!r}")
                            targets.append((f"{path}.{attr}", kind, m, attr))
    if not targets:
        raise TunerError(f"no {kinds} linears found in components {components}")
    return targets


def attach_tuner(model: nn.Module, name: str, config: Any, kinds: tuple[str, ...], cls: type[TunerLayer], *,
                 targets: list[tuple[str, nn.Module, str]] | None = None) -> list[str]:
    """Wrap every ``kinds`` linear of ``config.components`` (or the ``targets`` slots, (clean path, owner,
    attribute), e.g. the attention modules prefix tuning wraps) in ``cls`` and add ``name`` to it.

    Shared by adapters, LoRA and prefixes: the name is checked and must be new; a head copy is added
    when ``config.train_head`` and module copies for ``config.train_modules``. Returns the
    wrapped module paths.
    """
    validate_adapter_name(name)
    if name in model.tuner_configs:
        raise TunerError(f"adapter {name!r} already exists; attached: {sorted(model.tuner_configs)}")
    if targets is None:
        targets = [(path, owner, attr) for path, _kind, owner, attr in find_targets(model, config.components, kinds)]
    paths = []
    for path, owner, attr in targets:
        wrap_slot(owner, attr, cls).add(name, config)  # type: ignore[attr-defined]
        paths.append(path)
    for path, owner, attr in copy_targets(model, config):
        wrap_slot(owner, attr, ModuleCopies).add(name)  # type: ignore[attr-defined]
        paths.append(path)
    model.tuner_configs[name] = config
    return paths


def wrap_slot(owner: nn.Module, attr: str, cls: type[TunerLayer]) -> TunerLayer:
    """The ``cls`` wrapper at ``owner.attr``: reuse one in the chain, or wrap the outermost module."""
    current = getattr(owner, attr)
    found = find_in_chain(current, cls)
    if found is not None:
        return found  # type: ignore[return-value]
    layer = cls(current)
    layer.active_adapter = getattr(current, "active_adapter", None)
    setattr(owner, attr, layer)
    return layer


def unwrap_empty(model: nn.Module) -> None:
    """Replace every TunerLayer that holds no weight set by its base layer (exact original module)."""
    changed = True
    while changed:
        changed = False
        for m in list(model.modules()):
            for name, child in list(m._modules.items()):
                if isinstance(child, TunerLayer) and not child.names():
                    setattr(m, name, child.base_layer)
                    changed = True


# ----------------------------------------------------------------------------- registry


def set_adapter(model: nn.Module, name: str | None) -> None:
    """Activate adapter / LoRA ``name`` everywhere; ``None`` = pure backbone."""
    if name is not None and name not in model.tuner_configs:
        raise TunerError(f"unknown adapter {name!r}; attached: {sorted(model.tuner_configs)}")
    for _, layer in iter_tuner_layers(model):
        layer.active_adapter = name
    model.active_adapter = name


def delete_adapter(model: nn.Module, name: str) -> None:
    """Remove adapter / LoRA ``name``; wrappers left empty are unwrapped."""
    if name not in model.tuner_configs:
        raise TunerError(f"unknown adapter {name!r}; attached: {sorted(model.tuner_configs)}")
    for _, layer in list(iter_tuner_layers(model)):
        layer.delete(name)
    unwrap_empty(model)
    del model.tuner_configs[name]
    if model.active_adapter == name:
        model.active_adapter = None


def tuner_parameters(model: nn.Module, name: str) -> list[nn.Parameter]:
    """The parameters that belong to adapter / LoRA ``name`` (including its head copy)."""
    params = []
    for _, layer in iter_tuner_layers(model):
        for m in layer.tuner_modules(name):
            params.extend(m.parameters())
    return params


def mark_only_adapter_trainable(model: nn.Module, name: str) -> list[nn.Parameter]:
    """Freeze everything, then unfreeze adapter ``name``; returns the trainable parameters."""
    if name not in model.tuner_configs:
        raise TunerError(f"unknown adapter {name!r}; attached: {sorted(model.tuner_configs)}")
    for p in model.parameters():
        p.requires_grad_(False)
    params = tuner_parameters(model, name)
    for p in params:
        p.requires_grad_(True)
    return params


def tuner_state_dict(model: nn.Module, name: str) -> dict[str, torch.Tensor]:
    """Weights of adapter / LoRA ``name`` keyed by clean slot path + the unit's own keys."""
    if name not in model.tuner_configs:
        raise TunerError(f"unknown adapter {name!r}; attached: {sorted(model.tuner_configs)}")
    out: dict[str, torch.Tensor] = {}
    for path, layer in iter_tuner_layers(model):
        for d in layer.tuner_dicts():
            if name in d:
                for k, v in d[name].state_dict().items():
                    key = f"{path}.{k}"
                    if key in out:
                        raise TunerError(f"duplicate adapter tensor key {key!r}")
                    out[key] = v
    return out


def copy_targets(model: nn.Module, config: Any) -> list[tuple[str, nn.Module, str]]:
    """(clean path, owner, attribute) of every module ``config`` trains its own copy of.

    ``train_head``: the action head. ``train_modules``: "patch_embed" = the vision encoder's
    stem (if any) and patch projection; "norms" = every LayerNorm inside the config's
    components. Found structurally (attribute / class), like the adapter targets.
    """
    out: list[tuple[str, nn.Module, str]] = []
    modules = getattr(config, "train_modules", ())
    if "patch_embed" in modules:
        vision = component_roots(model, ("vision",))["vision"]
        for attr in ("stem", "patch_embed"):
            if getattr(vision, attr, None) is not None:
                out.append((f"vision.{attr}", vision, attr))
    if "norms" in modules:
        before = len(out)
        for comp, root in component_roots(model, config.components).items():
            for path, m in iter_backbone_modules(root, comp):
                for attr, child in m._modules.items():
                    if child is not None and isinstance(innermost(child), nn.LayerNorm):
                        out.append((f"{path}.{attr}", m, attr))
        if len(out) == before:
            raise TunerError(f"no LayerNorm found in components {config.components}")
    if config.train_head:
        out.append(("head", model, "head"))
    return out
