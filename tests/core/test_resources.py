"""Peak resident memory over a block: what the training-cost table measures per method."""

from __future__ import annotations

import json
import subprocess
import sys

# Run in a fresh interpreter: RSS is the whole process's, and in a pytest-xdist worker threads that earlier
# tests left behind can free memory during the block and hide its peak (seen once: a delta of 0).
MEASURE = """
import json
import numpy as np
from vla_adapter_ros.core.resources import PeakRss, peak_rss_bytes, rss_bytes

big = np.ones(300 * 2**20 // 8)  # 300 MiB, touched
del big  # the lifetime peak now holds it; the block's measurement must not
with PeakRss() as outside:
    pass
with PeakRss() as inside:
    tmp = np.ones(100 * 2**20 // 8)  # 100 MiB
    tmp += 1
    del tmp
print(json.dumps({"rss": rss_bytes(), "peak": peak_rss_bytes(), "outside": outside.delta_bytes,
                  "inside": inside.delta_bytes}))
"""


def test_peak_rss_sees_a_temporary_allocation_inside_the_block_only():
    run = subprocess.run([sys.executable, "-c", MEASURE], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    m = json.loads(run.stdout)
    assert m["rss"] > 0 and m["peak"] >= m["rss"]
    assert m["outside"] is not None and m["outside"] < 20 * 2**20
    assert 90 * 2**20 < m["inside"] < 160 * 2**20
