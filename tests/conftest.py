"""Test-wide set-up: every rclpy process of this run stays on loopback DDS, in a domain of its own.

The environment is pinned in pytest_configure, before any test imports rclpy, so in-process
nodes and every subprocess (which inherits os.environ) use ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST,
the loopback Fast DDS profile and a ROS_DOMAIN_ID leased for this run
(:func:`vla_adapter_ros.dds_env.lease_domain`: no other run on this machine, a second test suite
or a demo included, can hold it at the same time). MuJoCo renders headless (MUJOCO_GL=egl unless set)
in this process and its subprocesses.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from vla_adapter_ros import dds_env, lerobot_venv
from vla_adapter_ros.core.sim.metaworld_env import use_headless_gl


def pytest_configure(config: pytest.Config) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    salt = int("".join(c for c in worker if c.isdigit()) or 0)
    lease = dds_env.lease_domain(salt)
    config.stash[_LEASE] = lease  # held (and the domain ours) until the session ends
    os.environ.update(dds_env.localhost_env(lease.domain_id))
    use_headless_gl()  # before any test module imports MuJoCo or Meta-World
    if "VLA_LANGUAGE_CACHE" not in os.environ:  # the run's own export cache (the xdist workers inherit it)
        config.stash[_CACHE] = tempfile.mkdtemp(prefix="vla-language-cache-")
        os.environ["VLA_LANGUAGE_CACHE"] = config.stash[_CACHE]


def pytest_unconfigure(config: pytest.Config) -> None:
    lease = config.stash.get(_LEASE, None)
    if lease is not None:
        lease.release()
    cache = config.stash.get(_CACHE, None)
    if cache is not None:
        shutil.rmtree(cache, ignore_errors=True)


_LEASE = pytest.StashKey[dds_env.DomainLease]()
_CACHE = pytest.StashKey[str]()

# --- parallel runs (pytest-xdist; scripts/run_tests.sh runs `-n N --dist loadgroup`) --------------
# The tests that run LeRobot's code, by the session fixture each needs, in two groups of one worker each
# (their session fixtures made once per run): SmolVLA's go first, so that on a fresh clone the LeRobot
# venv build (minutes; scripts/lerobot_env.sh, one at a time) overlaps the other workers' tests, and the
# dataset converters' go last, when that venv is made.
FIRST, LAST = "lerobot-smolvla", "lerobot-dataset"
LEROBOT_GROUPS = {"smolvla_dir": FIRST, "lerobot_env": LAST}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order: SmolVLA's group, the tests marked slow (a long test started last is a run's tail), the
    rest, the dataset group; the collection order within each part."""
    rank = {}
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        group = next((g for fixture, g in LEROBOT_GROUPS.items() if fixture in names), None)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
        rank[item] = 0 if group == FIRST else 3 if group == LAST else 1 if item.get_closest_marker("slow") else 2
    items.sort(key=rank.__getitem__)


@pytest.fixture(scope="session", autouse=True)
def warm_lerobot_workers() -> Iterator[None]:
    """This test process's LeRobot commands (SmolVLA, dataset converters) go to one warm worker, started on
    first use: each fresh one spends ~6 s of CPU importing torch and lerobot. A user's CLI call still gets
    a fresh process; tests/core/test_lerobot_venv.py checks both answer alike."""
    with lerobot_venv.warm_workers():
        yield


@pytest.fixture(scope="session")
def setup_spec() -> dict:
    """What setup.py gives setuptools (``data_files``, ``entry_points``), captured without installing anything."""
    code = (
        "import json, setuptools; captured = {};"
        "setuptools.setup = lambda **kw: captured.update(kw);"
        "import runpy; runpy.run_path('setup.py');"
        "print(json.dumps({'data_files': captured['data_files'], 'entry_points': captured['entry_points']}))"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def ros_env() -> dict[str, str]:
    """Environment for subprocesses that use rclpy (already loopback-only, own domain)."""
    assert dds_env.is_localhost_only()
    return dict(os.environ)


# --- a tiny exported model, shared by the serving and ROS tests ---------------------------
ADAPTERS = ("pick", "place", "open")


def export_tiny_model(root: Path, adapters: tuple[str, ...] = ADAPTERS) -> Path:
    """Random tiny backbone + distinct random adapters, exported with the project's exporter."""
    from vla_adapter_ros.core.config import AdapterConfig, ModelConfig
    from vla_adapter_ros.core.export import export_model, make_random_checkpoint

    config = ModelConfig(image_size=32, patch_size=8, d_model=32, vision_layers=1, fusion_layers=1, n_heads=2,
                         mlp_ratio=2, chunk_length=3)
    checkpoint, adapter_dirs = make_random_checkpoint(
        root / "src", config, {n: AdapterConfig(rank=4, task=f"test/{n}") for n in adapters}, seed=0)
    return export_model(checkpoint, adapter_dirs, root / "model", log=lambda _msg: None).out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny model with three adapters (pick = default, place, open), exported once per session."""
    return export_tiny_model(tmp_path_factory.mktemp("tiny_model"))


# --- SmolVLA (LeRobot): a tiny random checkpoint saved by LeRobot, two adapters, the export --------
# Made once per session in the LeRobot venv (scripts/lerobot_env.sh makes it on first use).
@pytest.fixture(scope="session")
def smolvla_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vla_adapter_ros.families.smolvla.bridge import run_worker

    return Path(run_worker("make-tiny", str(tmp_path_factory.mktemp("smolvla")))["checkpoint"])


@pytest.fixture(scope="session")
def smolvla_adapters(smolvla_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Two adapters trained a few steps on the demo bag through the package's training loop: every site at
    rank 4, and rank 2 at two sites (padding); ``adapter`` is the saved adapter's directory."""
    from vla_adapter_ros.core.smolvla import train_smolvla

    root = tmp_path_factory.mktemp("smolvla_adapters")
    bags = [Path(__file__).resolve().parent / "data" / "demo_bag"]
    runs = {
        "grip": train_smolvla(smolvla_dir, bags, "grip", root / "grip", rank=4, steps=4, batch=4, lr=1e-2,
                              warmup_steps=0),
        "push": train_smolvla(smolvla_dir, bags, "push", root / "push", rank=2, sites=("vision.ffn", "expert.attn"),
                              steps=3, batch=4, lr=1e-2, warmup_steps=0, seed=3),
    }
    return {name: {**run, "adapter": run["artifact"]} for name, run in runs.items()}


@pytest.fixture(scope="session")
def smolvla_model(smolvla_dir: Path, smolvla_adapters: dict[str, dict], tmp_path_factory: pytest.TempPathFactory) -> dict:
    from vla_adapter_ros.core.export.smolvla import export_smolvla

    out = tmp_path_factory.mktemp("smolvla_model") / "tiny_smolvla"
    result = export_smolvla(smolvla_dir, [a["adapter"] for a in smolvla_adapters.values()], out, log=lambda _: None,
                            state_names=("ee_x", "ee_y", "ee_z", "gripper"), action_names=("dx", "dy", "dz", "gripper"))
    return {"dir": out, **result}
