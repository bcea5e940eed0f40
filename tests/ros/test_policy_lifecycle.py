"""Policy nodes of their own: lifecycle and configure failures, late instructions, compressed images."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState

from vla_adapter_interfaces.srv import ListAdapters, SwitchAdapter
from vla_adapter_ros.ros.conversions import stamp_to_ns
from vla_adapter_ros.ros.harness import send_until

pytestmark = pytest.mark.ros


def test_failed_configure_is_reported_and_recoverable_through_lifecycle(start_policy, make_driver, tiny_model_dir):
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    proc = start_policy(tiny_model_dir / "missing", providers="cpu", camera_reliability="reliable",
                        camera_depth=5, autostart=False)
    d = make_driver(proc)
    d.wait_for(lambda: d.node.count_publishers("/diagnostics") > 0, 30, "diagnostics")
    # Transitions are not idempotent, but this one fails and changes nothing, so it may be resent:
    # it is the change_state client's first round trip (see clients.await_reply); later ones are not resent.
    failed = d.call(ChangeState, "change_state", ChangeState.Request(transition=Transition(
        id=Transition.TRANSITION_CONFIGURE)))
    assert not failed.success
    d.wait_for(lambda: "configure failed" in proc.log(), 10, "the configure error in the log")
    assert d.latest_status(timeout=30)["level"] == 2  # what a monitor of /diagnostics sees
    status = d.status()
    assert status["level"] == 2 and status["lifecycle_state"] == "unconfigured"
    assert "model not loaded" in status["message"] and "missing" in status["message"]
    assert d.call(GetState, "get_state", GetState.Request()).current_state.label == "unconfigured"
    reply = d.call(SwitchAdapter, "switch_adapter", SwitchAdapter.Request(adapter="pick"))
    assert not reply.success and "unconfigured" in reply.message
    assert d.call(ListAdapters, "list_adapters", ListAdapters.Request()).adapters == []
    # the model directory may change while unconfigured; then configure + activate through lifecycle services
    value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=str(tiny_model_dir))
    (res,) = d.call(SetParameters, "set_parameters",
                    SetParameters.Request(parameters=[Parameter(name="model_dir", value=value)])).results
    assert res.successful, res.reason
    for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
        ok = d.call(ChangeState, "change_state", ChangeState.Request(transition=Transition(id=transition)),
                    resend_s=0)
        assert ok.success, proc.log()
    d.prime()
    assert d.status()["lifecycle_state"] == "active"
    # deactivate: frames are counted, not served
    assert d.call(ChangeState, "change_state",
                  ChangeState.Request(transition=Transition(id=Transition.TRANSITION_DEACTIVATE)), resend_s=0).success
    start = d.action_count()
    d.send_frame(np.zeros((16, 16, 3), np.uint8))
    d.wait_for(lambda: int(d.status()["frames_while_inactive"]) >= 1, 10, "the frame counted as inactive")
    assert d.action_count() == start  # counted on arrival: it never reaches inference


def test_node_started_after_the_instruction_gets_it(start_policy, make_driver, tiny_model_dir):
    """Transient local: the instruction was published before the node existed."""
    proc = start_policy(tiny_model_dir, providers="cpu", camera_reliability="reliable", camera_depth=5)
    d = make_driver(proc)  # its instruction publisher exists before the node has started up
    d.send_instruction("pick up the puck")
    d.wait_until_serving()
    stamp = send_until(lambda: d.send_frame(np.zeros((16, 16, 3), np.uint8)), d.answered, d.session, timeout=20,
                       interval=0.2, what="a frame")
    answer = next(m for m in d.wait_actions(1) if stamp_to_ns(m.header.stamp) == stamp)
    assert answer.instruction == "pick up the puck"


def test_late_instruction_publisher_and_compressed_images(start_policy, make_driver, tiny_model_dir, ros_env):
    proc = start_policy(tiny_model_dir, providers="cpu", use_compressed=True, camera_reliability="reliable",
                        camera_depth=5)
    d = make_driver(proc, compressed=True)
    d.wait_until_serving()
    from sensor_msgs.msg import CompressedImage

    def send_jpeg(rgb: np.ndarray) -> int:
        ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1])
        assert ok
        msg = CompressedImage(format="jpeg", data=buf.tobytes())
        msg.header.stamp = d.node.get_clock().now().to_msg()
        d.send_joints(stamp_ns=stamp_to_ns(msg.header.stamp))
        d.camera.publish(msg)
        return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec

    # frames before any instruction exists: not served, counted (sent until the count is reached: a frame
    # that a newer one replaces before the worker takes it is counted as skipped instead)
    send_until(lambda: send_jpeg(np.zeros((48, 64, 3), np.uint8)),
               lambda _: int(d.status()["frames_without_instruction"]) >= 3, d.session, timeout=20, interval=0.1,
               what="three frames counted without an instruction")
    assert d.action_count() == 0
    # a publisher that appears late (another process) starts the stream
    out = subprocess.run([sys.executable, "-m", "vla_adapter_ros.cli", "send-instruction", "push the button",
                          "--topic", proc.topics["instruction_topic"], "--timeout", "20"],
                         env=ros_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    stamp = send_jpeg(np.full((480, 640, 3), 100, np.uint8))
    action = d.wait_actions(1)[-1]
    assert action.instruction == "push the button"
    assert action.header.stamp.sec * 1_000_000_000 + action.header.stamp.nanosec == stamp
    # a payload that is not an image is refused, counted, and survived
    bad = CompressedImage(format="jpeg", data=b"not a jpeg at all" * 4)
    bad.header.stamp = d.node.get_clock().now().to_msg()
    d.send_joints(stamp_ns=stamp_to_ns(bad.header.stamp))
    d.camera.publish(bad)
    d.wait_for(lambda: int(d.status().get("refused.compressed_decode", 0)) == 1, 10, "refusal counted")
    send_jpeg(np.zeros((48, 64, 3), np.uint8))
    d.wait_actions(2)
    assert proc.proc.poll() is None
