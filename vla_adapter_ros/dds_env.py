"""Environment for rclpy processes that must keep DDS traffic on this machine.

Tests, benchmarks and demos start every rclpy process with
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, a ``ROS_DOMAIN_ID`` of their own
and the Fast DDS profile in ``config/fastdds_localhost.xml`` (shared memory +
UDPv4 on 127.0.0.1 only). ROS-free: importing this never loads rclpy.

"Of their own" is enforced, not hoped for: :func:`lease_domain` takes an exclusive
``flock`` on one lock file per domain ID under the temp directory and holds it for as long
as the lease object lives, so two test suites, a demo and a benchmark running at the same
time on one machine never share a domain (two runs that shared one would see each other's
topics and services).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

PROFILE_NAME = "fastdds_localhost.xml"
# Domain IDs 0..101 are safe on Linux with default port mapping; keep away from
# 0 (everyone's default) so a stray test never talks to a real robot graph.
_DOMAIN_MIN, _DOMAIN_MAX = 10, 100
LOCK_DIR = Path(tempfile.gettempdir()) / "vla_adapter_ros-domains"


def profile_path() -> Path:
    """The Fast DDS loopback profile: from the source tree, else from the installed share dir."""
    src = Path(__file__).resolve().parent.parent / "config" / PROFILE_NAME
    if src.is_file():
        return src
    # ament_index exists only where ROS does (an installed package); the source tree needs none.
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        return Path(get_package_share_directory("vla_adapter_ros")) / "config" / PROFILE_NAME
    except (PackageNotFoundError, ValueError, LookupError) as exc:
        raise FileNotFoundError(f"{PROFILE_NAME} not found in the source tree ({src}) or share dir") from exc


def pick_domain_id(salt: int | None = None) -> int:
    """A domain ID derived from the process id (and an optional salt): a starting point, not a reservation."""
    span = _DOMAIN_MAX - _DOMAIN_MIN + 1
    return _DOMAIN_MIN + (os.getpid() + 37 * (salt or 0)) % span


class DomainLease:
    """An exclusive claim on one ROS domain ID among this machine's vla_adapter_ros runs.

    Held until :meth:`release` (or garbage collection, or process exit: the kernel drops a
    ``flock`` with its file descriptor, so a killed run never leaves a domain taken).
    """

    def __init__(self, domain_id: int, fd: int) -> None:
        self.domain_id, self._fd = domain_id, fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> DomainLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def lease_domain(salt: int | None = None, lock_dir: Path = LOCK_DIR) -> DomainLease:
    """The first free domain ID from :func:`pick_domain_id` on; OSError when all are taken."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    span = _DOMAIN_MAX - _DOMAIN_MIN + 1
    start = pick_domain_id(salt) - _DOMAIN_MIN
    for i in range(span):
        domain = _DOMAIN_MIN + (start + i) % span
        fd = os.open(lock_dir / f"{domain}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return DomainLease(domain, fd)
    raise OSError(f"all ROS domain IDs {_DOMAIN_MIN}..{_DOMAIN_MAX} are leased by other runs (locks in {lock_dir})")


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
