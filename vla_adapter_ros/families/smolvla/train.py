"""SmolVLA trained through the package's one training loop (``core/loop.py``), in the LeRobot venv.

Three methods, the same data, schedule, clipping, logs and resume state as the package's own VLA:

=========  ==================================================  =============================================
method     trainable                                           written to ``out_dir`` (export takes)
=========  ==================================================  =============================================
adapter    bottleneck adapter ``name`` at ``sites`` (backbone  ``adapters/<name>/`` (``--adapter``, with the
           frozen: every backbone tensor stays bit-identical)   original checkpoint as ``--checkpoint``)
lora       LoRA ``name`` (rank, alpha 2 x rank) at the same     ``adapters/<name>/`` (method "lora", refused by
           output projections (backbone frozen)                 export) and ``checkpoint/``: the LoRA merged into
                                                                the backbone (``--checkpoint``)
full       every backbone parameter (vision, language, expert,  ``checkpoint/`` (``--checkpoint``)
           projections)
=========  ==================================================  =============================================

Export always takes at least one bottleneck adapter (the graphs' adapter inputs), so a ``checkpoint/`` is
exported with adapters trained on it (``--method adapter --checkpoint RUN/checkpoint``).

A checkpoint is LeRobot's ``save_pretrained`` plus the source checkpoint's pre/post-processor files (the
same normalisation and tokenizer), so our loader and the exporter read it like any SmolVLA checkpoint.
Samples come from ``core.smolvla.write_samples`` (the package's bag reader); each batch goes through the
checkpoint's own LeRobot pre-processor and the loss is LeRobot's ``SmolVLAPolicy.forward`` (flow matching,
noise and time drawn from torch's RNG, which the resume state restores).
"""

from __future__ import annotations

import json
import resource
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ...core.config import DEFAULT_LR, ConfigBase, check_loop_fields
from ...core.config import SMOLVLA_METHODS as METHODS
from ...core.distributed import Dist, seed_everything
from ...core.loop import LoopResult, TrainingLoop
from ...core.tuners import backbone_tensors, mark_only_adapter_trainable, tuner_state_dict
from . import model

PAD_KEY = "actions_id_pad"  # (sic) the key LeRobot 0.4.4's SmolVLAPolicy.forward reads the padding mask from
PROBE_SIZE = 8  # samples of the fixed-noise probe loss reported before and after training


@dataclass
class SmolVLATrainConfig(ConfigBase):
    """One SmolVLA training run; the loop's fields mean what they mean in ``core.config.TrainConfig``."""

    # --- what to train ---
    method: str = "adapter"  # adapter | lora | full
    name: str = "default"  # the adapter / LoRA name
    rank: int = 16
    sites: tuple[str, ...] = model.SITES
    task: str = ""
    # --- optimisation ---
    steps: int = 100
    batch_size: int = 8
    lr: float = 0.0  # 0 = core.config.DEFAULT_LR[method]
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    betas: tuple[float, ...] = (0.9, 0.999)
    grad_clip: float = 1.0
    seed: int = 0
    num_workers: int = 0
    # --- outputs ---
    resume: bool = False
    save_every: int = 0
    log_every: int = 1
    eval_every: int = 0
    progress: bool = False  # stdout carries the worker's JSON; a bar would go to stderr
    plot: bool = False  # the LeRobot venv has no matplotlib: core.smolvla draws curves.png from log.jsonl

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        self.sites = tuple(self.sites)
        self.tuner()  # name, rank and sites validated by the tuner config
        check_loop_fields(self)

    @property
    def peak_lr(self) -> float:
        return float(self.lr) if self.lr > 0 else DEFAULT_LR[self.method]

    def tuner(self) -> model.SmolVLAAdapterConfig | model.SmolVLALoraConfig | None:
        if self.method == "adapter":
            return model.SmolVLAAdapterConfig(rank=self.rank, sites=self.sites, task=self.task)
        if self.method == "lora":
            return model.SmolVLALoraConfig(rank=self.rank, alpha=2.0 * self.rank, sites=self.sites, task=self.task)
        return None


class BagSamples(Dataset):
    """The samples of ``core.smolvla.write_samples`` (npz) as LeRobot batch items, before its pre-processor."""

    def __init__(self, path: str | Path, cameras: list[str]) -> None:
        with np.load(path) as z:
            self.images = {c: z[f"image.{c}"] for c in cameras}  # (N, 3, S, S) in [0, 1]
            self.state, self.actions, self.pad = z["state"], z["actions"], z["action_is_pad"]
            self.tasks = json.loads(str(z["instructions"]))

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item: dict[str, Any] = {f"observation.images.{c}": torch.from_numpy(v[i]) for c, v in self.images.items()}
        return item | {"observation.state": torch.from_numpy(self.state[i]), "action": torch.from_numpy(self.actions[i]),
                       PAD_KEY: torch.from_numpy(self.pad[i]), "task": self.tasks[i]}


def trainable_parameters(policy: Any, cfg: SmolVLATrainConfig) -> list[torch.nn.Parameter]:
    """Attach and activate the method's tuner; exactly its parameters (or every backbone one) trainable."""
    tuner = cfg.tuner()
    if tuner is None:  # full: everything LeRobot's own training would freeze is trained too
        params = [p for p in backbone_tensors(policy).values() if isinstance(p, torch.nn.Parameter)]
        for p in policy.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        return params
    attach = model.add_adapter if cfg.method == "adapter" else model.add_lora
    attach(policy, cfg.name, tuner)  # type: ignore[arg-type]
    model.activate(policy, cfg.name)
    return mark_only_adapter_trainable(policy, cfg.name)


class SmolVLATrainer(TrainingLoop):
    """The loop with SmolVLA's parts: LeRobot's pre-processor and loss, the method's tensors, its artifacts."""

    def __init__(self, cfg: SmolVLATrainConfig, checkpoint: str | Path, samples: str | Path, out_dir: str | Path) -> None:
        self.checkpoint = Path(checkpoint)
        self.label = f"smolvla {cfg.method}"
        policy = model.load_policy(checkpoint)
        self.pre, _ = model.load_processors(checkpoint)
        self.fingerprint = model.backbone_fingerprint(policy)
        params = trainable_parameters(policy, cfg)
        dataset = BagSamples(samples, [k.rsplit(".", 1)[-1] for k in policy.config.image_features])
        super().__init__(cfg, Dist(device=torch.device("cpu")), policy, params, dataset, out_dir)
        self.cfg: SmolVLATrainConfig = cfg
        self.trained_fingerprint: str | None = None  # of the backbone at the end, before a LoRA is merged into it
        self.merge_max_abs: float | None = None

    def loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, Mapping[str, Any]]:
        loss, info = self.model(self.prepare(batch))
        return loss, info

    def prepare(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Through the checkpoint's own pre-processor (tokenizer, normalisation), the padding mask kept."""
        batch = dict(batch)
        pad = batch.pop(PAD_KEY)
        out = self.pre(batch)
        out[PAD_KEY] = pad
        return out

    def resume_identity(self) -> dict[str, Any]:
        return {"method": self.cfg.method, **super().resume_identity(), "backbone_fingerprint": self.fingerprint}

    def _trained_tensors(self) -> dict[str, torch.Tensor]:
        """What training changes: the tuner's tensors (the backbone is the checkpoint's), or the whole backbone."""
        if self.cfg.method == "full":
            return {f"backbone/{k}": v for k, v in backbone_tensors(self.model).items()}
        return {f"tuner/{self.cfg.name}/{k}": v for k, v in tuner_state_dict(self.model, self.cfg.name).items()}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().contiguous() for k, v in self._trained_tensors().items()}

    @torch.no_grad()
    def load_state_tensors(self, state: Mapping[str, torch.Tensor]) -> None:
        own = self._trained_tensors()
        if set(own) != set(state):
            diff = sorted(set(own) ^ set(state))
            raise ValueError(f"cannot resume {self.resume_dir}: its tensors differ from this run's, e.g. {diff[:3]}")
        for k, v in own.items():
            v.copy_(state[k])

    def write_run_info(self) -> None:
        self.cfg.save(self.out / "train_config.json")
        counts = {"checkpoint": str(self.checkpoint), "backbone_fingerprint": self.fingerprint,
                  "trainable": sum(p.numel() for p in self.params),
                  "total": sum(p.numel() for p in self.model.parameters())}
        (self.out / "parameter_report.json").write_text(json.dumps(counts, indent=1) + "\n")

    def save_artifact(self) -> Path:
        cfg = self.cfg
        self.trained_fingerprint = model.backbone_fingerprint(self.model)  # before a LoRA is merged into it
        if cfg.method == "full":
            return save_checkpoint(self.model, self.checkpoint, self.out / "checkpoint")
        adapter = model.save_adapter(self.model, cfg.name, self.out / "adapters" / cfg.name, self.fingerprint)
        if cfg.method == "adapter":
            return adapter
        probe = self.probe_batch()
        before = self.predict(probe)
        model.merge_lora(self.model, cfg.name)
        self.merge_max_abs = float((self.predict(probe) - before).abs().max())
        return save_checkpoint(self.model, self.checkpoint, self.out / "checkpoint")

    # ------------------------------------------------------------------ measurements
    def probe_batch(self) -> dict[str, Any]:
        """The first ``PROBE_SIZE`` samples through the pre-processor, with fixed noise and time."""
        items = [self.dataset[i] for i in range(min(PROBE_SIZE, len(self.dataset)))]
        batch = self.prepare(self.collate(items))
        g = torch.Generator().manual_seed(12345)
        c = self.model.config
        batch["_noise"] = torch.randn(len(items), c.chunk_size, c.max_action_dim, generator=g)
        batch["_time"] = torch.rand(len(items), generator=g) * 0.999 + 0.001
        return batch

    @torch.no_grad()
    def probe_loss(self, batch: dict[str, Any]) -> float:
        """LeRobot's loss on a fixed batch with fixed noise and time (no RNG drawn: training is unaffected)."""
        was = self.model.training
        self.model.eval()
        inputs = {k: v for k, v in batch.items() if not k.startswith("_")}
        loss, _ = self.model(inputs, noise=batch["_noise"].clone(), time=batch["_time"].clone())
        self.model.train(was)
        return float(loss)

    @torch.no_grad()
    def predict(self, batch: dict[str, Any]) -> torch.Tensor:
        self.model.eval()
        self.model.reset()
        inputs = {k: v for k, v in batch.items() if not k.startswith("_") and k not in ("action", PAD_KEY)}
        return self.model.predict_action_chunk(inputs, noise=batch["_noise"].clone())


def save_checkpoint(policy: Any, source: Path, out: Path) -> Path:
    """``policy`` as LeRobot saves it, with ``source``'s pre/post-processors (the same normalisation, tokenizer)."""
    policy.save_pretrained(out)
    for f in sorted(source.iterdir()):
        if f.is_file() and f.name.startswith(("policy_preprocessor", "policy_postprocessor")):
            shutil.copyfile(f, out / f.name)
    model.check_checkpoint_dir(out)
    return out


def train(cfg: SmolVLATrainConfig, checkpoint: str | Path, samples: str | Path, out_dir: str | Path, *,
          stop_after: int | None = None) -> dict[str, Any]:
    """Train ``cfg.method`` on ``samples``; returns the run's summary (what the worker prints)."""
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        seed_everything(cfg.seed, deterministic=True)  # the tuner's init (LoRA's A) and the first batches
        trainer = SmolVLATrainer(cfg, checkpoint, samples, out_dir)
        probe = trainer.probe_batch()
        before, actions_before = trainer.probe_loss(probe), trainer.predict(probe)  # no RNG drawn: fixed noise
        result: LoopResult = trainer.run(stop_after)
        after = trainer.probe_loss(probe)  # a LoRA is merged by now: the same function (merge_max_abs)
        moved = float((trainer.predict(probe) - actions_before).abs().max())
        trained = trainer.trained_fingerprint or model.backbone_fingerprint(trainer.model)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
    records = trainer.log.records if trainer.log is not None else []
    out: dict[str, Any] = {
        "method": cfg.method, "out": str(out_dir), "samples": len(trainer.dataset), "step": result.step,
        "losses": [r["loss"] for r in records if "loss" in r], "probe_loss_before": before, "probe_loss_after": after,
        "trained_max_abs": moved,  # how far training moved the probe batch's actions
        "trainable": result.trainable_params, "total": result.total_params,
        "seconds_per_step": result.seconds_per_step, "peak_rss_delta_bytes": result.peak_rss_delta_bytes,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # Linux: KiB
        "backbone_fingerprint": trainer.fingerprint, "backbone_fingerprint_after": trained,
        "artifact": str(result.artifact) if result.artifact else None, "export": export_hint(trainer, result),
    }
    if trainer.merge_max_abs is not None:
        out["merge_max_abs"] = trainer.merge_max_abs
    return out


def export_hint(trainer: SmolVLATrainer, result: LoopResult) -> dict[str, Any] | None:
    """What ``vla-adapter export`` takes from this run (None before the last step)."""
    if result.artifact is None:
        return None
    if trainer.cfg.method == "adapter":
        return {"checkpoint": str(trainer.checkpoint), "adapter": str(result.artifact)}
    # export writes adapter inputs into the graphs and needs at least one adapter: one trained on this checkpoint
    return {"checkpoint": str(result.artifact),
            "note": "a new backbone: export it with an adapter trained on it (smolvla-train --checkpoint "
                    f"{result.artifact} --method adapter)"}
