"""The worked examples of docs/ROBOTS.md, end to end: a robot's own `ros2 bag record` bags (its topic names and
message types, written with rosbags' Writer), read through its contract (config/robots/) into a dataset batch, and
a few real training steps of a tiny model whose cameras, state and actions come from the contract."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from core_data import tiny_config
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bags"))

import robot_bags as rb  # noqa: E402

from vla_adapter_ros import processing as P  # noqa: E402
from vla_adapter_ros.bags.typestore import make_typestore  # noqa: E402
from vla_adapter_ros.contract import RobotContract  # noqa: E402
from vla_adapter_ros.core.checkpoint import load_checkpoint  # noqa: E402
from vla_adapter_ros.core.config import AdapterConfig, ModelConfig, TrainConfig  # noqa: E402
from vla_adapter_ros.core.train import CONTRACT_FILE, build_dataset, train_from_config  # noqa: E402

ROBOTS = Path(__file__).resolve().parents[2] / "config" / "robots"
LEADER = ROBOTS / "arm6_leader_follower.yaml"
SERVO = ROBOTS / "ur_servo_twist.yaml"
FRAMES = 10


def leader_follower_bags(root: Path, episodes: int = 2) -> Path:
    """Robot (a): front 48x64 rgb8 + wrist 32x32 JPEG at 30 Hz (the wrist 3 ms behind), follower and leader
    JointState at 100 Hz (joint order of the driver, not the contract's), the operator's instruction."""
    store = make_typestore()
    contract = RobotContract.load(LEADER)
    joints = list(reversed(contract.state_names))  # the driver lists them in another order
    rng = np.random.default_rng(0)
    for e in range(episodes):
        msgs = [("/vla/instruction", rb.STRING, rb.T0 - 10**8, rb.string(store, "put the cube in the bowl"))]
        for t in range(FRAMES):
            ns = rb.T0 + t * 33_333_333
            msgs += [("/cameras/front/image_raw", rb.IMAGE, ns + rb.LATENCY,
                      rb.image(store, ns, rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))),
                     ("/cameras/wrist/image_raw/compressed", rb.COMPRESSED, ns + 3_000_000 + rb.LATENCY,
                      rb.compressed(store, ns + 3_000_000, rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
                                    "jpeg"))]
        for k in range(FRAMES * 10 // 3):
            ns = rb.T0 + k * 10_000_000
            q = np.sin(np.arange(6) + k / 10 + e)
            msgs += [("/follower/joint_states", rb.JOINT_STATE, ns + rb.LATENCY, rb.joint_state(store, ns, joints, q)),
                     ("/leader/joint_states", rb.JOINT_STATE, ns + rb.LATENCY,
                      rb.joint_state(store, ns, joints, q + 0.05))]
        rb.write_bag(root / f"episode_{e}", store, msgs)
    return root


def servo_bags(root: Path, episodes: int = 2) -> Path:
    """Robot (b): scene camera 40x40 bgr8 at 15 Hz, UR joint states at 500 Hz (decimated here to 250 Hz),
    Servo twist commands at 125 Hz; no instruction topic (the operator recorded only the robot's topics)."""
    store = make_typestore()
    contract = RobotContract.load(SERVO)
    rng = np.random.default_rng(1)
    for e in range(episodes):
        msgs = []
        for t in range(FRAMES):
            ns = rb.T0 + t * 66_666_666
            msgs.append(("/camera/color/image_raw", rb.IMAGE, ns + rb.LATENCY,
                         rb.image(store, ns, rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), "bgr8")))
        for k in range(FRAMES * 66 // 4):
            ns = rb.T0 + k * 4_000_000
            msgs.append(("/joint_states", rb.JOINT_STATE, ns, rb.joint_state(store, ns, contract.state_names,
                                                                             np.cos(np.arange(6) + k / 50 + e))))
            if k % 2 == 0:
                v = 0.1 * np.sin(np.arange(6) + k / 20 + e)
                msgs.append(("/servo_node/delta_twist_cmds", rb.TWIST, ns + rb.LATENCY,
                             rb.twist(store, ns, v[:3], v[3:])))
        rb.write_bag(root / f"episode_{e}", store, msgs)
    return root


def _train_config(tmp_path: Path, name: str, **kw) -> TrainConfig:
    base = dict(model=tiny_config(), steps=3, batch_size=4, warmup_steps=1, log_every=1, save_every=0,
                out_dir=str(tmp_path / name), progress=False, plot=False, seed=0)
    return TrainConfig(**{**base, **kw})


def test_leader_follower_arm_reads_into_two_view_batches(tmp_path):
    root = leader_follower_bags(tmp_path / "bags")
    contract = RobotContract.load(LEADER)
    model = ModelConfig(**{**tiny_config().to_dict(), "cameras": contract.camera_names,
                           "proprio_names": contract.state_names, "proprio_dim": 6,
                           "action_names": contract.action_names, "action_dim": 6})
    ds = build_dataset([str(root)], model, contract=contract)
    assert len(ds) == 2 * FRAMES and ds.cameras == ("front", "wrist")
    ep = ds.episodes[0]
    assert ep.metadata["alignment"]["max_camera_skew_ns"] == 3_000_000 and ep.instruction == "put the cube in the bowl"
    # the leader's command is the follower's state + 0.05 at the same stamp (both in the contract's joint order)
    np.testing.assert_allclose(ep.actions - ep.proprio, 0.05, atol=1e-6)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch[P.IMAGE].shape == (4, 2, 3, 32, 32) and batch[P.PROPRIO].shape == (4, 6)
    assert batch[P.ACTIONS].shape == (4, 3, 6)


@pytest.mark.slow
def test_leader_follower_arm_trains(tmp_path, language):
    root = leader_follower_bags(tmp_path / "bags")
    cfg = _train_config(tmp_path, "pre", contract=str(LEADER), data=(str(root),))
    result = train_from_config(cfg, language=language)
    assert result.step == 3 and np.isfinite(result.loss)
    assert load_checkpoint(result.artifact).config.cameras == ("front", "wrist")
    assert (result.artifact / CONTRACT_FILE).read_text() == LEADER.read_text()


@pytest.mark.slow
def test_servo_twist_arm_trains_and_fine_tunes_with_its_contract(tmp_path, language):
    root = servo_bags(tmp_path / "bags")
    cfg = _train_config(tmp_path, "pre", contract=str(SERVO), data=(str(root / "episode_*"),),
                        instruction="wipe the table")
    result = train_from_config(cfg, language=language)
    assert result.step == 3 and np.isfinite(result.loss)
    backbone = load_checkpoint(result.artifact)
    contract = RobotContract.load(SERVO)
    assert backbone.config.cameras == ("scene",) and backbone.config.action_names == contract.action_names
    assert backbone.config.proprio_names == contract.state_names
    assert (result.artifact / CONTRACT_FILE).read_text() == SERVO.read_text()  # beside the checkpoint
    assert TrainConfig.load(tmp_path / "pre" / "train_config.json").model.action_dim == 6

    # fine-tuning without a contract reads the data through the backbone's own, and the adapter carries it
    ad = _train_config(tmp_path, "ad", regime="adapter", init_checkpoint=str(result.artifact), adapter_name="wipe",
                       adapter=AdapterConfig(rank=2), data=(str(root),), instruction="wipe the table", steps=2)
    tuned = train_from_config(ad, language=language)
    assert (tuned.artifact / CONTRACT_FILE).read_text() == SERVO.read_text()

    # another robot's contract is refused, naming both sides
    other = _train_config(tmp_path, "bad", regime="adapter", init_checkpoint=str(result.artifact), contract=str(LEADER),
                          data=(str(root),))
    with pytest.raises(ValueError) as err:
        train_from_config(other, language=language)
    msg = str(err.value)
    assert f"cameras: the contract {LEADER} has ['front', 'wrist'], the backbone {result.artifact}" in msg
    assert "was trained with ['scene']" in msg and "actions:" in msg
