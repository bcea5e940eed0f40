"""Faults: a model directory missing at start, a node killed and restarted under a 30 Hz stream,
a camera that pauses and resumes. Real node processes on loopback DDS (fixtures in conftest.py)."""

from __future__ import annotations

import itertools
import os
import shutil
import threading
import time

import numpy as np
import pytest

from vla_adapter_ros.ros.harness import send_until
from vla_adapter_ros.serving.frame_server import MAX_PROVIDER_RECOVERIES

pytestmark = pytest.mark.ros
RESTART_BOUND_S = 20.0


def test_missing_model_directory_at_start_is_a_clear_error_and_a_non_zero_exit(start_policy, tiny_model_dir):
    """With autostart (the default, what a robot launch uses) a model that cannot be loaded ends the process
    with status 1 and says why; with autostart:=false the node stays up for a lifecycle manager (that case and
    its recovery: test_policy_lifecycle.py)."""
    missing = tiny_model_dir.parent / "no_such_model"
    proc = start_policy(missing, providers="cpu")
    assert proc.proc.wait(timeout=60) == 1
    log = proc.log()
    assert f"configure failed: cannot load the model from '{missing}'" in log and "does not exist" in log
    assert "autostart did not reach 'active'" in log and "exiting with status 1" in log


def test_killed_node_restarted_under_a_30hz_stream_serves_again_within_a_bound(start_policy, make_driver,
                                                                               tiny_model_dir):
    opts = dict(providers="cpu", camera_reliability="reliable", camera_depth=5)
    first = start_policy(tiny_model_dir, **opts)
    d = make_driver(first)
    d.wait_until_serving()
    d.prime()
    rgb = np.zeros((48, 64, 3), np.uint8)
    streaming, stop = threading.Event(), threading.Event()
    streaming.set()

    def camera() -> None:  # the robot side keeps publishing at 30 Hz whatever happens to the node
        next_t = time.monotonic()
        while not stop.is_set():
            if streaming.is_set():
                d.send_frame(rgb)
            next_t += 1 / 30
            time.sleep(max(0.0, next_t - time.monotonic()))

    thread = threading.Thread(target=camera, daemon=True)
    thread.start()
    try:
        n = d.action_count()
        d.wait_for(lambda: d.action_count() >= n + 15, 10, "actions at 30 Hz before the kill")
        first.proc.kill()  # SIGKILL: no orderly shutdown
        first.proc.wait(timeout=10)
        t_kill = time.monotonic()
        second = start_policy(tiny_model_dir, **opts, **first.topics)  # a supervisor respawns it at once
        # the new node's first action is sequence 1 (the killed one had passed 15 before it died)
        def new_node_actions() -> list:
            return [(t, m) for t, m in list(d.actions) if t > t_kill and m.sequence <= 15]

        d.wait_for(lambda: new_node_actions(), RESTART_BOUND_S + 10, "actions from the restarted node")
        t_first, first_action = new_node_actions()[0]
        recovery = t_first - t_kill
        print(f"\nSIGKILL -> first action from the restarted node: {recovery:.2f} s")
        assert recovery < RESTART_BOUND_S, second.log()
        # the instruction came back through transient local QoS; the stream keeps flowing
        assert first_action.sequence == 1 and first_action.instruction == "open the drawer"
        n = d.action_count()
        d.wait_for(lambda: d.action_count() >= n + 15, 5, "actions at 30 Hz after the restart")

        # the camera pauses for 2 s (the scenario, not a wait for readiness) and resumes: serving resumes at once
        streaming.clear()
        time.sleep(2.0)
        n = d.action_count()
        t_resume = time.monotonic()
        streaming.set()
        d.wait_for(lambda: d.action_count() > n, 5, "actions after the camera resumed")
        assert d.actions[-1][0] - t_resume < 1.0
        assert second.proc.poll() is None
    finally:
        stop.set()
        thread.join(timeout=5)


class InProcessPolicy:
    """A PolicyNode in THIS process (its own context and executor thread), so a test can reach the runtime
    inside it; topics and node name are unique like PolicyProcess's."""

    def __init__(self, model_dir, **overrides) -> None:
        from rclpy.parameter import Parameter

        from vla_adapter_ros.ros.harness import RosSession
        from vla_adapter_ros.ros.policy_node import PolicyNode

        self.name = f"vla_adapter_inproc{os.getpid()}_{next(_count)}"
        prefix = f"/{self.name}"
        self.topics = {
            "camera_topic": f"{prefix}/camera/image_raw", "instruction_topic": f"{prefix}/vla/instruction",
            "proprio_topic": f"{prefix}/joint_states", "action_topic": f"{prefix}/vla/action",
        }
        values = {**self.topics, "diagnostics_period": 0.5, "model_dir": str(model_dir), **overrides}

        def make_node(context):
            node = PolicyNode(context=context, cli_args=["--ros-args", "-r", f"__node:={self.name}"],
                              parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
            assert node.autostart(), node.last_error
            return node

        self.session = RosSession(self.name, make_node=make_node)
        self.node = self.session.node

    def close(self) -> None:
        self.session.close()
        self.node.close()


_count = itertools.count()


def test_provider_failing_mid_run_publishes_nothing_and_serving_resumes_on_rebuilt_sessions(
        make_driver, tiny_model_dir, tmp_path, capfd):
    """A real onnxruntime run failure (the RunOptions terminate flag makes InferenceSession.run raise Fail,
    as a lost CUDA device does): that frame is not answered, the sessions are rebuilt on the next provider
    of the chain (CPU is the last one here, so a fresh CPU session), and the next frames are served with the
    same adapter and the same actions. When rebuilding fails too (the backbone file is corrupted on disk),
    the node keeps running, refuses frames, publishes nothing and says why on /diagnostics."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    host = InProcessPolicy(model, providers="cpu", camera_reliability="reliable", camera_depth=5)
    try:
        d = make_driver(host)
        d.wait_until_serving()
        d.prime()
        rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        n = d.action_count()
        d.send_frame(rgb)
        before = d.wait_actions(n + 1)[-1]
        policy = host.node.policy
        assert policy.active_adapter == "pick"

        policy._state.run_options.terminate = True  # the active adapter's next run fails inside onnxruntime
        n = d.action_count()
        d.send_frame(rgb)
        d.wait_for(lambda: int(d.status()["provider_fallbacks"]) == 1, 10, "sessions rebuilt")
        status = d.status()
        assert int(status["errors.provider_run"]) == 1 and status["execution_provider"] == "CPUExecutionProvider"
        assert d.action_count() == n  # the failed frame got no action
        assert policy.fallbacks and policy.fallbacks[0][0] == "CPUExecutionProvider"
        d.send_frame(rgb)
        after = d.wait_actions(n + 1)[-1]
        assert after.adapter == "pick" and np.allclose(np.asarray(after.actions), np.asarray(before.actions))

        # now the sessions cannot be rebuilt: the node must keep running and publish nothing
        shared = model / policy.manifest.shared_file
        data = bytearray(shared.read_bytes())
        data[len(data) // 2] ^= 0xFF
        shared.unlink()
        shared.write_bytes(bytes(data))
        policy._state.run_options.terminate = True
        n = d.action_count()
        send_until(lambda: d.send_frame(rgb),
                   lambda _: int(d.status()["errors.provider_run"]) >= 1 + MAX_PROVIDER_RECOVERIES + 2,  # beyond
                   d.session, timeout=30, interval=0.2, what="frames failing beyond the recovery limit")
        status = d.latest_status()
        status = d.latest_status()  # ERROR lasts while the fault does, not only in periods with new failures
        assert "gave up rebuilding the sessions after" in status["message"] and status["level"] == 2
        assert "could not be rebuilt ('shared/backbone.onnx' has sha256" in capfd.readouterr().err
        assert int(status["provider_fallbacks"]) == 1 and d.action_count() == n
        assert policy.active_adapter == "pick" and [a.name for a in policy.adapters] == ["pick", "place", "open"]
        from vla_adapter_interfaces.srv import ListAdapters

        assert d.call(ListAdapters, "list_adapters", ListAdapters.Request()).active_adapter == "pick"
    finally:
        host.close()
