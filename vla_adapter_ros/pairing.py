"""Frame sets from several cameras: the frames of one moment, paired by header stamp.

Standard library only, so the policy node (live frames) and the bag reader (recorded frames) pair
with the same rule.

message_filters' ApproximateTimeSynchronizer is not installable here (and is not in every ROS
install), so this is written by hand, with the rule a policy needs: a set is one frame per
camera whose stamps lie within ``max_skew`` of each other; it is emitted as soon as its last
member arrives (no waiting for a better candidate: a policy wants the newest observation), the
newest set wins, and every frame that can no longer be part of a set (older than the last set
emitted, or pushed out of a camera's short history) is counted as unpaired. With one camera
every frame is a set, in whatever order frames come (the server judges their age). Choose ``max_skew`` below half a camera period, or a frame may pair with
its neighbour's predecessor.

The set's stamp is the reference camera's (the ActionChunk header carries it).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
HISTORY = 8  # frames kept per camera while waiting for partners


@dataclass(frozen=True)
class FrameSet(Generic[T]):
    stamp_ns: int  # the reference camera's stamp
    items: dict[str, T]  # camera -> its frame (in the contract's camera order)
    stamps: dict[str, int]
    skew_ns: int  # newest - oldest stamp in the set


class FrameSetPairer(Generic[T]):
    """Feed frames with :meth:`add`; it returns a :class:`FrameSet` when one completes."""

    def __init__(self, cameras: Sequence[str], max_skew_s: float, reference: str | None = None,
                 history: int = HISTORY) -> None:
        if not cameras or len(set(cameras)) != len(cameras):
            raise ValueError(f"cameras must be distinct names, got {list(cameras)}")
        self.cameras = tuple(cameras)
        self.reference = reference or self.cameras[0]
        if self.reference not in self.cameras:
            raise ValueError(f"reference camera {self.reference!r} is not one of {list(self.cameras)}")
        self.max_skew_ns = int(max_skew_s * 1e9)
        self._queues: dict[str, deque[tuple[int, T]]] = {c: deque() for c in self.cameras}
        self._history = history
        self._last_set_ns: int | None = None
        self._lock = threading.Lock()
        self.sets = 0
        self.unpaired = 0  # frames that will never be part of a set
        self.out_of_order = 0  # frames older than the last set emitted (arrived too late)

    def add(self, camera: str, stamp_ns: int, item: T) -> FrameSet[T] | None:
        if camera not in self._queues:
            raise KeyError(f"unknown camera {camera!r}; cameras: {list(self.cameras)}")
        with self._lock:
            if len(self.cameras) == 1:  # every frame is a set; its age is the server's rule, not ours
                self.sets += 1
                return FrameSet(stamp_ns, {camera: item}, {camera: stamp_ns}, 0)
            # Older than the last set: too late. Equal: a re-send of that set's frames (a lockstep simulator
            # re-sends an unanswered frame with its stamp), which pairs again with its partners' re-sends.
            if self._last_set_ns is not None and stamp_ns < self._last_set_ns:
                self.out_of_order += 1
                self.unpaired += 1
                return None
            queue = self._queues[camera]
            queue.append((stamp_ns, item))
            if len(queue) > self._history:
                queue.popleft()
                self.unpaired += 1
            chosen = self._match(camera, stamp_ns)
            if chosen is None:
                return None
            return self._emit(chosen)

    def _match(self, camera: str, stamp_ns: int) -> dict[str, tuple[int, T]] | None:
        """For the new frame, each other camera's frame nearest in stamp; None unless all within the skew."""
        chosen = {camera: self._queues[camera][-1]}
        for other in self.cameras:
            if other == camera:
                continue
            queue = self._queues[other]
            if not queue:
                return None
            chosen[other] = min(queue, key=lambda f: (abs(f[0] - stamp_ns), -f[0]))
        stamps = [s for s, _ in chosen.values()]
        return chosen if max(stamps) - min(stamps) <= self.max_skew_ns else None

    def _emit(self, chosen: dict[str, tuple[int, T]]) -> FrameSet[T]:
        newest = max(s for s, _ in chosen.values())
        for queue in self._queues.values():  # everything up to the set is used or can never pair
            while queue and queue[0][0] <= newest:
                stamp, item = queue.popleft()
                if all(stamp != s or item is not i for s, i in chosen.values()):
                    self.unpaired += 1
        self._last_set_ns = newest
        self.sets += 1
        stamps = {c: chosen[c][0] for c in self.cameras}
        return FrameSet(stamps[self.reference], {c: chosen[c][1] for c in self.cameras}, stamps,
                        max(stamps.values()) - min(stamps.values()))

    def pending(self) -> dict[str, int]:
        """Frames waiting for partners, per camera."""
        with self._lock:
            return {c: len(q) for c, q in self._queues.items()}
