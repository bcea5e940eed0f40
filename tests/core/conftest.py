"""Fixtures for the core tests: tiny models, tiny data, one shared MiniLM encoder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from core_data import TinyEpisodes, tiny_config  # noqa: E402

from vla_adapter_ros import processing as P  # noqa: E402
from vla_adapter_ros.core.model import VLAPolicy  # noqa: E402


@pytest.fixture
def config():
    return tiny_config()


@pytest.fixture
def policy(config):
    torch.manual_seed(0)
    stats = {
        "proprio": P.Normalizer([0.1, 0.2, 0.3, 0.0], [1.0, 2.0, 0.5, 1.0]),
        "actions": P.Normalizer([0.0, 0.0, 0.0, 0.5], [0.1, 0.1, 0.1, 0.5]),
    }
    return VLAPolicy(config, stats=stats).eval()


@pytest.fixture
def inputs(config):
    from vla_adapter_ros.core.model import example_inputs

    return example_inputs(config, batch_size=3, seed=1)


@pytest.fixture
def dataset(config):
    return TinyEpisodes(config, n=16)


@pytest.fixture(scope="session")
def language():
    from vla_adapter_ros.core.language import LanguageEncoder

    return LanguageEncoder()
