"""What a camera frame is served with: the instruction in force and the robot state nearest
its stamp. ROS-free; the node feeds it from its subscriptions (executor thread) and the
inference worker reads it.

Topics have no ordering between them, so the state that belongs to a frame can arrive after
the frame, and a best-effort state sample can be lost. The state is therefore matched to the
frame by stamp, not taken as "the latest": the sample nearest the frame's stamp within
``max_skew_s`` (0 = the latest sample, whatever its stamp). When no sample is near yet, the
worker waits (bounded, giving way to a newer frame) on a condition that every new input
notifies, never a polling sleep. A lockstep simulator re-sends a frame together with its
state, so a lost state sample costs one re-send, never a frame answered with another
frame's state.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

HISTORY = 64  # state samples kept: > 0.5 s of a 100 Hz JointState


@dataclass(frozen=True)
class Inputs:
    """What :meth:`InputBuffer.wait_for_frame` found for one frame."""

    instruction: str | None
    state: np.ndarray | None
    state_stamp_ns: int | None = None
    # Why the state is None although the policy needs one: "no_state" (nothing received yet) or
    # "state_skew" (samples exist, none within max_skew_s of the frame).
    missing: str = ""


class InputBuffer:
    """Thread-safe instruction + stamped state samples, with waits that wake on new input."""

    def __init__(self, needs_state: bool, max_skew_s: float, history: int = HISTORY) -> None:
        self.needs_state = needs_state
        self.max_skew_ns = int(max_skew_s * 1e9)
        self._cond = threading.Condition()
        self._instruction: str | None = None
        self._states: deque[tuple[int, np.ndarray]] = deque(maxlen=history)  # (stamp ns, values), arrival order

    # --- writers (executor thread) ---------------------------------------------------
    def set_instruction(self, text: str) -> None:
        with self._cond:
            self._instruction = text
            self._cond.notify_all()

    def add_state(self, stamp_ns: int, values: np.ndarray) -> None:
        with self._cond:
            self._states.append((int(stamp_ns), values))
            self._cond.notify_all()

    def clear_state(self) -> None:
        with self._cond:
            self._states.clear()

    def wake(self) -> None:
        """Wake a waiting worker (a newer frame arrived, serving stopped)."""
        with self._cond:
            self._cond.notify_all()

    @property
    def instruction(self) -> str | None:
        return self._instruction

    # --- reader (worker thread) --------------------------------------------------------
    def match(self, stamp_ns: int) -> Inputs:
        """The inputs for a frame stamped ``stamp_ns`` as they are now (no waiting)."""
        with self._cond:
            return self._match(stamp_ns)

    def _match(self, stamp_ns: int) -> Inputs:
        instruction = self._instruction
        if not self.needs_state:
            return Inputs(instruction, None)
        if not self._states:
            return Inputs(instruction, None, missing="no_state")
        if self.max_skew_ns <= 0:
            stamp, values = self._states[-1]
            return Inputs(instruction, values, stamp)
        stamp, values = min(self._states, key=lambda s: (abs(s[0] - stamp_ns), -s[0]))
        if abs(stamp - stamp_ns) <= self.max_skew_ns:
            return Inputs(instruction, values, stamp)
        return Inputs(instruction, None, missing="state_skew")

    def _can_still_arrive(self, stamp_ns: int) -> bool:
        """A matching state may still come: none newer than the frame's window has arrived yet."""
        newest = max((s for s, _ in self._states), default=None)
        return newest is None or self.max_skew_ns <= 0 or newest <= stamp_ns + self.max_skew_ns

    def wait_for_frame(self, stamp_ns: int, timeout_s: float, give_way: Callable[[], bool]) -> Inputs:
        """The inputs for a frame, waiting up to ``timeout_s`` for missing ones while they can
        still arrive; returns early when ``give_way()`` (a newer frame waits, serving stopped)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                found = self._match(stamp_ns)
                complete = found.instruction is not None and (found.state is not None or not self.needs_state)
                hopeless = found.missing == "state_skew" and not self._can_still_arrive(stamp_ns)
                left = deadline - time.monotonic()
                if complete or hopeless or left <= 0 or give_way():
                    return found
                self._cond.wait(left)
