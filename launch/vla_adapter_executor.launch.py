"""Start the action executor (vla_adapter_executor) with its parameter file.

    ros2 launch vla_adapter_ros vla_adapter_executor.launch.py
    ros2 launch vla_adapter_ros vla_adapter_executor.launch.py contract:=/robots/my_arm.yaml \
        strategy:=blend control_rate:=200.0 start_enabled:=true

Parameters come from ``params_file`` (default: the installed config/vla_adapter_executor.yaml); a
launch argument left empty keeps the file's value. The node starts *disabled* unless
``start_enabled:=true``: enable it with ``ros2 service call /vla_adapter_executor/enable
std_srvs/srv/SetBool "{data: true}"``, stop it with ``ros2 service call /vla_adapter_executor/stop
std_srvs/srv/Trigger``. What it publishes, and where, is the contract's ``outputs`` section (README
"Driving a controller"). Standard launch / launch_ros API only (Humble, Jazzy, Kilted);
tests/ros/test_launch_static.py checks this file against setup.py and the node's parameters.
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "vla_adapter_ros"
# Launch arguments forwarded as node parameters of the same name when not empty (strings unless listed).
PARAMETER_ARGUMENTS = ("contract", "strategy", "interpolation", "control_rate", "start_enabled", "chunk_topic")
FLOAT_ARGUMENTS = ("control_rate",)
BOOLEAN_ARGUMENTS = ("start_enabled",)


def _typed(name, text):
    if name in BOOLEAN_ARGUMENTS:
        if text.lower() not in ("true", "false"):
            raise ValueError(f"launch argument {name} must be true or false, got {text!r}")
        return text.lower() == "true"
    if name in FLOAT_ARGUMENTS:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"launch argument {name} must be a number, got {text!r}") from None
    return text


def _executor_node(context, *args, **kwargs):
    given = {name: LaunchConfiguration(name).perform(context).strip() for name in PARAMETER_ARGUMENTS}
    overrides = {name: _typed(name, text) for name, text in given.items() if text}
    return [Node(package=PACKAGE, executable="vla_adapter_executor", name="vla_adapter_executor", output="screen",
                 emulate_tty=True, parameters=[LaunchConfiguration("params_file"), overrides])]


def generate_launch_description():
    default_params = PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "vla_adapter_executor.yaml"])
    return LaunchDescription([
        DeclareLaunchArgument("contract", default_value="",
                              description="robot contract YAML (empty: params_file, else the Meta-World Sawyer's)"),
        DeclareLaunchArgument("strategy", default_value="", choices=["", "hold", "temporal_ensemble", "blend"],
                              description="how chunks combine (empty: params_file, else blend)"),
        DeclareLaunchArgument("interpolation", default_value="", choices=["", "step", "linear", "cubic", "spline"],
                              description="between chunk steps (empty: params_file, else cubic)"),
        DeclareLaunchArgument("control_rate", default_value="",
                              description="Hz of the control loop (empty: params_file; 0: the contract's)"),
        DeclareLaunchArgument("start_enabled", default_value="", choices=["", "true", "false"],
                              description="true: send commands from start-up (default: wait for ~/enable)"),
        DeclareLaunchArgument("chunk_topic", default_value="",
                              description="ActionChunk topic (empty: params_file, else /vla/action)"),
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="parameter file (ros__parameters YAML)"),
        OpaqueFunction(function=_executor_node),
    ])
