"""The training loop every policy family shares: schedule, optimizer, clipping, logs, resume, progress.

A family subclasses :class:`TrainingLoop` and supplies what only it knows: the model and its trainable
parameters (built before ``__init__``), the dataset, the loss of a batch (:meth:`TrainingLoop.loss`),
the tensors a resume state holds (:meth:`~TrainingLoop.state_tensors` /
:meth:`~TrainingLoop.load_state_tensors`) and the artifact written at the end
(:meth:`~TrainingLoop.save_artifact`). The rules live here once:

- AdamW (:func:`make_optimizer`: weight decay on matrices only), linear warm-up then cosine to
  ``min_lr_ratio`` (:func:`lr_factor`), global grad-norm clipping at ``grad_clip``;
- data order: a ``DistributedSampler`` seeded by ``seed`` and the epoch (one process: the identity
  sharding), so a resumed run sees the same batches from its step on;
- ``<out_dir>/log.jsonl`` + ``log.csv`` (``train_state.RunLog``) every ``log_every`` steps, validation
  every ``eval_every`` steps, ``curves.png`` at the end (``plot``);
- ``<out_dir>/resume`` every ``save_every`` steps and at the end: model tensors, optimizer, schedule,
  RNG and step (``train_state``; safetensors + JSON), refused when the run's identity differs;
- a tqdm bar (``progress``), the peak resident memory of the steps and the time per step.

The VLA's :class:`~vla_adapter_ros.core.train.Trainer` and SmolVLA's
(``families/smolvla/train.py``) are the two families. Imports no rclpy and nothing the LeRobot venv
lacks (matplotlib is imported when a curve is drawn).
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader, DistributedSampler, default_collate
from tqdm import tqdm

from .distributed import Dist, barrier, mean_across
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


class LoopConfig(Protocol):
    """What the loop reads of a run's config (``core.config.TrainConfig`` and SmolVLA's config have it)."""

    steps: int
    batch_size: int
    warmup_steps: int
    min_lr_ratio: float
    weight_decay: float
    betas: tuple[float, ...]
    grad_clip: float
    seed: int
    num_workers: int
    resume: bool
    save_every: int
    log_every: int
    eval_every: int
    progress: bool
    plot: bool

    @property
    def peak_lr(self) -> float: ...

    def to_dict(self) -> dict[str, Any]: ...


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then cosine from 1 to ``min_ratio`` at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(params: list, cfg: LoopConfig) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices only (nanoGPT): biases, norms and embeddings-as-vectors excluded."""
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.peak_lr, betas=cfg.betas)


@dataclass
class LoopResult:
    step: int
    loss: float  # mean training loss over the last logging window
    out_dir: Path
    artifact: Path | None  # what the family saved at the last step (None when stopped early)
    trainable_params: int
    total_params: int
    # peak resident memory of the training steps above what the process held when they started (model and
    # data loaded): activations, gradients, optimizer state. None where it cannot be measured (not Linux).
    peak_rss_delta_bytes: int | None = None
    seconds_per_step: float | None = None  # wall time of this call's steps (logging and resume saves included)


class TrainingLoop:
    """One run: optimizer, schedule and resume state set up in ``__init__``; :meth:`run` calls :meth:`step`
    per batch, :meth:`log_window`, :meth:`validate` and :meth:`save_resume` when due, then :meth:`finish`.

    ``model``: the module whose tensors :meth:`state_tensors` saves (on its device already);
    ``params``: exactly the parameters to train (requires_grad set by the family). The caller seeds
    the process first (``distributed.seed_everything``) so every rank initialises alike.
    """

    label = "train"  # the progress bar's and the curve's title
    metrics: tuple[str, ...] = ()  # keys of the loss's info dict averaged into each log record

    def __init__(self, cfg: LoopConfig, d: Dist, model: torch.nn.Module, params: list, dataset: Any,
                 out_dir: str | Path, val_dataset: Any = None) -> None:
        self.cfg, self.d, self.model, self.params = cfg, d, model, params
        self.dataset, self.val_dataset = dataset, val_dataset
        self.out = Path(out_dir)
        self.resume_dir = self.out / RESUME_DIR
        if not params:
            raise ValueError(f"{self.label}: no trainable parameters")
        self.opt = make_optimizer(params, cfg)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: lr_factor(s, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)
        )
        self.global_step = self._restore()
        self.wrapped = self.wrap(model)
        self.sampler = DistributedSampler(dataset, num_replicas=d.world_size, rank=d.rank, shuffle=True,
                                          seed=cfg.seed, drop_last=True)
        self.steps_per_epoch = len(self.sampler) // cfg.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"dataset of {len(dataset)} samples is smaller than batch_size {cfg.batch_size} x {d.world_size} processes"
            )
        self.log = self._start_log()
        self.window: list[tuple[float, ...]] = []  # (loss, *metrics) since the last log record
        self.last_loss = float("nan")
        self._t0 = self._t_log = time.perf_counter()

    @property
    def log_fields(self) -> tuple[str, ...]:
        """The columns of log.csv: the loop's own, with the family's :attr:`metrics` after the loss."""
        return ("step", "epoch", "loss", *self.metrics, "lr", "grad_norm", "samples_per_s", "elapsed_s", "val_loss")

    # ------------------------------------------------------------------ what a family supplies
    def wrap(self, model: torch.nn.Module) -> Any:
        """The callable :meth:`loss` trains through (the VLA wraps DDP here); default: the model."""
        return model

    def loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, Mapping[str, Any]]:
        """(scalar loss, info with the :attr:`metrics` keys) of a training batch."""
        raise NotImplementedError

    def val_loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, Mapping[str, Any]]:
        """The loss of a validation batch (default: :meth:`loss`)."""
        return self.loss(batch)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Every model tensor training can change, for the resume state (CPU, contiguous)."""
        raise NotImplementedError

    def load_state_tensors(self, state: Mapping[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def resume_identity(self) -> dict[str, Any]:
        """Written into trainer.json; resuming with any other value is refused."""
        return {"world_size": self.d.world_size, "steps": self.cfg.steps}

    def write_run_info(self) -> None:
        """Rank 0, at the start: files describing the run (the config, parameter counts)."""

    def plot_title(self) -> str:
        return self.label

    def save_artifact(self) -> Path | None:
        """Rank 0, after the last step: the trained checkpoint / adapter."""
        return None

    def collate(self, items: list[Any]) -> Any:
        return default_collate(items)

    # ------------------------------------------------------------------ set-up
    def _restore(self) -> int:
        """The step to start from: the resume state's with ``cfg.resume``, else 0 (and per-rank seeding)."""
        cfg, d = self.cfg, self.d
        if not (cfg.resume and (self.resume_dir / "trainer.json").is_file()):
            torch.manual_seed(cfg.seed + d.rank)  # per-rank dropout streams from here on
            return 0
        saved = read_trainer_json(self.resume_dir)
        for key, ours in self.resume_identity().items():
            if saved.get(key) != ours:
                raise ValueError(f"cannot resume {self.resume_dir}: it was written with {key}={saved.get(key)!r}, "
                                 f"this run has {ours!r}")
        trainer = load_resume(self.resume_dir, self.load_state_tensors, self.opt, d.rank)
        self.sched.load_state_dict(trainer["scheduler"])
        return int(trainer["step"])

    def _start_log(self) -> RunLog | None:
        """Rank 0: the run directory with its description and log (None on other ranks)."""
        if not self.d.is_main:
            return None
        self.out.mkdir(parents=True, exist_ok=True)
        log = RunLog(self.out, resume_step=self.global_step if self.global_step > 0 else None, fields=self.log_fields)
        self.write_run_info()
        return log

    # ------------------------------------------------------------------ data
    def batches(self, from_step: int) -> Iterator[Any]:
        """Batches from global step ``from_step`` on; epoch order depends only on (seed, epoch)."""
        cfg = self.cfg
        epoch, offset = divmod(from_step, self.steps_per_epoch)
        while True:
            self.sampler.set_epoch(epoch)
            indices = list(iter(self.sampler))[offset * cfg.batch_size:]
            loader = DataLoader(
                self.dataset, batch_size=cfg.batch_size, sampler=indices, drop_last=True, num_workers=cfg.num_workers,
                collate_fn=self.collate, generator=torch.Generator().manual_seed(cfg.seed + epoch),
                pin_memory=self.d.device.type == "cuda",
            )
            yield from loader
            epoch, offset = epoch + 1, 0

    # ------------------------------------------------------------------ steps
    def step(self, batch: Mapping[str, Any]) -> tuple[float, float]:
        """One optimisation step on ``batch``; returns (the learning rate it used, the gradient norm)."""
        loss, info = self.loss(batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.params, clip)
        lr = self.opt.param_groups[0]["lr"]  # the rate this step used
        self.opt.step()
        self.sched.step()
        self.global_step += 1
        self.window.append((float(loss.detach()), *(float(info[k]) for k in self.metrics)))
        return lr, float(norm)

    def log_window(self, lr: float, grad_norm: float) -> dict[str, Any]:
        """The record of the steps since the last one, averaged over ranks (every rank calls this)."""
        d, step = self.d, self.global_step
        means = mean_across(d, [sum(v) / len(self.window) for v in zip(*self.window, strict=True)])
        now = time.perf_counter()
        rec = {
            "step": step, "epoch": step // self.steps_per_epoch, **dict(zip(("loss", *self.metrics), means, strict=True)),
            "lr": lr, "grad_norm": grad_norm,
            "samples_per_s": len(self.window) * self.cfg.batch_size * d.world_size / max(now - self._t_log, 1e-9),
            "elapsed_s": now - self._t0,
        }
        self.last_loss, self.window, self._t_log = means[0], [], now
        if self.log is not None:
            self.log.append(rec)
        return rec

    @torch.no_grad()
    def validate(self) -> float:
        """Mean loss over the validation set (rank 0 only; logged)."""
        self.model.eval()
        loader = DataLoader(self.val_dataset, batch_size=self.cfg.batch_size, shuffle=False, collate_fn=self.collate)
        tot, n = 0.0, 0
        for b in loader:
            loss, _ = self.val_loss(b)
            bs = next(v for v in b.values() if isinstance(v, torch.Tensor)).shape[0]
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
            save_resume_shared(tmp, self.state_tensors(), self.opt, {
                "step": self.global_step, **self.resume_identity(), "scheduler": scheduler, "config": self.cfg.to_dict(),
            })
        save_resume_rng(tmp, d.rank)
        barrier(d)
        if d.is_main:
            commit_resume(tmp, self.resume_dir)
        barrier(d)

    # ------------------------------------------------------------------ the run
    def run(self, stop_after: int | None = None) -> Any:
        """Train up to ``cfg.steps`` (or ``stop_after`` more steps), then :meth:`finish`."""
        cfg, d = self.cfg, self.d
        end = cfg.steps if stop_after is None else min(cfg.steps, self.global_step + stop_after)
        bar = tqdm(total=cfg.steps, initial=self.global_step, disable=not (d.is_main and cfg.progress),
                   dynamic_ncols=True, desc=self.label)
        self.model.train()
        batches = self.batches(self.global_step)
        first = self.global_step
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
        seconds = time.perf_counter() - self._t0
        bar.close()
        result = self.finish()
        result.peak_rss_delta_bytes = memory.delta_bytes
        result.seconds_per_step = seconds / (self.global_step - first) if self.global_step > first else None
        return result

    def _validation_due(self) -> bool:
        cfg, step = self.cfg, self.global_step
        due = bool(cfg.eval_every) and (step % cfg.eval_every == 0 or step == cfg.steps)
        return self.val_dataset is not None and due and self.d.is_main

    def finish(self) -> LoopResult:
        """Final loss; at the last step the resume state and the artifact; curves."""
        cfg, d = self.cfg, self.d
        if self.window:
            self.last_loss = mean_across(d, [sum(w[0] for w in self.window) / len(self.window)])[0]
        total = sum(p.numel() for p in self.model.parameters())  # before save_artifact (a LoRA is merged there)
        trainable = sum(p.numel() for p in self.params)
        artifact = None
        if self.global_step >= cfg.steps:
            self.save_resume()
            if d.is_main:
                artifact = self.save_artifact()
        elif cfg.save_every:
            self.save_resume()
        if self.log is not None and cfg.plot:
            self.log.plot(self.out / CURVES_PNG, title=self.plot_title())
        barrier(d)
        return LoopResult(self.global_step, self.last_loss, self.out, artifact, trainable, total)
