"""decoding: the one decoding path of the node and the bag reader, on rosbags' message objects (the node's
rclpy objects: tests/ros/test_conversions.py), with the contract's entry selection and the node's error kinds."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from vla_adapter_ros import decoding
from vla_adapter_ros.bags.typestore import make_typestore
from vla_adapter_ros.contract import RobotContract, StateField
from vla_adapter_ros.decoding import DecodeError

STORE = make_typestore()
TY = STORE.types
RGB = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)


def hdr():
    return TY["std_msgs/msg/Header"](stamp=TY["builtin_interfaces/msg/Time"](sec=1, nanosec=2), frame_id="")


def fields(*names: str) -> tuple[StateField, ...]:
    return tuple(StateField(*n.split(".", 1)) for n in names)


def joint_state(names, position, velocity=(), effort=()):
    return TY["sensor_msgs/msg/JointState"](header=hdr(), name=list(names), position=np.asarray(position, float),
                                            velocity=np.asarray(velocity, float), effort=np.asarray(effort, float))


def multi_array(values, dims=(), kind="std_msgs/msg/Float64MultiArray"):
    layout = TY["std_msgs/msg/MultiArrayLayout"](
        dim=[TY["std_msgs/msg/MultiArrayDimension"](label="", size=d, stride=0) for d in dims], data_offset=0)
    return TY[kind](layout=layout, data=np.asarray(values, np.float64 if "64" in kind else np.float32))


def test_decoding_imports_neither_rclpy_nor_torch():
    code = "import sys, vla_adapter_ros.decoding; print(sorted(k for k in ('rclpy', 'torch') if k in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_rosbags_images_decode_like_rclpy_ones(encoding):
    pixels = RGB if encoding == "rgb8" else RGB[..., ::-1]
    msg = TY["sensor_msgs/msg/Image"](header=hdr(), height=6, width=5, encoding=encoding,
                                      is_bigendian=0, step=15, data=np.ascontiguousarray(pixels).reshape(-1))
    assert np.array_equal(decoding.camera_msg_to_rgb(msg, "Image"), RGB)
    msg.encoding = "yuv422"
    with pytest.raises(DecodeError) as err:
        decoding.camera_msg_to_rgb(msg, "Image")
    assert err.value.kind == "image_encoding" and "'yuv422'" in str(err.value)


def test_compressed_images_and_unknown_camera_types():
    import cv2

    ok, png = cv2.imencode(".png", RGB[..., ::-1])
    msg = TY["sensor_msgs/msg/CompressedImage"](header=hdr(), format="png", data=png.reshape(-1))
    assert np.array_equal(decoding.camera_msg_to_rgb(msg, "CompressedImage"), RGB)
    msg.data = np.frombuffer(b"not a png" * 4, np.uint8)
    with pytest.raises(DecodeError) as err:
        decoding.camera_msg_to_rgb(msg, "CompressedImage")
    assert err.value.kind == "compressed_decode"
    with pytest.raises(DecodeError, match="'DepthImage' is not Image or CompressedImage"):
        decoding.camera_msg_to_rgb(msg, "DepthImage")


def test_joint_state_entries_by_name_across_position_velocity_and_effort():
    msg = joint_state(["b", "a"], [2.0, 1.0], velocity=[20.0, 10.0], effort=[200.0, 100.0])
    out = decoding.state_vector(msg, "JointState", fields("position.a", "velocity.b", "effort.a", "position.b"))
    assert out.dtype == np.float32 and out.tolist() == [1.0, 20.0, 100.0, 2.0]
    # positions only: an empty velocity array is fine (most drivers publish none)
    assert decoding.joint_state_to_proprio(joint_state(["b", "a"], [2, 1]), ["a", "b"]).tolist() == [1, 2]


@pytest.mark.parametrize("msg, entries, kind, needle", [
    (joint_state(["a"], [1.0]), ("position.a", "velocity.a"), "proprio_length", "1 names but 0 velocities"),
    (joint_state(["a"], [1.0]), ("position.a", "position.z"), "proprio_missing_joint", "lacks joint(s) ['z']"),
    (joint_state([], [1.0, 2.0]), ("position.a", "velocity.b"), "proprio_length", "no names"),
    (joint_state(["a"], [math.nan]), ("position.a",), "proprio_nonfinite", "['a']"),
    (joint_state(["a"], [1e300]), ("position.a",), "proprio_nonfinite", "not finite in float32"),
])
def test_bad_joint_states_keep_the_nodes_kinds(msg, entries, kind, needle):
    with pytest.raises(DecodeError) as err:
        decoding.state_vector(msg, "JointState", fields(*entries))
    assert err.value.kind == kind and needle in str(err.value)


def test_unnamed_joint_state_is_positional():
    assert decoding.state_vector(joint_state([], [3, 4]), "JointState", fields("position.x", "position.y")).tolist() \
        == [3, 4]


@pytest.mark.parametrize("kind", ["std_msgs/msg/Float64MultiArray", "std_msgs/msg/Float32MultiArray"])
def test_multi_array_state_by_index(kind):
    short = kind.rsplit("/", 1)[1]
    msg = multi_array([0.5, 1.5, 2.5], kind=kind)
    assert decoding.state_vector(msg, short, fields("data.2", "data.0")).tolist() == [2.5, 0.5]
    with pytest.raises(DecodeError) as err:
        decoding.state_vector(msg, short, fields("data.3"))
    assert err.value.kind == "proprio_length" and "['data.3'] lie beyond" in str(err.value)
    with pytest.raises(DecodeError) as err:
        decoding.state_vector(multi_array([math.inf]), "Float64MultiArray", fields("data.0"))
    assert err.value.kind == "proprio_nonfinite"
    with pytest.raises(DecodeError) as err:
        decoding.state_vector(msg, short, ())
    assert err.value.kind == "proprio_config"


def test_recorded_actions_of_every_source_type():
    chunk = TY["vla_adapter_interfaces/msg/ActionChunk"](
        header=hdr(), adapter="", instruction="", action_names=["a", "b"], chunk_length=2,
        action_dim=2, dt=0.1, actions=np.asarray([1, 2, 3, 4], np.float32), sequence=0, inference_time=0.0,
        execution_provider="")
    assert decoding.action_vector(chunk, "ActionChunk").tolist() == [1, 2]
    assert decoding.action_chunk_to_array(chunk).shape == (2, 2)
    chunk.chunk_length = 3
    with pytest.raises(DecodeError) as err:
        decoding.action_vector(chunk, "ActionChunk")
    assert err.value.kind == "action_shape"
    # a (K, A) MultiArray gives its first row; fields index the data as published
    assert decoding.action_vector(multi_array([1, 2, 3, 4, 5, 6], dims=(2, 3)), "Float64MultiArray").tolist() == [1, 2, 3]
    assert decoding.action_vector(multi_array([1, 2, 3]), "Float64MultiArray", fields("data.2")).tolist() == [3]
    leader = joint_state(["j2", "j1"], [0.2, 0.1])
    assert decoding.action_vector(leader, "JointState", fields("position.j1", "position.j2")).tolist() == \
        pytest.approx([0.1, 0.2])
    with pytest.raises(DecodeError) as err:
        decoding.action_vector(leader, "JointState", fields("position.j3"))
    assert err.value.kind == "action_missing_joint"
    vec = TY["geometry_msgs/msg/Vector3"]
    twist = TY["geometry_msgs/msg/TwistStamped"](header=hdr(),
                                                 twist=TY["geometry_msgs/msg/Twist"](linear=vec(1, 2, 3),
                                                                                     angular=vec(4, 5, 6)))
    assert decoding.action_vector(twist, "TwistStamped", fields("angular.z", "linear.x")).tolist() == [6, 1]
    with pytest.raises(DecodeError, match="needs its entries"):
        decoding.action_vector(twist, "TwistStamped")
    with pytest.raises(DecodeError) as err:
        decoding.action_vector(multi_array([math.nan]), "Float64MultiArray")
    assert err.value.kind == "action_nonfinite"


def test_contract_entries_drive_the_decoder():
    contract = RobotContract.from_dict({
        "robot": "r", "cameras": {"c": {"topic": "/c"}},
        "state": {"topic": "/s", "type": "Float32MultiArray", "fields": ["data.1"]},
        "actions": [{"name": "vx", "kind": "ee_velocity"}],
        "action_source": {"topic": "/t", "type": "TwistStamped", "fields": ["linear.x"]}})
    src = contract.action_source
    vec = TY["geometry_msgs/msg/Vector3"]
    twist = TY["geometry_msgs/msg/TwistStamped"](header=hdr(),
                                                 twist=TY["geometry_msgs/msg/Twist"](linear=vec(7, 0, 0),
                                                                                     angular=vec(0, 0, 0)))
    assert decoding.action_vector(twist, src.type, src.fields).tolist() == [7]
    state = multi_array([0, 9], kind="std_msgs/msg/Float32MultiArray")
    assert decoding.state_vector(state, contract.state.type, contract.state.fields).tolist() == [9]
