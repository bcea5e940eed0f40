"""vla_adapter_node in its own process, driven over loopback DDS with a tiny exported model.

Most tests share one serving node (module fixture ``shared_policy``); each test reads the
state it depends on (active adapter, counters) instead of assuming it.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
from sensor_msgs.msg import Image

from vla_adapter_interfaces.srv import ListAdapters, LoadAdapter, SwitchAdapter
from vla_adapter_ros.ros.conversions import action_chunk_to_array

pytestmark = pytest.mark.ros
RNG = np.random.default_rng(0)


def frame(h: int = 96, w: int = 96) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def active_adapter(driver) -> str:
    return driver.call(ListAdapters, "list_adapters", ListAdapters.Request()).active_adapter


def stamps_of(actions) -> list[int]:
    return [a.header.stamp.sec * 1_000_000_000 + a.header.stamp.nanosec for a in actions]


def test_frames_in_actions_out_with_matching_stamps_and_adapter(shared_policy):
    proc, d = shared_policy
    active = active_adapter(d)
    start = d.action_count()
    sent = []
    for i, (h, w) in enumerate([(96, 96), (480, 640), (37, 53), (96, 96), (120, 160)] * 4):
        sent.append(d.send_frame(frame(h, w), frame_id=f"cam_{i}"))
        d.wait_for(lambda: d.answered(sent[-1]), 10, f"the answer to frame {i}")  # none may be skipped
    actions = d.wait_actions(start + len(sent))[start:]
    assert sorted(stamps_of(actions)) == sorted(sent), "every frame answered exactly once, stamp copied"
    frame_ids = {s: f"cam_{i}" for i, s in enumerate(sent)}
    for a, s in zip(actions, stamps_of(actions), strict=True):
        assert a.header.frame_id == frame_ids[s]
        assert a.adapter == active and a.instruction == "open the drawer"
        assert (a.chunk_length, a.action_dim) == (3, 4) and list(a.action_names) == ["dx", "dy", "dz", "gripper"]
        chunk = action_chunk_to_array(a)
        assert np.all(np.isfinite(chunk)) and np.all(chunk >= -1.0) and np.all(chunk <= 1.0)
        assert a.execution_provider == "CPUExecutionProvider" and 0 < a.inference_time < 1.0
        assert a.dt == pytest.approx(0.0125)
    seqs = [a.sequence for a in actions]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_100_switches_during_a_30hz_stream(shared_policy):
    proc, d = shared_policy
    initial = active_adapter(d)
    cycle = ["pick", "place", "open"]
    names = [cycle[(cycle.index(initial) + 1 + i) % 3] for i in range(100)]
    before = d.status()
    switches: list[tuple[float, float, object]] = []  # (request time, reply time, reply)
    sent: dict[int, float] = {}
    rgb = frame()
    start_count = d.action_count()
    period = 1 / 30

    def switcher() -> None:
        time.sleep(period / 2)  # land between frames, not on them
        for name in names:
            t0 = time.monotonic()
            reply = d.call(SwitchAdapter, "switch_adapter", SwitchAdapter.Request(adapter=name))
            switches.append((t0, time.monotonic(), reply))
            time.sleep(max(0.0, period - (time.monotonic() - t0)))

    thread = threading.Thread(target=switcher)
    t_start = time.monotonic()
    thread.start()
    i = 0
    while thread.is_alive() or i < 10:
        time.sleep(max(0.0, t_start + i * period - time.monotonic()))
        stamp = d.send_frame(rgb)
        sent[stamp] = time.monotonic()
        i += 1
    thread.join()

    def answered() -> list:
        with d._lock:
            return [(t, m) for t, m in d.actions[start_count:] if stamps_of([m])[0] in sent]

    def settled() -> dict | None:  # every frame reached the node (reliable QoS) and was answered or skipped
        status = d.status()
        reached = int(status["frames_in"]) - int(before["frames_in"])
        skipped = int(status["skipped_frames"]) - int(before["skipped_frames"])
        return status if reached == len(sent) and len(answered()) == reached - skipped else None

    # a bound, not a pace: returns as soon as it holds (seen needing more than 20 s at load average 12)
    after = d.wait_for(settled, 60, "every frame of the stream answered or counted as skipped")
    skipped = int(after["skipped_frames"]) - int(before["skipped_frames"])
    reached = int(after["frames_in"]) - int(before["frames_in"])
    got = answered()

    # every switch honest and in order
    assert [r.success for _, _, r in switches] == [True] * 100
    assert [r.active_adapter for _, _, r in switches] == names
    assert [r.previous_adapter for _, _, r in switches] == [initial, *names[:-1]]
    # no frame dropped because of a switch: only latest-wins skips (counted) may be missing
    assert len(got) == reached - skipped, f"{reached} reached the node, {len(got)} answered, {skipped} skipped"
    # How many frames a busy machine makes the node skip is a benchmark's question (bench_ros, soak); here
    # only that the stream is served at all while switching.
    assert skipped <= len(sent) // 4, f"{skipped} of {len(sent)} frames skipped at 30 Hz with a tiny model"
    assert len(sent) >= 100
    # every action names an adapter that was active while its frame was in the node, in switch order
    history = [initial, *names]  # history[k + 1] = adapter after switch k
    last_index = 0
    for t_recv, msg in sorted(got, key=lambda x: stamps_of([x[1]])[0]):
        t_pub = sent[stamps_of([msg])[0]]
        lo = sum(1 for _, t_reply, _ in switches if t_reply < t_pub)  # switches surely done before publish
        hi = sum(1 for t_req, _, _ in switches if t_req < t_recv)  # switches possibly started before receipt
        candidates = [k for k in range(max(lo, last_index), hi + 1) if history[k] == msg.adapter]
        assert candidates, (f"action for a frame published between switches {lo} and {hi} names "
                            f"{msg.adapter!r}; admissible {history[lo:hi + 1]}")
        last_index = candidates[0]


@pytest.mark.parametrize("name, needle", [
    ("fly", "unknown adapter 'fly'"),
    ("../x", "looks like a path"),
    ("/etc/passwd", "looks like a path"),
    ("adapters/pick", "looks like a path"),
    ("", "empty"),
    ("x" * 10_000, "10000 characters long"),
])
def test_unknown_and_path_like_adapter_names_are_refused(shared_policy, name, needle):
    proc, d = shared_policy
    active = active_adapter(d)
    reply = d.call(SwitchAdapter, "switch_adapter", SwitchAdapter.Request(adapter=name))
    assert not reply.success
    assert needle in reply.message and "pick, place, open" in reply.message
    assert len(reply.message) < 500, "a huge name must not be echoed back whole"
    assert reply.active_adapter == active == reply.previous_adapter
    load = d.call(LoadAdapter, "load_adapter", LoadAdapter.Request(adapter=name, activate=True))
    assert not load.success and load.active_adapter == active
    # the old adapter keeps serving
    start = d.action_count()
    d.send_frame(frame())
    assert d.wait_actions(start + 1)[-1].adapter == active


def test_load_adapter_by_manifest_name(shared_policy):
    proc, d = shared_policy
    reply = d.call(LoadAdapter, "load_adapter", LoadAdapter.Request(adapter="open", activate=True))
    assert reply.success and "already loaded" in reply.message and reply.active_adapter == "open"
    listing = d.call(ListAdapters, "list_adapters", ListAdapters.Request())
    assert [a.name for a in listing.adapters] == ["pick", "place", "open"] and listing.active_adapter == "open"
    info = listing.adapters[0]
    assert info.task == "test/pick" and info.rank == 4 and len(info.sha256) == 64 and info.num_parameters > 0


def test_bad_inputs_are_survived_counted_and_reported(shared_policy):
    proc, d = shared_policy
    before = d.status()

    def counted(key: str, n: int = 1) -> None:
        d.wait_for(lambda: int(d.status().get(key, 0)) - int(before.get(key, 0)) >= n, 10, f"{key} counted")

    rgb = frame(8, 8)
    bad: list[tuple[Image, str]] = []
    for enc in ("16UC1", "yuv422"):
        bad.append((Image(height=8, width=8, encoding=enc, step=16, data=bytes(128)), "refused.image_encoding"))
    bad.append((Image(height=8, width=8, encoding="rgb8", step=10, data=bytes(80)), "refused.image_size"))
    bad.append((Image(height=8, width=8, encoding="rgb8", step=24, data=bytes(100)), "refused.image_size"))
    bad.append((Image(height=100000, width=100000, encoding="rgb8", step=300000, data=bytes(30)),
                "refused.image_size"))
    bad.append((Image(height=8, width=8, encoding="bgr8", step=24, data=b""), "refused.image_empty"))
    expected: dict[str, int] = {}
    for msg, key in bad:  # one at a time: a frame replaced before the worker takes it is only "skipped"
        msg.header.stamp = d.node.get_clock().now().to_msg()
        d.camera.publish(msg)
        expected[key] = expected.get(key, 0) + 1
        counted(key, expected[key])
    d.send_instruction("   ")  # empty instruction: refused, the current one kept
    counted("refused.empty_instruction")
    d.send_joints(values=(0.1, math.nan, 0.3, 0.5))  # NaN joint: refused, the last valid one kept
    counted("refused.proprio_nonfinite")
    start = d.action_count()
    d.send_frame(rgb)
    after_bad = d.wait_actions(start + 1)[-1]
    assert after_bad.instruction == "open the drawer"
    # an input the network turns into inf/NaN: counted as a failed inference, stream continues
    stamp = d.now_ns()
    d.send_joints(values=(0.1, 0.2, 3e38, 0.5), stamp_ns=stamp)  # ee_z std 0.5: overflows to inf
    d.send_frame(rgb, stamp_ns=stamp, joints=False)
    counted("errors.non_finite_output")
    start = d.action_count()
    d.send_frame(rgb)
    d.wait_actions(start + 1)
    status = d.status()
    delta = {k: int(status.get(k, 0)) - int(before.get(k, 0)) for k in (
        "refused.image_encoding", "refused.image_size", "refused.image_empty", "refused.empty_instruction",
        "refused.proprio_nonfinite", "errors.non_finite_output")}
    assert delta == {"refused.image_encoding": 2, "refused.image_size": 3, "refused.image_empty": 1,
                     "refused.empty_instruction": 1, "refused.proprio_nonfinite": 1,
                     "errors.non_finite_output": 1}, delta
    assert proc.proc.poll() is None
    log = proc.log()
    assert "[image_encoding] unsupported image encoding '16UC1'" in log
    assert log.count("[image_encoding]") == 1, "a repeated problem kind is logged once, then throttled"


def test_stale_frames_are_not_served_and_counted(shared_policy):
    proc, d = shared_policy
    before = d.status()
    start = d.action_count()
    d.send_frame(frame(), stamp_ns=d.now_ns() - 5_000_000_000)  # max_image_age is 1 s
    d.wait_for(lambda: int(d.status()["stale_frames"]) == int(before["stale_frames"]) + 1, 10, "the stale frame")
    assert d.action_count() == start  # refused before inference: never answered


def test_parameters_are_validated_with_reasons(shared_policy):
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    proc, d = shared_policy

    def set_param(name: str, value) -> tuple[bool, str]:
        if isinstance(value, float):
            pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
        else:
            pv = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
        req = SetParameters.Request(parameters=[Parameter(name=name, value=pv)])
        (result,) = d.call(SetParameters, "set_parameters", req).results
        return result.successful, result.reason

    ok, reason = set_param("max_image_age", -1.0)
    assert not ok and "max_image_age" in reason
    ok, reason = set_param("max_rate", float("nan"))
    assert not ok
    ok, reason = set_param("model_dir", "/elsewhere")
    assert not ok and "unconfigured" in reason
    ok, reason = set_param("camera_topic", "/other")
    assert not ok and "unconfigured" in reason  # the robot's topics are read at configure
    ok, reason = set_param("action_topic", "/other")
    assert not ok and "read-only" in reason.lower()
    assert set_param("max_image_age", 2.0) == (True, "")
    assert d.status()["max_image_age_s"] == "2"
    assert set_param("max_image_age", 1.0)[0]


def test_first_action_array_and_diagnostics(shared_policy):
    from std_msgs.msg import Float32MultiArray

    proc, d = shared_policy
    firsts = []
    d.session.subscribe(Float32MultiArray, proc.topics["first_action_topic"], firsts.append, 10)
    d.session.wait_for_publishers(proc.topics["first_action_topic"], 10)
    start = d.action_count()
    d.send_frame(frame())
    chunk = action_chunk_to_array(d.wait_actions(start + 1)[-1])
    d.wait_for(lambda: len(firsts) > 0, 5, "Float32MultiArray")
    np.testing.assert_allclose(firsts[-1].data, chunk[0])
    status = d.latest_status()
    for key in ("input_rate_hz", "output_rate_hz", "latency_p50_ms", "latency_p95_ms", "skipped_frames",
                "stale_frames", "refused_total", "active_adapter", "execution_provider", "lifecycle_state",
                "serving", "language_provider", "provider_report"):
        assert key in status, key
    assert status["execution_provider"] == "CPUExecutionProvider" and status["lifecycle_state"] == "active"
    assert status["serving"] == "plain" and status["language_provider"] == "CPUExecutionProvider"
    assert float(status["latency_p50_ms"]) > 0
