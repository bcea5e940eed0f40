"""One trainer for every regime: pretrain, adapter, lora, prefix, head_only, full.

Same data, same schedule (AdamW, linear warm-up then cosine to ``min_lr_ratio``, global
grad-norm clipping), only the set of trainable parameters differs, chosen explicitly:

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
import math
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler, default_collate
from tqdm import tqdm

from .. import processing as P
from ..bags.episodes import EpisodeTopics
from ..contract import RobotContract
from .adapters import add_tuner, parameter_report, save_adapter
from .checkpoint import CONFIG_NAME, load_checkpoint, save_checkpoint
from .config import TUNER_REGIMES, ModelConfig, TrainConfig
from .data import EpisodeDataset
from .distributed import Dist, barrier, mean_across, seed_everything, setup_distributed
from .language import LanguageEncoder
from .model import VLAPolicy
from .resources import PeakRss
from .train_state import (
    CURVES_PNG,
    RESUME_DIR,
    RunLog,
    commit_resume,
    load_resume,
    read_trainer_json,
    save_resume_rng,
    save_resume_shared,
)
from .tuners import backbone_tensors, mark_only_adapter_trainable, set_adapter


@dataclass
class TrainResult:
    step: int
    loss: float  # mean training loss over the last logging window
    out_dir: Path
    artifact: Path | None  # checkpoint dir or adapter dir (None when stopped early)
    trainable_params: int
    total_params: int
    model: Any = None  # the trained VLAPolicy (unwrapped from DDP), on its training device
    # peak resident memory of the training steps above what the process held when they started (model and
    # data loaded): activations, gradients, optimizer state. None where it cannot be measured (not Linux).
    peak_rss_delta_bytes: int | None = None


# ----------------------------------------------------------------------------- set-up pieces


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then cosine from 1 to ``min_ratio`` at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


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


def make_optimizer(params: list, cfg: TrainConfig):
    """AdamW; weight decay on matrices only (nanoGPT): biases, norms and embeddings-as-vectors excluded."""
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.peak_lr, betas=cfg.betas)


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


class Trainer:
    """One run of ``cfg.regime``: set up in ``__init__`` (model, optimizer, schedule, resume state,
    DDP, sampler, logs), then :meth:`run` calls :meth:`step` per batch, :meth:`validate` and
    :meth:`save_resume` when due, and :meth:`finish`. Use it through :func:`train`, which seeds
    every rank alike and starts the process group first.
    """

    def __init__(self, cfg: TrainConfig, d: Dist, dataset, val_dataset=None, *,
                 stats: Mapping[str, P.Normalizer] | None = None, language=None) -> None:
        self.cfg, self.d = cfg, d
        self.dataset, self.val_dataset, self.language = dataset, val_dataset, language
        self.out = Path(cfg.out_dir)
        self.resume_dir = self.out / RESUME_DIR
        if stats is None and cfg.regime == "pretrain":
            stats = getattr(dataset, "stats", None)
        self.model, self.params = build_model(cfg, stats, language)
        self.model.to(d.device)
        if not self.params:
            raise ValueError(f"regime {cfg.regime!r} left no trainable parameters")
        self.opt = make_optimizer(self.params, cfg)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: lr_factor(s, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)
        )
        self.global_step = self._restore()
        cuda = d.device.type == "cuda"
        self.ddp = DDP(self.model, device_ids=[d.device.index] if cuda else None) if d.enabled else self.model
        self.sampler = DistributedSampler(dataset, num_replicas=d.world_size, rank=d.rank, shuffle=True,
                                          seed=cfg.seed, drop_last=True)
        self.steps_per_epoch = len(self.sampler) // cfg.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"dataset of {len(dataset)} samples is smaller than batch_size {cfg.batch_size} x {d.world_size} processes"
            )
        self.log = self._start_log()
        self.window: list[tuple[float, float, float]] = []  # (loss, l1, mse) since the last log record
        self.last_loss = float("nan")
        self._t0 = self._t_log = time.perf_counter()

    def _restore(self) -> int:
        """The step to start from: the resume state's with ``cfg.resume``, else 0 (and per-rank seeding)."""
        cfg, d = self.cfg, self.d
        if not (cfg.resume and (self.resume_dir / "trainer.json").is_file()):
            torch.manual_seed(cfg.seed + d.rank)  # per-rank dropout streams from here on
            return 0
        saved = read_trainer_json(self.resume_dir)
        for key, ours in (("regime", cfg.regime), ("world_size", d.world_size), ("steps", cfg.steps)):
            if saved.get(key) != ours:
                raise ValueError(f"cannot resume {self.resume_dir}: it was written with {key}={saved.get(key)!r}, "
                                 f"this run has {ours!r}")
        trainer = load_resume(self.resume_dir, self.model, self.opt, d.rank)
        self.sched.load_state_dict(trainer["scheduler"])
        return int(trainer["step"])

    def _start_log(self) -> RunLog | None:
        """Rank 0: the run directory with its config, parameter report and log (None on other ranks)."""
        if not self.d.is_main:
            return None
        self.out.mkdir(parents=True, exist_ok=True)
        self.cfg.save(self.out / "train_config.json")
        log = RunLog(self.out, resume_step=self.global_step if self.global_step > 0 else None)
        report = parameter_report(self.model)
        (self.out / "parameter_report.txt").write_text(str(report) + "\n")
        (self.out / "parameter_report.json").write_text(json.dumps(report.to_dict(), indent=1) + "\n")
        if self.cfg.progress:
            tqdm.write(str(report))
        return log

    # ------------------------------------------------------------------ data
    def batches(self, from_step: int) -> Iterator[dict[str, Any]]:
        """Batches from global step ``from_step`` on; epoch order depends only on (seed, epoch)."""
        cfg = self.cfg
        epoch, offset = divmod(from_step, self.steps_per_epoch)
        while True:
            self.sampler.set_epoch(epoch)
            indices = list(iter(self.sampler))[offset * cfg.batch_size:]
            loader = DataLoader(
                self.dataset, batch_size=cfg.batch_size, sampler=indices, drop_last=True, num_workers=cfg.num_workers,
                collate_fn=default_collate, generator=torch.Generator().manual_seed(cfg.seed + epoch),
                pin_memory=self.d.device.type == "cuda",
            )
            yield from loader
            epoch, offset = epoch + 1, 0

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

    # ------------------------------------------------------------------ steps
    def step(self, batch: Mapping[str, Any]) -> tuple[float, float]:
        """One optimisation step on ``batch``; returns (the learning rate it used, the gradient norm)."""
        loss, info = self.ddp(self._prepare(batch))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.params, clip)
        lr = self.opt.param_groups[0]["lr"]  # the rate this step used
        self.opt.step()
        self.sched.step()
        self.global_step += 1
        self.window.append((float(loss.detach()), info["l1"], info["mse"]))
        return lr, float(norm)

    def log_window(self, lr: float, grad_norm: float) -> dict[str, Any]:
        """The record of the steps since the last one, averaged over ranks (every rank calls this)."""
        d, step = self.d, self.global_step
        loss_m, l1_m, mse_m = mean_across(d, [sum(v) / len(self.window) for v in zip(*self.window, strict=True)])
        now = time.perf_counter()
        rec = {
            "step": step, "epoch": step // self.steps_per_epoch, "loss": loss_m, "l1": l1_m, "mse": mse_m,
            "lr": lr, "grad_norm": grad_norm,
            "samples_per_s": len(self.window) * self.cfg.batch_size * d.world_size / max(now - self._t_log, 1e-9),
            "elapsed_s": now - self._t0,
        }
        self.last_loss, self.window, self._t_log = loss_m, [], now
        if self.log is not None:
            self.log.append(rec)
        return rec

    @torch.no_grad()
    def validate(self) -> float:
        """Mean loss over the validation set (rank 0 only; logged)."""
        self.model.eval()
        loader = DataLoader(self.val_dataset, batch_size=self.cfg.batch_size, shuffle=False, collate_fn=default_collate)
        tot, n = 0.0, 0
        for b in loader:
            loss, _ = self.model(self._prepare(b))
            bs = b[P.IMAGE].shape[0]
            tot, n = tot + float(loss) * bs, n + bs
        self.model.train()
        val_loss = tot / max(n, 1)
        if self.log is not None:
            self.log.append({"step": self.global_step, "epoch": self.global_step // self.steps_per_epoch,
                             "val_loss": val_loss})
        return val_loss

    def save_resume(self) -> None:
        """Model, optimizer, schedule and RNG state into ``<out_dir>/resume`` (every rank takes part)."""
        d = self.d
        tmp = self.resume_dir.with_name(RESUME_DIR + ".tmp")
        if d.is_main:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        barrier(d)
        if d.is_main:
            scheduler = {k: v for k, v in self.sched.state_dict().items() if k != "lr_lambdas"} | {"lr_lambdas": [None]}
            save_resume_shared(tmp, self.model, self.opt, {
                "step": self.global_step, "regime": self.cfg.regime, "world_size": d.world_size,
                "steps": self.cfg.steps, "scheduler": scheduler, "config": self.cfg.to_dict(),
            })
        save_resume_rng(tmp, d.rank)
        barrier(d)
        if d.is_main:
            commit_resume(tmp, self.resume_dir)
        barrier(d)

    # ------------------------------------------------------------------ the run
    def run(self, stop_after: int | None = None) -> TrainResult:
        """Train up to ``cfg.steps`` (or ``stop_after`` more steps), then :meth:`finish`."""
        cfg, d = self.cfg, self.d
        end = cfg.steps if stop_after is None else min(cfg.steps, self.global_step + stop_after)
        bar = tqdm(total=cfg.steps, initial=self.global_step, disable=not (d.is_main and cfg.progress),
                   dynamic_ncols=True, desc=f"{cfg.regime}")
        self.model.train()
        batches = self.batches(self.global_step)
        self._t0 = self._t_log = time.perf_counter()
        with PeakRss() as memory:
            while self.global_step < end:
                lr, norm = self.step(next(batches))
                step = self.global_step
                if cfg.log_every and (step % cfg.log_every == 0 or step == end):
                    rec = self.log_window(lr, norm)
                    bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{rec['lr']:.2e}")
                if self._validation_due():
                    bar.set_postfix(loss=f"{self.last_loss:.4f}", val=f"{self.validate():.4f}")
                bar.update(1)
                if cfg.save_every and step % cfg.save_every == 0 and step < cfg.steps:
                    self.save_resume()
        bar.close()
        result = self.finish()
        result.peak_rss_delta_bytes = memory.delta_bytes
        return result

    def _validation_due(self) -> bool:
        cfg, step = self.cfg, self.global_step
        due = bool(cfg.eval_every) and (step % cfg.eval_every == 0 or step == cfg.steps)
        return self.val_dataset is not None and due and self.d.is_main

    def finish(self) -> TrainResult:
        """Final loss; at the last step the resume state and the artifact (checkpoint or adapter); curves."""
        cfg, d = self.cfg, self.d
        if self.window:
            self.last_loss = mean_across(d, [sum(w[0] for w in self.window) / len(self.window)])[0]
        artifact = None
        if self.global_step >= cfg.steps:
            self.save_resume()
            if d.is_main:
                artifact = self._save_artifact()
        elif cfg.save_every:
            self.save_resume()
        if self.log is not None and cfg.plot:
            tuned = cfg.regime in TUNER_REGIMES
            self.log.plot(self.out / CURVES_PNG, title=f"{cfg.regime} ({cfg.adapter_name})" if tuned else cfg.regime)
        barrier(d)
        total = sum(p.numel() for p in self.model.parameters())
        trainable = sum(p.numel() for p in self.params)
        return TrainResult(self.global_step, self.last_loss, self.out, artifact, trainable, total, self.model)

    def _save_artifact(self) -> Path:
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
