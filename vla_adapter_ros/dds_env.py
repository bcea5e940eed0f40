"""Environment for rclpy processes that must keep DDS traffic on this machine.

Tests, benchmarks and demos start every rclpy process with
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, a ``ROS_DOMAIN_ID`` of their own
and the Fast DDS profile in ``config/fastdds_localhost.xml`` (shared memory +
UDPv4 on 127.0.0.1 only). ROS-free: importing this never loads rclpy.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

PROFILE_NAME = "fastdds_localhost.xml"
# Domain IDs 0..101 are safe on Linux with default port mapping; keep away from
# 0 (everyone's default) so a stray test never talks to a real robot graph.
_DOMAIN_MIN, _DOMAIN_MAX = 10, 100


def profile_path() -> Path:
    """The Fast DDS loopback profile: from the source tree, else from the installed share dir."""
    src = Path(__file__).resolve().parent.parent / "config" / PROFILE_NAME
    if src.is_file():
        return src
    try:
        # why here: ament_index_python exists only in a ROS install; the source tree needs no ROS
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("vla_adapter_ros")) / "config" / PROFILE_NAME
    except Exception as exc:  # ament_index raises several types; all mean "not installed"
        raise FileNotFoundError(f"{PROFILE_NAME} not found in the source tree ({src}) or share dir") from exc


def pick_domain_id(salt: int | None = None) -> int:
    """A domain ID derived from the process id (and an optional salt, e.g. a worker number)."""
    span = _DOMAIN_MAX - _DOMAIN_MIN + 1
    return _DOMAIN_MIN + (os.getpid() + 37 * (salt or 0)) % span


def localhost_env(domain_id: int | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) with DDS pinned to loopback in ``domain_id``."""
    env = dict(os.environ if base is None else base)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_DOMAIN_ID"] = str(pick_domain_id() if domain_id is None else domain_id)
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile_path())
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    env.pop("ROS_STATIC_PEERS", None)
    return env


def is_localhost_only(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return env.get("ROS_AUTOMATIC_DISCOVERY_RANGE") == "LOCALHOST" and "ROS_DOMAIN_ID" in env
