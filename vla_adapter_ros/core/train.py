"""One trainer for every regime: pretrain, adapter, lora, head_only, full.

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
==========  =====================================================  ==============

Seeded and deterministic on CPU; resumable (``resume: true``) from
``<out_dir>/resume`` with model, optimizer, scheduler, RNG and step. Runs as is or
under ``torchrun`` (DistributedDataParallel: gloo on CPU, NCCL on GPU;
DistributedSampler; only rank 0 writes, except each rank's own RNG state).

    vla-adapter train --config configs/adapter.yaml --set steps=500 --set adapter.rank=16
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import processing as P
from .config import TrainConfig
from .distributed import Dist, barrier, mean_across, seed_everything, setup_distributed


@dataclass
class TrainResult:
    step: int
    loss: float  # mean training loss over the last logging window
    out_dir: Path
    artifact: Path | None  # checkpoint dir or adapter dir (None when stopped early)
    trainable_params: int
    total_params: int
    model: Any = None  # the trained VLAPolicy (unwrapped from DDP), on its training device


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
    from .checkpoint import load_checkpoint
    from .model import VLAPolicy

    if cfg.regime == "pretrain":
        model = VLAPolicy(cfg.model, stats=stats)
    else:
        model = load_checkpoint(cfg.init_checkpoint, adapters=False)
    tuner = cfg.adapter if cfg.regime == "adapter" else cfg.lora if cfg.regime == "lora" else None
    if tuner is not None and "language" in tuner.components:
        if language is None:
            from .language import LanguageEncoder

            language = LanguageEncoder()
        model.attach_language(language)
    for p in model.parameters():  # explicit: start from everything frozen
        p.requires_grad_(False)
    if cfg.regime in ("pretrain", "full"):
        params = _backbone_params(model)
    elif cfg.regime == "head_only":
        params = list(model.head.parameters())
    else:
        from .tuners import mark_only_adapter_trainable, set_adapter

        if cfg.regime == "adapter":
            from .adapters import add_adapter

            add_adapter(model, cfg.adapter_name, cfg.adapter)
        else:
            from .lora import add_lora

            add_lora(model, cfg.adapter_name, cfg.lora)
        set_adapter(model, cfg.adapter_name)
        params = mark_only_adapter_trainable(model, cfg.adapter_name)
    for p in params:
        p.requires_grad_(True)
    return model, params


def _backbone_params(model) -> list:
    """Backbone parameters found structurally (tuner weights and language encoder excluded)."""
    from torch import nn

    from .tuners import backbone_tensors

    skip = (model.language,) if model.language is not None else ()
    return [v for v in backbone_tensors(model, "", skip).values() if isinstance(v, nn.Parameter)]


def make_optimizer(params: list, cfg: TrainConfig):
    """AdamW; weight decay on matrices only (nanoGPT): biases, norms and embeddings-as-vectors excluded."""
    import torch

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


def build_dataset(
    paths: list[str],
    model_config,
    stats: Mapping[str, P.Normalizer] | None = None,
    *,
    topics: Mapping[str, str | None] | None = None,
    augment: bool = False,
):
    """An ``EpisodeDataset`` (core/data.py) over rosbag2 episodes, shaped by ``model_config``.

    ``stats``: normalise with these (fine-tuning must use the backbone's statistics);
    otherwise the dataset fits its own. The episodes' proprio / action dimensions must
    match the model's.
    """
    from .data import EpisodeDataset  # lazy: heavy imports (rosbags)

    kwargs: dict[str, Any] = {}
    if topics:
        from ..bags.episodes import EpisodeTopics

        kwargs["topics"] = EpisodeTopics(**topics)
    ds = EpisodeDataset(paths, image_size=model_config.image_size, chunk_length=model_config.chunk_length,
                        stats=stats, proprio_names=model_config.proprio_names, augment=augment, **kwargs)
    for what, ours in (("proprio_dim", model_config.proprio_dim), ("action_dim", model_config.action_dim)):
        theirs = getattr(ds, what)
        if theirs != ours:
            raise ValueError(f"episodes in {paths[:3]}... have {what}={theirs}, the model has {what}={ours}")
    return ds


def _collate(samples: list[Mapping[str, Any]]) -> dict[str, Any]:
    from torch.utils.data import default_collate

    return default_collate(samples)


def _to_device(batch: Mapping[str, Any], device) -> dict[str, Any]:
    import torch

    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


# ----------------------------------------------------------------------------- the loop


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
    import torch

    d = setup_distributed(cfg.device)
    cuda = d.device.type == "cuda"
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        seed_everything(cfg.seed, cfg.deterministic, cuda)  # same init on every rank
        return _train(cfg, d, dataset, val_dataset, stats, language, stop_after)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)


def _train(cfg: TrainConfig, d: Dist, dataset, val_dataset, stats, language, stop_after) -> TrainResult:
    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP
    from torch.utils.data import DataLoader, DistributedSampler
    from tqdm import tqdm

    from .adapters import parameter_report, save_adapter
    from .checkpoint import save_checkpoint
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

    cuda = d.device.type == "cuda"
    out = Path(cfg.out_dir)
    resume_dir = out / RESUME_DIR
    if stats is None and cfg.regime == "pretrain":
        stats = getattr(dataset, "stats", None)
    model, params = build_model(cfg, stats, language)
    model.to(d.device)
    if not params:
        raise ValueError(f"regime {cfg.regime!r} left no trainable parameters")
    opt = make_optimizer(params, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)
    )
    step = 0
    if cfg.resume and (resume_dir / "trainer.json").is_file():
        saved = read_trainer_json(resume_dir)
        for key, ours in (("regime", cfg.regime), ("world_size", d.world_size), ("steps", cfg.steps)):
            if saved.get(key) != ours:
                raise ValueError(f"cannot resume {resume_dir}: it was written with {key}={saved.get(key)!r}, this run has {ours!r}")
        trainer = load_resume(resume_dir, model, opt, d.rank)
        sched.load_state_dict(trainer["scheduler"])
        step = int(trainer["step"])
    else:
        torch.manual_seed(cfg.seed + d.rank)  # per-rank dropout streams from here on
    ddp = DDP(model, device_ids=[d.device.index] if cuda else None) if d.enabled else model

    language_in_model = model.language is not None
    sampler = DistributedSampler(dataset, num_replicas=d.world_size, rank=d.rank, shuffle=True, seed=cfg.seed, drop_last=True)
    steps_per_epoch = len(sampler) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"dataset of {len(dataset)} samples is smaller than batch_size {cfg.batch_size} x {d.world_size} processes"
        )

    def batches(from_step: int):
        """Batches from global step ``from_step`` on; epoch order depends only on (seed, epoch)."""
        epoch, offset = divmod(from_step, steps_per_epoch)
        while True:
            sampler.set_epoch(epoch)
            indices = list(iter(sampler))[offset * cfg.batch_size:]
            loader = DataLoader(
                dataset, batch_size=cfg.batch_size, sampler=indices, drop_last=True, num_workers=cfg.num_workers,
                collate_fn=_collate, generator=torch.Generator().manual_seed(cfg.seed + epoch),
                pin_memory=cuda,
            )
            yield from loader
            epoch, offset = epoch + 1, 0

    def with_embeddings(batch: dict[str, Any]) -> dict[str, Any]:
        nonlocal language
        if P.INSTRUCTION_EMBEDDING in batch or language_in_model:
            return batch
        if language is None:
            from .language import LanguageEncoder

            language = LanguageEncoder()
        if language.device != d.device:
            language.to(d.device)
        batch[P.INSTRUCTION_EMBEDDING] = language.encode(batch[P.INSTRUCTION])
        return batch

    @torch.no_grad()
    def validate() -> float:
        model.eval()
        loader = DataLoader(val_dataset, batch_size=cfg.batch_size, shuffle=False, collate_fn=_collate)
        tot, n = 0.0, 0
        for b in loader:
            loss, _ = model(with_embeddings(_to_device(b, d.device)))
            bs = b[P.IMAGE].shape[0]
            tot, n = tot + float(loss) * bs, n + bs
        model.train()
        return tot / max(n, 1)

    def save_resume() -> None:
        tmp = resume_dir.with_name(RESUME_DIR + ".tmp")
        if d.is_main:
            if tmp.exists():
                import shutil

                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        barrier(d)
        if d.is_main:
            save_resume_shared(tmp, model, opt, {
                "step": step, "regime": cfg.regime, "world_size": d.world_size, "steps": cfg.steps,
                "scheduler": {k: v for k, v in sched.state_dict().items() if k != "lr_lambdas"} | {"lr_lambdas": [None]},
                "config": cfg.to_dict(),
            })
        save_resume_rng(tmp, d.rank)
        barrier(d)
        if d.is_main:
            commit_resume(tmp, resume_dir)
        barrier(d)

    log = None
    if d.is_main:
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out / "train_config.json")
        log = RunLog(out, resume_step=step if step > 0 else None)
        report = parameter_report(model)
        (out / "parameter_report.txt").write_text(str(report) + "\n")
        (out / "parameter_report.json").write_text(json.dumps(report.to_dict(), indent=1) + "\n")
        if cfg.progress:
            tqdm.write(str(report))
    bar = tqdm(total=cfg.steps, initial=step, disable=not (d.is_main and cfg.progress), dynamic_ncols=True,
               desc=f"{cfg.regime}")
    model.train()
    it = batches(step)
    window: list[tuple[float, float, float]] = []
    last_loss = float("nan")
    t0 = t_log = time.perf_counter()
    end = cfg.steps if stop_after is None else min(cfg.steps, step + stop_after)
    while step < end:
        batch = with_embeddings(_to_device(next(it), d.device))
        loss, info = ddp(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
        lr = opt.param_groups[0]["lr"]  # the rate this step used
        opt.step()
        sched.step()
        step += 1
        window.append((float(loss.detach()), info["l1"], info["mse"]))
        if cfg.log_every and (step % cfg.log_every == 0 or step == end):
            loss_m, l1_m, mse_m = mean_across(d, [sum(v) / len(window) for v in zip(*window, strict=True)])
            now = time.perf_counter()
            rec = {
                "step": step, "epoch": step // steps_per_epoch, "loss": loss_m, "l1": l1_m, "mse": mse_m,
                "lr": lr, "grad_norm": float(norm),
                "samples_per_s": len(window) * cfg.batch_size * d.world_size / max(now - t_log, 1e-9),
                "elapsed_s": now - t0,
            }
            last_loss, window, t_log = loss_m, [], now
            if log is not None:
                log.append(rec)
            bar.set_postfix(loss=f"{loss_m:.4f}", lr=f"{rec['lr']:.2e}")
        if val_dataset is not None and cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps) and d.is_main:
            val_loss = validate()
            if log is not None:
                log.append({"step": step, "epoch": step // steps_per_epoch, "val_loss": val_loss})
            bar.set_postfix(loss=f"{last_loss:.4f}", val=f"{val_loss:.4f}")
        bar.update(1)
        if cfg.save_every and step % cfg.save_every == 0 and step < cfg.steps:
            save_resume()
    bar.close()
    if window:
        last_loss = mean_across(d, [sum(w[0] for w in window) / len(window)])[0]
    artifact = None
    if step >= cfg.steps:
        save_resume()
        if d.is_main:
            if cfg.regime in ("adapter", "lora"):
                artifact = save_adapter(model, cfg.adapter_name, out / "adapters" / cfg.adapter_name)
            else:
                artifact = save_checkpoint(model, out / "checkpoint", adapters=False)
    elif cfg.save_every:
        save_resume()
    if log is not None and cfg.plot:
        log.plot(out / CURVES_PNG, title=f"{cfg.regime} ({cfg.adapter_name})" if cfg.regime in ("adapter", "lora") else cfg.regime)
    barrier(d)
    total = sum(p.numel() for p in model.parameters())
    return TrainResult(step, last_loss, out, artifact, sum(p.numel() for p in params), total, model)


# ----------------------------------------------------------------------------- CLI


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
    if not overrides:
        return cfg
    d = cfg.to_dict()
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="TrainConfig file (.json, .yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, dotted for sections (e.g. adapter.rank=16); repeatable")
    parser.add_argument("--resume", action="store_true", help="continue from <out_dir>/resume if present")
    parser.add_argument("--out-dir", help="override out_dir")
    parser.add_argument("--stop-after", type=int, help="stop after N steps in this call (resume later)")


def train_from_config(cfg: TrainConfig, *, stop_after: int | None = None, language=None) -> TrainResult:
    """Build the datasets ``cfg`` names and train. Fine-tuning regimes normalise the data
    with the statistics stored in ``cfg.init_checkpoint`` (the backbone's), never their own."""
    from .config import ModelConfig

    if not cfg.data:
        raise ValueError("TrainConfig.data lists no episode directories")
    if cfg.regime == "pretrain":
        model_config, stats = cfg.model, None
    else:
        from .checkpoint import CONFIG_NAME, load_checkpoint

        model_config = ModelConfig.load(Path(cfg.init_checkpoint) / CONFIG_NAME)
        stats = load_checkpoint(cfg.init_checkpoint, adapters=False).stats
    dataset = build_dataset(expand_paths(cfg.data), model_config, stats, topics=cfg.topics, augment=cfg.augment)
    train_stats = stats or getattr(dataset, "stats", None)
    val = build_dataset(expand_paths(cfg.val_data), model_config, train_stats, topics=cfg.topics) if cfg.val_data else None
    return train(cfg, dataset, val, stats=train_stats, stop_after=stop_after, language=language)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (FileNotFoundError, ValueError) as exc:  # config / data problems: say what, exit non-zero
        import sys

        print(f"vla-adapter train: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.resume:
        overrides.append("resume=true")
    if args.out_dir:
        overrides.append(f"out_dir={json.dumps(args.out_dir)}")
    cfg = load_train_config(args.config, overrides)
    if not cfg.data:
        raise ValueError(f"{args.config}: 'data' lists no episode directories")
    try:
        result = train_from_config(cfg, stop_after=args.stop_after)
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({
            "step": result.step, "loss": result.loss, "out_dir": str(result.out_dir),
            "artifact": str(result.artifact) if result.artifact else None,
            "trainable_params": result.trainable_params, "total_params": result.total_params,
        }, indent=1))
    return 0
