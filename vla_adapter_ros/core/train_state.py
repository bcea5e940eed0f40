"""Trainer state on disk: resume checkpoints (safetensors + JSON, no pickle) and run logs.

Resume directory layout (``<out_dir>/resume/``)::

    model.safetensors       backbone/<key> and tuner/<name>/<key> tensors
    optimizer.safetensors   state.<param index>.<exp_avg|exp_avg_sq|step>
    trainer.json            step, epoch, regime, world size, scheduler state, optimizer param groups
    rng_rank<r>.safetensors torch (and CUDA) RNG state of rank r
    rng_rank<r>.json        python and numpy RNG state of rank r

Logs (``<out_dir>/``): ``log.jsonl`` and ``log.csv`` (one row per logged step) and
``curves.png`` (matplotlib Agg; imported only to draw it: the LeRobot venv, where SmolVLA trains, has no
matplotlib, so its curve is drawn afterwards from ``log.jsonl`` by :func:`plot_log` in the main venv).

The model tensors of a resume state are the family's (:func:`model_tensors` for the package's VLA);
everything else here is the same for every family (``core/loop.py``).
"""

from __future__ import annotations

import csv
import json
import random
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .adapters import load_adapter_state_dict
from .model import VLAPolicy
from .tuners import tuner_state_dict

RESUME_DIR = "resume"
LOG_JSONL = "log.jsonl"
LOG_CSV = "log.csv"
CURVES_PNG = "curves.png"


# ----------------------------------------------------------------------------- model


def model_tensors(model: VLAPolicy) -> dict[str, torch.Tensor]:
    """Everything a run can change: backbone tensors and every tuner's tensors."""
    out = {f"backbone/{k}": v for k, v in model.backbone_state_dict().items()}
    for name in model.tuner_configs:
        out.update({f"tuner/{name}/{k}": v for k, v in tuner_state_dict(model, name).items()})
    return {k: v.detach().cpu().contiguous() for k, v in out.items()}


@torch.no_grad()
def load_model_tensors(model: VLAPolicy, state: Mapping[str, torch.Tensor]) -> None:
    backbone = {k[len("backbone/"):]: v for k, v in state.items() if k.startswith("backbone/")}
    model.load_backbone_state_dict(backbone)
    for name in model.tuner_configs:
        prefix = f"tuner/{name}/"
        load_adapter_state_dict(model, name, {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})


# ----------------------------------------------------------------------------- optimizer


def optimizer_to_files(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    extra: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"state.{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                extra.setdefault(str(idx), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "non_tensor_state": extra}


def optimizer_from_files(
    opt: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = v
    for idx, st in meta.get("non_tensor_state", {}).items():
        state.setdefault(int(idx), {}).update(st)
    groups = [dict(g) for g in meta["param_groups"]]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})


# ----------------------------------------------------------------------------- RNG


def rng_to_files() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    py = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    meta = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    return tensors, meta


def rng_from_files(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda.")), key=lambda s: int(s[5:]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    v, keys, gauss = meta["python"]
    random.setstate((v, tuple(keys), gauss))
    kind, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


# ----------------------------------------------------------------------------- resume


def save_resume_shared(
    directory: Path, tensors: Mapping[str, torch.Tensor], opt: torch.optim.Optimizer, trainer: Mapping[str, Any]
) -> None:
    """Rank 0: model tensors, optimizer and trainer state into ``directory`` (a fresh temp dir)."""
    save_file(dict(tensors), str(directory / "model.safetensors"))
    opt_tensors, opt_meta = optimizer_to_files(opt)
    save_file(opt_tensors, str(directory / "optimizer.safetensors"))
    (directory / "trainer.json").write_text(json.dumps({**trainer, "optimizer": opt_meta}, indent=1) + "\n")


def save_resume_rng(directory: Path, rank: int) -> None:
    """Every rank: its own RNG state (ranks draw different dropout masks)."""
    tensors, meta = rng_to_files()
    save_file(tensors, str(directory / f"rng_rank{rank}.safetensors"))
    (directory / f"rng_rank{rank}.json").write_text(json.dumps(meta) + "\n")


def commit_resume(tmp: Path, final: Path) -> None:
    """Replace ``final`` by ``tmp`` (rank 0, after every rank wrote into ``tmp``)."""
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def read_trainer_json(directory: Path) -> dict[str, Any]:
    path = directory / "trainer.json"
    if not path.is_file():
        raise FileNotFoundError(f"no trainer.json in resume directory {directory}")
    return json.loads(path.read_text())


def load_resume(directory: Path, load_tensors: Callable[[Mapping[str, torch.Tensor]], None],
                opt: torch.optim.Optimizer, rank: int) -> dict[str, Any]:
    """Restore a resume state: ``load_tensors`` gets the model tensors; returns trainer.json."""
    trainer = read_trainer_json(directory)
    load_tensors(load_file(str(directory / "model.safetensors")))
    optimizer_from_files(opt, load_file(str(directory / "optimizer.safetensors")), trainer["optimizer"])
    rng_file = directory / f"rng_rank{rank}.safetensors"
    if not rng_file.is_file():
        raise FileNotFoundError(f"{rng_file} missing (resume needs the same number of processes)")
    rng_from_files(load_file(str(rng_file)), json.loads((directory / f"rng_rank{rank}.json").read_text()))
    return trainer


# ----------------------------------------------------------------------------- logs


class RunLog:
    """JSONL + CSV log of training records (the ``fields`` columns); only rank 0 creates one."""

    def __init__(self, out_dir: Path, fields: Sequence[str], resume_step: int | None = None) -> None:
        self.fields = tuple(fields)
        self.jsonl = out_dir / LOG_JSONL
        self.csv = out_dir / LOG_CSV
        self.records: list[dict[str, Any]] = []
        if resume_step is not None and self.jsonl.is_file():
            # Keep what happened up to the resumed step; later lines belong to the lost run.
            for line in self.jsonl.read_text().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    if rec.get("step", 0) <= resume_step:
                        self.records.append(rec)
        self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in self.records))
        with self.csv.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(self.records)

    def append(self, record: Mapping[str, Any]) -> None:
        rec = {k: record.get(k) for k in self.fields if record.get(k) is not None}
        self.records.append(rec)
        with self.jsonl.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        with self.csv.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore").writerow(rec)

    def plot(self, path: Path, title: str = "") -> Path | None:
        """PNG of loss (train / val) and learning rate against step."""
        return plot_records(self.records, path, title)


def read_log(out_dir: Path) -> list[dict[str, Any]]:
    """The records of ``<out_dir>/log.jsonl``."""
    return [json.loads(line) for line in (Path(out_dir) / LOG_JSONL).read_text().splitlines() if line.strip()]


def plot_log(out_dir: Path, title: str = "") -> Path | None:
    """``<out_dir>/curves.png`` from its log.jsonl (a run whose process could not draw it)."""
    return plot_records(read_log(out_dir), Path(out_dir) / CURVES_PNG, title)


def plot_records(records: Sequence[Mapping[str, Any]], path: Path, title: str = "") -> Path | None:
    """PNG of loss (train / val) and learning rate against step; None without training records."""
    from matplotlib.figure import Figure  # only where a curve is drawn (see the module docstring)

    train = [r for r in records if "loss" in r]
    val = [r for r in records if "val_loss" in r]
    if not train:
        return None
    fig = Figure(figsize=(7, 6))
    ax1, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    ax1.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    if val:
        ax1.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="val loss")
    ax1.set_yscale("log")
    ax1.set_ylabel("loss (normalised actions)")
    ax1.legend()
    ax1.grid(True, alpha=0.3)
    ax1.set_title(title)
    ax2.plot([r["step"] for r in train], [r.get("lr", 0.0) for r in train], color="tab:orange")
    ax2.set_ylabel("lr")
    ax2.set_xlabel("step")
    ax2.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
