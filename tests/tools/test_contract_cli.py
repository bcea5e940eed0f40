"""`vla-adapter contract check` and `contract from-bag`, run as a robot engineer runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bags"))

import robot_bags as rb  # noqa: E402

from vla_adapter_ros.bags.episodes import EpisodeWriter, read_episode  # noqa: E402
from vla_adapter_ros.bags.typestore import make_typestore  # noqa: E402
from vla_adapter_ros.contract import RobotContract  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ROBOTS = sorted((ROOT / "config" / "robots").glob("*.yaml"))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vla_adapter_ros.cli", "contract", *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)


@pytest.mark.parametrize("path", ROBOTS, ids=[p.stem for p in ROBOTS])
def test_check_accepts_every_shipped_contract_and_prints_the_nodes_topics(path):
    out = cli("check", str(path))
    assert out.returncode == 0, out.stderr
    contract = RobotContract.load(path)
    for cam in contract.cameras:
        assert f"{cam.topic} " in out.stdout and f"camera {cam.name!r}" in out.stdout
    assert "best_effort, keep_last 1, volatile" in out.stdout  # the cameras' QoS
    assert f"{contract.instruction_topic} " in out.stdout and "reliable, keep_last 1, transient_local" in out.stdout
    assert "/vla/action  vla_adapter_interfaces/msg/ActionChunk  reliable, keep_last 10" in out.stdout
    assert all(o.topic in out.stdout for o in contract.outputs)


def test_check_refuses_a_bad_contract_with_file_and_key(tmp_path):
    bad = tmp_path / "arm.yaml"
    data = yaml.safe_load((ROOT / "config" / "robots" / "ur_servo_twist.yaml").read_text())
    data["cameras"]["scene"]["topik"] = data["cameras"]["scene"].pop("topic")
    bad.write_text(yaml.safe_dump(data))
    out = cli("check", str(bad))
    assert out.returncode == 1 and out.stdout == ""
    assert f"{bad}: contract.cameras.scene: unknown key 'topik'; did you mean 'topic'?" in out.stderr
    assert cli("check", str(tmp_path / "none.yaml")).returncode == 1


def _teleop_bag(path: Path) -> Path:
    """A leader/follower recording as `ros2 bag record` leaves it: two cameras, two JointStates, an instruction."""
    store = make_typestore()
    rng = np.random.default_rng(0)
    names = ["joint1", "joint2", "gripper"]
    msgs = [("/task", rb.STRING, rb.T0, rb.string(store, "stack the blocks"))]
    for t in range(6):
        ns = rb.T0 + t * 33_333_333
        msgs += [("/cam_high/image_raw", rb.IMAGE, ns, rb.image(store, ns, rng.integers(0, 256, (24, 32, 3), np.uint8))),
                 ("/cam_wrist/image_raw/compressed", rb.COMPRESSED, ns + 1_000_000,
                  rb.compressed(store, ns + 1_000_000, rng.integers(0, 256, (16, 16, 3), np.uint8), "jpeg"))]
    for k in range(20):
        ns = rb.T0 + k * 10_000_000
        msgs += [("/follower/joint_states", rb.JOINT_STATE, ns, rb.joint_state(store, ns, names, [k, k, 0])),
                 ("/leader/joint_states", rb.JOINT_STATE, ns, rb.joint_state(store, ns, names, [k + 1, k, 0]))]
    return rb.write_bag(path, store, msgs)


def test_from_bag_starts_a_contract_that_check_accepts_once_the_todos_are_edited(tmp_path):
    bag = _teleop_bag(tmp_path / "teleop_2024")
    out = cli("from-bag", str(bag), "--out", str(tmp_path / "starter.yaml"))
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "starter.yaml").read_text()
    assert "/cam_high/image_raw" in text and "32x24 rgb8" in text and "16x16 jpeg" in text
    assert "topic: /follower/joint_states" in text and "topic: /leader/joint_states" in text
    assert "instruction_topic: /task" in text and "TODO" in text
    refused = cli("check", str(tmp_path / "starter.yaml"))  # what a number commands cannot be read from a bag
    assert refused.returncode == 1 and "contract.actions[0].kind: 'TODO' is not one of" in refused.stderr
    edited = text.replace("{name: gripper, kind: TODO}", "{name: gripper, kind: gripper, low: 0.0, high: 1.0}")
    edited = edited.replace("kind: TODO", "kind: joint_position")
    (tmp_path / "mine.yaml").write_text(edited)
    accepted = cli("check", str(tmp_path / "mine.yaml"))
    assert accepted.returncode == 0, accepted.stderr
    contract = RobotContract.load(tmp_path / "mine.yaml")
    assert contract.camera_names == ("cam_high", "cam_wrist") and contract.action_source.type == "JointState"
    ep = read_episode(bag, contract=contract)  # and it reads the bag it came from
    assert ep.cameras == ("cam_high", "cam_wrist") and len(ep) == 6 and ep.instruction == "stack the blocks"
    assert ep.actions[:, 0].tolist() == [ep.proprio[t, 0] + 1 for t in range(6)]


def test_from_bag_gives_back_a_stored_contract_and_refuses_a_bag_without_cameras(tmp_path):
    sawyer = RobotContract.load(ROOT / "config" / "robots" / "metaworld_sawyer.yaml")
    views = {"corner": np.zeros((96, 96, 3), np.uint8), "wrist": np.ones((96, 96, 3), np.uint8)}
    with EpisodeWriter(tmp_path / "sim", task="reach-v3", seed=0, contract=sawyer) as w:
        w.write_step(rb.T0, views, np.zeros(4), np.zeros(4), instruction="reach")
    out = cli("from-bag", str(tmp_path / "sim"))
    assert out.returncode == 0 and RobotContract.from_dict(yaml.safe_load(out.stdout)) == sawyer
    store = make_typestore()
    rb.write_bag(tmp_path / "blind", store, [("/joint_states", rb.JOINT_STATE, rb.T0,
                                              rb.joint_state(store, rb.T0, ["a"], [0.0]))])
    out = cli("from-bag", str(tmp_path / "blind"))
    assert out.returncode == 1 and "no camera topic" in out.stderr and "/joint_states" in out.stderr
