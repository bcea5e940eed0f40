"""Start the VLA policy node (vla_adapter_node) with its parameter file.

    ros2 launch vla_adapter_ros vla_adapter.launch.py
    ros2 launch vla_adapter_ros vla_adapter.launch.py model_dir:=/data/my_model contract:=/data/my_robot.yaml
    ros2 launch vla_adapter_ros vla_adapter.launch.py model_dir:=/data/my_model adapter:=drawer-open \
        providers:=tensorrt,cuda,cpu fp16:=true engine_cache_dir:=/data/trt_engines \
        camera_topic:=/wrist/image_raw use_compressed:=true

Parameters come from ``params_file`` (default: the installed config/vla_adapter.yaml); a
launch argument left empty keeps the file's value, a non-empty one overrides it. The node is
a lifecycle node that configures and activates itself (``autostart: true`` in the file) and
exits 1 if it cannot load the model; ``respawn:=true`` restarts it (after ``respawn_delay`` s).
Standard launch / launch_ros API only (Humble, Jazzy, Kilted). tests/ros/test_launch_static.py
checks this file against setup.py and the node's declared parameters.
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "vla_adapter_ros"
# Launch arguments forwarded as node parameters of the same name when not empty.
PARAMETER_ARGUMENTS = ("model_dir", "adapter", "providers", "contract", "camera_topic", "use_compressed", "fp16",
                       "device_id", "engine_cache_dir")
BOOLEAN_ARGUMENTS = ("use_compressed", "fp16")
INTEGER_ARGUMENTS = ("device_id",)


def _policy_node(context, *args, **kwargs):
    overrides = {}
    for name in PARAMETER_ARGUMENTS:
        value = LaunchConfiguration(name).perform(context).strip()
        if value == "":
            continue
        if name in BOOLEAN_ARGUMENTS:
            if value.lower() not in ("true", "false"):
                raise ValueError(f"launch argument {name} must be true or false, got {value!r}")
            overrides[name] = value.lower() == "true"
        elif name in INTEGER_ARGUMENTS:
            if not value.isdigit():
                raise ValueError(f"launch argument {name} must be a non-negative integer, got {value!r}")
            overrides[name] = int(value)
        else:
            overrides[name] = value
    respawn = LaunchConfiguration("respawn").perform(context).strip().lower()
    if respawn not in ("true", "false"):
        raise ValueError(f"launch argument respawn must be true or false, got {respawn!r}")
    delay = LaunchConfiguration("respawn_delay").perform(context).strip()
    try:
        respawn_delay = float(delay)
    except ValueError:
        raise ValueError(f"launch argument respawn_delay must be seconds, got {delay!r}") from None
    return [
        Node(
            package=PACKAGE,
            executable="vla_adapter_node",
            name="vla_adapter",
            output="screen",
            emulate_tty=True,
            parameters=[LaunchConfiguration("params_file"), overrides],
            # The node exits 1 when the model cannot be loaded at start and is killed by faults; a
            # supervisor (this, systemd, ...) restarts it: it serves again within seconds (docs/ROBUSTNESS.md).
            respawn=respawn == "true",
            respawn_delay=respawn_delay,
        )
    ]


def generate_launch_description():
    default_params = PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "vla_adapter.yaml"])
    return LaunchDescription([
        DeclareLaunchArgument(
            "model_dir", default_value="",
            description="exported model directory (empty: params_file, else the bundled models/default)"),
        DeclareLaunchArgument(
            "adapter", default_value="",
            description="adapter active at start-up (empty: params_file, else the manifest's default)"),
        DeclareLaunchArgument(
            "providers", default_value="",
            description="onnxruntime providers in order, e.g. tensorrt,cuda,cpu (empty: params_file/runtime default)"),
        DeclareLaunchArgument(
            "contract", default_value="",
            description="robot contract YAML: cameras, state, actions (empty: params_file, else the model's own)"),
        DeclareLaunchArgument(
            "camera_topic", default_value="",
            description="camera sensor_msgs/Image topic (empty: params_file, else /camera/image_raw)"),
        DeclareLaunchArgument(
            "use_compressed", default_value="", choices=["", "true", "false"],
            description="true: subscribe to <camera_topic>/compressed (sensor_msgs/CompressedImage)"),
        DeclareLaunchArgument(
            "fp16", default_value="", choices=["", "true", "false"],
            description="TensorRT fp16 kernels (empty: params_file, else false)"),
        DeclareLaunchArgument(
            "device_id", default_value="", description="CUDA device for CUDA/TensorRT (empty: params_file, else 0)"),
        DeclareLaunchArgument(
            "engine_cache_dir", default_value="",
            description="TensorRT engine cache root, one sub-folder per model hash (empty: params_file/default)"),
        DeclareLaunchArgument(
            "params_file", default_value=default_params, description="parameter file (ros__parameters YAML)"),
        DeclareLaunchArgument(
            "respawn", default_value="false", choices=["true", "false"],
            description="restart the node when it exits (e.g. status 1: model not loadable yet)"),
        DeclareLaunchArgument(
            "respawn_delay", default_value="2.0", description="seconds before a respawn"),
        OpaqueFunction(function=_policy_node),
    ])
