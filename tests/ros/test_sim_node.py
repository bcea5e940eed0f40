"""vla_adapter_sim in its own process, with and without a real policy node, over loopback DDS.

The policy is the tiny exported model of tests/ros/conftest.py served by vla_adapter_node;
the driver is :class:`vla_adapter_ros.ros.demo.DemoDriver` (what `make demo` uses).
"""

from __future__ import annotations

import itertools
import threading
import time

import numpy as np
import pytest

from vla_adapter_ros.ros.demo import (
    POLICY_EXECUTABLE,
    POLICY_PARAMETERS,
    SIM_EXECUTABLE,
    SIM_PARAMETERS,
    DemoDriver,
    NodeProcess,
    node_command,
)

TASK = "coffee-button-v3"
_ids = itertools.count()


def topics(prefix: str) -> dict[str, str]:
    return {"camera_topic": f"{prefix}/camera/image_raw", "proprio_topic": f"{prefix}/joint_states",
            "action_topic": f"{prefix}/vla/action"}


def start_sim(env, tmp_path, prefix: str, **params) -> tuple[NodeProcess, str]:
    name = f"sim_t{next(_ids)}"
    p = {**SIM_PARAMETERS, "task": TASK, **topics(prefix), "status_topic": f"{prefix}/vla/episode", **params}
    return NodeProcess(node_command(SIM_EXECUTABLE, name, p), env, tmp_path / f"{name}.log"), name


class Watcher:
    """Images and joint states the sim publishes, in order."""

    def __init__(self, driver: DemoDriver, prefix: str) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image, JointState

        self.images, self.joints, self._lock = [], [], threading.Lock()
        driver.node.create_subscription(Image, f"{prefix}/camera/image_raw", self._add(self.images), 100)
        driver.node.create_subscription(JointState, f"{prefix}/joint_states", self._add(self.joints),
                                        QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT))

    def _add(self, into):
        def cb(msg):
            with self._lock:
                into.append(msg)
        return cb

    def take(self):
        with self._lock:
            out = list(self.images), list(self.joints)
            self.images.clear()
            self.joints.clear()
        return out


@pytest.fixture(scope="module")
def sim_and_policy(ros_env, tiny_model_dir, tmp_path_factory):
    logs = tmp_path_factory.mktemp("sim_logs")
    prefix = "/simt"
    sim, sim_name = start_sim(ros_env, logs, prefix, max_steps=12)
    policy_name = f"policy_sim_t{next(_ids)}"
    policy = NodeProcess(node_command(POLICY_EXECUTABLE, policy_name, {
        **POLICY_PARAMETERS, "model_dir": str(tiny_model_dir), **topics(prefix),
        "instruction_topic": f"{prefix}/vla/instruction"}), ros_env, logs / "policy.log")
    driver = DemoDriver(sim_name, policy_name, instruction_topic=f"{prefix}/vla/instruction",
                        action_topic=f"{prefix}/vla/action", status_topic=f"{prefix}/vla/episode")
    watcher = Watcher(driver, prefix)
    try:
        assert driver.list_adapters(timeout=60).adapters
        yield driver, watcher, sim, policy
    except BaseException:
        print(sim.log(), policy.log())
        raise
    finally:
        driver.close()
        assert sim.stop() == 0, sim.log()
        policy.stop()


def test_lockstep_episode_is_driven_by_the_policy(sim_and_policy):
    driver, watcher, sim, _ = sim_and_policy
    watcher.take()
    outcome = driver.run_episode(TASK, 100000, timeout=60)
    assert outcome.steps == 12 and not outcome.success  # the tiny random model does not press the button
    assert outcome.stale_action_steps == 0, sim.log()
    assert outcome.instruction and outcome.latencies_ms  # chunks of 3 actions: 4 frames answered
    assert len(outcome.latencies_ms) == 4 and all(0 < x < 5000 for x in outcome.latencies_ms)
    time.sleep(0.3)
    images, joints = watcher.take()
    assert len(images) == 4 and len(joints) == 4  # frame 0, after 3, 6, 9 steps (12 = done: no frame)
    for im, js in zip(images, joints, strict=True):
        assert (im.encoding, im.height, im.width, im.step, im.header.frame_id) == ("rgb8", 96, 96, 288, "camera")
        assert im.header.stamp == js.header.stamp and im.header.stamp.sec > 0  # node clock, not sim time
        assert list(js.name) == ["ee_x", "ee_y", "ee_z", "gripper"] and len(js.position) == 4
    rgb = np.frombuffer(bytes(images[0].data), np.uint8).reshape(96, 96, 3)
    assert rgb.std() > 5  # a rendered scene, not a blank frame


def test_same_seed_gives_the_same_trajectory(sim_and_policy):
    driver, watcher, _, _ = sim_and_policy
    runs = []
    for _ in range(2):
        watcher.take()
        driver.run_episode(TASK, 100001, timeout=60)
        time.sleep(0.3)
        images, joints = watcher.take()
        runs.append((np.array([js.position for js in joints]), [bytes(im.data) for im in images]))
    assert runs[0][0].shape == (4, 4)
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]


def test_reset_refuses_an_unknown_task_and_suggests_instructions(sim_and_policy):
    from vla_adapter_interfaces.srv import ResetEpisode

    driver = sim_and_policy[0]
    reply = driver.call(ResetEpisode, f"/{driver.sim_node}/reset", ResetEpisode.Request(task="fly-v3", seed=1))
    assert not reply.success and "unknown Meta-World task 'fly-v3'" in reply.message
    reply = driver.call(ResetEpisode, f"/{driver.sim_node}/reset", ResetEpisode.Request(task="faucet-open", seed=7))
    assert reply.success and "faucet-open-v3 seed 7" in reply.message
    assert "faucet" in reply.instruction or "tap" in reply.instruction


def test_a_resent_reset_is_answered_again_without_restarting_the_episode(sim_and_policy):
    """The request id makes reset idempotent: a client whose reply was lost can resend it."""
    from vla_adapter_interfaces.srv import ResetEpisode

    driver = sim_and_policy[0]
    name = f"/{driver.sim_node}/reset"
    first = driver.call(ResetEpisode, name, ResetEpisode.Request(task=TASK, seed=3, request_id="a"), resend_s=0)
    episode = int(first.message.split(":")[0].split()[-1])
    deadline = time.monotonic() + 60
    while not (driver.status is not None and driver.status.episode == episode and driver.status.done):
        assert time.monotonic() < deadline, "the episode did not finish"
        time.sleep(0.02)
    again = driver.call(ResetEpisode, name, ResetEpisode.Request(task=TASK, seed=3, request_id="a"), resend_s=0)
    assert (again.success, again.message, again.instruction) == (first.success, first.message, first.instruction)
    time.sleep(0.3)
    assert driver.status.episode == episode and driver.status.done  # not restarted
    other = driver.call(ResetEpisode, name, ResetEpisode.Request(task=TASK, seed=3, request_id="b"), resend_s=0)
    assert other.success and f"episode {episode + 1}:" in other.message
    unkeyed = driver.call(ResetEpisode, name, ResetEpisode.Request(task=TASK, seed=3), resend_s=0)
    assert f"episode {episode + 2}:" in unkeyed.message  # no id: every request resets


def test_reset_sim_cli_starts_an_episode_and_suggests_the_instruction(sim_and_policy, ros_env):
    import subprocess
    import sys

    driver = sim_and_policy[0]

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "vla_adapter_ros.cli", "reset-sim", *args,
                               "--node", f"/{driver.sim_node}", "--timeout", "30"],
                              env=ros_env, capture_output=True, text=True, timeout=90)

    out = cli("faucet-open", "--seed", "4")
    assert out.returncode == 0, out.stderr
    assert "faucet-open-v3 seed 4" in out.stdout and "suggested instruction:" in out.stdout
    episode = int(out.stdout.split("episode ")[1].split(":")[0])
    deadline = time.monotonic() + 30
    while not (driver.status is not None and driver.status.episode == episode):
        assert time.monotonic() < deadline, "no EpisodeStatus of the new episode"
        time.sleep(0.02)
    assert (driver.status.task, driver.status.seed) == ("faucet-open-v3", 4)
    refused = cli("fly")
    assert refused.returncode == 1 and "unknown Meta-World task 'fly'" in refused.stdout


@pytest.mark.parametrize("mode", ["lockstep", "timer"])
def test_without_actions_the_arm_holds_still_and_it_is_counted(ros_env, tmp_path, mode):
    prefix = f"/still_{mode}"
    sim, name = start_sim(ros_env, tmp_path, prefix, max_steps=6, action_timeout=0.05, mode=mode,
                          control_rate=40.0)
    driver = DemoDriver(name, "nobody", instruction_topic=f"{prefix}/vla/instruction",
                        action_topic=f"{prefix}/vla/action", status_topic=f"{prefix}/vla/episode")
    watcher = Watcher(driver, prefix)
    try:
        from vla_adapter_interfaces.srv import ResetEpisode

        reply = driver.call(ResetEpisode, f"/{name}/reset", ResetEpisode.Request(task=TASK, seed=5), timeout=60)
        assert reply.success
        driver_wait = time.monotonic() + 20
        while not (driver.status is not None and driver.status.done):
            assert time.monotonic() < driver_wait, sim.log()
            time.sleep(0.02)
        status = driver.status
        assert (status.step, status.stale_action_steps, status.success) == (6, 6, False)
        time.sleep(0.2)
        _, joints = watcher.take()
        xyz = np.array([js.position[:3] for js in joints])
        assert len(xyz) >= 5 and np.abs(xyz - xyz[0]).max() < 0.01  # held still (only settling)
    finally:
        driver.close()
        assert sim.stop() == 0, sim.log()


def test_bad_parameter_is_refused_at_start_up(ros_env, tmp_path):
    sim, _ = start_sim(ros_env, tmp_path, "/bad", mode="sometimes")
    assert sim.proc.wait(timeout=60) == 2
    assert "mode must be one of ['lockstep', 'timer'], got 'sometimes'" in sim.log()
