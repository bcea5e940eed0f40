"""Peak resident memory over a block: what the training-cost table measures per method."""

from __future__ import annotations

import numpy as np

from vla_adapter_ros.core.resources import PeakRss, peak_rss_bytes, rss_bytes


def test_peak_rss_sees_a_temporary_allocation_inside_the_block_only():
    big = np.ones(300 * 2**20 // 8)  # 300 MiB, touched
    del big  # the lifetime peak now holds it; the block's measurement must not
    with PeakRss() as outside:
        pass
    with PeakRss() as inside:
        tmp = np.ones(100 * 2**20 // 8)  # 100 MiB
        tmp += 1
        del tmp
    assert rss_bytes() > 0 and peak_rss_bytes() >= rss_bytes()
    assert outside.delta_bytes is not None and outside.delta_bytes < 20 * 2**20
    assert 90 * 2**20 < inside.delta_bytes < 160 * 2**20
