"""The simulator bridge and the policy node, wired as in ``make demo``.

    ros2 launch vla_adapter_ros sim_demo.launch.py
    ros2 launch vla_adapter_ros sim_demo.launch.py model_dir:=/data/my_model task:=faucet-open-v3

Starts ``vla_adapter_sim`` (Meta-World in lockstep: it steps when the action for its last
frame arrives, so episodes are deterministic) and ``vla_adapter_node`` with the parameters
``vla_adapter_ros.ros.demo`` uses (SIM_PARAMETERS / POLICY_PARAMETERS; tests/ros/test_demo.py
checks that they agree). Then drive episodes with the ``/vla_adapter_sim/reset`` service
(ResetEpisode: task + seed + optional request_id that makes resends safe; the reply suggests
an instruction) or ``vla-adapter reset-sim``, ``vla-adapter send-instruction`` and
``vla-adapter switch``. Standard launch / launch_ros API only (Humble, Jazzy, Kilted).
"""

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

PACKAGE = "vla_adapter_ros"


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("model_dir", default_value="",
                              description="exported model directory (empty: the bundled models/default)"),
        DeclareLaunchArgument("task", default_value="coffee-button-v3",
                              description="Meta-World task of the simulator (reset can change it)"),
        Node(
            package=PACKAGE,
            executable="vla_adapter_sim",
            name="vla_adapter_sim",
            output="screen",
            parameters=[{
                "task": LaunchConfiguration("task"),
                "mode": "lockstep",
                "autostart": False,
                "actions_per_chunk": 0,
                "image_size": 96,
                "action_timeout": 2.0,
                "end_on_success": True,
            }],
        ),
        Node(
            package=PACKAGE,
            executable="vla_adapter_node",
            name="vla_adapter",
            output="screen",
            parameters=[{
                "model_dir": LaunchConfiguration("model_dir"),
                "providers": "cpu",
                "intra_op_threads": 1,
                "camera_reliability": "reliable",
                "camera_depth": 1,
            }],
        ),
    ])
