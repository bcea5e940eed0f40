"""EpisodeWriter -> read_episode round trips, foreign bags, and the errors for bad bags."""

from __future__ import annotations

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer

from vla_adapter_ros.bags.episodes import (
    EpisodeTopics,
    EpisodeWriter,
    find_episodes,
    read_episode,
    read_episodes,
)
from vla_adapter_ros.bags.errors import (
    AlignmentError,
    BagError,
    BagNotFoundError,
    CorruptBagError,
    MissingTopicError,
    TopicTypeError,
)
from vla_adapter_ros.bags.typestore import make_typestore

T0 = 1_700_000_000_123_456_789  # a wall-clock-like stamp: exercises sec/nanosec splitting
DT = 12_500_000


@pytest.fixture(scope="module")
def store():
    return make_typestore()


def _data(n=6, h=8, w=10, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8), rng.normal(size=(n, 4)).astype(np.float32),
            rng.uniform(-1, 1, (n, 4)).astype(np.float32))


def _write(path, store, storage="mcap", n=6, **kwargs):
    images, proprio, actions = _data(n)
    instr = ["open the drawer"] * 3 + ["now close it"] * (n - 3)
    with EpisodeWriter(path, task="drawer-open-v3", seed=42, storage=storage, typestore=store, dt=0.0125,
                       metadata={"camera": "corner4"}, **kwargs) as w:
        for t in range(n):
            w.write_step(T0 + t * DT, images[t], proprio[t], actions[t], instruction=instr[t], success=t == n - 1)
    return images, proprio, actions, instr


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip_is_exact(tmp_path, store, storage):
    images, proprio, actions, instr = _write(tmp_path / "ep", store, storage)
    ep = read_episode(tmp_path / "ep", typestore=store)
    assert len(ep) == 6
    assert ep.images.dtype == np.uint8 and np.array_equal(ep.images, images)
    assert ep.proprio.dtype == np.float32 and np.array_equal(ep.proprio, proprio)
    assert ep.actions.dtype == np.float32 and np.array_equal(ep.actions, actions)
    assert ep.instructions == instr and ep.instruction == "open the drawer"
    assert ep.stamps.tolist() == [T0 + t * DT for t in range(6)]
    assert (ep.task, ep.seed, ep.success) == ("drawer-open-v3", 42, True)
    assert ep.proprio_names == ("ee_x", "ee_y", "ee_z", "gripper")
    assert ep.action_names == ("dx", "dy", "dz", "gripper")
    md = ep.metadata
    assert md["storage"] == storage and md["camera"] == "corner4" and md["frames"] == 6 and md["finished"]
    assert md["alignment"]["dropped"] == {"duplicate_stamp": 0, "no_instruction": 0, "no_proprio": 0,
                                          "no_action": 0}


@pytest.mark.parametrize("encoding", ["bgr8", "mono8", "rgba8"])
def test_non_rgb_encodings_decode_to_rgb(tmp_path, store, encoding):
    rgb, proprio, actions = _data(2)
    if encoding == "bgr8":
        raw, expect = rgb[..., ::-1], rgb
    elif encoding == "mono8":
        raw, expect = rgb[..., 0], np.repeat(rgb[..., :1], 3, axis=-1)
    else:
        raw = np.concatenate([rgb, np.full(rgb.shape[:-1] + (1,), 255, np.uint8)], axis=-1)
        expect = rgb
    with EpisodeWriter(tmp_path / "ep", task="t", seed=0, typestore=store) as w:
        for t in range(2):
            w.write_step(T0 + t * DT, raw[t], proprio[t], actions[t], instruction="go", encoding=encoding)
    ep = read_episode(tmp_path / "ep", typestore=store)
    assert ep.images.shape == (2, 8, 10, 3) and np.array_equal(ep.images, expect)


@pytest.mark.parametrize(("storage", "filename"), [("mcap", "ep.mcap"), ("sqlite3", "ep.db3")])
@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_truncated_bag_is_a_corrupt_bag_error_naming_the_file(tmp_path, store, storage, filename, keep):
    _write(tmp_path / "ep", store, storage)
    data = tmp_path / "ep" / filename
    with data.open("r+b") as fh:
        fh.truncate(int(data.stat().st_size * keep))
    with pytest.raises(CorruptBagError) as err:
        read_episode(tmp_path / "ep", typestore=store)
    assert str(tmp_path / "ep") in str(err.value) and "truncated" in str(err.value)


# Damage inside the storage file that rosbags only notices while parsing a connection record on open.
DAMAGE = {
    "qos_profile": (b"lifespan", b"lifesp_n"),  # the recorded QoS profile lacks a field: rosbags raises KeyError
    "topic_text": (b"/camera/image_raw", b"/camera/image_\xffaw"),  # not UTF-8: UnicodeDecodeError
}


@pytest.mark.parametrize(("storage", "filename"), [("mcap", "ep.mcap"), ("sqlite3", "ep.db3")])
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_connection_record_is_a_corrupt_bag_error_naming_the_file(tmp_path, store, storage, filename, damage):
    _write(tmp_path / "ep", store, storage)
    data = tmp_path / "ep" / filename
    old, new = DAMAGE[damage]
    raw = data.read_bytes()
    assert old in raw
    data.write_bytes(raw.replace(old, new))
    with pytest.raises(CorruptBagError) as err:
        read_episode(tmp_path / "ep", typestore=store)
    assert str(tmp_path / "ep") in str(err.value) and "cannot open bag" in str(err.value)


def test_damaged_message_is_a_corrupt_bag_error_naming_topic_and_type(tmp_path, store):
    _write(tmp_path / "ep", store, "sqlite3")
    data = tmp_path / "ep" / "ep.db3"
    raw = data.read_bytes()
    # the instruction's CDR (little-endian header, then the string's length: 16 = "open the drawer" + NUL),
    # its length made absurd
    header = b"\x00\x01\x00\x00"
    payload = header + (16).to_bytes(4, "little") + b"open the drawer\x00"
    assert raw.count(payload) == 1
    data.write_bytes(raw.replace(payload, header + (1 << 30).to_bytes(4, "little") + payload[8:]))
    with pytest.raises(CorruptBagError, match="cannot decode std_msgs/msg/String on '/vla/instruction'"):
        read_episode(tmp_path / "ep", typestore=store)


def test_an_error_that_is_not_damage_keeps_its_type(tmp_path, store):
    """Only damage is a CorruptBagError: rosbags wraps every CDR decoding failure in SerdeError, so
    anything else out of the decoder (here a KeyError from a broken typestore) is a bug and says so."""
    _write(tmp_path / "ep", store)

    class BrokenStore:
        def __getattr__(self, name):
            return getattr(store, name)

        def deserialize_cdr(self, raw, typename):
            raise KeyError(f"no decoder for {typename}")

    with pytest.raises(KeyError, match="no decoder for"):
        read_episode(tmp_path / "ep", typestore=BrokenStore())


def test_unfinished_recording_is_reported(tmp_path, store):
    _write(tmp_path / "ep", store)
    (tmp_path / "ep" / "metadata.yaml").unlink()
    with pytest.raises(CorruptBagError, match="metadata.yaml is missing"):
        read_episode(tmp_path / "ep", typestore=store)


def test_missing_topic_names_topic_and_file(tmp_path, store):
    _write(tmp_path / "ep", store, topics=EpisodeTopics(proprio=None))
    with pytest.raises(MissingTopicError) as err:
        read_episode(tmp_path / "ep", typestore=store)
    assert "'/joint_states'" in str(err.value) and str(tmp_path / "ep") in str(err.value)
    # Reading without proprio works: (T, 0) proprio.
    ep = read_episode(tmp_path / "ep", EpisodeTopics(proprio=None), typestore=store)
    assert ep.proprio.shape == (6, 0)


def test_topic_without_messages(tmp_path, store):
    with EpisodeWriter(tmp_path / "ep", task="t", seed=0, typestore=store) as w:
        w.write_instruction("go", T0)
    with pytest.raises(MissingTopicError, match="image topic '/camera/image_raw' has no messages"):
        read_episode(tmp_path / "ep", typestore=store)


def test_wrong_type_names_topic_type_and_file(tmp_path, store):
    # The instruction (std_msgs/String) goes to the topic the reader expects images on.
    _write(tmp_path / "ep", store, topics=EpisodeTopics(image="/other", instruction="/camera/image_raw"))
    with pytest.raises(TopicTypeError) as err:
        read_episode(tmp_path / "ep", typestore=store)
    msg = str(err.value)
    assert "std_msgs/msg/String" in msg and "'/camera/image_raw'" in msg and str(tmp_path / "ep") in msg


def test_not_a_bag(tmp_path, store):
    with pytest.raises(BagNotFoundError):
        read_episode(tmp_path / "nothing", typestore=store)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagNotFoundError, match="no metadata.yaml"):
        read_episode(tmp_path / "empty", typestore=store)
    with pytest.raises(BagNotFoundError):
        find_episodes(tmp_path / "empty")
    assert issubclass(BagNotFoundError, BagError) and issubclass(BagNotFoundError, FileNotFoundError)


def _header(store, ns):
    types = store.types
    return types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9), frame_id="cam")


def test_foreign_bag_with_float_array_actions_aligns_by_time(tmp_path, store):
    """A robot-style bag: no EpisodeStatus, proprio off by 3 ms, plain Float32MultiArray actions."""
    images, proprio, actions = _data(6)
    ty = store.types
    path = tmp_path / "robot"
    with Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3) as w:
        cam = w.add_connection("/cam", "sensor_msgs/msg/Image", typestore=store)
        ins = w.add_connection("/say", "std_msgs/msg/String", typestore=store)
        js = w.add_connection("/js", "sensor_msgs/msg/JointState", typestore=store)
        act = w.add_connection("/cmd", "std_msgs/msg/Float32MultiArray", typestore=store)
        layout = ty["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
        w.write(ins, T0 + DT, store.serialize_cdr(ty["std_msgs/msg/String"](data="wave"), "std_msgs/msg/String"))
        for t in range(6):
            ns = T0 + t * DT
            img = ty["sensor_msgs/msg/Image"](header=_header(store, ns), height=8, width=10, encoding="rgb8",
                                              is_bigendian=0, step=30, data=images[t].reshape(-1))
            w.write(cam, ns, store.serialize_cdr(img, "sensor_msgs/msg/Image"))
            # joint names in another order than requested below
            jmsg = ty["sensor_msgs/msg/JointState"](
                header=_header(store, ns + 3_000_000), name=["gripper", "ee_x", "ee_y", "ee_z"],
                position=proprio[t][[3, 0, 1, 2]].astype(np.float64), velocity=np.zeros(0), effort=np.zeros(0))
            w.write(js, ns + 3_000_000, store.serialize_cdr(jmsg, "sensor_msgs/msg/JointState"))
            if t != 4:  # frame 4 gets no action
                amsg = ty["std_msgs/msg/Float32MultiArray"](layout=layout, data=actions[t])
                w.write(act, ns + 2_000_000, store.serialize_cdr(amsg, "std_msgs/msg/Float32MultiArray"))
    topics = EpisodeTopics(image="/cam", instruction="/say", proprio="/js", action="/cmd", episode=None)
    ep = read_episode(path, topics, typestore=store, proprio_names=("ee_x", "ee_y", "ee_z", "gripper"),
                      proprio_tolerance_ns=5_000_000)
    keep = [1, 2, 3, 5]  # frame 0 precedes the instruction, frame 4 has no action
    assert np.array_equal(ep.images, images[keep])
    assert np.array_equal(ep.proprio, proprio[keep]) and np.array_equal(ep.actions, actions[keep])
    assert ep.instructions == ["wave"] * 4
    assert (ep.task, ep.seed, ep.success) == ("", None, None)
    assert ep.metadata["alignment"]["dropped"] == {"duplicate_stamp": 0, "no_instruction": 1, "no_proprio": 0,
                                                   "no_action": 1}
    with pytest.raises(AlignmentError, match="no frame"):  # 3 ms off, 1 ms tolerance: nothing aligns
        read_episode(path, topics, typestore=store, proprio_tolerance_ns=1_000_000)


def test_find_episodes_directory_glob_and_list(tmp_path, store):
    for name in ["b", "a"]:
        _write(tmp_path / "set" / "task" / name, store, n=4)
    root = tmp_path / "set"
    expected = [root / "task" / "a", root / "task" / "b"]
    assert find_episodes(root) == expected
    assert find_episodes(str(root / "*" / "*")) == expected
    assert find_episodes([root / "task" / "b", root]) == [root / "task" / "b", root / "task" / "a"]
    assert [len(e) for e in read_episodes(root)] == [4, 4]



def test_writer_refuses_existing_bags_and_mismatched_arrays(tmp_path, store):
    from vla_adapter_ros.bags.errors import BagWriteError

    _write(tmp_path / "ep", store, n=4)
    with pytest.raises(BagWriteError, match="exists"):
        EpisodeWriter(tmp_path / "ep", task="t", seed=0, typestore=store).open()
    with EpisodeWriter(tmp_path / "new", task="t", seed=0, typestore=store) as w:
        with pytest.raises(ValueError, match="does not match encoding 'rgb8'"):
            w.write_image(np.zeros((4, 4), np.uint8), T0)
        with pytest.raises(ValueError, match="proprio has 3 values"):
            w.write_proprio(np.zeros(3), T0)
        with pytest.raises(BagWriteError, match="needs an instruction"):
            w.write_step(T0, np.zeros((4, 4, 3), np.uint8), np.zeros(4), np.zeros(4))


def test_action_chunks_longer_than_one_give_their_first_row(tmp_path, store):
    images, proprio, _ = _data(3)
    chunks = np.arange(3 * 2 * 4, dtype=np.float32).reshape(3, 2, 4)  # (T, K=2, A)
    with EpisodeWriter(tmp_path / "ep", task="t", seed=1, typestore=store) as w:
        w.write_instruction("go", T0)
        for t in range(3):
            w.write_image(images[t], T0 + t * DT)
            w.write_proprio(proprio[t], T0 + t * DT)
            w.write_action(chunks[t], T0 + t * DT)
    ep = read_episode(tmp_path / "ep", typestore=store)
    assert np.array_equal(ep.actions, chunks[:, 0]) and ep.success is False and ep.metadata["finished"]
