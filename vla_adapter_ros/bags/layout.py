"""What an episode bag holds: topic names, the recorder's metadata key, storage plugins.

The topic table of docs/DESIGN.md "Bags" for single-camera episodes; a bag written or read
through a robot contract takes its topics from the contract instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from rosbags.rosbag2 import StoragePlugin

DEFAULT_PROPRIO_NAMES = ("ee_x", "ee_y", "ee_z", "gripper")
DEFAULT_ACTION_NAMES = ("dx", "dy", "dz", "gripper")
METADATA_KEY = "vla_adapter_ros.episode"  # rosbag2 custom_data key holding a JSON object
CONTRACT_INFO_KEY = "contract"  # in that object: the robot contract the bag was recorded with (to_dict)
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
SINGLE_CAMERA = "camera"  # the view name of a bag read without a contract (ModelConfig.cameras' default)


@dataclass(frozen=True)
class EpisodeTopics:
    """Topic names of one single-camera episode. ``proprio`` and ``episode`` may be None (not recorded)."""

    image: str = "/camera/image_raw"
    instruction: str = "/vla/instruction"
    proprio: str | None = "/joint_states"
    action: str = "/vla/action"
    episode: str | None = "/vla/episode"


DEFAULT_TOPICS = EpisodeTopics()  # the topic table of docs/DESIGN.md
