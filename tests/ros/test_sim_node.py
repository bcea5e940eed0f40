"""vla_adapter_sim in its own process, with and without a real policy node, over loopback DDS.

The policy is the tiny exported model of tests/ros/conftest.py served by vla_adapter_node;
the driver is :class:`vla_adapter_ros.ros.demo.DemoDriver` (what `make demo` uses). Lockstep
is tested under real message loss: a relay process between the two nodes drops frames, joint
states and answers, and the episodes must equal the in-process evaluation bit for bit.
VLA_LOCKSTEP_EPISODES (default 3) and VLA_LOCKSTEP_MODEL=bundled scale that test up
(scripts/lockstep_determinism.sh: 50 full episodes of the bundled model).
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from vla_adapter_ros.ros.conversions import stamp_to_ns
from vla_adapter_ros.ros.demo import (
    POLICY_EXECUTABLE,
    POLICY_NODE,
    SIM_EXECUTABLE,
    SIM_NODE,
    DemoDriver,
    TaskRow,
    compare_with_in_process,
    demo_parameters,
)
from vla_adapter_ros.ros.harness import NodeProcess, node_command

TASK = "coffee-button-v3"
RELAY = Path(__file__).parent / "fixtures" / "lossy_relay.py"
BUNDLED = Path(__file__).resolve().parents[2] / "models" / "default"
_ids = itertools.count()


def topics(prefix: str) -> dict[str, str]:
    return {"camera_topic": f"{prefix}/camera/image_raw", "proprio_topic": f"{prefix}/joint_states",
            "action_topic": f"{prefix}/vla/action"}


def start_sim(env, tmp_path, prefix: str, **params) -> tuple[NodeProcess, str]:
    name = f"sim_t{os.getpid()}_{next(_ids)}"
    p = {**demo_parameters(SIM_NODE), "task": TASK, **topics(prefix), "status_topic": f"{prefix}/vla/episode",
         **params}
    return NodeProcess(node_command(SIM_EXECUTABLE, name, p), env, tmp_path / f"{name}.log"), name


def start_policy(env, tmp_path, prefix: str, model_dir: Path, **params) -> tuple[NodeProcess, str]:
    name = f"policy_sim_t{os.getpid()}_{next(_ids)}"
    p = {**demo_parameters(POLICY_NODE), "model_dir": str(model_dir), **topics(prefix),
         "instruction_topic": f"{prefix}/vla/instruction", **params}
    return NodeProcess(node_command(POLICY_EXECUTABLE, name, p), env, tmp_path / f"{name}.log"), name


def driver_for(sim_name: str, policy_name: str, sim_prefix: str, policy_prefix: str | None = None) -> DemoDriver:
    return DemoDriver(sim_name, policy_name, instruction_topic=f"{policy_prefix or sim_prefix}/vla/instruction",
                      action_topic=f"{sim_prefix}/vla/action", status_topic=f"{sim_prefix}/vla/episode")


class Watcher:
    """Images and joint states the sim publishes, in order."""

    def __init__(self, driver: DemoDriver, prefix: str) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image, JointState

        self.images, self.joints, self._lock = [], [], threading.Lock()
        self.session = driver.session
        self.session.subscribe(Image, f"{prefix}/camera/image_raw", self._add(self.images), 100)
        self.session.subscribe(JointState, f"{prefix}/joint_states", self._add(self.joints),
                               QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT))

    def _add(self, into):
        def cb(msg):
            with self._lock:
                into.append(msg)
        return cb

    def frames(self, n: int, timeout: float = 10.0) -> tuple[list, list]:
        """The first message of each of ``n`` distinct stamps (re-sent frames repeat a stamp)."""
        def distinct(msgs):
            out = {}
            for m in msgs:
                out.setdefault(stamp_to_ns(m.header.stamp), m)
            return [out[k] for k in sorted(out)]

        def ready():
            with self._lock:
                return len(distinct(self.images)) >= n and len(distinct(self.joints)) >= n
        self.session.wait_for(ready, timeout, f"{n} frames from the simulator")
        with self._lock:
            images, joints = distinct(self.images), distinct(self.joints)
            self.images.clear()
            self.joints.clear()
        return images, joints

    def clear(self) -> None:
        with self._lock:
            self.images.clear()
            self.joints.clear()


@pytest.fixture(scope="module")
def sim_and_policy(ros_env, tiny_model_dir, tmp_path_factory):
    logs = tmp_path_factory.mktemp("sim_logs")
    prefix = f"/simt{os.getpid()}"
    sim, sim_name = start_sim(ros_env, logs, prefix, max_steps=12)
    policy, policy_name = start_policy(ros_env, logs, prefix, tiny_model_dir)
    driver = driver_for(sim_name, policy_name, prefix)
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
    watcher.clear()
    outcome = driver.run_episode(TASK, 100000, timeout=60)
    assert outcome.steps == 12 and not outcome.success  # the tiny random model does not press the button
    assert outcome.end_reason == "step_limit", sim.log()
    assert outcome.instruction and len(outcome.chunks) == 4  # chunks of 3 actions: 4 frames answered
    assert len(outcome.latencies_ms) == 4 and all(0 < x < 30000 for x in outcome.latencies_ms)
    images, joints = watcher.frames(4)  # frame 0, after 3, 6, 9 steps (12 = done: no frame)
    assert len(images) == 4 and len(joints) == 4
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
        watcher.clear()
        outcome = driver.run_episode(TASK, 100001, timeout=60)
        images, joints = watcher.frames(4)
        runs.append((np.array([js.position for js in joints]), [bytes(im.data) for im in images], outcome.chunks))
    assert runs[0][0].shape == (4, 4)
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1] and runs[0][2] == runs[1][2]


def test_reset_refuses_an_unknown_task_and_suggests_instructions(sim_and_policy):
    from vla_adapter_interfaces.srv import ResetEpisode

    driver = sim_and_policy[0]
    reply = driver.call(ResetEpisode, f"/{driver.sim_node}/reset", ResetEpisode.Request(task="fly-v3", seed=1))
    assert not reply.success and "unknown Meta-World task 'fly-v3'" in reply.message and reply.episode == 0
    reply = driver.call(ResetEpisode, f"/{driver.sim_node}/reset", ResetEpisode.Request(task="faucet-open", seed=7,
                                                                                        request_id="r7"))
    assert reply.success and "faucet-open-v3 seed 7" in reply.message and reply.episode > 0
    assert "faucet" in reply.instruction or "tap" in reply.instruction


def _status_of(driver: DemoDriver, episode: int, done: bool | None = None):
    def check():
        s = driver.status
        return s if s is not None and s.episode == episode and (done is None or s.done == done) else None
    return driver.session.wait_for(check, 60, f"EpisodeStatus of episode {episode}")


def test_a_resent_reset_is_answered_again_without_restarting_the_episode(sim_and_policy):
    """The request id makes reset idempotent: a client whose reply was lost can resend it."""
    from vla_adapter_interfaces.srv import ResetEpisode

    driver = sim_and_policy[0]
    name = f"/{driver.sim_node}/reset"
    first = driver.call(ResetEpisode, name, ResetEpisode.Request(task=TASK, seed=3, request_id="a"), resend_s=0)
    _status_of(driver, first.episode, done=True)
    again = driver.call(ResetEpisode, name, ResetEpisode.Request(task=TASK, seed=3, request_id="a"), resend_s=0)
    assert (again.success, again.message, again.instruction, again.episode) == (
        first.success, first.message, first.instruction, first.episode)
    other = driver.call(ResetEpisode, name, ResetEpisode.Request(task=TASK, seed=3, request_id="b"), resend_s=0)
    assert other.success and other.episode == first.episode + 1  # the repeat did not start an episode
    unkeyed = driver.call(ResetEpisode, name, ResetEpisode.Request(task=TASK, seed=3), resend_s=0)
    assert unkeyed.episode == first.episode + 2  # no id: every request resets
    _status_of(driver, unkeyed.episode, done=True)


def test_reset_sim_cli_starts_an_episode_and_suggests_the_instruction(sim_and_policy, ros_env):
    driver = sim_and_policy[0]

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "vla_adapter_ros.cli", "reset-sim", *args,
                               "--node", f"/{driver.sim_node}", "--timeout", "30"],
                              env=ros_env, capture_output=True, text=True, timeout=90)

    out = cli("faucet-open", "--seed", "4")
    assert out.returncode == 0, out.stderr
    assert "faucet-open-v3 seed 4" in out.stdout and "suggested instruction:" in out.stdout
    episode = int(re.search(r"episode (\d+):", out.stdout).group(1))
    status = _status_of(driver, episode)
    assert (status.task, status.seed) == ("faucet-open-v3", 4)
    _status_of(driver, episode, done=True)
    refused = cli("fly")
    assert refused.returncode == 1 and "unknown Meta-World task 'fly'" in refused.stdout


def test_timer_mode_without_actions_holds_the_arm_still_and_counts_it(ros_env, tmp_path):
    prefix = f"/still_timer{os.getpid()}"
    sim, name = start_sim(ros_env, tmp_path, prefix, max_steps=6, mode="timer", control_rate=40.0)
    driver = driver_for(name, "nobody", prefix)
    watcher = Watcher(driver, prefix)
    try:
        from vla_adapter_interfaces.srv import ResetEpisode

        # a request id: the call resends until answered, and a resend must not start a second episode
        reply = driver.call(ResetEpisode, f"/{name}/reset", ResetEpisode.Request(task=TASK, seed=5, request_id="r"),
                            timeout=60)
        status = _status_of(driver, reply.episode, done=True)
        assert (status.step, status.stale_action_steps, status.success, status.end_reason) == (
            6, 6, False, "step_limit")
        _, joints = watcher.frames(6)
        xyz = np.array([js.position[:3] for js in joints])
        assert np.abs(xyz - xyz[0]).max() < 0.01  # held still (only settling)
    finally:
        driver.close()
        assert sim.stop() == 0, sim.log()


def test_lockstep_without_answers_resends_the_same_frame_then_ends_the_episode_as_failed(ros_env, tmp_path):
    """Lockstep never moves the arm on anything but the answer to its last frame: with no policy
    the first frame goes out again and again (same stamp, same pixels), then the episode ends as
    failed with end_reason no_action, logged."""
    prefix = f"/still_lock{os.getpid()}"
    sim, name = start_sim(ros_env, tmp_path, prefix, resend_period=0.1, action_timeout=1.0)
    driver = driver_for(name, "nobody", prefix)
    watcher = Watcher(driver, prefix)
    try:
        from vla_adapter_interfaces.msg import ActionChunk
        from vla_adapter_interfaces.srv import ResetEpisode

        # A subscriber and an action publisher, but nobody answers: the first frame is published, then re-sent.
        driver.node.create_publisher(ActionChunk, f"{prefix}/vla/action", 10)
        # a request id: the call resends until answered, and a resend must not start a second episode
        reply = driver.call(ResetEpisode, f"/{name}/reset", ResetEpisode.Request(task=TASK, seed=5, request_id="r"),
                            timeout=60)
        status = _status_of(driver, reply.episode, done=True)
        assert (status.step, status.success, status.end_reason) == (0, False, "no_action")
        assert status.resent_frames >= 3
        with watcher._lock:
            images = list(watcher.images)
        assert len(images) >= 3 and len({stamp_to_ns(m.header.stamp) for m in images}) == 1
        assert len({bytes(m.data) for m in images}) == 1
        driver.session.wait_for(lambda: "done (no_action)" in sim.log(), 10, "the failure in the sim's log")
    finally:
        driver.close()
        assert sim.stop() == 0, sim.log()


def test_lockstep_under_message_loss_equals_the_in_process_evaluation(ros_env, tiny_model_dir, tmp_path):
    """A relay drops frames, joint states and answers on the way; every episode must still be the
    in-process evaluation's exactly: same chunks bit for bit, same steps, same outcome."""
    episodes = int(os.environ.get("VLA_LOCKSTEP_EPISODES", "3"))
    bundled = os.environ.get("VLA_LOCKSTEP_MODEL") == "bundled"
    model_dir, adapter = (BUNDLED, "coffee_button") if bundled else (tiny_model_dir, "pick")
    max_steps = 0 if bundled else 12
    sim_prefix, policy_prefix = f"/loss_sim{os.getpid()}", f"/loss_pol{os.getpid()}"
    sim, sim_name = start_sim(ros_env, tmp_path, sim_prefix, max_steps=max_steps, resend_period=0.2)
    policy, policy_name = start_policy(ros_env, tmp_path, policy_prefix, model_dir, adapter=adapter)
    relay = NodeProcess([sys.executable, str(RELAY), f"relay_{os.getpid()}", sim_prefix, policy_prefix, "3"],
                        ros_env, tmp_path / "relay.log")
    driver = driver_for(sim_name, policy_name, sim_prefix, policy_prefix)
    try:
        assert driver.list_adapters(timeout=60).adapters
        outcomes = [driver.run_episode(TASK, 100000 + i, timeout=600) for i in range(episodes)]
    finally:
        driver.close()
        relay_code, sim_code = relay.stop(), sim.stop()
        policy.stop()
    assert relay_code == 0 and sim_code == 0, relay.log() + sim.log()
    dropped = dict(re.findall(r"(\w+)=(\d+)", relay.log().split("DROPPED", 1)[1]))
    assert all(int(v) > 0 for v in dropped.values()), dropped  # frames, states and answers were lost
    assert sum(o.resent_frames for o in outcomes) > 0
    assert all(o.end_reason in ("success", "step_limit") for o in outcomes), [o.end_reason for o in outcomes]
    row = TaskRow(TASK, adapter, episodes, sum(o.success for o in outcomes), 0, 0, 0, 0,
                  sum(o.resent_frames for o in outcomes), outcomes=outcomes)
    compare_with_in_process(model_dir, [row], 100000, max_steps=max_steps or None)
    for o, diff in zip(outcomes, row.differences, strict=True):
        if diff:
            print(f"seed {o.seed}: differs from in-process: {diff}")
    print(f"lockstep under loss: {row.identical_episodes}/{episodes} episodes identical to in-process, "
          f"{row.successes} successes (in-process {row.in_process_successes}), dropped {dropped}, "
          f"{row.resent_frames} frames re-sent")
    assert row.identical_episodes == episodes and row.in_process_successes == row.successes


def test_bad_parameter_is_refused_at_start_up(ros_env, tmp_path):
    sim, _ = start_sim(ros_env, tmp_path, "/bad", mode="sometimes")
    assert sim.proc.wait(timeout=60) == 2
    assert "mode must be one of ['lockstep', 'timer', 'command'], got 'sometimes'" in sim.log()
