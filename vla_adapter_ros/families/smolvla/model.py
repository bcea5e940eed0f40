"""SmolVLA (LeRobot) as a policy family: load a checkpoint directory, wrap bottleneck adapters, save / load them.

Runs in the LeRobot venv only (``scripts/lerobot_env.sh``). Adapters are the package's own
:class:`~vla_adapter_ros.core.adapters.layer.AdapterLayer` (``h + scale * W_up act(W_down h)``,
zero-initialised up-projection, one weight set per name) wrapped around output projections, found
structurally (the attribute each upstream layer class calls), never by matching names:

======================  ======================================  ==============================
site                    modules                                 linear
======================  ======================================  ==============================
``vision.attn``         SigLIP encoder layers                   ``self_attn.out_proj``
``vision.ffn``          SigLIP encoder layers                   ``mlp.fc2``
``language.attn``       SmolVLM text layers (prefix -> KV)      ``self_attn.o_proj``
``language.ffn``        SmolVLM text layers                     ``mlp.down_proj``
``expert.attn``         action expert layers                    ``self_attn.o_proj``
``expert.ffn``          action expert layers                    ``mlp.down_proj``
======================  ======================================  ==============================

The tuner registry (``tuner_configs``, ``active_adapter``) is the one of ``core.tuners``, so
``set_adapter`` / ``mark_only_adapter_trainable`` / ``tuner_state_dict`` work unchanged. The LoRA
baseline is the package's :class:`~vla_adapter_ros.core.lora.LoraLayer` at the same sites (the same
output projections, so the two methods differ only in what they add there); it is exported by merging it
into the backbone (:func:`merge_lora`), since the graphs take bottleneck adapters only.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ...core.adapters.layer import AdapterLayer
from ...core.config import AdapterConfig, LoraConfig
from ...core.lora import LoraLayer
from ...core.tuners import (
    TunerError,
    TunerLayer,
    backbone_tensors,
    delete_adapter,
    innermost,
    iter_tuner_layers,
    set_adapter,
    tuner_state_dict,
    wrap_slot,
)
from ...names import validate_adapter_name

FAMILY = "smolvla"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PREPROCESSOR_FILE = "policy_preprocessor.json"
POSTPROCESSOR_FILE = "policy_postprocessor.json"
REQUIRED_FILES = (CONFIG_FILE, WEIGHTS_FILE, PREPROCESSOR_FILE, POSTPROCESSOR_FILE)
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_FORMAT_VERSION = 1
SITES = ("vision.attn", "vision.ffn", "language.attn", "language.ffn", "expert.attn", "expert.ffn")
# component -> (position -> (sub-module, linear attribute)) inside one upstream layer
_SLOTS = {
    "vision": {"attn": ("self_attn", "out_proj"), "ffn": ("mlp", "fc2")},
    "language": {"attn": ("self_attn", "o_proj"), "ffn": ("mlp", "down_proj")},
    "expert": {"attn": ("self_attn", "o_proj"), "ffn": ("mlp", "down_proj")},
}


class CheckpointError(ValueError):
    """A directory is not a loadable SmolVLA checkpoint; the message says which file and why."""


class _SiteConfig:
    """Sites, ``to_dict`` / ``from_dict`` of the SmolVLA tuner configs below."""

    method: ClassVar[str]  # "method" in adapter_config.json
    sites: tuple[str, ...]

    def _check_sites(self) -> None:
        self.sites = tuple(self.sites)
        bad = [s for s in self.sites if s not in SITES]
        if bad or not self.sites:
            raise ValueError(f"sites must be a non-empty subset of {SITES}, got {list(self.sites)!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)  # type: ignore[call-overload]
        d["sites"] = list(self.sites)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown SmolVLA {cls.method} fields {unknown}; known: {sorted(known)}")
        return cls(**d)


@dataclass
class SmolVLAAdapterConfig(_SiteConfig):
    """Bottleneck adapters for SmolVLA: the formula, ranks and init of ``core.config.AdapterConfig``, at ``sites``."""

    method: ClassVar[str] = "bottleneck"
    rank: int = 16
    sites: tuple[str, ...] = SITES
    activation: str = "relu"
    init: str = "zeros"  # "zeros": W_up = 0, an exact identity at creation
    init_std: float = 1e-3
    dropout: float = 0.0
    scaling: float = 1.0
    task: str = ""

    def __post_init__(self) -> None:
        self._check_sites()
        self.bottleneck()  # rank, activation, init, dropout, scaling: validated by the one AdapterConfig

    def bottleneck(self) -> AdapterConfig:
        return AdapterConfig(rank=self.rank, activation=self.activation, init=self.init, init_std=self.init_std,
                             dropout=self.dropout, scaling=self.scaling)


@dataclass
class SmolVLALoraConfig(_SiteConfig):
    """LoRA for SmolVLA (the baseline): ``core.config.LoraConfig``'s formula, rank and alpha, at ``sites``."""

    method: ClassVar[str] = "lora"
    rank: int = 16
    alpha: float = 32.0  # scaling alpha / rank = 2, as core.config.LoraConfig
    sites: tuple[str, ...] = SITES
    dropout: float = 0.0
    task: str = ""

    def __post_init__(self) -> None:
        self._check_sites()
        self.lora()  # rank, alpha, dropout: validated by the one LoraConfig

    def lora(self) -> LoraConfig:
        return LoraConfig(rank=self.rank, alpha=self.alpha, dropout=self.dropout)


class _LinearLike(nn.Module):
    """A tuner wrapper that still looks like the Linear it wraps (SmolVLA reads ``o_proj.weight.dtype``)."""

    base_layer: nn.Module

    @property
    def weight(self) -> torch.Tensor:
        return innermost(self.base_layer).weight

    @property
    def bias(self) -> torch.Tensor | None:
        return innermost(self.base_layer).bias


class SiteAdapter(_LinearLike, AdapterLayer):
    """The package's AdapterLayer at a SmolVLA site."""


class SiteLora(_LinearLike, LoraLayer):
    """The package's LoraLayer at a SmolVLA site."""


# ----------------------------------------------------------------------------- checkpoint
def check_checkpoint_dir(path: str | Path) -> dict[str, Any]:
    """The checkpoint's config.json, after checking the files LeRobot saves and the policy type."""
    root = Path(path)
    if not root.is_dir():
        raise CheckpointError(f"SmolVLA checkpoint {str(root)!r} does not exist or is not a directory")
    missing = [f for f in REQUIRED_FILES if not (root / f).is_file()]
    if missing:
        raise CheckpointError(f"SmolVLA checkpoint {str(root)!r} is missing {missing}; a LeRobot checkpoint "
                              f"(policy.save_pretrained + the pre/post-processors' save_pretrained) has {list(REQUIRED_FILES)}")
    try:
        config = json.loads((root / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {str(root / CONFIG_FILE)!r}: {exc}") from exc
    kind = config.get("type") if isinstance(config, dict) else None
    if kind != FAMILY:
        raise CheckpointError(f"{str(root / CONFIG_FILE)!r} describes a {kind!r} policy; this family loads "
                              f"{FAMILY!r} checkpoints")
    return config


def load_policy(path: str | Path) -> Any:
    """A SmolVLAPolicy from a LeRobot checkpoint directory (eval mode, every weight checked by name and shape)."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    root = Path(path)
    check_checkpoint_dir(root)
    try:
        config = PreTrainedConfig.from_pretrained(root)
    except Exception as exc:  # noqa: BLE001 - draccus raises its own parsing errors
        raise CheckpointError(f"{str(root / CONFIG_FILE)!r} is not a valid SmolVLA config: {exc}") from exc
    config.device = "cpu"
    policy = SmolVLAPolicy(config)
    expected = {k: tuple(v.shape) for k, v in policy.state_dict().items()}
    try:
        with safe_open(str(root / WEIGHTS_FILE), "pt") as f:
            saved = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 - safe_open has no iterator
    except Exception as exc:  # noqa: BLE001 - safetensors raises SafetensorError / OSError
        raise CheckpointError(f"cannot read {str(root / WEIGHTS_FILE)!r}: {exc}") from exc
    wrong = [f"{k}: saved {list(saved[k])}, config gives {list(s)}" for k, s in expected.items() if k in saved and saved[k] != s]
    absent = sorted(set(expected) - set(saved))
    extra = sorted(set(saved) - set(expected))
    if wrong or absent or extra:
        parts = ([f"shape mismatch ({len(wrong)}): " + "; ".join(wrong[:3])] if wrong else []) + \
                ([f"missing tensors ({len(absent)}): {absent[:3]}"] if absent else []) + \
                ([f"unexpected tensors ({len(extra)}): {extra[:3]}"] if extra else [])
        raise CheckpointError(f"{str(root / WEIGHTS_FILE)!r} does not fit its config.json: " + "; ".join(parts))
    policy.load_state_dict(load_file(str(root / WEIGHTS_FILE)), strict=True)
    policy.eval()
    policy.tuner_configs = {}
    policy.active_adapter = None
    return policy


def load_processors(path: str | Path) -> tuple[Any, Any]:
    """LeRobot's own pre/post-processor pipelines saved beside the checkpoint (normalisation, tokenizer)."""
    from lerobot.processor import PolicyProcessorPipeline
    from lerobot.processor.converters import policy_action_to_transition, transition_to_policy_action

    root = Path(path)
    pre = PolicyProcessorPipeline.from_pretrained(root, config_filename=PREPROCESSOR_FILE)
    post = PolicyProcessorPipeline.from_pretrained(root, config_filename=POSTPROCESSOR_FILE,
                                                   to_transition=policy_action_to_transition,
                                                   to_output=transition_to_policy_action)
    return pre, post


def component_layers(policy: Any) -> dict[str, list[nn.Module]]:
    """The upstream layers of each adapter component, in order."""
    vlm = policy.model.vlm_with_expert
    inner = vlm.get_vlm_model()
    return {"vision": list(inner.vision_model.encoder.layers), "language": list(inner.text_model.layers),
            "expert": list(vlm.lm_expert.layers)}


def backbone_fingerprint(policy: Any) -> str:
    """sha256 over the SmolVLA config and every backbone tensor (names, shapes, dtypes, values); tuners excluded."""
    h = hashlib.sha256()
    config = {k: v for k, v in policy.config.to_dict().items() if k not in ("device", "push_to_hub", "repo_id")} \
        if hasattr(policy.config, "to_dict") else {}
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, t in sorted(backbone_tensors(policy).items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# ----------------------------------------------------------------------------- adapters
def add_adapter(policy: Any, name: str, config: SmolVLAAdapterConfig | None = None) -> list[str]:
    """Wrap adapter ``name`` at ``config.sites``; returns the wrapped module paths. Not activated."""
    config = config or SmolVLAAdapterConfig()
    return _attach(policy, name, config, SiteAdapter, config.bottleneck())


def add_lora(policy: Any, name: str, config: SmolVLALoraConfig | None = None) -> list[str]:
    """Wrap LoRA ``name`` at ``config.sites`` (the adapters' linears); returns the wrapped module paths."""
    config = config or SmolVLALoraConfig()
    return _attach(policy, name, config, SiteLora, config.lora())


def _attach(policy: Any, name: str, config: _SiteConfig, cls: type[TunerLayer], unit: Any) -> list[str]:
    name = validate_adapter_name(name)
    if name in policy.tuner_configs:
        raise TunerError(f"adapter {name!r} is already attached")
    paths = []
    for component, layers in component_layers(policy).items():
        for position, (sub, attr) in _SLOTS[component].items():
            if f"{component}.{position}" not in config.sites:
                continue
            for layer in layers:
                if layer is None:
                    continue
                owner = getattr(layer, sub)
                wrap_slot(owner, attr, cls).add(name, unit)  # type: ignore[attr-defined]
                paths.append(f"{component}.{position}")
    policy.tuner_configs[name] = config
    return paths


def save_adapter(policy: Any, name: str, out: str | Path, fingerprint: str | None = None) -> Path:
    """``adapter_config.json`` + ``adapter_model.safetensors`` (keys: clean slot paths), like the package's adapters
    (``method``: "bottleneck" or "lora")."""
    config: _SiteConfig = policy.tuner_configs[name]
    tensors = {k: v.detach().contiguous() for k, v in tuner_state_dict(policy, name).items()}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / ADAPTER_WEIGHTS))
    meta = {"format_version": ADAPTER_FORMAT_VERSION, "method": config.method, "family": FAMILY, "name": name,
            **config.to_dict(), "backbone_fingerprint": fingerprint or backbone_fingerprint(policy),
            "num_parameters": sum(v.numel() for v in tensors.values())}
    (out / ADAPTER_CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def load_adapter(policy: Any, path: str | Path, name: str | None = None, fingerprint: str | None = None) -> str:
    """Attach a saved adapter; refused (TunerError) for another family, another backbone or other shapes."""
    root = Path(path)
    try:
        meta = json.loads((root / ADAPTER_CONFIG).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TunerError(f"cannot read {str(root / ADAPTER_CONFIG)!r}: {exc}") from exc
    if meta.get("family") == FAMILY and meta.get("method") == SmolVLALoraConfig.method:
        raise TunerError(f"{str(root)!r} is a SmolVLA LoRA: the graphs take bottleneck adapters, so a LoRA is exported "
                         "merged into its backbone (smolvla-train --method lora writes that checkpoint; pass it as "
                         "--checkpoint)")
    if meta.get("family") != FAMILY or meta.get("method") != "bottleneck":
        raise TunerError(f"{str(root)!r} is a {meta.get('family', 'vla_adapter_ros')!r} {meta.get('method')!r} adapter; "
                         f"this loads {FAMILY!r} bottleneck adapters")
    want = fingerprint or backbone_fingerprint(policy)
    if meta.get("backbone_fingerprint") != want:
        raise TunerError(f"adapter {str(root)!r} was trained on backbone {str(meta.get('backbone_fingerprint'))[:12]}, "
                         f"this SmolVLA is {want[:12]}")
    name = validate_adapter_name(name or meta["name"])
    config = SmolVLAAdapterConfig.from_dict({k: meta[k] for k in meta if k in {f.name for f in fields(SmolVLAAdapterConfig)}})
    add_adapter(policy, name, config)
    tensors = load_file(str(root / ADAPTER_WEIGHTS))
    own = tuner_state_dict(policy, name)
    bad = sorted(set(own) ^ set(tensors)) + [k for k in own if k in tensors and own[k].shape != tensors[k].shape]
    if bad:
        delete_adapter(policy, name)
        raise TunerError(f"adapter {str(root)!r} does not fit this SmolVLA: {len(bad)} tensors differ, e.g. {bad[:3]}")
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(tensors[k])
    return name


@torch.no_grad()
def merge_lora(policy: Any, name: str) -> int:
    """Fold LoRA ``name`` into the linears it wraps (``W += scaling * B A``) and remove it; returns how many."""
    merged = 0
    for _, layer in list(iter_tuner_layers(policy)):
        if isinstance(layer, LoraLayer) and name in layer.loras:
            unit = layer.loras[name]
            linear = innermost(layer.base_layer)
            linear.weight += unit.scaling * (unit.lora_B.weight @ unit.lora_A.weight)  # (out, r) @ (r, in)
            merged += 1
    delete_adapter(policy, name)
    return merged


def adapter_tensors(policy: Any, name: str) -> dict[str, torch.Tensor]:
    return tuner_state_dict(policy, name)


def activate(policy: Any, name: str | None) -> None:
    set_adapter(policy, name)


def adapter_sites(policy: Any) -> list[str]:
    return [path for path, _ in iter_tuner_layers(policy)]


def count_parameters(modules: Any) -> int:
    return int(sum(math.prod(p.shape) for p in modules))
