"""The manifest the exporter writes (schema and validation: :mod:`vla_adapter_ros.runtime.manifest`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from vla_adapter_ros import __version__, processing
from vla_adapter_ros.runtime import manifest as mf

from .errors import ExportError
from .graph import ADAPTER_INPUT_PREFIX, SharedLayout


def build_manifest(
    name: str, model: Any, names: list[str], layout: SharedLayout, tensors: dict[str, dict[str, np.ndarray]],
    low: list[float], high: list[float], language: dict[str, Any], merged_files: dict[str, str],
    fp16_files: dict[str, str], opset: int, checkpoint: Path,
) -> dict[str, Any]:
    import onnx
    import onnxruntime as ort
    import torch

    cfg = model.config
    stats = model.stats
    adapters = []
    for n in names:
        c = model.tuner_configs[n]
        where = "+".join(getattr(c, "positions", None) or c.targets)
        description = (
            f"{layout.method} adapter (rank {c.rank}, {where} in {'+'.join(c.components)}"
            f"{', own action head' if c.train_head else ''}"
            f"{''.join(f', own {m}' for m in c.train_modules)})" + (f" for {c.task}" if c.task else "")
        )
        adapters.append({
            "name": n,
            "task": c.task or n,
            "description": description,
            "instruction_examples": list(c.instruction_examples),
            "method": layout.method,
            "rank": int(c.rank),
            "num_parameters": int(sum(t.numel() for t in _unit_params(model, n))),
            "file": f"adapters/{n}.onnx_adapter",
            "sha256": "",
            "merged_file": merged_files[n],
            "merged_sha256": "",
            "fp16_file": fp16_files.get(n),
            "config": c.to_dict(),
        })
    return {
        "format": mf.FORMAT,
        "format_version": mf.FORMAT_VERSION,
        "name": name,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {
            "vla_adapter_ros": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": ort.__version__, "opset": opset,
        },
        "model_config": cfg.to_dict(),
        "backbone": {
            "fingerprint": model.backbone_fingerprint(),
            "num_parameters": int(model.num_backbone_parameters()),
            "checkpoint": checkpoint.name,
        },
        "inputs": [
            {"name": processing.IMAGE, "shape": ["batch", 3, cfg.image_size, cfg.image_size], "dtype": "float32"},
            {"name": processing.INSTRUCTION_EMBEDDING, "shape": ["batch", cfg.lang_dim], "dtype": "float32"},
            {"name": processing.PROPRIO, "shape": ["batch", cfg.proprio_dim], "dtype": "float32"},
        ],
        "outputs": [
            {"name": processing.ACTIONS, "shape": ["batch", cfg.chunk_length, cfg.action_dim], "dtype": "float32"}
        ],
        "image": {
            "height": cfg.image_size, "width": cfg.image_size, "color_order": "RGB", "layout": "CHW",
            "pixel_mean": processing.PIXEL_MEAN, "pixel_scale": processing.PIXEL_SCALE, "range": [-1.0, 1.0],
            "resize": "cv2 INTER_AREA when shrinking, INTER_LINEAR when growing (processing.preprocess_image)",
        },
        "proprio": {"names": list(cfg.proprio_names), "normalization": stats["proprio"].to_dict()},
        "actions": {
            "names": list(cfg.action_names), "low": low, "high": high, "chunk_length": cfg.chunk_length,
            "dt": float(cfg.dt), "normalization": stats["actions"].to_dict(), "normalized_output": True,
        },
        "language": language,
        "shared": {
            "file": "shared/backbone.onnx",
            "default": "identity",
            "method": layout.method,
            "layout": layout.config.to_dict(),
            "adapter_inputs": [
                {"name": ADAPTER_INPUT_PREFIX + k, "shape": list(layout.defaults[k].shape), "dtype": "float32"}
                for k in layout.keys
            ],
        },
        "adapters": adapters,
        "default_adapter": names[0],
        "files": {},
    }


def _unit_params(model: Any, name: str) -> list[Any]:
    from vla_adapter_ros.core.tuners import tuner_parameters

    return tuner_parameters(model, name)


def write_manifest(tmp: Path, manifest: dict[str, Any]) -> None:
    """Hash every file under ``tmp``, fill the tables, validate with the runtime's reader, write."""
    files = {}
    for path in sorted(p for p in tmp.rglob("*") if p.is_file() and p.name != mf.MANIFEST_NAME):
        files[path.relative_to(tmp).as_posix()] = {"sha256": mf.sha256_file(path), "size": path.stat().st_size}
    manifest["files"] = files
    for a in manifest["adapters"]:
        a["sha256"] = files[a["file"]]["sha256"]
        a["merged_sha256"] = files[a["merged_file"]]["sha256"]
        if a.get("fp16_file"):
            a["fp16_sha256"] = files[a["fp16_file"]]["sha256"]
    try:
        mf.Manifest.from_dict(json.loads(json.dumps(manifest)), tmp)
    except mf.ManifestError as exc:
        raise ExportError(f"internal: the manifest being written is invalid: {exc}") from exc
    (tmp / mf.MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
