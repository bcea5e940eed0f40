"""Two-camera robots end to end over loopback DDS: the simulator bridge publishing a contract's cameras,
the policy node pairing them into frame sets and serving a two-camera model, contract mismatches refused
at configure, a silent camera reported. The model is a tiny random two-camera model exported with the
simulator's contract (config/robots/metaworld_sawyer.yaml, topics prefixed per test)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from vla_adapter_ros.contract import RobotContract
from vla_adapter_ros.ros.conversions import stamp_to_ns
from vla_adapter_ros.ros.demo import POLICY_EXECUTABLE, SIM_EXECUTABLE, DemoDriver, demo_parameters
from vla_adapter_ros.ros.harness import NodeProcess, node_command

pytestmark = pytest.mark.ros
SAWYER = Path(__file__).resolve().parents[2] / "config" / "robots" / "metaworld_sawyer.yaml"
TASK = "coffee-button-v3"


def prefixed_contract(path: Path, prefix: str) -> Path:
    """The simulator's contract with every topic under ``prefix`` (tests in one domain never cross)."""
    data = yaml.safe_load(SAWYER.read_text())
    for cam in data["cameras"].values():
        cam["topic"] = prefix + cam["topic"]
    data["state"]["topic"] = prefix + data["state"]["topic"]
    data["instruction_topic"] = prefix + data["instruction_topic"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def two_camera_model(tmp_path_factory) -> Path:
    from vla_adapter_ros.core.config import AdapterConfig, ModelConfig
    from vla_adapter_ros.core.export import export_model, make_random_checkpoint

    root = tmp_path_factory.mktemp("two_camera_model")
    config = ModelConfig(image_size=32, patch_size=8, d_model=32, vision_layers=1, fusion_layers=1, n_heads=2,
                         mlp_ratio=2, chunk_length=3, cameras=("corner", "wrist"))
    checkpoint, adapters = make_random_checkpoint(root / "src", config, {"pick": AdapterConfig(rank=4)}, seed=3)
    (checkpoint / "contract.yaml").write_text(SAWYER.read_text())
    return export_model(checkpoint, adapters, root / "model", log=lambda _m: None).out


def start(env, log_dir: Path, executable: str, name: str, **params) -> NodeProcess:
    return NodeProcess(node_command(executable, name, params), env, log_dir / f"{name}.log")


def test_the_simulator_and_the_node_serve_a_two_camera_robot_in_lockstep(ros_env, two_camera_model, tmp_path):
    prefix = f"/mc{os.getpid()}"
    contract = prefixed_contract(tmp_path / "sawyer.yaml", prefix)
    robot = RobotContract.load(contract)
    sim_name, policy_name = f"sim_mc{os.getpid()}", f"policy_mc{os.getpid()}"
    sim = start(ros_env, tmp_path, SIM_EXECUTABLE, sim_name, **demo_parameters("vla_adapter_sim"), task=TASK,
                max_steps=12, contract=str(contract), action_topic=f"{prefix}/vla/action",
                status_topic=f"{prefix}/vla/episode")
    policy = start(ros_env, tmp_path, POLICY_EXECUTABLE, policy_name, **demo_parameters("vla_adapter"),
                   model_dir=str(two_camera_model), contract=str(contract), instruction_topic=robot.instruction_topic,
                   action_topic=f"{prefix}/vla/action")
    driver = DemoDriver(sim_name, policy_name, instruction_topic=robot.instruction_topic,
                        action_topic=f"{prefix}/vla/action", status_topic=f"{prefix}/vla/episode")
    frames: dict[str, list] = {"corner": [], "wrist": []}
    from sensor_msgs.msg import Image

    from vla_adapter_interfaces.msg import ActionChunk
    for cam in robot.cameras:
        driver.session.subscribe(Image, cam.topic, frames[cam.name].append, 100)
    chunks: list = []
    driver.session.subscribe(ActionChunk, f"{prefix}/vla/action", chunks.append, 100)
    try:
        assert driver.list_adapters(timeout=60).adapters
        runs = [driver.run_episode(TASK, 100000, timeout=120) for _ in range(2)]
        status = driver.policy_status()
    finally:
        driver.close()
        sim_code, policy_code = sim.stop(), policy.stop()
    assert sim_code == 0 and policy_code == 0, sim.log() + policy.log()
    first, second = runs
    assert first.steps == 12 and first.end_reason == "step_limit" and len(first.chunks) == 4
    assert first.chunks == second.chunks  # lockstep: the same seed gives the same actions
    # every frame set: both views with one stamp; each view rendered by its own camera
    corner = {stamp_to_ns(m.header.stamp): m for m in frames["corner"]}
    wrist = {stamp_to_ns(m.header.stamp): m for m in frames["wrist"]}
    assert set(corner) == set(wrist) and len(corner) >= 8
    stamp = min(corner)
    a, b = (np.frombuffer(bytes(m.data), np.uint8).reshape(96, 96, 3) for m in (corner[stamp], wrist[stamp]))
    assert a.std() > 5 and b.std() > 5 and np.abs(a.astype(int) - b).mean() > 10  # two different views
    assert (corner[stamp].header.frame_id, wrist[stamp].header.frame_id) == ("corner", "wrist")
    # the chunk carries the reference camera's header
    assert {c.header.frame_id for c in chunks} == {"corner"} and {stamp_to_ns(c.header.stamp) for c in chunks} <= set(corner)
    assert int(status["unpaired_frames"]) == 0
    assert 0 < float(status["pairing_p50_ms"]) < 1000  # the node times each set's hand-over (bench_ros.py reads it)
    assert f"{prefix}/camera/wrist/image_raw (Image)" in status["camera.wrist"]


def test_a_model_and_robot_contract_that_disagree_are_refused_at_configure(ros_env, two_camera_model, tmp_path):
    one_camera = tmp_path / "one_camera.yaml"
    data = yaml.safe_load(SAWYER.read_text())
    del data["cameras"]["wrist"]
    one_camera.write_text(yaml.safe_dump(data))
    policy = start(ros_env, tmp_path, POLICY_EXECUTABLE, f"policy_mismatch{os.getpid()}",
                   model_dir=str(two_camera_model), contract=str(one_camera), providers="cpu")
    assert policy.proc.wait(timeout=60) == 1
    log = policy.log()
    assert "configure failed" in log and re.search(r"cameras: the model has \['corner', 'wrist'\], the robot "
                                                   r"'metaworld_sawyer' has \['corner'\]", log), log


def test_a_silent_camera_means_no_frame_sets_and_a_warning_naming_it(ros_env, two_camera_model, tmp_path):
    from vla_adapter_ros.ros.harness import RosSession, send_until, wait_for_lifecycle_state

    prefix = f"/silent{os.getpid()}"
    contract = prefixed_contract(tmp_path / "sawyer.yaml", prefix)
    robot = RobotContract.load(contract)
    name = f"policy_silent{os.getpid()}"
    policy = start(ros_env, tmp_path, POLICY_EXECUTABLE, name, **demo_parameters("vla_adapter"),
                   model_dir=str(two_camera_model), contract=str(contract), diagnostics_period=0.2,
                   instruction_topic=robot.instruction_topic, action_topic=f"{prefix}/vla/action")
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Header, String

    from vla_adapter_interfaces.msg import ActionChunk
    from vla_adapter_interfaces.srv import GetStatus
    from vla_adapter_ros.ros import qos
    from vla_adapter_ros.ros.conversions import diagnostic_values, ns_to_stamp, rgb_to_image_msg
    try:
        with RosSession("silent_camera_driver") as s:
            wait_for_lifecycle_state(s, name, "active", 60, alive=lambda: policy.alive())
            corner = s.node.create_publisher(Image, robot.camera("corner").topic,
                                             QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
            joints = s.node.create_publisher(JointState, robot.state.topic, 10)
            s.node.create_publisher(String, robot.instruction_topic, qos.instruction_qos()).publish(String(data="go"))
            answers: list = []
            s.subscribe(ActionChunk, f"{prefix}/vla/action", answers.append, 10)
            s.wait_for_subscribers(corner, 30)

            def status() -> dict:
                st = s.call(GetStatus, f"/{name}/get_status", GetStatus.Request()).status
                return {"message": st.message, **diagnostic_values(st)}

            def send() -> None:
                header = Header(stamp=ns_to_stamp(s.now_ns()))
                joints.publish(JointState(header=header, name=["ee_x", "ee_y", "ee_z", "gripper"],
                                          position=[0.0, 0.6, 0.2, 0.0]))
                corner.publish(rgb_to_image_msg(np.zeros((96, 96, 3), np.uint8), header))

            # the wrist camera never publishes: corner frames pile up unpaired, nothing is served
            def warned(_token) -> bool:  # (a camera keeps 8 frames waiting for partners, then counts them)
                now = status()
                return "['wrist']" in now["message"] and int(now["unpaired_frames"]) > 0

            send_until(send, warned, s, timeout=30, interval=0.1, what="the silent-camera warning")
            final = status()
            assert "camera(s) ['wrist'] sent no frame recently" in final["message"]
            assert "last frame never" in final["camera.wrist"] and int(final["unpaired_frames"]) > 0
            assert answers == [] and int(final["actions_out"]) == 0
    finally:
        assert policy.stop() == 0, policy.log()


def test_a_two_camera_bag_replays_deterministically_on_its_contracts_topics(ros_env, two_camera_model, tmp_path):
    import subprocess
    import sys

    from vla_adapter_ros.bags.episodes import read_episode
    from vla_adapter_ros.bags.reader import stored_contract
    from vla_adapter_ros.core.record import record

    prefix = f"/rp{os.getpid()}"
    contract = prefixed_contract(tmp_path / "sawyer.yaml", prefix)
    robot = RobotContract.load(contract)
    (summary,) = record([TASK], 1, 7, tmp_path / "bags", max_steps=15, progress=False, contract=robot)
    ep = read_episode(summary.path, contract=robot)
    assert ep.cameras == ("corner", "wrist") and len(ep) == 15
    name = f"policy_rp{os.getpid()}"
    action_topic = f"{prefix}/vla/action"
    policy = start(ros_env, tmp_path, POLICY_EXECUTABLE, name, **demo_parameters("vla_adapter"),
                   model_dir=str(two_camera_model), contract=str(contract), instruction_topic=robot.instruction_topic,
                   action_topic=action_topic)

    def replay(*args: object) -> subprocess.CompletedProcess:  # the bag's stored contract names the topics
        return subprocess.run([sys.executable, "-m", "vla_adapter_ros.cli", "replay", str(summary.path),
                               "--action-topic", action_topic, "--timeout", "60", *map(str, args)],
                              env=ros_env, capture_output=True, text=True, timeout=300)
    try:
        first = replay("--out", tmp_path / "run1")
        assert first.returncode == 0, first.stdout + first.stderr + policy.log()
        assert "15/15" in first.stdout
        second = replay("--golden", tmp_path / "run1", "--tolerance", 0)
        assert second.returncode == 0 and "0.00e+00" in second.stdout, second.stdout + second.stderr
        out_path = tmp_path / "run1" / summary.path.name
        out = read_episode(out_path, contract=stored_contract(out_path))  # the output bag carries the contract too
        assert out.cameras == ("corner", "wrist") and len(out) == 15
        np.testing.assert_array_equal(out.views["wrist"], ep.views["wrist"])
    finally:
        assert policy.stop() == 0, policy.log()
