"""A tiny random SmolVLA checkpoint saved by LeRobot, made once per session in the LeRobot venv."""

from __future__ import annotations

from pathlib import Path

import pytest

from vla_adapter_ros.families.smolvla.bridge import run_worker


@pytest.fixture(scope="session")
def smolvla_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("smolvla")
    out = run_worker("make-tiny", str(root))
    return Path(out["checkpoint"])


@pytest.fixture(scope="session")
def smolvla_adapters(smolvla_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Two adapters trained a few steps: every site at rank 4, and rank 2 at two sites (padding)."""
    root = tmp_path_factory.mktemp("smolvla_adapters")
    return {
        "grip": run_worker("adapter", str(smolvla_dir), "--name", "grip", "--out", str(root / "grip"), "--rank", "4",
                           "--steps", "4"),
        "push": run_worker("adapter", str(smolvla_dir), "--name", "push", "--out", str(root / "push"), "--rank", "2",
                           "--sites", "vision.ffn", "expert.attn", "--steps", "3", "--seed", "3"),
    }
