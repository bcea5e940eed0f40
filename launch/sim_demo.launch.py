"""The simulator bridge and the policy node, wired as in ``make demo``.

    ros2 launch vla_adapter_ros sim_demo.launch.py
    ros2 launch vla_adapter_ros sim_demo.launch.py model_dir:=/data/my_model task:=faucet-open-v3

Starts ``vla_adapter_sim`` (Meta-World in lockstep: it steps when the action for its last
frame arrives and re-sends an unanswered frame, so episodes are deterministic) and
``vla_adapter_node`` with the parameters of ``config/sim_demo.yaml``, the file ``vla-adapter demo``
reads too. Then drive episodes with the ``/vla_adapter_sim/reset`` service (ResetEpisode: task +
seed + optional request_id that makes resends safe; the reply suggests an instruction) or
``vla-adapter reset-sim``, ``vla-adapter send-instruction`` and ``vla-adapter switch``. Standard
launch / launch_ros API only (Humble, Jazzy, Kilted).
"""

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "vla_adapter_ros"


def generate_launch_description():
    demo_params = PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "sim_demo.yaml"])
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
            parameters=[demo_params, {"task": LaunchConfiguration("task")}],
        ),
        Node(
            package=PACKAGE,
            executable="vla_adapter_node",
            name="vla_adapter",
            output="screen",
            parameters=[demo_params, {"model_dir": LaunchConfiguration("model_dir")}],
        ),
    ])
