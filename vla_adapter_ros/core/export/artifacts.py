"""The manifest the exporter writes: typed :class:`~vla_adapter_ros.runtime.manifest.Manifest`
objects built from the model, serialised with ``to_dict`` and read back by the runtime's reader."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, TypeVar

import onnx
import onnxruntime as ort
import torch

from vla_adapter_ros import __version__, processing
from vla_adapter_ros.contract import RobotContract
from vla_adapter_ros.core.tuners import tuner_parameters
from vla_adapter_ros.runtime import manifest as mf
from vla_adapter_ros.runtime import manifest_smolvla as ms

from .errors import ExportError
from .graph import ADAPTER_INPUT_PREFIX, SharedLayout

AnyManifest = TypeVar("AnyManifest", mf.Manifest, ms.SmolVLAManifest)  # one manifest class per family


def adapter_spec(model: Any, name: str, method: str, fp16: bool) -> mf.AdapterSpec:
    """The manifest entry of adapter ``name`` (checksums are filled from the files table when written)."""
    c = model.tuner_configs[name]
    where = "+".join(getattr(c, "positions", None) or c.targets)
    description = (
        f"{method} adapter (rank {c.rank}, {where} in {'+'.join(c.components)}"
        f"{', own action head' if c.train_head else ''}"
        f"{''.join(f', own {m}' for m in c.train_modules)})" + (f" for {c.task}" if c.task else "")
    )
    return mf.AdapterSpec(
        name=name, task=c.task or name, description=description, instruction_examples=tuple(c.instruction_examples),
        method=method, rank=int(c.rank), num_parameters=int(sum(t.numel() for t in tuner_parameters(model, name))),
        file=mf.adapter_file(name), sha256="", merged_file=mf.merged_file(name), merged_sha256="",
        fp16_file=mf.merged_fp16_file(name) if fp16 else None, config=c.to_dict(),
    )


def build_manifest(
    root: Path, name: str, model: Any, names: list[str], layout: SharedLayout, bounds: tuple[list[float], list[float]],
    language: mf.LanguageSpec, contract: RobotContract, *, fp16: bool, opset: int, checkpoint: Path,
) -> mf.Manifest:
    """The manifest of the model directory being written in ``root`` (files table still empty)."""
    cfg, stats = model.config, model.stats
    low, high = bounds
    cameras = tuple(mf.CameraInput(c, processing.image_input_name(c, len(cfg.cameras)), cfg.image_size, cfg.image_size)
                    for c in cfg.cameras)
    return mf.Manifest(
        root=root,
        name=name,
        created_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        versions={"vla_adapter_ros": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                  "onnxruntime": ort.__version__, "opset": opset},
        model_config=cfg.to_dict(),
        backbone={"fingerprint": model.backbone_fingerprint(), "num_parameters": int(model.num_backbone_parameters()),
                  "checkpoint": checkpoint.name},
        inputs=(
            *(mf.TensorSpec(c.input, ("batch", 3, c.height, c.width), "float32") for c in cameras),
            mf.TensorSpec(processing.INSTRUCTION_EMBEDDING, ("batch", cfg.lang_dim), "float32"),
            mf.TensorSpec(processing.PROPRIO, ("batch", cfg.proprio_dim), "float32"),
        ),
        outputs=(mf.TensorSpec(processing.ACTIONS, ("batch", cfg.chunk_length, cfg.action_dim), "float32"),),
        image=mf.ImageSpec(cfg.image_size, cfg.image_size),
        cameras=cameras,
        contract=contract,
        proprio=mf.ProprioSpec(tuple(cfg.proprio_names), stats["proprio"]),
        actions=mf.ActionSpec(tuple(cfg.action_names), tuple(low), tuple(high), cfg.chunk_length, float(cfg.dt),
                              stats["actions"]),
        language=language,
        shared=mf.SharedSpec(
            file=mf.SHARED_FILE, method=layout.method, layout=layout.config.to_dict(),
            adapter_inputs=tuple(mf.TensorSpec(ADAPTER_INPUT_PREFIX + k, tuple(layout.defaults[k].shape), "float32")
                                 for k in layout.keys),
        ),
        adapters=tuple(adapter_spec(model, n, layout.method, fp16) for n in names),
        default_adapter=names[0],
    )


def write_manifest(manifest: AnyManifest) -> AnyManifest:
    """Fill the files table from ``manifest.root``, check it with the runtime's reader, write manifest.json.

    Every family's exporter writes through here (the reader is the manifest's own class: ``Manifest``
    or ``SmolVLAManifest``). Returns the manifest as written.
    """
    manifest = manifest.with_files(mf.hash_directory(manifest.root))
    data = manifest.to_dict()
    try:
        type(manifest).from_dict(json.loads(json.dumps(data)), manifest.root)
    except mf.ManifestError as exc:
        raise ExportError(f"internal: the manifest being written is invalid: {exc}") from exc
    (manifest.root / mf.MANIFEST_NAME).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return manifest
