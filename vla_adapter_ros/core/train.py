"""One trainer for every regime: pretrain, adapter, lora, prefix, head_only, full.

Same data, same schedule (AdamW, linear warm-up then cosine to ``min_lr_ratio``, global
grad-norm clipping: the family-agnostic rules of ``core/loop.py``, which SmolVLA's training
shares), only the set of trainable parameters differs, chosen explicitly:

==========  =====================================================  ==============
regime      trainable                                              saved as
==========  =====================================================  ==============
pretrain    the whole policy backbone, random init                 checkpoint/
full        the whole backbone, from ``init_checkpoint``            checkpoint/
head_only   the action head only                                    checkpoint/
adapter     adapter ``adapter_name`` (+ its head copy if asked)     adapters/<name>/
lora        LoRA ``adapter_name`` (+ its head copy if asked)        adapters/<name>/
prefix      prefix ``adapter_name`` (+ its head copy if asked)      adapters/<name>/
==========  =====================================================  ==============

Seeded and deterministic on CPU; resumable (``resume: true``) from
``<out_dir>/resume`` with model, optimizer, scheduler, RNG and step. Runs as is or
under ``torchrun`` (DistributedDataParallel: gloo on CPU, NCCL on GPU;
DistributedSampler; only rank 0 writes, except each rank's own RNG state).

    vla-adapter train --config configs/adapter.yaml --set steps=500 --set adapter.rank=16
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from .. import processing as P
from ..bags.episodes import EpisodeTopics
from ..contract import RobotContract
from .adapters import add_tuner, parameter_report, save_adapter
from .checkpoint import CONFIG_NAME, load_checkpoint, save_checkpoint
from .config import TUNER_REGIMES, ModelConfig, TrainConfig
from .data import EpisodeDataset
from .distributed import Dist, seed_everything, setup_distributed
from .language import LanguageEncoder
from .loop import LoopResult, TrainingLoop
from .model import VLAPolicy
from .train_state import load_model_tensors, model_tensors
from .tuners import backbone_tensors, mark_only_adapter_trainable, set_adapter


@dataclass
class TrainResult(LoopResult):
    """The loop's result (artifact: checkpoint dir or adapter dir) and the trained model."""

    model: Any = None  # the trained VLAPolicy (unwrapped from DDP), on its training device


# ----------------------------------------------------------------------------- set-up pieces


def build_model(cfg: TrainConfig, stats: Mapping[str, P.Normalizer] | None, language=None):
    """The policy for ``cfg.regime`` with exactly the regime's parameters trainable.

    ``language``: encoder to attach when the tuner has a "language" component (loaded if None).
    Returns (model, trainable parameter list).
    """
    if cfg.regime == "pretrain":
        model = VLAPolicy(cfg.model, stats=stats)
    else:
        model = load_checkpoint(cfg.init_checkpoint, adapters=False)
    tuner = cfg.tuner
    if tuner is not None and "language" in tuner.components:
        model.attach_language(language if language is not None else LanguageEncoder())
    for p in model.parameters():  # explicit: start from everything frozen
        p.requires_grad_(False)
    if cfg.regime in ("pretrain", "full"):
        params = _backbone_params(model)
    elif cfg.regime == "head_only":
        params = list(model.head.parameters())
    else:
        add_tuner(model, cfg.adapter_name, tuner)
        set_adapter(model, cfg.adapter_name)
        params = mark_only_adapter_trainable(model, cfg.adapter_name)
    for p in params:
        p.requires_grad_(True)
    return model, params


def _backbone_params(model) -> list:
    """Backbone parameters found structurally (tuner weights and language encoder excluded)."""
    skip = (model.language,) if model.language is not None else ()
    return [v for v in backbone_tensors(model, "", skip).values() if isinstance(v, nn.Parameter)]


def expand_paths(patterns: tuple[str, ...] | list[str]) -> list[str]:
    """Globs -> sorted matches; plain paths kept as given. An empty glob is an error."""
    out: list[str] = []
    for pat in patterns:
        if any(c in pat for c in "*?["):
            hits = sorted(glob.glob(pat))
            if not hits:
                raise FileNotFoundError(f"data pattern {pat!r} matches nothing")
            out.extend(hits)
        else:
            out.append(pat)
    return out


CONTRACT_FILE = "contract.yaml"  # beside a checkpoint and an adapter: the robot contract it was trained with


def contract_file(cfg: TrainConfig) -> Path | None:
    """The robot contract of a run: ``cfg.contract``; when fine-tuning without one, the backbone's own."""
    if cfg.contract:
        return Path(cfg.contract)
    if cfg.regime != "pretrain" and (Path(cfg.init_checkpoint) / CONTRACT_FILE).is_file():
        return Path(cfg.init_checkpoint) / CONTRACT_FILE
    return None


def model_config_for(model: ModelConfig, contract: RobotContract) -> ModelConfig:
    """``model`` with the contract's cameras, state and action names (what a pre-trained model takes)."""
    if contract.state is None:
        raise ValueError(f"contract {contract.path or contract.robot}: the policy needs a state (proprio) input; "
                         "the contract has no 'state'")
    return dataclasses.replace(model, cameras=contract.camera_names, proprio_names=contract.state_names,
                               proprio_dim=len(contract.state_names), action_names=contract.action_names,
                               action_dim=len(contract.action_names))


def check_contract(model: ModelConfig, contract: RobotContract, backbone: str | Path) -> None:
    """A fine-tuning contract must give the backbone the inputs and outputs it was trained with."""
    problems = [f"{what}: the contract {contract.path or contract.robot} has {list(theirs)}, the backbone "
                f"{backbone} was trained with {list(ours)}"
                for what, theirs, ours in (("cameras", contract.camera_names, model.cameras),
                                           ("state", contract.state_names, model.proprio_names),
                                           ("actions", contract.action_names, model.action_names))
                if tuple(theirs) != tuple(ours)]
    if problems:
        raise ValueError("; ".join(problems))


def resolve_contract(cfg: TrainConfig) -> tuple[TrainConfig, RobotContract | None]:
    """``cfg`` with the model the contract describes (pre-training) or checked against the backbone
    (fine-tuning), and the contract (None: single-camera bags, the model as configured)."""
    path = contract_file(cfg)
    if path is None:
        return cfg, None
    contract = RobotContract.load(path)
    if cfg.regime == "pretrain":
        return dataclasses.replace(cfg, model=model_config_for(cfg.model, contract)), contract
    check_contract(ModelConfig.load(Path(cfg.init_checkpoint) / CONFIG_NAME), contract, cfg.init_checkpoint)
    return cfg, contract


def build_dataset(
    paths: list[str],
    model_config,
    stats: Mapping[str, P.Normalizer] | None = None,
    *,
    topics: Mapping[str, str | None] | None = None,
    augment: bool = False,
    contract: RobotContract | None = None,
    instruction: str | None = None,
):
    """An ``EpisodeDataset`` (core/data.py) over rosbag2 episodes, shaped by ``model_config``.

    ``contract``: read the bags through it, yielding the model's cameras in its order; without one,
    single-camera bags (``topics``) for a one-camera model. ``stats``: normalise with these
    (fine-tuning must use the backbone's statistics); otherwise the dataset fits its own. The
    episodes' proprio / action dimensions must match the model's.
    """
    common: dict[str, Any] = dict(image_size=model_config.image_size, chunk_length=model_config.chunk_length,
                                  stats=stats, augment=augment, instruction=instruction)
    if contract is not None:
        ds = EpisodeDataset(paths, contract=contract, cameras=model_config.cameras, **common)
    elif len(model_config.cameras) != 1:
        raise ValueError(f"the model takes cameras {list(model_config.cameras)}; bags are read without a robot "
                         "contract as single-camera episodes: set TrainConfig.contract")
    else:
        kwargs: dict[str, Any] = {"topics": EpisodeTopics(**topics)} if topics else {}
        ds = EpisodeDataset(paths, proprio_names=model_config.proprio_names, **common, **kwargs)
    for what, ours in (("proprio_dim", model_config.proprio_dim), ("action_dim", model_config.action_dim)):
        theirs = getattr(ds, what)
        if theirs != ours:
            raise ValueError(f"episodes in {paths[:3]}... have {what}={theirs}, the model has {what}={ours}")
    return ds


def _to_device(batch: Mapping[str, Any], device) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


# ----------------------------------------------------------------------------- the loop


MAX_INSTRUCTION_EXAMPLES = 5  # instructions of the data an adapter keeps as examples (list_adapters shows them)


def describe_tuner(cfg: TrainConfig, dataset: Any) -> TrainConfig:
    """``cfg`` with the trained tuner's ``task`` and ``instruction_examples`` filled from the data where the
    config leaves them empty: the task most of the episodes were recorded for, and the first distinct
    instructions. They are saved with the adapter, exported into the manifest and shown by ``list``."""
    tuner = cfg.tuner
    episodes = getattr(dataset, "episodes", None)
    if tuner is None or not episodes or (tuner.task and tuner.instruction_examples):
        return cfg
    tasks = [ep.task for ep in episodes if ep.task]
    task = tuner.task or (max(dict.fromkeys(tasks), key=tasks.count) if tasks else "")
    seen = dict.fromkeys(s for ep in episodes for s in ep.instructions)
    examples = tuner.instruction_examples or tuple(list(seen)[:MAX_INSTRUCTION_EXAMPLES])
    return dataclasses.replace(cfg, **{cfg.regime: dataclasses.replace(tuner, task=task,
                                                                       instruction_examples=examples)})


def train(
    cfg: TrainConfig,
    dataset,
    val_dataset=None,
    *,
    stats: Mapping[str, P.Normalizer] | None = None,
    language=None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train ``cfg.regime`` on ``dataset`` (items: processing keys, normalised) for ``cfg.steps`` steps.

    ``stats``: normalisers stored in a pre-trained model (default: ``dataset.stats``);
    ignored by other regimes, whose statistics come from ``init_checkpoint``.
    ``language``: a ready :class:`LanguageEncoder` to reuse (loaded on demand otherwise).
    ``stop_after``: stop after this many steps in this call (the schedule still spans
    ``cfg.steps``); with ``save_every`` and ``resume`` this splits a run.
    """
    cfg, _ = resolve_contract(cfg)
    cfg = describe_tuner(cfg, dataset)
    d = setup_distributed(cfg.device)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        seed_everything(cfg.seed, cfg.deterministic, d.device.type == "cuda")  # same init on every rank
        return Trainer(cfg, d, dataset, val_dataset, stats=stats, language=language).run(stop_after)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)


class Trainer(TrainingLoop):
    """One run of ``cfg.regime`` through the shared :class:`~vla_adapter_ros.core.loop.TrainingLoop`: the
    VLA's part is the model of the regime (:func:`build_model`), DDP, the instruction embeddings of a batch,
    the resume tensors (backbone + every tuner), the run files and the artifact. Use it through
    :func:`train`, which seeds every rank alike and starts the process group first.
    """

    metrics = ("l1", "mse")

    def __init__(self, cfg: TrainConfig, d: Dist, dataset, val_dataset=None, *,
                 stats: Mapping[str, P.Normalizer] | None = None, language=None) -> None:
        self.language = language
        self.label = cfg.regime
        if stats is None and cfg.regime == "pretrain":
            stats = getattr(dataset, "stats", None)
        model, params = build_model(cfg, stats, language)
        model.to(d.device)
        if not params:
            raise ValueError(f"regime {cfg.regime!r} left no trainable parameters")
        super().__init__(cfg, d, model, params, dataset, cfg.out_dir, val_dataset)
        self.cfg: TrainConfig = cfg

    @property
    def ddp(self):
        return self.wrapped

    def wrap(self, model):
        d = self.d
        cuda = d.device.type == "cuda"
        return DDP(model, device_ids=[d.device.index] if cuda else None) if d.enabled else model

    def resume_identity(self) -> dict[str, Any]:
        return {"regime": self.cfg.regime, **super().resume_identity()}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return model_tensors(self.model)

    def load_state_tensors(self, state: Mapping[str, torch.Tensor]) -> None:
        load_model_tensors(self.model, state)

    def write_run_info(self) -> None:
        self.cfg.save(self.out / "train_config.json")
        report = parameter_report(self.model)
        (self.out / "parameter_report.txt").write_text(str(report) + "\n")
        (self.out / "parameter_report.json").write_text(json.dumps(report.to_dict(), indent=1) + "\n")
        if self.cfg.progress:
            tqdm.write(str(report))

    def _prepare(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """On the device, with instruction embeddings unless the model embeds instructions itself."""
        batch = _to_device(batch, self.d.device)
        if P.INSTRUCTION_EMBEDDING in batch or self.model.language is not None:
            return batch
        if self.language is None:
            self.language = LanguageEncoder()
        if self.language.device != self.d.device:
            self.language.to(self.d.device)
        batch[P.INSTRUCTION_EMBEDDING] = self.language.encode(batch[P.INSTRUCTION])
        return batch

    def loss(self, batch: Mapping[str, Any]):
        return self.wrapped(self._prepare(batch))

    def val_loss(self, batch: Mapping[str, Any]):
        return self.model(self._prepare(batch))

    def plot_title(self) -> str:
        tuned = self.cfg.regime in TUNER_REGIMES
        return f"{self.cfg.regime} ({self.cfg.adapter_name})" if tuned else self.cfg.regime

    def finish(self) -> TrainResult:
        return TrainResult(**vars(super().finish()), model=self.model)

    def save_artifact(self) -> Path:
        if self.cfg.regime in TUNER_REGIMES:
            name = self.cfg.adapter_name
            artifact = save_adapter(self.model, name, self.out / "adapters" / name)
        else:
            artifact = save_checkpoint(self.model, self.out / "checkpoint", adapters=False)
        contract = contract_file(self.cfg)
        if contract is not None:  # the robot it was trained for travels with it (export copies it)
            shutil.copyfile(contract, artifact / CONTRACT_FILE)
        return artifact


# ----------------------------------------------------------------------------- config files (CLI: core/train_cli.py)


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set expects KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip().split("."), value


def load_train_config(path: str | Path, overrides: list[str] = ()) -> TrainConfig:
    """TrainConfig from JSON/YAML with dotted ``KEY=VALUE`` overrides (values parsed as JSON)."""
    cfg = TrainConfig.load(path)
    return apply_overrides(cfg.to_dict(), overrides) if overrides else cfg


def apply_overrides(d: dict[str, Any], overrides: list[str] = ()) -> TrainConfig:
    """The TrainConfig of the dict ``d`` (``TrainConfig.to_dict()``) with dotted ``KEY=VALUE`` overrides."""
    d = json.loads(json.dumps(d))  # a copy
    for text in overrides:
        keys, value = _parse_override(text)
        node = d
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                raise ValueError(f"--set {text!r}: {k!r} is not a config section")
            node = node[k]
        if keys[-1] not in node:
            raise ValueError(f"--set {text!r}: unknown key {keys[-1]!r}; known: {sorted(node)}")
        node[keys[-1]] = value
    return TrainConfig.from_dict(d)


def train_from_config(cfg: TrainConfig, *, stop_after: int | None = None, language=None) -> TrainResult:
    """Build the datasets ``cfg`` names and train. Fine-tuning regimes normalise the data
    with the statistics stored in ``cfg.init_checkpoint`` (the backbone's), never their own."""
    if not cfg.data:
        raise ValueError("TrainConfig.data lists no episode directories")
    cfg, contract = resolve_contract(cfg)
    if cfg.regime == "pretrain":
        model_config, stats = cfg.model, None
    else:
        model_config = ModelConfig.load(Path(cfg.init_checkpoint) / CONFIG_NAME)
        stats = load_checkpoint(cfg.init_checkpoint, adapters=False).stats
    data = dict(topics=cfg.topics, contract=contract, instruction=cfg.instruction or None)
    dataset = build_dataset(expand_paths(cfg.data), model_config, stats, augment=cfg.augment, **data)
    train_stats = stats or getattr(dataset, "stats", None)
    val = build_dataset(expand_paths(cfg.val_data), model_config, train_stats, **data) if cfg.val_data else None
    return train(cfg, dataset, val, stats=train_stats, stop_after=stop_after, language=language)
