"""Helpers shared by the runtime tests (imported by name: the directory is put on sys.path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vla_adapter_ros import processing

ADAPTERS = ("drawer", "button")
FRAME_SEED = 3


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
