"""Helpers shared by the runtime tests (imported by name: the directory is put on sys.path)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from vla_adapter_ros import processing

ADAPTERS = ("drawer", "button")
FRAME_SEED = 3
ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "models" / "default"  # shipped: three merged models = one graph with three weight sets
# A tiny model exported beforehand (scripts/test_pythons.sh exports it with the main venv, so
# the Python 3.10 / 3.12 runs, which have no torch, serve the same model).
PREBUILT_ENV = "VLA_TINY_MODEL_DIR"


def tiny_config():
    from vla_adapter_ros.core.config import ModelConfig

    return ModelConfig(
        image_size=32, patch_size=8, d_model=32, vision_layers=1, fusion_layers=1, n_heads=2, mlp_ratio=2,
        chunk_length=3,
    )


def tiny_adapters():
    from vla_adapter_ros.core.config import AdapterConfig

    return {
        "drawer": AdapterConfig(
            rank=4, positions=("attn",), scaling=0.5, task="drawer-open-v3", instruction_examples=("open the drawer",)
        ),
        "button": AdapterConfig(
            rank=8, train_head=True, task="button-press-topdown-v3",
            instruction_examples=("press the button from the top",),
        ),
    }


def export_tiny(root: Path):
    """Export the tiny test model with the real exporter: (model_dir, checkpoint, adapter_dirs). Needs torch."""
    from vla_adapter_ros.core.export import export_model, make_random_checkpoint

    checkpoint, adapter_dirs = make_random_checkpoint(root / "src", tiny_config(), tiny_adapters(), seed=1)
    result = export_model(checkpoint, adapter_dirs, root / "models" / "tiny", log=lambda _msg: None)
    return result.out, checkpoint, adapter_dirs


def zero_feeds(manifest, batch: int = 1) -> dict[str, np.ndarray]:
    h, w = manifest.image_size
    return {
        processing.IMAGE: np.zeros((batch, 3, h, w), np.float32),
        processing.INSTRUCTION_EMBEDDING: np.zeros((batch, manifest.language.embedding_dim), np.float32),
        processing.PROPRIO: np.zeros((batch, len(manifest.proprio_names)), np.float32),
    }


def replace_file(path: Path, data: bytes) -> None:
    """Write ``data`` as a new inode so the hard-linked original stays untouched."""
    path.unlink()
    path.write_bytes(data)


def frame(seed: int = FRAME_SEED, size: tuple[int, int] = (120, 160)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    img[: size[0] // 2] //= 2  # some structure so resizing matters
    return img


def raw_proprio(manifest, seed: int = 0) -> np.ndarray:
    norm: processing.Normalizer = manifest.proprio_normalizer
    rng = np.random.default_rng(seed)
    return (norm.mean + norm.std * rng.normal(0, 0.5, norm.dim)).astype(np.float32)


if __name__ == "__main__":  # python tests/runtime/runtime_helpers.py OUT: export the tiny model into OUT
    print(export_tiny(Path(sys.argv[1]))[0])
