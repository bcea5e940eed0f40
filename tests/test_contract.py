"""The robot contract: strict loading with errors that name the file and key, round trips, compatibility."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from vla_adapter_ros.contract import ContractError, RobotContract, default_contract

ROOT = Path(__file__).resolve().parents[1]
SAWYER = ROOT / "config" / "robots" / "metaworld_sawyer.yaml"

BASE = {
    "robot": "arm",
    "cameras": {"front": {"topic": "/front/image_raw"}, "wrist": {"topic": "/wrist/image_raw/compressed",
                                                                   "type": "CompressedImage"}},
    "state": {"topic": "/joint_states", "fields": ["position.j1", "position.j2", "velocity.j1"]},
    "actions": [{"name": "j1", "kind": "joint_position", "unit": "rad", "low": -3.0, "high": 3.0,
                 "max_velocity": 2.0},
                {"name": "j2", "kind": "joint_position", "unit": "rad", "low": -2.0, "high": 2.0}],
}


def with_(**changes):
    """BASE with changes at key paths (``cameras__front__topic``; list indexes as numbers; None deletes)."""
    data = yaml.safe_load(yaml.safe_dump(BASE))
    for path, value in changes.items():
        *keys, last = [int(k) if k.isdigit() else k for k in path.split("__")]
        target = data
        for k in keys:
            target = target[k]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return data


def test_the_simulator_contract_loads_and_round_trips():
    c = RobotContract.load(SAWYER)
    assert c.robot == "metaworld_sawyer" and c.camera_names == ("corner", "wrist") and c.reference_camera == "corner"
    assert c.state_names == ("ee_x", "ee_y", "ee_z", "gripper") and c.action_names == ("dx", "dy", "dz", "gripper")
    assert c.camera("wrist").size == (96, 96) and c.control_rate == 80.0 and c.path == SAWYER
    again = RobotContract.from_dict(yaml.safe_load(c.to_yaml()))
    assert again == c and again.mismatches(c) == []


def test_defaults_and_derived_names():
    c = RobotContract.from_dict(BASE)
    assert c.reference_camera == "front" and c.camera("front").reliability == "best_effort"
    assert c.state_names == ("j1", "j2", "velocity.j1") and c.state.max_skew == 0.1
    assert c.actions[1].max_velocity == 0.0 and c.actions[0].unit == "rad"
    assert math.isinf(RobotContract.from_dict(with_(actions=[{"name": "a", "kind": "ee_delta"}])).actions[0].high)


@pytest.mark.parametrize("change, needle", [
    (dict(camras={"x": 1}), "unknown key 'camras'; did you mean 'cameras'?"),
    (dict(cameras__front__topik="/x"), "contract.cameras.front: unknown key 'topik'; did you mean 'topic'?"),
    (dict(cameras__front__type="Depth"), "contract.cameras.front.type: 'Depth' is not one of"),
    (dict(cameras__front__qos={"depth": 0}), "contract.cameras.front.qos.depth: must be >= 1"),
    (dict(cameras__front__size=[96]), "contract.cameras.front.size: expected [height, width]"),
    (dict(cameras__wrist__topic="/front/image_raw"), "two cameras share a topic"),
    (dict(cameras={}), "at least one camera"),
    (dict(cameras={f"c{i}": {"topic": f"/c{i}"} for i in range(5)}), "at most 4 cameras"),
    (dict(cameras__front__topic="not a topic"), "'not a topic' is not a ROS topic name"),
    (dict(reference_camera="top"), "'top' is not one of the cameras ['front', 'wrist']"),
    (dict(state__fields=["position.j1", "pos.j2"]), "contract.state.fields[1]: 'pos.j2' is not an entry of a "
                                                     "JointState"),
    (dict(state__fields=["position.j1", "position.j1"]), "listed twice"),
    (dict(state__type="Float64MultiArray", state__fields=["data.x"]), "the index after 'data.' must be a number"),
    (dict(actions=[]), "at least one action dimension"),
    (dict(actions__0__kind="teleport"), "contract.actions[0].kind: 'teleport' is not one of"),
    (dict(actions__0__low=5.0), "low 5.0 must be below high 3.0"),
    (dict(actions__1__name="j1"), "duplicate action names ['j1']"),
    (dict(actions__0__max_velocity="fast"), "contract.actions[0].max_velocity: expected float, got 'fast'"),
    (dict(robot=None), "contract.robot: required"),
    (dict(version=2), "contract.version: 2 is not supported"),
    (dict(action_source={"topic": "/leader/joint_states", "type": "JointState"}), "needs its entries"),
    (dict(action_source={"topic": "/leader/joint_states", "type": "JointState", "fields": ["position.a"]}),
     "1 entries for 2 actions"),
    (dict(action_source={"topic": "/servo/twist", "type": "TwistStamped", "fields": ["linear.x", "linear.w"]}),
     "'linear.w' is not an entry of a TwistStamped (use linear.<x|y|z> or angular.<x|y|z>)"),
    (dict(action_source={"topic": "/servo/twist", "type": "TwistStamped"}), "a TwistStamped source needs its entries"),
    (dict(action_source={"topic": "/vla/action", "max_skew": 0.1}), "an ActionChunk source is matched without a skew"),
    (dict(action_source={"topic": "/leader/joint_states", "type": "JointState", "max_skew": -1.0,
                         "fields": ["position.j1", "position.j2"]}), "action_source.max_skew: must be >= 0"),
    (dict(outputs=[{"type": "TwistStamped", "topic": "/servo/twist"}]), "needs the frame"),
    (dict(outputs=[{"type": "JointTrajectory", "topic": "/jtc/joint_trajectory", "actions": ["j9"]}]),
     "['j9'] are not action names"),
])
def test_bad_contracts_name_the_key_and_the_problem(change, needle):
    with pytest.raises(ContractError) as err:
        RobotContract.from_dict(with_(**change))
    assert needle in str(err.value)


def test_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "arm.yaml"
    bad.write_text("robot: arm\ncameras:\n  front: {topic: /a}\n  front: {topic: /b}\nactions: []\n")
    with pytest.raises(ContractError, match=r"arm.yaml: duplicate key 'front' \(lines 3 and 4\)"):
        RobotContract.load(bad)
    bad.write_text("robot: [unclosed\n")
    with pytest.raises(ContractError, match="arm.yaml: not valid YAML"):
        RobotContract.load(bad)
    with pytest.raises(ContractError, match="missing.yaml: cannot read"):
        RobotContract.load(tmp_path / "missing.yaml")
    bad.write_text(yaml.safe_dump(with_(camras={})))
    with pytest.raises(ContractError, match="arm.yaml: contract: unknown key 'camras'"):
        RobotContract.load(bad)


def test_leader_arm_and_outputs_are_typed():
    twist = RobotContract.from_dict(with_(action_source={"topic": "/servo/twist", "type": "TwistStamped",
                                                         "fields": ["linear.x", "angular.z"], "max_skew": 0.02}))
    assert [f.name for f in twist.action_source.fields] == ["linear.x", "angular.z"]
    assert twist.action_source.max_skew == 0.02 and RobotContract.from_dict(yaml.safe_load(twist.to_yaml())) == twist
    c = RobotContract.from_dict(with_(
        action_source={"topic": "/leader/joint_states", "type": "JointState", "fields": ["position.j1", "position.j2"]},
        outputs=[{"type": "JointTrajectory", "topic": "/arm/joint_trajectory"},
                 {"type": "TwistStamped", "topic": "/servo/twist", "frame_id": "base_link", "actions": ["j1"]}]))
    assert [f.name for f in c.action_source.fields] == ["position.j1", "position.j2"]
    assert c.action_source.max_skew == 0.1  # the default for a stamped source
    assert c.outputs[0].actions == () and c.outputs[1].frame_id == "base_link"
    assert RobotContract.from_dict(yaml.safe_load(c.to_yaml())) == c


def test_mismatches_name_cameras_state_and_actions():
    model = RobotContract.from_dict(BASE)
    robot = RobotContract.from_dict(with_(cameras={"front": {"topic": "/f"}},
                                          actions=[{"name": "j1", "kind": "joint_position"}]))
    problems = model.mismatches(robot)
    assert any(p.startswith("cameras: the model has ['front', 'wrist']") for p in problems)
    assert any(p.startswith("actions: the model has ['j1', 'j2']") for p in problems)
    assert not any(p.startswith("state") for p in problems)
    sized = RobotContract.from_dict(with_(cameras__front__size=[480, 640]))
    assert "trained on 640x480" in " ".join(with_size(sized).mismatches(with_size(sized, (240, 320))))


def with_size(c: RobotContract, size=(480, 640)) -> RobotContract:
    from dataclasses import replace

    return replace(c, cameras=tuple(replace(cam, size=size) if cam.name == "front" else cam for cam in c.cameras))


def test_the_default_contract_describes_a_single_camera_model():
    c = default_contract(("ee_x", "gripper"), ("dx", "gripper"))
    assert c.camera_names == ("camera",) and c.state_names == ("ee_x", "gripper")
    assert [a.kind for a in c.actions] == ["ee_delta", "gripper"]
    assert default_contract((), ("dx",)).state is None
