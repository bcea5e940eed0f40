"""Message <-> numpy conversions of the policy node (pure functions, no ROS graph)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Header

from vla_adapter_ros.ros import conversions as cv
from vla_adapter_ros.ros.conversions import ConversionError

RNG = np.random.default_rng(0)


def rgb_image(h: int, w: int) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def raw_msg(pixels: np.ndarray, encoding: str, pad: int = 0) -> Image:
    """An Image whose rows carry ``pad`` extra bytes (step > width * channels)."""
    h, w = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    rows = pixels.reshape(h, w * channels)
    padded = np.concatenate([rows, np.full((h, pad), 7, np.uint8)], axis=1) if pad else rows
    return Image(height=h, width=w, encoding=encoding, step=w * channels + pad, data=padded.tobytes())


# --- every encoding, any size, padded rows -------------------------------------
@pytest.mark.parametrize("h,w", [(96, 96), (1, 1), (480, 640), (37, 53)])
@pytest.mark.parametrize("pad", [0, 5])
def test_every_encoding_decodes_to_the_same_rgb(h, w, pad):
    rgb = rgb_image(h, w)
    bgr = rgb[:, :, ::-1]
    alpha = RNG.integers(0, 256, (h, w, 1), dtype=np.uint8)
    cases = {
        "rgb8": rgb, "bgr8": bgr,
        "rgba8": np.concatenate([rgb, alpha], axis=2), "bgra8": np.concatenate([bgr, alpha], axis=2),
    }
    for encoding, pixels in cases.items():
        out = cv.image_msg_to_rgb(raw_msg(np.ascontiguousarray(pixels), encoding, pad))
        assert out.shape == (h, w, 3) and out.dtype == np.uint8, encoding
        np.testing.assert_array_equal(out, rgb, err_msg=encoding)


def test_mono8_is_replicated_to_three_channels_with_padding():
    grey = RNG.integers(0, 256, (20, 30), dtype=np.uint8)
    out = cv.image_msg_to_rgb(raw_msg(grey, "mono8", pad=2))
    assert out.shape == (20, 30, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], grey)


def test_last_row_may_omit_its_padding():
    rgb = rgb_image(4, 5)
    msg = raw_msg(rgb, "rgb8", pad=3)
    msg.data = bytes(msg.data)[:-3]
    np.testing.assert_array_equal(cv.image_msg_to_rgb(msg), rgb)


def test_encoding_is_case_insensitive_and_output_does_not_alias_the_message():
    rgb = rgb_image(8, 8)
    msg = raw_msg(rgb, "RGB8")
    out = cv.image_msg_to_rgb(msg)
    out[:] = 0
    np.testing.assert_array_equal(np.frombuffer(bytes(msg.data), np.uint8).reshape(8, 8, 3), rgb)


@pytest.mark.parametrize("encoding", ["16UC1", "yuv422", "bayer_rggb8", "", "32FC1"])
def test_unsupported_encoding_is_refused_with_the_supported_ones(encoding):
    msg = Image(height=2, width=2, encoding=encoding, step=4, data=bytes(8))
    with pytest.raises(ConversionError) as err:
        cv.image_msg_to_rgb(msg)
    assert err.value.kind == "image_encoding"
    assert repr(encoding) in str(err.value) and "rgb8" in str(err.value)


@pytest.mark.parametrize(
    "change, needle",
    [
        (dict(data=b""), "no data"),
        (dict(data=bytes(10)), "needs"),  # truncated
        (dict(data=bytes(4 * 4 * 3 + 50)), "more than"),  # too long
        (dict(step=5), "smaller than"),  # step < width * channels
        (dict(height=0), "positive"),
        (dict(width=100000, height=100000, step=300000), "limit"),
    ],
)
def test_inconsistent_sizes_are_refused_with_numbers(change, needle):
    msg = raw_msg(rgb_image(4, 4), "rgb8")
    for k, v in change.items():
        setattr(msg, k, v)
    with pytest.raises(ConversionError) as err:
        cv.image_msg_to_rgb(msg)
    assert err.value.kind in ("image_size", "image_empty")
    assert needle in str(err.value)


def test_rgb_to_image_msg_round_trips_through_both_encodings():
    rgb = rgb_image(6, 7)
    header = Header(stamp=Time(sec=3, nanosec=4), frame_id="cam")
    for enc in ("rgb8", "bgr8"):
        msg = cv.rgb_to_image_msg(rgb, header, enc)
        assert msg.header.stamp.sec == 3 and msg.header.frame_id == "cam" and msg.step == 21
        np.testing.assert_array_equal(cv.image_msg_to_rgb(msg), rgb)


# --- compressed ------------------------------------------------------------------
@pytest.mark.parametrize("ext,fmt", [(".png", "png"), (".jpg", "jpeg"), (".png", "rgb8; png compressed bgr8")])
def test_compressed_images_decode_to_rgb(ext, fmt):
    rgb = np.zeros((24, 32, 3), np.uint8)
    rgb[..., 0] = 200  # red
    rgb[:12, :, 2] = 90
    ok, buf = cv2.imencode(ext, rgb[:, :, ::-1])
    assert ok
    out = cv.compressed_msg_to_rgb(CompressedImage(format=fmt, data=buf.tobytes()))
    assert out.shape == (24, 32, 3)
    err = np.abs(out.astype(int) - rgb.astype(int))
    if ext == ".png":
        assert err.max() == 0
    else:  # lossy, and chroma is subsampled at the colour edge: compare on average, and the colour order
        assert err.mean() < 3 and out[20, 5, 0] > 190 and out[20, 5, 2] < 10


@pytest.mark.parametrize(
    "fmt, data, kind",
    [
        ("jpeg", b"", "image_empty"),
        ("jpeg", b"definitely not a jpeg" * 10, "compressed_decode"),
        ("png", b"\x89PNG\r\n\x1a\n" + bytes(40), "compressed_decode"),  # header only
        ("16UC1; compressedDepth", b"\x00" * 20, "compressed_format"),
    ],
)
def test_bad_compressed_payloads_are_refused(fmt, data, kind):
    with pytest.raises(ConversionError) as err:
        cv.compressed_msg_to_rgb(CompressedImage(format=fmt, data=data))
    assert err.value.kind == kind


# --- proprio ---------------------------------------------------------------------
NAMES = ["ee_x", "ee_y", "ee_z", "gripper"]


def test_joint_state_is_mapped_by_name_in_policy_order():
    msg = JointState(name=["gripper", "extra", "ee_z", "ee_y", "ee_x"], position=[0.5, 9.0, 0.3, 0.2, 0.1])
    out = cv.joint_state_to_proprio(msg, NAMES)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.1, 0.2, 0.3, 0.5])


def test_unnamed_joint_state_is_positional_only_with_the_right_length():
    np.testing.assert_allclose(cv.joint_state_to_proprio(JointState(position=[1, 2, 3, 4]), NAMES), [1, 2, 3, 4])
    with pytest.raises(ConversionError) as err:
        cv.joint_state_to_proprio(JointState(position=[1, 2, 3]), NAMES)
    assert err.value.kind == "proprio_length" and "3 positions" in str(err.value)


@pytest.mark.parametrize(
    "msg, kind, needle",
    [
        (JointState(name=["ee_x", "ee_y", "ee_z"], position=[1, 2, 3]), "proprio_missing_joint", "gripper"),
        (JointState(name=["ee_x", "ee_y", "ee_z", "gripper"], position=[1, 2]), "proprio_length", "4 names"),
        (JointState(name=NAMES, position=[1, math.nan, 3, 4]), "proprio_nonfinite", "ee_y"),
        (JointState(name=NAMES, position=[1, 2, math.inf, 4]), "proprio_nonfinite", "ee_z"),
    ],
)
def test_bad_joint_states_are_refused(msg, kind, needle):
    with pytest.raises(ConversionError) as err:
        cv.joint_state_to_proprio(msg, NAMES)
    assert err.value.kind == kind and needle in str(err.value)


# --- actions and diagnostics -------------------------------------------------------
def test_action_chunk_copies_the_header_and_packs_row_major():
    header = Header(stamp=Time(sec=12, nanosec=345), frame_id="wrist_cam")
    actions = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
    msg = cv.action_chunk_msg(header, actions, adapter="pick", instruction="pick it", action_names=NAMES,
                              dt=0.0125, sequence=7, inference_time=0.004, execution_provider="CPUExecutionProvider")
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (12, 345, "wrist_cam")
    assert msg.header is not header
    assert (msg.chunk_length, msg.action_dim, msg.sequence) == (3, 4, 7)
    assert msg.adapter == "pick" and msg.instruction == "pick it" and list(msg.action_names) == NAMES
    assert msg.actions[1 * 4 + 2] == pytest.approx(0.6)
    np.testing.assert_array_equal(cv.action_chunk_to_array(msg), actions)
    first = cv.first_action_msg(actions, NAMES)
    np.testing.assert_allclose(first.data, actions[0])
    assert first.layout.dim[0].size == 4


def test_action_chunk_refuses_inconsistent_shapes():
    with pytest.raises(ConversionError):
        cv.action_chunk_msg(Header(), np.zeros(4), adapter="", instruction="", action_names=NAMES, dt=0, sequence=0,
                            inference_time=0, execution_provider="")
    with pytest.raises(ConversionError):
        cv.action_chunk_msg(Header(), np.zeros((2, 3)), adapter="", instruction="", action_names=NAMES, dt=0,
                            sequence=0, inference_time=0, execution_provider="")


def test_stamp_conversions_round_trip():
    ns = 1_700_000_000_123_456_789
    assert cv.stamp_to_ns(cv.ns_to_stamp(ns)) == ns


def test_diagnostic_status_formats_values_in_order():
    status = cv.diagnostic_status("vla_adapter: policy", "m", "WARN", "hi", {"a": 1.23456, "b": 3, "c": "x"})
    msg = cv.diagnostic_array(Time(sec=1), status)
    assert list(msg.status) == [status] and msg.header.stamp.sec == 1
    assert status.level == DiagnosticStatus.WARN and status.name == "vla_adapter: policy"
    assert cv.diagnostic_level(status) == 1
    assert [kv.key for kv in status.values] == ["a", "b", "c"]
    assert cv.diagnostic_values(status) == {"a": "1.235", "b": "3", "c": "x"}
    with pytest.raises(ValueError):
        cv.diagnostic_status("n", "h", "BAD", "", {})
