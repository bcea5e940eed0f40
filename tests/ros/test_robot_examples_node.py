"""docs/ROBOTS.md's worked examples as a robot engineer does them: the robot's own bags (its topics and
types, as `ros2 bag record` writes them) -> pre-train a tiny backbone and train an adapter through its
contract -> export -> the policy node launched with that contract answers frames published on the robot's
topics with the contract's message types, with actions named as the contract says."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

TESTS = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(TESTS / "core"), str(TESTS / "bags")]

from test_robot_examples import LEADER, SERVO, _train_config, leader_follower_bags, servo_bags  # noqa: E402

from vla_adapter_ros.contract import RobotContract  # noqa: E402
from vla_adapter_ros.ros.harness import NodeProcess, RosSession, node_command, send_until  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]
EXAMPLES = {"arm6_leader_follower": (LEADER, leader_follower_bags, ""),
            "ur_servo_twist": (SERVO, servo_bags, "wipe the table")}


def train_and_export(tmp_path: Path, contract: Path, make_bags, instruction: str) -> Path:
    from vla_adapter_ros.core.export import export_model
    from vla_adapter_ros.core.train import train_from_config

    bags = make_bags(tmp_path / "bags")
    extra = {"instruction": instruction} if instruction else {}
    data = (str(bags / "episode_*"),)
    pre = train_from_config(_train_config(tmp_path, "pre", contract=str(contract), data=data, **extra)).artifact
    adapter = train_from_config(_train_config(tmp_path, "task", regime="adapter", init_checkpoint=str(pre),
                                              adapter_name="task", data=data, **extra)).artifact
    return export_model(pre, [adapter], tmp_path / "model", log=lambda _m: None).out


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_a_node_launched_with_the_robots_contract_answers_on_its_topics(example, ros_env, tmp_path):
    from sensor_msgs.msg import CompressedImage, Image, JointState
    from std_msgs.msg import Header, String

    from vla_adapter_interfaces.msg import ActionChunk
    from vla_adapter_ros.ros import qos
    from vla_adapter_ros.ros.conversions import ns_to_stamp, rgb_to_image_msg, stamp_to_ns

    contract_path, make_bags, instruction = EXAMPLES[example]
    robot = RobotContract.load(contract_path)
    model = train_and_export(tmp_path, contract_path, make_bags, instruction)
    name = f"policy_{example}"
    action_topic = f"/{example}/vla/action"
    node = NodeProcess(node_command("vla_adapter_node", name, {
        "model_dir": str(model), "contract": str(contract_path), "providers": "cpu", "action_topic": action_topic,
        "camera_reliability": "reliable", "camera_depth": 5}), ros_env, tmp_path / "node.log")
    try:
        with RosSession(f"{example}_robot") as s:
            cameras = {c.name: s.node.create_publisher(Image if c.type == "Image" else CompressedImage, c.topic, 10)
                       for c in robot.cameras}
            joints = s.node.create_publisher(JointState, robot.state.topic, 10)
            s.node.create_publisher(String, robot.instruction_topic, qos.instruction_qos()).publish(
                String(data=instruction or "put the cube in the bowl"))
            answers: list = []
            s.subscribe(ActionChunk, action_topic, answers.append, 10)
            for pub in cameras.values():
                s.wait_for_subscribers(pub, 60)

            def send() -> int:
                stamp = s.now_ns()
                header = Header(stamp=ns_to_stamp(stamp))
                joints.publish(JointState(header=header, name=list(reversed(robot.state_names)),
                                          position=[0.1 * i for i in range(len(robot.state_names))]))
                for cam in robot.cameras:
                    rgb = np.full((48, 64, 3), 90, np.uint8)
                    if cam.type == "Image":
                        cameras[cam.name].publish(rgb_to_image_msg(rgb, header))
                    else:
                        ok, jpeg = cv2.imencode(".jpg", rgb)
                        cameras[cam.name].publish(CompressedImage(header=header, format="jpeg", data=jpeg.tobytes()))
                return stamp

            stamp = send_until(send, lambda st: any(stamp_to_ns(a.header.stamp) == st for a in answers), s,
                               timeout=60, interval=0.3, what="a frame set on the robot's topics")
        answer = next(a for a in answers if stamp_to_ns(a.header.stamp) == stamp)
        assert list(answer.action_names) == list(robot.action_names) and answer.adapter == "task"
        assert answer.action_dim == len(robot.actions) and np.all(np.isfinite(answer.actions))
    finally:
        assert node.stop() == 0, node.log()
