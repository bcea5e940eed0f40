"""The policy node's parameters (ROS-free): validation, derived values, mutability."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vla_adapter_ros.ros import params
from vla_adapter_ros.ros.params import PolicyNodeConfig


# --- config ---------------------------------------------------------------------
def test_params_module_and_config_are_ros_free():
    code = ("import sys; from vla_adapter_ros.ros.params import PolicyNodeConfig; PolicyNodeConfig(); "
            "print('rclpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "change, needle",
    [
        (dict(camera_reliability="sometimes"), "'sometimes'"),
        (dict(camera_depth=-1), "camera_depth must be in [0, 100], got -1"),
        (dict(max_image_age=-1.0), "-1.0"),
        (dict(max_rate=float("nan")), "finite"),
        (dict(camera_topic="not a topic"), "'not a topic'"),
        (dict(action_topic=""), "action_topic ''"),
        (dict(providers="cuda,,cpu"), "bad provider"),
        (dict(adapter="../x"), "looks like a path"),
        (dict(autostart="yes"), "autostart must be bool, got 'yes'"),
        (dict(latency_window=1.5), "latency_window must be int"),
        (dict(serving="fast"), "serving must be one of ['auto', 'plain', 'iobinding', 'cuda_graph'], got 'fast'"),
        (dict(trt_max_batch=0), "trt_max_batch must be in [1, 1024], got 0"),
        (dict(device_id=-1), "device_id must be in [0, 64], got -1"),
        (dict(fp16="yes"), "fp16 must be bool, got 'yes'"),
        (dict(engine_cache_dir="   "), "engine_cache_dir '   ' is blank"),
    ],
)
def test_bad_values_are_refused_quoting_the_value(change, needle):
    with pytest.raises(ValueError) as err:
        PolicyNodeConfig(**change)
    assert needle in str(err.value)


def test_derived_values():
    cfg = PolicyNodeConfig(providers=" cuda, cpu ", proprio_joint_names="a,b", use_compressed=True,
                           camera_topic="/cam/image_raw", max_rate=5)
    assert cfg.provider_list == ["cuda", "cpu"] and cfg.joint_name_list == ["a", "b"]
    assert cfg.max_rate == 5.0 and isinstance(cfg.max_rate, float)
    assert PolicyNodeConfig().provider_list == [] and PolicyNodeConfig(proprio_topic="").proprio_topic == ""


def test_check_update_honours_mutability():
    cfg = PolicyNodeConfig()
    assert cfg.update({"max_rate": 10.0}, unconfigured=False).max_rate == 10.0
    with pytest.raises(ValueError, match="read-only"):
        cfg.update({"action_topic": "/x"}, unconfigured=True)
    assert cfg.update({"camera_topic": "/x"}, unconfigured=True).camera_topic == "/x"  # read at configure
    with pytest.raises(ValueError, match="only while the node is unconfigured"):
        cfg.update({"model_dir": "/m"}, unconfigured=False)
    assert cfg.update({"model_dir": "/m"}, unconfigured=True).model_dir == "/m"
    with pytest.raises(ValueError, match="max_image_age"):
        cfg.update({"max_image_age": -2.0}, unconfigured=False)
    with pytest.raises(ValueError, match="unknown parameter"):
        cfg.update({"nope": 1}, unconfigured=True)


def test_every_field_has_a_description_and_mutability():
    for name, f in PolicyNodeConfig.field_info().items():
        assert f.metadata["description"], name
        assert f.metadata["mutability"] in (params.READ_ONLY, params.CONFIGURE, params.RUNTIME), name


# --- the robot the node serves ---------------------------------------------------------
def test_without_a_contract_file_the_models_contract_serves_with_single_camera_overrides():
    from vla_adapter_ros.contract import default_contract

    model = default_contract(("ee_x", "gripper"), ("dx", "gripper"))
    assert PolicyNodeConfig().robot_contract(model) == model  # nothing overridden
    robot = PolicyNodeConfig(camera_topic="/wrist/image_raw", use_compressed=True, camera_reliability="reliable",
                             camera_depth=3, proprio_topic="/arm/joint_states", proprio_joint_names="j1,j2",
                             max_state_skew=0.02).robot_contract(model)
    cam = robot.cameras[0]
    assert (cam.name, cam.topic, cam.type, cam.reliability, cam.depth) == (
        "camera", "/wrist/image_raw/compressed", "CompressedImage", "reliable", 3)
    assert robot.state.topic == "/arm/joint_states" and robot.state.max_skew == 0.02
    assert [f.name for f in robot.state.fields] == ["position.j1", "position.j2"]


def test_camera_overrides_are_refused_for_a_multi_camera_robot():
    from vla_adapter_ros.contract import RobotContract

    sawyer = RobotContract.load(PolicyNodeConfig.defaults_file().parent / "robots" / "metaworld_sawyer.yaml")
    assert PolicyNodeConfig().robot_contract(sawyer).camera_names == ("corner", "wrist")
    with pytest.raises(ValueError, match=r"\['camera_topic'\] apply to a single camera"):
        PolicyNodeConfig(camera_topic="/cam").robot_contract(sawyer)
    qos = PolicyNodeConfig(camera_reliability="reliable", camera_depth=2).robot_contract(sawyer)
    assert {(c.reliability, c.depth) for c in qos.cameras} == {("reliable", 2)}  # QoS applies to every camera


def test_a_contract_file_replaces_the_models_and_a_bad_one_names_the_file(tmp_path):
    from vla_adapter_ros.contract import ContractError, default_contract

    model = default_contract(("ee_x",), ("dx",))
    robot = PolicyNodeConfig(contract=str(PolicyNodeConfig.defaults_file().parent / "robots" /
                                          "metaworld_sawyer.yaml")).robot_contract(model)
    assert robot.robot == "metaworld_sawyer" and model.mismatches(robot)
    bad = tmp_path / "robot.yaml"
    bad.write_text("robot: arm\ncamras: {}\n")
    with pytest.raises(ContractError, match="robot.yaml: contract: unknown key 'camras'"):
        PolicyNodeConfig(contract=str(bad)).robot_contract(model)
