"""Test-wide set-up: every rclpy process of this run stays on loopback DDS.

The environment is pinned in pytest_configure, before any test imports rclpy,
so in-process nodes and every subprocess (which inherits os.environ) use
ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, the loopback Fast DDS profile and a
ROS_DOMAIN_ID unique to this run and xdist worker. MuJoCo renders headless
(MUJOCO_GL=egl unless set) in this process and its subprocesses.
"""

from __future__ import annotations

import os

import pytest

from vla_adapter_ros import dds_env
from vla_adapter_ros.core.sim.metaworld_env import use_headless_gl


def pytest_configure(config: pytest.Config) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    salt = int("".join(c for c in worker if c.isdigit()) or 0)
    os.environ.update(dds_env.localhost_env(dds_env.pick_domain_id(salt)))
    use_headless_gl()  # before any test module imports MuJoCo or Meta-World


@pytest.fixture(scope="session")
def ros_env() -> dict[str, str]:
    """Environment for subprocesses that use rclpy (already loopback-only, own domain)."""
    assert dds_env.is_localhost_only()
    return dict(os.environ)
