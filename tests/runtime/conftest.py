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

from runtime_helpers import tiny_adapters, tiny_config  # noqa: E402


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """(model_dir, torch policy with both adapters attached, torch language encoder)."""
    from vla_adapter_ros.core.adapters import load_adapter
    from vla_adapter_ros.core.checkpoint import load_checkpoint
    from vla_adapter_ros.core.export import export_model, make_random_checkpoint

    root = tmp_path_factory.mktemp("export")
    checkpoint, adapter_dirs = make_random_checkpoint(root / "src", tiny_config(), tiny_adapters(), seed=1)
    result = export_model(checkpoint, adapter_dirs, root / "models" / "tiny", log=lambda _msg: None)
    model = load_checkpoint(checkpoint, adapters=False).eval()
    for d in adapter_dirs:
        load_adapter(model, d)
    return result.out, model


@pytest.fixture(scope="session")
def model_dir(exported) -> Path:
    return exported[0]


@pytest.fixture(scope="session")
def torch_policy(exported):
    return exported[1]


@pytest.fixture(scope="session")
def torch_language():
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
    dst = tmp_path / "model"
    shutil.copytree(model_dir, dst, copy_function=os.link)
    return dst
