"""InputBuffer: a frame is served with the state sample nearest its stamp, never a wrong one. No ROS."""

from __future__ import annotations

import threading
import time

import numpy as np

from vla_adapter_ros.serving.inputs import InputBuffer

MS = 1_000_000


def state(v: float) -> np.ndarray:
    return np.full(4, v, np.float32)


def never() -> bool:
    return False


def test_nearest_sample_within_the_skew_wins_and_ties_go_to_the_newer():
    buf = InputBuffer(needs_state=True, max_skew_s=0.05)
    buf.set_instruction("go")
    for t in (100, 130, 160, 190):
        buf.add_state(t * MS, state(t))
    found = buf.match(155 * MS)
    assert found.instruction == "go" and found.state_stamp_ns == 160 * MS and found.state[0] == 160
    assert buf.match(145 * MS).state_stamp_ns == 160 * MS  # equally near 130 and 160: the newer
    far = buf.match(300 * MS)
    assert far.state is None and far.missing == "state_skew"


def test_skew_zero_means_the_latest_sample_whatever_its_stamp():
    buf = InputBuffer(needs_state=True, max_skew_s=0.0)
    buf.add_state(5 * MS, state(1))
    buf.add_state(1 * MS, state(2))  # arrived last, stamped earlier
    assert buf.match(10**12).state[0] == 2


def test_no_state_needed_or_none_received():
    assert InputBuffer(needs_state=False, max_skew_s=0.1).match(0).missing == ""
    assert InputBuffer(needs_state=True, max_skew_s=0.1).match(0).missing == "no_state"


def test_a_frame_waits_for_its_late_state_and_wakes_when_it_arrives():
    buf = InputBuffer(needs_state=True, max_skew_s=0.001)
    buf.set_instruction("go")
    buf.add_state(100 * MS, state(100))  # the previous frame's: 100 ms older, outside the skew

    def late() -> None:
        time.sleep(0.05)  # the scenario: the state arrives 50 ms after its frame
        buf.add_state(200 * MS, state(200))

    threading.Thread(target=late).start()
    t0 = time.monotonic()
    found = buf.wait_for_frame(200 * MS, timeout_s=5.0, give_way=never)
    assert found.state_stamp_ns == 200 * MS and found.state[0] == 200  # never the previous frame's state
    assert time.monotonic() - t0 < 2.0  # woken by the arrival, not by the timeout


def test_a_lost_state_makes_the_frame_unservable_instead_of_taking_another_frames_state():
    buf = InputBuffer(needs_state=True, max_skew_s=0.001)
    buf.set_instruction("go")
    buf.add_state(100 * MS, state(100))
    found = buf.wait_for_frame(200 * MS, timeout_s=0.1, give_way=never)
    assert found.state is None and found.missing == "state_skew"


def test_waiting_stops_at_once_when_no_matching_state_can_come_or_a_newer_frame_waits():
    buf = InputBuffer(needs_state=True, max_skew_s=0.01)
    buf.set_instruction("go")
    buf.add_state(500 * MS, state(500))  # newer than the frame's window: its own state will not come
    t0 = time.monotonic()
    assert buf.wait_for_frame(200 * MS, timeout_s=5.0, give_way=never).missing == "state_skew"
    assert time.monotonic() - t0 < 1.0
    newer = threading.Event()
    threading.Timer(0.05, lambda: (newer.set(), buf.wake())).start()
    t0 = time.monotonic()
    assert buf.wait_for_frame(900 * MS, timeout_s=5.0, give_way=newer.is_set).state is None
    assert time.monotonic() - t0 < 2.0


def test_the_first_instruction_is_awaited():
    buf = InputBuffer(needs_state=False, max_skew_s=0.1)
    threading.Timer(0.05, lambda: buf.set_instruction("pick")).start()
    assert buf.wait_for_frame(0, timeout_s=5.0, give_way=never).instruction == "pick"
    assert InputBuffer(needs_state=False, max_skew_s=0.1).wait_for_frame(0, 0.05, never).instruction is None
