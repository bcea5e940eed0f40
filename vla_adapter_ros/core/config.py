"""Typed, self-validating configuration for the policy, its adapters and training.

Style of nanoGPT's ``GPTConfig`` / PEFT's ``LoraConfig``: dataclasses with defaults,
fields grouped under comment headers, ``__post_init__`` raising ``ValueError`` that
quotes the offending value. Every config round-trips through ``to_dict`` /
``from_dict`` and JSON (YAML too, with PyYAML) and is saved beside every checkpoint,
adapter and export. No torch import here, so the ROS node can declare its
parameters from the same source.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from ..names import validate_adapter_name

T = TypeVar("T", bound="ConfigBase")

COMPONENTS = ("vision", "language", "fusion")  # where adapters / LoRA can live
POSITIONS = ("attn", "ffn")  # adapter insertion point inside a block
ACTIVATIONS = ("relu", "gelu", "silu")
ADAPTER_INITS = ("zeros", "small_random")
ADAPTER_RANK_PRESETS = (8, 16, 32)  # documented presets; any positive rank is accepted
# The one default rank of a new adapter or LoRA (AdapterConfig, LoraConfig, `vla-adapter train --rank`):
# every bundled adapter is r=16 (docs/RESULTS.md: r=16 beat r=8 on the held-out tasks, 0.61 vs 0.55).
DEFAULT_ADAPTER_RANK = 16
LORA_TARGETS = ("qkv", "attn_out", "ffn_in", "ffn_out")  # the linears of a transformer block
# Backbone modules an adapter / LoRA can carry its own trainable copy of (PEFT's modules_to_save):
# "patch_embed" = the vision encoder's conv stem (if any) + patch projection, the low-level
# visual features; "norms" = every LayerNorm of the adapter's components (Houlsby et al.).
TRAIN_MODULES = ("patch_embed", "norms")
PREFIX_COMPONENTS = ("vision", "fusion")  # prefix tuning lives in the policy's own attention layers
REGIMES = ("pretrain", "adapter", "lora", "prefix", "head_only", "full")
TUNER_REGIMES = ("adapter", "lora", "prefix")  # regimes that train a named tuner on a frozen backbone
SMOLVLA_METHODS = ("adapter", "lora", "full")  # the regimes `smolvla-train --method` offers (families/smolvla/train.py)
LOSSES = ("l1", "mse")

# Default peak learning rates per regime (AdamW, after warm-up, cosine to min_lr_ratio * lr).
# Adapters / LoRA / prefixes / a lone head start from scratch on few parameters and follow the
# adapter literature (Houlsby et al. 2019, Hu et al. 2021: 1e-4..1e-3 for adapters vs
# 1e-5..1e-4 for full fine-tuning) with the larger rate; full fine-tuning moves
# pretrained weights and uses a 10x smaller one so it does not wreck them;
# pre-training from random init uses the usual small-transformer rate.
DEFAULT_LR = {
    "pretrain": 3e-4,
    "adapter": 1e-3,
    "lora": 1e-3,
    "prefix": 1e-3,
    "head_only": 1e-3,
    "full": 1e-4,
}

def _subset(value: Any, allowed: tuple[str, ...], what: str, allow_empty: bool = False) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    items = tuple(value)
    bad = [v for v in items if v not in allowed]
    if bad:
        raise ValueError(f"{what} must be a subset of {allowed}, got {items!r} (bad: {bad!r})")
    if not items and not allow_empty:
        raise ValueError(f"{what} must not be empty, got {items!r}")
    if len(set(items)) != len(items):
        raise ValueError(f"{what} has duplicates: {items!r}")
    # Canonical order so equal configs serialise (and fingerprint) identically.
    return tuple(a for a in allowed if a in items)


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _probability(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")


class ConfigBase:
    """to_dict / from_dict / JSON / YAML for the dataclasses below."""

    # Nested config fields: name -> class (filled by subclasses).
    _nested: ClassVar[dict[str, type]] = {}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if isinstance(v, ConfigBase):
                v = v.to_dict()
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls: type[T], d: Mapping[str, Any]) -> T:
        if not isinstance(d, Mapping):
            raise ValueError(f"{cls.__name__} expects a mapping, got {type(d).__name__}: {d!r}")
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(names)}")
        kwargs: dict[str, Any] = {}
        for k, v in d.items():
            sub = cls._nested.get(k)
            if sub is not None and isinstance(v, Mapping):
                v = sub.from_dict(v)
            elif isinstance(v, list):
                v = tuple(v)
            kwargs[k] = v
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls: type[T], text: str) -> T:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> Path:
        """Write JSON, or YAML when the suffix is .yaml/.yml."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix in (".yaml", ".yml"):
            path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        else:
            path.write_text(self.to_json() + "\n")
        return path

    @classmethod
    def load(cls: type[T], path: str | Path) -> T:
        path = Path(path)
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: not valid JSON ({exc})") from exc
        try:
            return cls.from_dict(data or {})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from exc


@dataclass
class ModelConfig(ConfigBase):
    """Architecture of the VLA policy (see docs/DESIGN.md, "The policy")."""

    # --- vision (ViT) ---
    image_size: int = 96  # square RGB input, pixels
    patch_size: int = 12  # 96 / 12 = 8x8 = 64 image tokens
    # Convolutional stem before the patch projection (0 = none: one linear projection per patch).
    # c > 0: 3x3 conv stride 2 (c channels), ReLU, 3x3 conv stride 2 (2c), ReLU, then a
    # (patch/4)-strided projection: the same tokens, but features of objects a few pixels wide
    # ("early convolutions help transformers see better", Xiao et al. 2021). patch_size % 4 == 0.
    stem_channels: int = 0
    vision_layers: int = 4
    # --- transformer width, shared by vision and fusion ---
    d_model: int = 128
    n_heads: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.0
    # --- fusion ---
    fusion_layers: int = 3
    # --- language (frozen all-MiniLM-L6-v2 sentence embedding) ---
    lang_dim: int = 384
    language_model: str = "sentence-transformers/all-MiniLM-L6-v2"
    # --- robot: proprioception in, action chunk out ---
    proprio_dim: int = 4
    # Camera views in order (names from the robot contract). Every view goes through the same vision
    # encoder; one camera named "camera" is what every model before multi-camera support has.
    cameras: tuple[str, ...] = ("camera",)
    proprio_names: tuple[str, ...] = ("ee_x", "ee_y", "ee_z", "gripper")
    action_dim: int = 4
    action_names: tuple[str, ...] = ("dx", "dy", "dz", "gripper")
    chunk_length: int = 4  # K future actions predicted per frame
    n_action_steps: int = 0  # actions executed per chunk by select_action; 0 = chunk_length
    dt: float = 0.0125  # seconds between actions (Meta-World: frame_skip 5 x 2.5 ms)
    # --- objective ---
    loss: str = "l1"  # masked L1 or MSE on normalised actions

    def __post_init__(self) -> None:
        for name in (
            "image_size", "patch_size", "vision_layers", "d_model", "n_heads", "mlp_ratio",
            "fusion_layers", "lang_dim", "proprio_dim", "action_dim", "chunk_length",
        ):
            _positive_int(name, getattr(self, name))
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size!r} is not a multiple of patch_size {self.patch_size!r}"
            )
        if isinstance(self.stem_channels, bool) or not isinstance(self.stem_channels, int) or self.stem_channels < 0:
            raise ValueError(f"stem_channels must be an int >= 0, got {self.stem_channels!r}")
        if self.stem_channels and self.patch_size % 4:
            raise ValueError(f"a convolutional stem (stem_channels {self.stem_channels}) needs patch_size % 4 == 0, "
                             f"got {self.patch_size!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model!r} is not divisible by n_heads {self.n_heads!r}")
        _probability("dropout", self.dropout)
        self.cameras = (self.cameras,) if isinstance(self.cameras, str) else tuple(self.cameras)
        if not 1 <= len(self.cameras) <= 4 or len(set(self.cameras)) != len(self.cameras) or not all(
                isinstance(c, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", c) for c in self.cameras):
            raise ValueError(f"cameras must be 1 to 4 distinct names (a letter, then letters, digits or _), "
                             f"got {self.cameras!r}")
        self.proprio_names = tuple(self.proprio_names)
        self.action_names = tuple(self.action_names)
        if len(self.proprio_names) != self.proprio_dim:
            raise ValueError(
                f"proprio_names {self.proprio_names!r} has {len(self.proprio_names)} entries, "
                f"proprio_dim is {self.proprio_dim!r}"
            )
        if len(self.action_names) != self.action_dim:
            raise ValueError(
                f"action_names {self.action_names!r} has {len(self.action_names)} entries, "
                f"action_dim is {self.action_dim!r}"
            )
        if isinstance(self.n_action_steps, bool) or not isinstance(self.n_action_steps, int) or not (
            0 <= self.n_action_steps <= self.chunk_length
        ):
            raise ValueError(f"n_action_steps must be in [0, chunk_length={self.chunk_length}], got {self.n_action_steps!r}")
        if not isinstance(self.dt, (int, float)) or not self.dt > 0 or not math.isfinite(self.dt):
            raise ValueError(f"dt must be a positive number of seconds, got {self.dt!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")

    @property
    def n_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


@dataclass
class AdapterConfig(ConfigBase):
    """Bottleneck adapter ``h' = h + scaling * W_up act(W_down dropout(h))``.

    Default placement: after both the attention and the feed-forward sublayer, in the
    vision encoder and the fusion transformer. Both positions because Houlsby et al.
    found attn+ffn adapters the most robust at equal budget; vision + fusion because
    that is where task-specific perception and action mapping happen, while leaving
    the language encoder adapter-free lets one cached instruction embedding (and one
    exported language model) serve every adapter.
    """

    # --- shape ---
    rank: int = DEFAULT_ADAPTER_RANK  # bottleneck width r; documented presets 8 / 16 / 32
    positions: tuple[str, ...] = ("attn", "ffn")
    components: tuple[str, ...] = ("vision", "fusion")
    activation: str = "relu"
    # --- initialisation and regularisation ---
    init: str = "zeros"  # "zeros": W_up = 0 (exact identity); "small_random": both N(0, init_std)
    init_std: float = 1e-3
    dropout: float = 0.0
    scaling: float = 1.0
    # --- extra trainable parts ---
    train_head: bool = False  # also train a per-adapter copy of the action head
    train_modules: tuple[str, ...] = ()  # per-adapter trainable copies, subset of TRAIN_MODULES
    # --- what the adapter is for (saved in adapter_config.json) ---
    task: str = ""
    instruction_examples: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _positive_int("rank", self.rank)
        self.positions = _subset(self.positions, POSITIONS, "positions")
        self.components = _subset(self.components, COMPONENTS, "components")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.init not in ADAPTER_INITS:
            raise ValueError(f"init must be one of {ADAPTER_INITS}, got {self.init!r}")
        if not isinstance(self.init_std, (int, float)) or not self.init_std > 0:
            raise ValueError(f"init_std must be > 0, got {self.init_std!r}")
        _probability("dropout", self.dropout)
        if not isinstance(self.scaling, (int, float)) or not math.isfinite(self.scaling):
            raise ValueError(f"scaling must be a finite number, got {self.scaling!r}")
        if not isinstance(self.train_head, bool):
            raise ValueError(f"train_head must be a bool, got {self.train_head!r}")
        self.train_modules = _subset(self.train_modules, TRAIN_MODULES, "train_modules", allow_empty=True)
        if not isinstance(self.task, str):
            raise ValueError(f"task must be a string, got {self.task!r}")
        self.instruction_examples = tuple(self.instruction_examples)
        if not all(isinstance(s, str) for s in self.instruction_examples):
            raise ValueError(f"instruction_examples must be strings, got {self.instruction_examples!r}")

    @classmethod
    def preset(cls, rank: int, **overrides: Any) -> AdapterConfig:
        """One of the documented rank presets (8, 16, 32) with the default placement."""
        if rank not in ADAPTER_RANK_PRESETS:
            raise ValueError(f"adapter rank preset must be one of {ADAPTER_RANK_PRESETS}, got {rank!r}")
        return cls(rank=rank, **overrides)


@dataclass
class LoraConfig(ConfigBase):
    """LoRA baseline ``y = W x + (alpha / rank) * B A dropout(x)``, B zero-initialised.

    Default targets: every linear of each transformer block (qkv, attention output,
    FFN in, FFN out) in vision + fusion, the usual strong LoRA baseline; restrict to
    ("attn_out", "ffn_out") to match the bottleneck adapters' placement exactly.
    """

    # --- shape ---
    rank: int = DEFAULT_ADAPTER_RANK
    alpha: float = 2.0 * DEFAULT_ADAPTER_RANK  # scaling alpha / rank = 2
    targets: tuple[str, ...] = LORA_TARGETS
    components: tuple[str, ...] = ("vision", "fusion")
    # --- regularisation ---
    dropout: float = 0.0
    # --- extra trainable parts ---
    train_head: bool = False
    train_modules: tuple[str, ...] = ()  # as AdapterConfig.train_modules
    # --- metadata ---
    task: str = ""
    instruction_examples: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _positive_int("rank", self.rank)
        if not isinstance(self.alpha, (int, float)) or not self.alpha > 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha!r}")
        self.targets = _subset(self.targets, LORA_TARGETS, "targets")
        self.components = _subset(self.components, COMPONENTS, "components")
        _probability("dropout", self.dropout)
        if not isinstance(self.train_head, bool):
            raise ValueError(f"train_head must be a bool, got {self.train_head!r}")
        self.train_modules = _subset(self.train_modules, TRAIN_MODULES, "train_modules", allow_empty=True)
        self.instruction_examples = tuple(self.instruction_examples)

    @property
    def scaling(self) -> float:
        return float(self.alpha) / self.rank


@dataclass
class PrefixConfig(ConfigBase):
    """Prefix tuning (Li & Liang 2021): ``n_tokens`` learned key and value vectors per attention layer of
    ``components``, which every token may attend to; the backbone stays frozen.

    ``gate`` (default): the prefix gets its own softmax, added through a per-head gate ``tanh(g)`` with g = 0
    at creation (LLaMA-Adapter's zero-init attention, Zhang et al. 2023), so a new prefix is an exact
    identity and training starts at the backbone, as adapters and LoRA do. ``gate: false`` is the original
    formulation: prefix and tokens share one softmax (not an identity at creation: the prefix takes
    attention mass from the tokens). No reparameterisation MLP (Li & Liang use one for stability on
    large language models; a few thousand parameters train directly here). No ONNX export.
    """

    # --- shape ---
    n_tokens: int = 16  # prefix length per attention layer
    components: tuple[str, ...] = ("fusion",)  # subset of PREFIX_COMPONENTS
    gate: bool = True
    init_std: float = 0.02  # prefix keys / values ~ N(0, init_std), like the backbone's token embeddings
    # --- extra trainable parts ---
    train_head: bool = False
    train_modules: tuple[str, ...] = ()  # as AdapterConfig.train_modules
    # --- metadata ---
    task: str = ""
    instruction_examples: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _positive_int("n_tokens", self.n_tokens)
        self.components = _subset(self.components, PREFIX_COMPONENTS, "components")
        for name in ("gate", "train_head"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if not isinstance(self.init_std, (int, float)) or not self.init_std > 0:
            raise ValueError(f"init_std must be > 0, got {self.init_std!r}")
        self.train_modules = _subset(self.train_modules, TRAIN_MODULES, "train_modules", allow_empty=True)
        self.instruction_examples = tuple(self.instruction_examples)


def check_loop_fields(cfg: Any) -> None:
    """Validate the fields the shared training loop reads (``core/loop.py``: steps, batch size, schedule,
    optimizer, logging, resume); every family's train config calls this from ``__post_init__``."""
    for name in ("steps", "batch_size"):
        _positive_int(name, getattr(cfg, name))
    for name in ("num_workers", "warmup_steps", "save_every", "log_every", "eval_every", "seed"):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be a non-negative int, got {v!r}")
    if not isinstance(cfg.lr, (int, float)) or cfg.lr < 0 or not math.isfinite(cfg.lr):
        raise ValueError(f"lr must be >= 0 (0 = regime default), got {cfg.lr!r}")
    if not 0.0 <= cfg.min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {cfg.min_lr_ratio!r}")
    if cfg.weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {cfg.weight_decay!r}")
    cfg.betas = tuple(float(b) for b in cfg.betas)
    if len(cfg.betas) != 2 or not all(0.0 <= b < 1.0 for b in cfg.betas):
        raise ValueError(f"betas must be two numbers in [0, 1), got {cfg.betas!r}")
    if cfg.grad_clip < 0:
        raise ValueError(f"grad_clip must be >= 0, got {cfg.grad_clip!r}")


@dataclass
class TrainConfig(ConfigBase):
    """One trainer, five regimes, same data and schedule (see core/train.py)."""

    _nested: ClassVar[dict[str, type]] = {}  # filled below (needs the classes defined)

    # --- what to train ---
    regime: str = "pretrain"  # pretrain | adapter | lora | head_only | full
    init_checkpoint: str = ""  # backbone dir to start from; required unless regime == pretrain
    adapter_name: str = "default"  # name of the adapter / LoRA being trained
    model: ModelConfig = field(default_factory=ModelConfig)  # used by pretrain only
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    prefix: PrefixConfig = field(default_factory=PrefixConfig)
    # --- data ---
    data: tuple[str, ...] = ()  # rosbag2 episode directories or globs
    val_data: tuple[str, ...] = ()
    topics: dict[str, Any] = field(default_factory=dict)  # EpisodeTopics overrides, e.g. {"image": "/cam"}
    # Robot contract YAML (config/robots/*.yaml): the data's cameras, state and actions are read through it, and a
    # pre-trained model takes its cameras / proprio / action names from it (fine-tuning checks them against the
    # backbone's; default there: the backbone's own contract.yaml). "" = single-camera bags with `topics`.
    contract: str = ""
    instruction: str = ""  # bags read through a contract that record no instruction get this one; "" = they must

    augment: bool = False  # random-shift augmentation of training images
    num_workers: int = 0
    # --- optimisation ---
    steps: int = 2000
    batch_size: int = 32  # per process
    lr: float = 0.0  # 0 = DEFAULT_LR[regime]
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 100
    weight_decay: float = 0.01
    betas: tuple[float, ...] = (0.9, 0.999)
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    # --- reproducibility and hardware ---
    seed: int = 0
    deterministic: bool = True
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # --- outputs ---
    out_dir: str = "runs/train"  # checkpoints, logs, curves
    resume: bool = False  # continue from out_dir/resume if present
    save_every: int = 500  # steps between resume checkpoints; 0 = only at the end
    log_every: int = 10
    eval_every: int = 0  # steps between validation passes (needs val_data); 0 = never
    progress: bool = True  # tqdm bar on rank 0
    plot: bool = True  # PNG of the curves at the end

    def __post_init__(self) -> None:
        if self.regime not in REGIMES:
            raise ValueError(f"regime must be one of {REGIMES}, got {self.regime!r}")
        if self.regime != "pretrain" and not self.init_checkpoint:
            raise ValueError(f"regime {self.regime!r} needs init_checkpoint (a pretrained backbone dir), got {self.init_checkpoint!r}")
        validate_adapter_name(self.adapter_name, "adapter_name")
        for name, cls in (("model", ModelConfig), ("adapter", AdapterConfig), ("lora", LoraConfig),
                          ("prefix", PrefixConfig)):
            v = getattr(self, name)
            if isinstance(v, Mapping):
                setattr(self, name, cls.from_dict(v))
            elif not isinstance(v, cls):
                raise ValueError(f"{name} must be a {cls.__name__} or mapping, got {v!r}")
        self.data = (self.data,) if isinstance(self.data, str) else tuple(self.data)
        if not isinstance(self.topics, Mapping) or not all(isinstance(k, str) for k in self.topics):
            raise ValueError(f"topics must map topic roles to names, got {self.topics!r}")
        self.topics = dict(self.topics)
        for name in ("contract", "instruction"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string, got {getattr(self, name)!r}")
        if self.contract and self.topics:
            raise ValueError(f"topics {self.topics!r} and contract {self.contract!r} both name topics; the contract's "
                             "are read, so leave topics empty")
        self.val_data = (self.val_data,) if isinstance(self.val_data, str) else tuple(self.val_data)
        check_loop_fields(self)
        if not (self.device in ("auto", "cpu", "cuda") or re.match(r"^cuda:\d+$", self.device)):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    @property
    def peak_lr(self) -> float:
        return float(self.lr) if self.lr > 0 else DEFAULT_LR[self.regime]

    @property
    def tuner(self) -> AdapterConfig | LoraConfig | PrefixConfig | None:
        """The tuner config this regime trains (the section named like the regime), None for the others."""
        return getattr(self, self.regime) if self.regime in TUNER_REGIMES else None


TrainConfig._nested = {"model": ModelConfig, "adapter": AdapterConfig, "lora": LoraConfig, "prefix": PrefixConfig}
