"""Episodes read through a robot contract: frame sets of several cameras paired like the node pairs them,
state and actions by the node's rules, a robot's own `ros2 bag record` bags, and the errors for bad ones."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import robot_bags as rb  # noqa: E402

from vla_adapter_ros.bags.align import nearest  # noqa: E402
from vla_adapter_ros.bags.episodes import EpisodeWriter, read_episode, stored_contract  # noqa: E402
from vla_adapter_ros.bags.errors import (  # noqa: E402
    AlignmentError,
    BadMessageError,
    MissingTopicError,
    TopicTypeError,
)
from vla_adapter_ros.bags.typestore import make_typestore  # noqa: E402
from vla_adapter_ros.contract import RobotContract  # noqa: E402
from vla_adapter_ros.serving.inputs import InputBuffer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SAWYER = RobotContract.load(ROOT / "config" / "robots" / "metaworld_sawyer.yaml")
PERIOD = 33_000_000  # a 30 Hz camera
JOINTS = ("j1", "j2", "gripper")
ARM = {
    "robot": "arm",
    "cameras": {"front": {"topic": "/front/image_raw"},
                "wrist": {"topic": "/wrist/image_raw/compressed", "type": "CompressedImage"}},
    "max_camera_skew": 0.005,
    "state": {"topic": "/joint_states", "fields": ["position.j1", "position.j2", "position.gripper"],
              "max_skew": 0.02},
    "actions": [{"name": n, "kind": "gripper" if n == "gripper" else "joint_position"} for n in JOINTS],
    "action_source": {"topic": "/leader/joint_states", "type": "JointState",
                      "fields": [f"position.{n}" for n in JOINTS], "max_skew": 0.02},
}


@pytest.fixture(scope="module")
def store():
    return make_typestore()


def arm(**changes) -> RobotContract:
    return RobotContract.from_dict({**ARM, **changes})


def frames(n: int, h: int = 12, w: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def robot_bag(path, store, n=6, *, wrist_offsets=None, skip=(), state_names=JOINTS, instruction="pick the cube",
              front=None, wrist=None, leader=True, silent=()):
    """A leader/follower recording: front Image + wrist PNG per frame (the wrist camera ``wrist_offsets[t]``
    ns late), follower JointState at 100 Hz, leader JointState at 100 Hz, one instruction at the start."""
    front = frames(n) if front is None else front
    wrist = frames(n, seed=1) if wrist is None else wrist
    offsets = wrist_offsets or [1_000_000] * n
    msgs = []
    if instruction:
        msgs.append(("/vla/instruction", rb.STRING, rb.T0 - 5_000_000, rb.string(store, instruction)))
    for t in range(n):
        ns = rb.T0 + t * PERIOD
        if ("front", t) not in skip:
            msgs.append(("/front/image_raw", rb.IMAGE, ns + rb.LATENCY, rb.image(store, ns, front[t])))
        if ("wrist", t) not in skip:
            msgs.append(("/wrist/image_raw/compressed", rb.COMPRESSED, ns + offsets[t] + rb.LATENCY,
                         rb.compressed(store, ns + offsets[t], wrist[t])))
    for k in range(n * 4):  # 100 Hz-ish joint states: 4 per frame, 8.25 ms apart
        ns = rb.T0 + k * PERIOD // 4
        msgs.append(("/joint_states", rb.JOINT_STATE, ns + rb.LATENCY,
                     rb.joint_state(store, ns, state_names, [k, -k, k / 100][:len(state_names)])))
        if leader:
            msgs.append(("/leader/joint_states", rb.JOINT_STATE, ns + rb.LATENCY,
                         rb.joint_state(store, ns, JOINTS, [k + 0.5, -k - 0.5, 1.0])))
    return rb.write_bag(path, store, msgs, silent=silent), front, wrist


def test_a_robots_own_recording_reads_into_frame_sets(tmp_path, store):
    path, front, wrist = robot_bag(tmp_path / "rec", store, n=6)
    ep = read_episode(path, contract=arm(), typestore=store)
    assert ep.cameras == ("front", "wrist") and len(ep) == 6
    assert np.array_equal(ep.views["front"], front) and np.array_equal(ep.views["wrist"], wrist)
    assert ep.images is ep.views["front"]  # single-camera callers keep working
    assert ep.stamps.tolist() == [rb.T0 + t * PERIOD for t in range(6)]  # the reference camera's stamps
    # the follower state and the leader's command at the frame's stamp (every 4th sample)
    assert ep.proprio[:, 0].tolist() == [4 * t for t in range(6)] and ep.proprio_names == JOINTS
    assert ep.actions[:, 0].tolist() == [4 * t + 0.5 for t in range(6)] and ep.action_names == JOINTS
    assert ep.instructions == ["pick the cube"] * 6
    assert (ep.task, ep.seed, ep.success, ep.metadata["finished"]) == ("", None, None, None)
    align = ep.metadata["alignment"]
    assert align["dropped"] == {"duplicate_stamp": 0, "unpaired_frame": 0, "no_instruction": 0, "no_proprio": 0,
                                "no_action": 0}
    assert align["unpaired"] == {"front": 0, "wrist": 0} and align["max_camera_skew_ns"] == 1_000_000


def test_frame_sets_beyond_the_skew_limit_and_lost_frames_are_dropped_and_counted(tmp_path, store):
    # frame 2's wrist image is 9 ms late (limit 5 ms), frame 4 has no wrist image
    offsets = [1_000_000, 1_000_000, 9_000_000, 1_000_000, 0, 1_000_000]
    path, front, wrist = robot_bag(tmp_path / "rec", store, n=6, wrist_offsets=offsets, skip={("wrist", 4)})
    ep = read_episode(path, contract=arm(), typestore=store)
    keep = [0, 1, 3, 5]
    assert np.array_equal(ep.views["front"], front[keep]) and np.array_equal(ep.views["wrist"], wrist[keep])
    align = ep.metadata["alignment"]
    assert align["unpaired"] == {"front": 2, "wrist": 1} and align["dropped"]["unpaired_frame"] == 3
    # a wider limit takes frame 2 back
    wide = read_episode(path, contract=arm(max_camera_skew=0.010), typestore=store)
    assert len(wide) == 5 and wide.metadata["alignment"]["max_camera_skew_ns"] == 9_000_000


def test_state_and_leader_outside_their_skew_drop_the_frame(tmp_path, store):
    path, *_ = robot_bag(tmp_path / "rec", store, n=4)
    # 8.25 ms between samples: every frame stamp has a sample at 0 ms, so a 1 us limit still finds it ...
    tight = {**ARM["state"], "max_skew": 0.000001}
    assert len(read_episode(path, contract=arm(state=tight), typestore=store)) == 4
    # ... but a follower recorded without the first 6 samples leaves frame 0 and 1 without state
    msgs = []
    for k in range(16):
        ns = rb.T0 + k * PERIOD // 4
        if k >= 6:
            msgs.append(("/joint_states", rb.JOINT_STATE, ns, rb.joint_state(store, ns, JOINTS, [k, 0, 0])))
        msgs.append(("/leader/joint_states", rb.JOINT_STATE, ns, rb.joint_state(store, ns, JOINTS, [k, 0, 0])))
    for t in range(4):
        ns = rb.T0 + t * PERIOD
        msgs += [("/front/image_raw", rb.IMAGE, ns, rb.image(store, ns, frames(1)[0])),
                 ("/wrist/image_raw/compressed", rb.COMPRESSED, ns, rb.compressed(store, ns, frames(1)[0]))]
    rb.write_bag(tmp_path / "late", store, msgs)
    ep = read_episode(tmp_path / "late", contract=arm(state={**ARM["state"], "max_skew": 0.01}), instruction="go",
                      typestore=store)  # frame 1 (33 ms): the nearest sample is 16.5 ms away
    assert len(ep) == 2 and ep.metadata["alignment"]["dropped"]["no_proprio"] == 2
    assert ep.instructions == ["go", "go"]  # the bag has no instruction topic: the caller's


@pytest.mark.parametrize("skew_ms", [0.5, 2.0, 10.0])
def test_nearest_is_the_nodes_rule(skew_ms):
    """The offline state match equals InputBuffer.match (the policy node's) on the same samples."""
    rng = np.random.default_rng(int(skew_ms * 10))
    stamps = np.sort(rng.integers(0, 60, 50) * 1_000_000)  # repeated stamps and ties included
    buffer = InputBuffer(needs_state=True, max_skew_s=skew_ms / 1000)
    for i, s in enumerate(stamps):
        buffer.add_state(int(s), np.asarray([i], np.float32))
    for frame in range(-5, 70):
        ns = frame * 1_000_000 + (500_000 if frame % 3 == 0 else 0)
        found = buffer.match(ns)
        mine = nearest(stamps, ns, int(skew_ms * 1e6))
        assert (None if found.state is None else int(found.state[0])) == mine, ns


def test_every_action_source(tmp_path, store):
    n = 5
    msgs = [("/vla/instruction", rb.STRING, rb.T0 - 1, rb.string(store, "wipe"))]
    for t in range(n):
        ns = rb.T0 + t * PERIOD
        msgs += [("/front/image_raw", rb.IMAGE, ns, rb.image(store, ns, frames(1)[0])),
                 ("/wrist/image_raw/compressed", rb.COMPRESSED, ns, rb.compressed(store, ns, frames(1)[0])),
                 ("/joint_states", rb.JOINT_STATE, ns, rb.joint_state(store, ns, JOINTS, [t, 0, 0])),
                 ("/servo/twist", rb.TWIST, ns + 3_000_000, rb.twist(store, ns + 3_000_000, [t, 0, 2], [0, 0, -t])),
                 ("/cmd", rb.F64, ns + 4_000_000, rb.multi_array(store, [t, 10 + t, 20 + t, 30 + t]))]
    rb.write_bag(tmp_path / "rec", store, msgs)
    twist = arm(actions=[{"name": n, "kind": "ee_velocity"} for n in ("vx", "vz", "wz")],
                action_source={"topic": "/servo/twist", "type": "TwistStamped",
                               "fields": ["linear.x", "linear.z", "angular.z"], "max_skew": 0.005})
    ep = read_episode(tmp_path / "rec", contract=twist, typestore=store)
    assert ep.actions.tolist() == [[t, 2, -t] for t in range(n)] and ep.action_names == ("vx", "vz", "wz")
    array = arm(actions=[{"name": n, "kind": "joint_delta"} for n in ("a", "b")],
                action_source={"topic": "/cmd", "type": "Float64MultiArray", "fields": ["data.3", "data.1"]})
    ep = read_episode(tmp_path / "rec", contract=array, typestore=store)
    assert ep.actions.tolist() == [[30 + t, 10 + t] for t in range(n)]
    late = arm(actions=twist.to_dict()["actions"],
               action_source={**twist.to_dict()["action_source"], "max_skew": 0.001})
    with pytest.raises(AlignmentError, match="no frame set of 5"):  # 3 ms late, 1 ms limit
        read_episode(tmp_path / "rec", contract=late, typestore=store)


def test_episode_writer_records_every_camera_and_its_contract(tmp_path, store):
    views = {"corner": frames(3, 96, 96), "wrist": frames(3, 96, 96, seed=2)}
    with EpisodeWriter(tmp_path / "ep", task="reach-v3", seed=1, typestore=store, contract=SAWYER) as w:
        for t in range(3):
            w.write_step(rb.T0 + t * 12_500_000, {k: v[t] for k, v in views.items()}, np.arange(4) + t,
                         np.full(4, t / 10), instruction="reach")
    assert stored_contract(tmp_path / "ep") == SAWYER
    ep = read_episode(tmp_path / "ep", contract=SAWYER, typestore=store)
    assert ep.cameras == ("corner", "wrist") and all(np.array_equal(ep.views[k], v) for k, v in views.items())
    assert (ep.task, ep.seed, ep.metadata["finished"]) == ("reach-v3", 1, True)
    assert ep.proprio_names == SAWYER.state_names and ep.actions[:, 0].tolist() == pytest.approx([0, 0.1, 0.2])
    with pytest.raises(MissingTopicError) as err:  # read without it: the bag says which contract it needs
        read_episode(tmp_path / "ep", typestore=store)
    assert "recorded with the contract of robot 'metaworld_sawyer'" in str(err.value)
    small = {k: v[:, :32, :32] for k, v in views.items()}
    with EpisodeWriter(tmp_path / "small", task="reach-v3", seed=1, typestore=store, contract=SAWYER) as w:
        w.write_step(rb.T0, {k: v[0] for k, v in small.items()}, np.zeros(4), np.zeros(4), instruction="reach")
    with pytest.raises(BadMessageError, match="publishes 32x32 images, the contract says 96x96"):
        read_episode(tmp_path / "small", contract=SAWYER, typestore=store)


# --- bad input: each error names the bag and the topic ----------------------------------------
def test_a_bag_missing_a_contract_topic_names_topic_and_bag(tmp_path, store):
    path, *_ = robot_bag(tmp_path / "rec", store, leader=False)
    with pytest.raises(MissingTopicError) as err:
        read_episode(path, contract=arm(), typestore=store)
    assert "action topic '/leader/joint_states' is not in the bag" in str(err.value) and str(path) in str(err.value)
    other = arm(cameras={**ARM["cameras"], "top": {"topic": "/top/image_raw"}})
    with pytest.raises(MissingTopicError, match="camera 'top' topic '/top/image_raw' is not in the bag"):
        read_episode(path, contract=other, typestore=store)
    with pytest.raises(MissingTopicError, match="instruction topic '/vla/instruction' is not in the bag"):
        robot_bag(tmp_path / "quiet", store, instruction="")
        read_episode(tmp_path / "quiet", contract=arm(), typestore=store)


def test_a_joint_state_missing_a_selected_joint(tmp_path, store):
    path, *_ = robot_bag(tmp_path / "rec", store, state_names=("j1", "j2"))
    with pytest.raises(BadMessageError) as err:
        read_episode(path, contract=arm(), typestore=store)
    msg = str(err.value)
    assert "'/joint_states'" in msg and "lacks joint(s) ['gripper']" in msg and str(path) in msg


def test_a_camera_with_no_messages_and_a_wrong_type(tmp_path, store):
    skip = {("wrist", t) for t in range(3)}
    path, *_ = robot_bag(tmp_path / "rec", store, n=3, skip=skip, silent=[("/wrist/image_raw/compressed", rb.COMPRESSED)])
    # the recorder subscribed to the camera, which published nothing
    with pytest.raises(MissingTopicError) as err:
        read_episode(path, contract=arm(), typestore=store)
    assert "camera 'wrist' topic '/wrist/image_raw/compressed' has no messages" in str(err.value)
    assert str(path) in str(err.value)
    raw = arm(cameras={**ARM["cameras"], "wrist": {"topic": "/wrist/image_raw/compressed"}})  # says Image
    path, *_ = robot_bag(tmp_path / "rec2", store, n=3)
    with pytest.raises(TopicTypeError, match="sensor_msgs/msg/CompressedImage, expected one of"):
        read_episode(path, contract=raw, typestore=store)


def test_cameras_at_different_resolutions_and_encodings_are_allowed_a_size_change_is_not(tmp_path, store):
    front, wrist = frames(4, 24, 32), frames(4, 12, 16, seed=1)
    msgs = [("/vla/instruction", rb.STRING, rb.T0 - 1, rb.string(store, "go"))]
    for t in range(4):
        ns = rb.T0 + t * PERIOD
        msgs += [("/front/image_raw", rb.IMAGE, ns, rb.image(store, ns, front[t], "bgr8")),
                 ("/wrist/image_raw/compressed", rb.COMPRESSED, ns, rb.compressed(store, ns, wrist[t])),
                 ("/joint_states", rb.JOINT_STATE, ns, rb.joint_state(store, ns, JOINTS, [t, 0, 0])),
                 ("/leader/joint_states", rb.JOINT_STATE, ns, rb.joint_state(store, ns, JOINTS, [t, 0, 0]))]
    rb.write_bag(tmp_path / "rec", store, msgs)
    ep = read_episode(tmp_path / "rec", contract=arm(), typestore=store)
    assert ep.views["front"].shape == (4, 24, 32, 3) and ep.views["wrist"].shape == (4, 12, 16, 3)
    assert np.array_equal(ep.views["front"], front) and np.array_equal(ep.views["wrist"], wrist)
    ns = rb.T0 + 4 * PERIOD  # one more frame set whose front image is larger
    msgs += [("/front/image_raw", rb.IMAGE, ns, rb.image(store, ns, frames(1, 48, 64)[0])),
             ("/wrist/image_raw/compressed", rb.COMPRESSED, ns, rb.compressed(store, ns, wrist[0])),
             ("/joint_states", rb.JOINT_STATE, ns, rb.joint_state(store, ns, JOINTS, [0, 0, 0])),
             ("/leader/joint_states", rb.JOINT_STATE, ns, rb.joint_state(store, ns, JOINTS, [0, 0, 0]))]
    rb.write_bag(tmp_path / "grows", store, msgs)
    with pytest.raises(BadMessageError, match=r"camera 'front' images on '/front/image_raw' change size"):
        read_episode(tmp_path / "grows", contract=arm(), typestore=store)
