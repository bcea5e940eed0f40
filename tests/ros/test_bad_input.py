"""Bad input of every kind docs/ROBUSTNESS.md lists that other tests do not already cover.

Fast pure-function tests first (fuzzing the conversions with hypothesis, the 8K limit, a
corrupted adapter behind the load_adapter service logic), then one integration test that
sends the remaining kinds to the shared serving node in one go and checks, for each, the
diagnostics counter, the throttled log line, that nothing was published from the bad input
and that the next good input is served.
"""

from __future__ import annotations

import math
import os
import shutil
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as hs
from sensor_msgs.msg import CompressedImage, Image, JointState

from vla_adapter_interfaces.srv import ListAdapters, LoadAdapter, SwitchAdapter
from vla_adapter_ros.processing import ENCODING_CHANNELS, MAX_IMAGE_PIXELS, normalize_instruction
from vla_adapter_ros.ros import conversions as cv
from vla_adapter_ros.ros.conversions import ConversionError, stamp_to_ns

pytestmark = pytest.mark.ros
NAMES = ["ee_x", "ee_y", "ee_z", "gripper"]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
U32 = 2**32 - 1


# --- fuzzing the conversions: a refusal is always a ConversionError with a known kind ---------------
@FUZZ
@given(encoding=hs.sampled_from([*ENCODING_CHANNELS, "RGB8", "16UC1", "yuv422", "", "rgb8\x00", "é"]),
       height=hs.one_of(hs.integers(0, 40), hs.integers(0, U32)),
       width=hs.one_of(hs.integers(0, 40), hs.integers(0, U32)),
       step=hs.one_of(hs.integers(0, 200), hs.integers(0, U32)), size=hs.integers(0, 6000))
def test_fuzzed_raw_images_decode_or_are_refused_with_a_kind(encoding, height, width, step, size):
    msg = Image(height=height, width=width, encoding=encoding, step=step, data=bytes(size))
    try:
        rgb = cv.image_msg_to_rgb(msg)
    except ConversionError as exc:
        assert exc.kind in ("image_encoding", "image_empty", "image_size") and str(exc)
        return
    assert rgb.shape == (height, width, 3) and rgb.dtype == np.uint8


@FUZZ
@given(fmt=hs.sampled_from(["jpeg", "png", "rgb8; jpeg compressed bgr8", "16UC1; compressedDepth", "", "bmp"]),
       data=hs.binary(max_size=2000), header=hs.sampled_from([b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM"]))
def test_fuzzed_compressed_payloads_decode_or_are_refused_with_a_kind(fmt, data, header):
    try:
        rgb = cv.compressed_msg_to_rgb(CompressedImage(format=fmt, data=header + data))
    except ConversionError as exc:
        assert exc.kind in ("compressed_format", "compressed_decode", "image_empty", "image_size") and str(exc)
        return
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8


@FUZZ
@given(names=hs.lists(hs.sampled_from([*NAMES, "elbow", ""]), max_size=6),
       values=hs.lists(hs.floats(allow_nan=True, allow_infinity=True, width=64), max_size=6))
@example(names=NAMES, values=[0.0, 0.0, 1e300, 0.0])
def test_fuzzed_joint_states_give_finite_proprio_or_are_refused(names, values):
    try:
        out = cv.joint_state_to_proprio(JointState(name=names, position=values), NAMES)
    except ConversionError as exc:
        assert exc.kind.startswith("proprio_") and str(exc)
        return
    assert out.shape == (4,) and out.dtype == np.float32
    assert np.all(np.isfinite(out))  # also when a finite float64 (1e300) would overflow float32


@FUZZ
@given(text=hs.text(max_size=300))
def test_fuzzed_instructions_normalise_to_stripped_single_spaced_text(text):
    out = normalize_instruction(text)
    assert out == out.strip() and "  " not in out and normalize_instruction(out) == out


def test_8k_is_the_largest_image_served_and_larger_is_refused_before_reading_the_data():
    h, w = 4320, 7680
    assert h * w == MAX_IMAGE_PIXELS
    rgb = cv.image_msg_to_rgb(Image(height=h, width=w, encoding="mono8", step=w, data=bytes(h * w)))
    assert rgb.shape == (h, w, 3)
    with pytest.raises(ConversionError) as err:  # 8 bytes of data: the size alone refuses it
        cv.image_msg_to_rgb(Image(height=h, width=w + 1, encoding="rgb8", step=(w + 1) * 3, data=bytes(8)))
    assert err.value.kind == "image_size" and "pixel limit" in str(err.value)


def test_corrupted_adapter_is_refused_by_checksum_and_the_active_adapter_stays(tiny_model_dir, tmp_path):
    """The load_adapter service's logic (AdapterCommands) over a model whose 'place' file changed on disk."""
    from vla_adapter_ros.ros.adapter_commands import AdapterCommands
    from vla_adapter_ros.runtime.policy import OnnxPolicy

    clone = tmp_path / "model"
    shutil.copytree(tiny_model_dir, clone, copy_function=os.link)
    target = clone / "adapters" / "place.onnx_adapter"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, same size
    target.unlink()  # a new inode: the hard-linked session model stays intact
    target.write_bytes(bytes(data))
    with OnnxPolicy.from_dir(clone, providers=["cpu"], load_adapters=["pick"]) as policy:
        commands = AdapterCommands(policy)
        reply = commands.load("place", activate=True)
        assert not reply.success and "sha256" in reply.message and "place" in reply.message
        assert reply.active_adapter == "pick" == policy.active_adapter and commands.known() == ["pick"]
        switch = commands.switch("place")
        assert not switch.success and "not loaded" in switch.message and policy.active_adapter == "pick"
        assert commands.load("open", activate=True).success  # an intact one still loads


# --- the serving node -------------------------------------------------------------------------
def _stamped(d, msg):
    msg.header.stamp = d.node.get_clock().now().to_msg()
    return msg


def _counters(status: dict, keys) -> dict[str, int]:
    return {k: int(status.get(k, 0)) for k in keys}


def test_remaining_bad_inputs_are_refused_counted_logged_and_survived(shared_policy, tiny_model_dir):
    proc, d = shared_policy
    current = d.status()["instruction"]
    try:
        _send_bad_inputs(proc, d, tiny_model_dir, current)
    finally:  # the node is shared: leave it serving the instruction it had
        d.send_instruction(current)
        d.wait_for(lambda: d.status()["instruction"] == current, 10, "the instruction restored")


def _send_bad_inputs(proc, d, tiny_model_dir, current: str) -> None:
    keys = ("refused.image_size", "refused.image_empty", "refused.instruction_too_long",
            "refused.proprio_missing_joint", "refused.proprio_length", "refused.proprio_nonfinite")
    before = d.status()
    log_before = len(proc.log())
    good = np.full((24, 32, 3), 77, np.uint8)

    def counted(key: str, n: int) -> None:
        d.wait_for(lambda: int(d.status().get(key, 0)) - int(before.get(key, 0)) >= n, 10, f"{key} == {n}")

    def instruction_is(text: str) -> None:
        d.wait_for(lambda: d.status()["instruction"] == text, 10, f"the node holding {text[:40]!r}")

    # images: larger than 8K (refused on its size, 8 bytes of data), zero-size; then a padded good frame
    start = d.action_count()
    for msg, key in ((Image(height=4320, width=7681, encoding="rgb8", step=7681 * 3, data=bytes(8)),
                      "refused.image_size"),
                     (Image(height=0, width=0, encoding="rgb8", step=0, data=b""), "refused.image_empty")):
        d.camera.publish(_stamped(d, msg))
        counted(key, 1)  # one at a time: a frame replaced before the worker takes it is only "skipped"
    padded = np.zeros((24, 32 * 3 + 7), np.uint8)  # rows padded by 7 bytes: step != width * 3
    padded[:, : 32 * 3] = good.reshape(24, -1)
    msg = _stamped(d, Image(height=24, width=32, encoding="rgb8", step=32 * 3 + 7, data=padded.tobytes()))
    d.send_joints(stamp_ns=stamp_to_ns(msg.header.stamp))
    d.camera.publish(msg)
    assert len(d.wait_actions(start + 1)) == start + 1
    assert d.action_count() == start + 1 and int(d.status()["actions_out"]) == int(before["actions_out"]) + 1, \
        "a refused frame was answered"

    # instructions: 100 kB refused (the current one kept), then 100 changes at 100 Hz, then odd content
    d.send_instruction("pick " * 20_000)
    counted("refused.instruction_too_long", 1)
    d.send_frame(good)
    assert d.wait_actions(start + 2)[-1].instruction == current
    t0 = time.monotonic()
    for i in range(100):
        d.send_instruction(f"move to waypoint {i}")
        time.sleep(max(0.0, t0 + (i + 1) * 0.01 - time.monotonic()))  # pacing: 100 Hz
    instruction_is("move to waypoint 99")
    d.send_frame(good)
    assert d.wait_actions(start + 3)[-1].instruction == "move to waypoint 99"
    odd = "  open\tthe \u202edrawer \x1b[31m ☃ שלוש  "  # control chars, bidi override, emoji, RTL
    d.send_instruction(odd)
    instruction_is(normalize_instruction(odd))
    d.send_frame(good)
    assert d.wait_actions(start + 4)[-1].instruction == normalize_instruction(odd)

    # proprio: missing joint, wrong length (named and unnamed), Inf; the last valid one keeps serving
    for msg, key, n in ((JointState(name=NAMES[:3], position=[0.1, 0.2, 0.3]), "refused.proprio_missing_joint", 1),
                        (JointState(name=NAMES, position=[0.1, 0.2]), "refused.proprio_length", 1),
                        (JointState(position=[0.1, 0.2, 0.3]), "refused.proprio_length", 2),
                        (JointState(name=NAMES, position=[0.1, math.inf, 0.3, 0.5]), "refused.proprio_nonfinite", 1),
                        (JointState(name=NAMES, position=[0.1, 0.2, 1e300, 0.5]),  # finite, but inf in float32
                         "refused.proprio_nonfinite", 2)):
        d.joints.publish(msg)
        counted(key, n)  # one at a time: the proprio topic keeps only the newest sample
    d.send_frame(good)
    d.wait_actions(start + 5)

    # services: absolute paths, traversal, home and hidden names; nothing changes. (A NUL never reaches the
    # node: ROS strings end at the first NUL, so 'pick\x00x' arrives as 'pick', a valid name.)
    active = d.call(ListAdapters, "list_adapters", ListAdapters.Request()).active_adapter
    for name in (str(tiny_model_dir / "adapters" / "place.onnx_adapter"), "pick/../place", "../../etc/passwd",
                 "./pick", "~root", ".hidden", "C:\\adapters\\pick", "place.onnx_adapter"):
        s = d.call(SwitchAdapter, "switch_adapter", SwitchAdapter.Request(adapter=name))
        ld = d.call(LoadAdapter, "load_adapter", LoadAdapter.Request(adapter=name, activate=True))
        assert not s.success and not ld.success, name
        assert s.active_adapter == ld.active_adapter == active, name
    d.send_frame(good)
    assert d.wait_actions(start + 6)[-1].adapter == active

    delta = {k: v - _counters(before, keys)[k] for k, v in _counters(d.status(), keys).items()}
    assert delta == {"refused.image_size": 1, "refused.image_empty": 1, "refused.instruction_too_long": 1,
                     "refused.proprio_missing_joint": 1, "refused.proprio_length": 2,
                     "refused.proprio_nonfinite": 2}, delta
    assert proc.proc.poll() is None
    log = proc.log()[log_before:]
    assert "[instruction_too_long]" in log and "(100000 characters)" in log
    assert max(len(line) for line in log.splitlines()) < 1000, "a 100 kB input was echoed into the log"
    assert log.count("[proprio_missing_joint]") <= 1 and log.count("[proprio_length]") <= 1
    changes = log.count("instruction: '")
    assert changes <= 4, f"{changes} log lines for 100 instruction changes in 1 s: not throttled"


# --- bags: a message type this reader has no definition for ------------------------------------
def _bag_with_an_unknown_type(path):
    from vla_adapter_ros.bags.episodes import EpisodeWriter
    from vla_adapter_ros.bags.typestore import make_typestore

    recorder = make_typestore(extra_msgs=[("acme_msgs/msg/Blob", "uint8[] payload\nstring note\n")])
    rng = np.random.default_rng(0)
    with EpisodeWriter(path, task="t", seed=0, typestore=recorder, dt=0.0125) as w:
        for t in range(3):
            w.write_step(1_000_000_000 + t * 12_500_000, rng.integers(0, 256, (8, 8, 3), dtype=np.uint8),
                         np.zeros(4, np.float32), np.zeros(4, np.float32), instruction="go")
        # a robot's own topic recorded alongside (EpisodeWriter has no API for foreign topics)
        conn = w._writer.add_connection("/acme/blob", "acme_msgs/msg/Blob", typestore=recorder)
        blob = recorder.types["acme_msgs/msg/Blob"](payload=np.arange(4, dtype=np.uint8), note="x")
        w._writer.write(conn, 1_000_000_000, recorder.serialize_cdr(blob, "acme_msgs/msg/Blob"))


def test_bag_with_an_unknown_message_type(tmp_path):
    from vla_adapter_ros.bags.episodes import EpisodeTopics, read_episode
    from vla_adapter_ros.bags.errors import TopicTypeError
    from vla_adapter_ros.bags.typestore import make_typestore

    _bag_with_an_unknown_type(tmp_path / "ep")
    reader_store = make_typestore()  # knows nothing of acme_msgs
    assert "acme_msgs/msg/Blob" not in reader_store.types
    ep = read_episode(tmp_path / "ep", typestore=reader_store)  # on a topic the episode does not use: ignored
    assert ep.images.shape == (3, 8, 8, 3)
    with pytest.raises(TopicTypeError) as err:  # on a topic it does use: refused, naming topic, type and file
        read_episode(tmp_path / "ep", EpisodeTopics(action="/acme/blob"), typestore=reader_store)
    assert "acme_msgs/msg/Blob" in str(err.value) and "'/acme/blob'" in str(err.value)
    assert str(tmp_path / "ep") in str(err.value)
