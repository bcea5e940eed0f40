"""`vla-adapter demo --quick` (what `make demo` runs, 1 episode per task) end to end.
(The demo and launch/sim_demo.launch.py read one parameter file: tests/ros/test_launch_static.py.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from vla_adapter_ros.bags.episodes import read_episode

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = ROOT / "models" / "default"


@pytest.mark.skipif(not (DEFAULT_MODEL / "manifest.json").is_file(), reason="bundled models/default not present")
def test_quick_demo_runs_three_tasks_and_leaves_no_process(ros_env, tmp_path):
    env = {**ros_env, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "vla_adapter_ros.cli", "demo", "--quick", "--out", str(tmp_path),
                             "--executor", "temporal_ensemble"],
                            env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    for task, adapter in (("coffee-button-v3", "coffee_button"), ("faucet-open-v3", "faucet_open"),
                          ("handle-press-v3", "handle_press")):
        assert re.search(rf"^{task}\s+{adapter}\s+[01]/1 .*ms", out, re.M), out[-2000:]
    assert "stopped: {'vla_adapter_sim': 0, 'vla_adapter_node': 0}" in out
    # the same seeds through the executor on a real-time simulator: a row per task, commands at ~80 Hz
    for task in ("coffee-button-v3", "faucet-open-v3", "handle-press-v3"):
        m = re.search(rf"^{task}\s+temporal_ensemble\s+[01]/1\s+[01]/1\s+([\d.]+)Hz", out, re.M)
        assert m and 40 <= float(m.group(1)) <= 100, out[-3000:]
    # stdout is a pipe here (a log): one line per episode, no carriage-return progress
    assert "\r" not in out and len(re.findall(r"episode 1/1 seed 100000: (SUCCESS|fail) in \d+ steps", out)) == 3
    pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", out)]
    assert len(pids) == 2
    for pid in pids:  # reaped: the pid no longer exists (or was reused by something that is not ours)
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        assert b"vla_adapter_" not in cmd, f"stray process {pid}: {cmd!r}"
    assert (tmp_path / "results.json").is_file() and os.path.getsize(tmp_path / "results.json") > 0
    # every lockstep episode recorded as a bag (the frames the node answered) and rendered: a video per task
    results = json.loads((tmp_path / "results.json").read_text())
    for row in results["lockstep"]:
        (outcome,) = row["outcomes"]
        episode = read_episode(outcome["bag"])
        answered = np.asarray([c[0] for c in outcome["chunks"]], np.float32)
        missed = episode.metadata["unrecorded_frames"]  # JointStates lost to the recorder (best effort; rare)
        assert len(episode) + missed == len(answered) and missed <= 2 and episode.success == outcome["success"]
        rows = iter(range(len(answered)))  # the bag's actions are the answers, in order, with the missed left out
        assert all(any(np.array_equal(a, answered[i]) for i in rows) for a in episode.actions)
        video = tmp_path / f"{row['task']}.mp4"
        assert f"video: {video}" in out and cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT) == len(episode)
    gif = tmp_path / "demo.gif"
    assert f"video: {gif}" in out and 0 < gif.stat().st_size <= 2 * 2**20
