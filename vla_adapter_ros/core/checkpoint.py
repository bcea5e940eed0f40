"""Backbone checkpoints: ``config.json`` + ``model.safetensors`` + ``stats.json`` (+ ``adapters/``,
+ ``contract.yaml``: the robot contract training saves beside it, which the exporter puts in the manifest).

No pickle: tensors go to safetensors (its metadata carries the backbone fingerprint),
everything else to JSON. ``torch.load`` is never used.

    save_checkpoint(policy, "runs/pretrain/final")            # backbone (+ attached adapters)
    policy = load_checkpoint("runs/pretrain/final")           # verified against its fingerprint
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .. import __version__
from .adapters import load_adapter, save_adapter
from .config import ModelConfig
from .model import VLAPolicy, stats_from_json, stats_to_json

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
STATS_NAME = "stats.json"
CONTRACT_NAME = "contract.yaml"  # the robot contract, saved beside a checkpoint by training; read by the exporter
ADAPTERS_DIR = "adapters"


class CheckpointError(ValueError):
    """A checkpoint directory is missing, incomplete or inconsistent; the message names the file."""


def save_checkpoint(model: VLAPolicy, directory: str | Path, *, adapters: bool = True) -> Path:
    """Write the backbone (and, with ``adapters``, every attached adapter under ``adapters/<name>/``)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.backbone_state_dict().items()}
    metadata = {
        "format": "pt",
        "backbone_fingerprint": model.backbone_fingerprint(),
        "package_version": __version__,
    }
    save_file(state, str(directory / WEIGHTS_NAME), metadata=metadata)
    model.config.save(directory / CONFIG_NAME)
    (directory / STATS_NAME).write_text(json.dumps(stats_to_json(model.stats), indent=2) + "\n")
    if adapters and model.tuner_configs:
        for name in model.tuner_configs:
            save_adapter(model, name, directory / ADAPTERS_DIR / name)
    return directory


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"missing {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types; re-raised with the file name
        raise CheckpointError(f"{path}: cannot read safetensors ({exc})") from exc


def load_checkpoint(
    directory: str | Path, *, map_location: str | torch.device = "cpu", adapters: bool = True
) -> VLAPolicy:
    """Rebuild the policy saved by :func:`save_checkpoint` and verify its fingerprint.

    With ``adapters``, every adapter saved under ``adapters/`` is attached (inactive).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {str(directory)!r} does not exist")
    try:
        config = ModelConfig.load(directory / CONFIG_NAME)
    except FileNotFoundError as exc:
        raise CheckpointError(f"missing {directory / CONFIG_NAME}") from exc
    except ValueError as exc:
        raise CheckpointError(str(exc)) from exc
    state, metadata = read_safetensors(directory / WEIGHTS_NAME)
    model = VLAPolicy(config)
    try:
        model.load_backbone_state_dict(state)
    except ValueError as exc:
        raise CheckpointError(f"{directory / WEIGHTS_NAME}: {exc}") from exc
    stats_path = directory / STATS_NAME
    if stats_path.is_file():
        saved_stats = stats_from_json(json.loads(stats_path.read_text()))
        for key, norm in model.stats.items():
            other = saved_stats.get(key)
            if other is None or not (
                (other.mean == norm.mean).all() and (other.std == norm.std).all()
            ):
                raise CheckpointError(
                    f"{stats_path}: {key} statistics {other.to_dict() if other else None} differ from "
                    f"the ones in {WEIGHTS_NAME} {norm.to_dict()}"
                )
    expected = metadata.get("backbone_fingerprint")
    actual = model.backbone_fingerprint()
    if expected is not None and expected != actual:
        raise CheckpointError(
            f"{directory / WEIGHTS_NAME}: fingerprint in metadata {expected[:16]} != recomputed {actual[:16]} "
            "(file modified or written by an incompatible version)"
        )
    model.to(map_location)
    adapters_dir = directory / ADAPTERS_DIR
    if adapters and adapters_dir.is_dir():
        for sub in sorted(p for p in adapters_dir.iterdir() if p.is_dir()):
            load_adapter(model, sub)
    return model
