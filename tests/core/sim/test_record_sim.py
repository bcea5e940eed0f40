"""`vla-adapter record-sim` end to end on real Meta-World episodes, read back from the bags."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from vla_adapter_ros.bags.episodes import find_episodes, read_episode
from vla_adapter_ros.core.record import episode_path, record
from vla_adapter_ros.core.sim.instructions import training_instructions

ROOT = Path(__file__).resolve().parents[3]


def test_cli_records_a_successful_episode(tmp_path):
    out = tmp_path / "demos"
    cmd = [sys.executable, "-m", "vla_adapter_ros.cli", "record-sim", "--task", "reach", "--episodes", "1",
           "--seed", "3", "--out", str(out), "--image-size", "32", "--max-steps", "80", "--storage", "sqlite3",
           "--no-progress"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert "recorded 1 episodes" in res.stdout and "success rate 100.0%" in res.stdout
    assert "ms per frame" in res.stdout
    [bag] = find_episodes(out)
    assert bag == episode_path(out, "reach-v3", 3)
    ep = read_episode(bag)
    assert (ep.task, ep.seed, ep.success) == ("reach-v3", 3, True)
    assert ep.images.shape == (len(ep), 32, 32, 3) and ep.proprio.shape == (len(ep), 4)
    assert ep.actions.shape == (len(ep), 4) and np.all(np.abs(ep.actions) <= 1.0)
    assert 10 < len(ep) < 80 and ep.metadata["finished"] and ep.metadata["storage"] == "sqlite3"
    assert ep.instruction in training_instructions("reach") and len(set(ep.instructions)) == 1
    assert ep.metadata["camera"] == "corner4" and ep.metadata["image_size"] == [32, 32]
    assert np.all(np.diff(ep.stamps) == 12_500_000)  # one control step = 5 x 2.5 ms of sim time


def test_short_failed_episode_is_recorded_with_its_flag_and_skipped_with_only_success(tmp_path):
    res = record(["drawer-open"], episodes=1, seed=11, out=tmp_path, image_size=16, max_steps=20, progress=False)
    assert [(r.success, r.frames) for r in res] == [(False, 20)]
    ep = read_episode(res[0].path)
    assert (ep.seed, ep.success, len(ep)) == (11, False, 20)
    skipped = record(["drawer-open"], episodes=1, seed=11, out=tmp_path / "ok", image_size=16, max_steps=20,
                     only_success=True, max_attempts=1, progress=False)
    assert skipped[0].path is None and not (tmp_path / "ok").exists()


def test_cli_records_both_views_of_the_sawyer_contract(tmp_path):
    from vla_adapter_ros.bags.episodes import stored_contract
    from vla_adapter_ros.contract import RobotContract

    sawyer = ROOT / "config" / "robots" / "metaworld_sawyer.yaml"
    out = tmp_path / "demos"
    cmd = [sys.executable, "-m", "vla_adapter_ros.cli", "record-sim", "--task", "reach", "--episodes", "1",
           "--seed", "3", "--out", str(out), "--max-steps", "30", "--contract", str(sawyer), "--no-progress"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    [bag] = find_episodes(out)
    contract = stored_contract(bag)
    assert contract == RobotContract.load(sawyer)  # the bag says which robot made it
    ep = read_episode(bag, contract=contract)
    assert ep.cameras == ("corner", "wrist") and ep.views["wrist"].shape == (len(ep), 96, 96, 3)
    assert ep.metadata["cameras"] == {"corner": "corner4", "wrist": "gripperPOV"} and ep.metadata["finished"]
    assert not np.array_equal(ep.views["corner"], ep.views["wrist"]) and ep.proprio_names == contract.state_names
    assert ep.metadata["alignment"]["max_camera_skew_ns"] == 0  # both views stamped with the frame
    bad = [sys.executable, "-m", "vla_adapter_ros.cli", "record-sim", "--task", "reach", "--out", str(tmp_path / "x"),
           "--contract", str(sawyer), "--image-size", "32"]
    res = subprocess.run(bad, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 2 and "--image-size 32: contract 'metaworld_sawyer'" in res.stderr
