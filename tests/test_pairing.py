"""FrameSetPairer: frames of several cameras paired by stamp within a skew. No ROS."""

from __future__ import annotations

import numpy as np
import pytest

from vla_adapter_ros.pairing import FrameSetPairer

MS = 1_000_000


def test_one_camera_makes_every_frame_a_set():
    p = FrameSetPairer(["front"], 0.01)
    s = p.add("front", 5 * MS, "f5")
    assert s is not None and s.items == {"front": "f5"} and s.stamp_ns == 5 * MS and s.skew_ns == 0
    assert p.add("front", 1 * MS, "old").items == {"front": "old"}  # an older frame is still a set
    assert p.sets == 2 and p.unpaired == 0


def test_two_cameras_pair_within_the_skew_and_the_set_carries_the_reference_stamp():
    p = FrameSetPairer(["front", "wrist"], 0.01, reference="wrist")
    assert p.add("front", 100 * MS, "f100") is None  # waiting for its partner
    s = p.add("wrist", 104 * MS, "w104")
    assert s.items == {"front": "f100", "wrist": "w104"} and s.stamp_ns == 104 * MS and s.skew_ns == 4 * MS
    assert p.sets == 1 and p.unpaired == 0 and p.pending() == {"front": 0, "wrist": 0}


def test_frames_too_far_apart_never_pair_and_are_counted():
    p = FrameSetPairer(["a", "b"], 0.005)
    assert p.add("a", 100 * MS, 1) is None
    assert p.add("b", 120 * MS, 2) is None  # 20 ms apart
    s = p.add("a", 121 * MS, 3)
    assert s.items == {"a": 3, "b": 2}
    assert p.unpaired == 1  # a@100 can no longer be part of any set


def test_a_stalled_camera_means_no_sets_and_bounded_queues():
    p = FrameSetPairer(["a", "b"], 0.01, history=4)
    for t in range(10):
        assert p.add("a", t * 33 * MS, t) is None
    assert p.pending() == {"a": 4, "b": 0} and p.unpaired == 6 and p.sets == 0


def test_a_late_frame_older_than_the_last_set_is_refused():
    p = FrameSetPairer(["a", "b"], 0.01)
    p.add("a", 100 * MS, 1)
    assert p.add("b", 101 * MS, 2) is not None
    assert p.add("a", 90 * MS, 3) is None and p.out_of_order == 1


def test_a_resent_set_pairs_again():
    """A lockstep simulator re-sends an unanswered frame set with its stamp: it must make a set again."""
    p = FrameSetPairer(["a", "b"], 0.01)
    p.add("a", 100 * MS, 1)
    assert p.add("b", 100 * MS, 2).stamps == {"a": 100 * MS, "b": 100 * MS}
    assert p.add("a", 100 * MS, 3) is None  # the re-send of a arrives first
    assert p.add("b", 100 * MS, 4).items == {"a": 3, "b": 4} and p.out_of_order == 0


def test_three_cameras_at_30hz_with_offsets_and_jitter_pair_every_moment():
    rng = np.random.default_rng(0)
    cams = ["left", "right", "wrist"]
    p = FrameSetPairer(cams, 0.008)
    arrivals = []
    for k in range(300):
        for i, c in enumerate(cams):
            stamp = k * 33_333_333 + i * 2 * MS + int(rng.integers(0, 2 * MS))
            arrivals.append((stamp + int(rng.integers(0, 10 * MS)), c, stamp))  # delivery delay reorders cameras
    sets = [s for _, c, stamp in sorted(arrivals) if (s := p.add(c, stamp, stamp)) is not None]
    assert len(sets) == 300 and p.unpaired == 0
    assert all(s.skew_ns <= 8 * MS for s in sets)
    assert [s.stamp_ns for s in sets] == sorted(s.stamp_ns for s in sets)


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="distinct"):
        FrameSetPairer(["a", "a"], 0.01)
    with pytest.raises(ValueError, match="reference camera 'c'"):
        FrameSetPairer(["a", "b"], 0.01, reference="c")
    with pytest.raises(KeyError, match="unknown camera 'z'"):
        FrameSetPairer(["a"], 0.01).add("z", 0, None)
