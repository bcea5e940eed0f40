"""One tiny model exported once per test session; tests that tamper with it work on clones.

The export runs the real exporter (``vla_adapter_ros.core.export``) on a random-weight
backbone with two adapters that differ in rank, placement, scaling and head copy, so the
shared graph's padding and scale folding are exercised.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runtime_helpers import MULTIVIEW_DIR, PREBUILT_ENV, export_tiny, export_tiny_multiview  # noqa: E402


def _with_torch_policy(out: Path, checkpoint: Path, adapter_dirs: list[Path]) -> tuple[Path, object]:
    """(model_dir, the exported checkpoint in PyTorch with every adapter loaded, eval mode)."""
    from vla_adapter_ros.core.adapters import load_adapter
    from vla_adapter_ros.core.checkpoint import load_checkpoint

    model = load_checkpoint(checkpoint, adapters=False).eval()
    for d in adapter_dirs:
        load_adapter(model, d)
    return out, model


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """(model_dir, torch policy with both adapters attached); the torch side is None when the model
    comes prebuilt from $VLA_TINY_MODEL_DIR (the runs under Python 3.10 / 3.12 have no torch)."""
    prebuilt = os.environ.get(PREBUILT_ENV)
    if prebuilt:
        return Path(prebuilt), None
    return _with_torch_policy(*export_tiny(tmp_path_factory.mktemp("export")))


@pytest.fixture(scope="session")
def multiview_exported(tmp_path_factory):
    """(model_dir, torch policy with both adapters) of the two-camera tiny model (front, wrist); prebuilt
    beside the tiny model under $VLA_TINY_MODEL_DIR (no torch side then)."""
    prebuilt = os.environ.get(PREBUILT_ENV)
    if prebuilt:
        path = Path(prebuilt).parent / MULTIVIEW_DIR
        if not (path / "manifest.json").is_file():
            pytest.skip(f"no prebuilt two-camera model at {path} (tests/runtime/runtime_helpers.py OUT exports it)")
        return path, None
    return _with_torch_policy(*export_tiny_multiview(tmp_path_factory.mktemp("export_2cam")))


@pytest.fixture(scope="session")
def model_dir(exported) -> Path:
    return exported[0]


@pytest.fixture(scope="session")
def torch_policy(exported):
    if exported[1] is None:
        pytest.skip(f"no PyTorch reference: the model came prebuilt from ${PREBUILT_ENV}")
    return exported[1]


@pytest.fixture(scope="session")
def torch_language():
    pytest.importorskip("torch", reason="the PyTorch language encoder needs torch")
    from vla_adapter_ros.core.language import LanguageEncoder

    return LanguageEncoder().eval()


@pytest.fixture(scope="session")
def shared_policy(model_dir):
    from vla_adapter_ros.runtime.policy import OnnxPolicy

    with OnnxPolicy.from_dir(model_dir, providers=["cpu"]) as policy:
        yield policy


@pytest.fixture
def clone(model_dir, tmp_path):
    """A writable copy of the exported model (hard links: replace files, never edit them in place)."""
    return link_copy(model_dir, tmp_path / "model")


@pytest.fixture
def multiview_clone(multiview_exported, tmp_path):
    """A writable copy of the two-camera model, as :func:`clone`."""
    return link_copy(multiview_exported[0], tmp_path / "model_2cam")


def link_copy(model_dir: Path, dst: Path) -> Path:
    """Copy a model directory as hard links (a test replaces files, never edits them in place)."""

    def link_or_copy(src: str, to: str) -> None:
        try:
            os.link(src, to)
        except OSError:  # another filesystem (a prebuilt model elsewhere)
            shutil.copy2(src, to)

    shutil.copytree(model_dir, dst, copy_function=link_or_copy)
    return dst
