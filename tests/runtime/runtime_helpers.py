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


# The two-camera test model: cameras in ModelConfig order, a contract saved beside its checkpoint.
CAMERAS = ("front", "wrist")
MULTIVIEW_ADAPTERS = ("reach", "grasp")
MULTIVIEW_DIR = "tiny_2cam"  # beside the tiny model: build/pythons/tiny/models/tiny_2cam for the 3.10/3.12 runs
CONTRACT = {
    "robot": "two_camera_arm",
    "cameras": {"front": {"topic": "/front/image_raw"},
                "wrist": {"topic": "/wrist/image_raw/compressed", "type": "CompressedImage"}},
    "state": {"topic": "/joint_states", "fields": ["position.ee_x", "position.ee_y", "position.ee_z", "position.gripper"]},
    "actions": [{"name": "dx", "kind": "ee_delta", "low": -0.5, "high": 0.5},
                {"name": "dy", "kind": "ee_delta", "low": -0.5, "high": 0.5},
                {"name": "dz", "kind": "ee_delta", "low": -0.25, "high": 0.25},
                {"name": "gripper", "kind": "gripper", "low": -1.0, "high": 1.0}],
}


def export_tiny_multiview(root: Path, *, fp16: bool = True):
    """The tiny model with two cameras (front, wrist), two adapters and ``contract.yaml`` beside its
    checkpoint, exported with the real exporter (fp16 files too): (model_dir, checkpoint, adapter_dirs)."""
    import dataclasses

    from vla_adapter_ros.contract import RobotContract
    from vla_adapter_ros.core.checkpoint import CONTRACT_NAME
    from vla_adapter_ros.core.config import AdapterConfig
    from vla_adapter_ros.core.export import export_model, make_random_checkpoint

    config = dataclasses.replace(tiny_config(), cameras=CAMERAS)
    adapters = {"reach": AdapterConfig(rank=4, task="reach"),
                "grasp": AdapterConfig(rank=8, positions=("ffn",), train_head=True, task="grasp")}
    checkpoint, adapter_dirs = make_random_checkpoint(root / "src_2cam", config, adapters, seed=4)
    (checkpoint / CONTRACT_NAME).write_text(RobotContract.from_dict(CONTRACT).to_yaml())
    result = export_model(checkpoint, adapter_dirs, root / "models" / MULTIVIEW_DIR, fp16=fp16, log=lambda _msg: None)
    return result.out, checkpoint, adapter_dirs


def views(seed: int = FRAME_SEED, size: tuple[int, int] = (120, 160)) -> dict[str, np.ndarray]:
    """One distinct frame per camera of the two-camera model."""
    return {c: frame(seed + 10 * i, size) for i, c in enumerate(CAMERAS)}


def zero_feeds(manifest, batch: int = 1) -> dict[str, np.ndarray]:
    return {
        **{c.input: np.zeros((batch, 3, c.height, c.width), np.float32) for c in manifest.cameras},
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


if __name__ == "__main__":  # python tests/runtime/runtime_helpers.py OUT: export the tiny models into OUT
    print(export_tiny(Path(sys.argv[1]))[0])
    print(export_tiny_multiview(Path(sys.argv[1]))[0])
