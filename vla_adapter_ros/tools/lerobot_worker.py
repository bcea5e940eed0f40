"""Runs in the LeRobot venv (scripts/lerobot_env.sh), started by :mod:`vla_adapter_ros.tools.lerobot_dataset`.

LeRobot pins torch < 2.11, so its own code (``LeRobotDataset``: the v3 writer, video encoder and reader)
runs in a process of its own. This module imports only the standard library, numpy, lerobot and
``lerobot_venv`` (the workers' reply, :func:`~vla_adapter_ros.lerobot_venv.answer`), and runs as
``python -m vla_adapter_ros.tools.lerobot_worker`` with only this package's root on ``PYTHONPATH`` (the
LeRobot venv does not have this package installed). The two processes exchange one ``.npz`` per
episode in a staging directory and a JSON request / reply:

- ``write``: ``{"mode": "write", "root", "repo_id", "fps", "features", "robot_type", "episodes": [npz...],
  "append": bool}``: create the dataset at ``root`` (or open it, ``append``), add every frame of every
  episode (``task`` = the frame's instruction), ``save_episode`` each, ``finalize``.
- ``read``: ``{"mode": "read", "root", "repo_id", "out": dir}``: load the dataset offline and write
  each episode's frames (decoded) to ``out/episode_<i>.npz``.

Reply: one JSON line on stdout, ``{"episodes": n, "frames": n, ...}``; an error exits 1 with the message
on stderr.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from vla_adapter_ros.lerobot_venv import answer

IMAGE_PREFIX = "observation.images."
VIDEO_BACKEND = "pyav"  # torchcodec needs the system's FFmpeg libraries; PyAV ships its own


def write(req: dict[str, Any]) -> dict[str, Any]:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = Path(req["root"])
    if req.get("append"):
        ds = LeRobotDataset(req["repo_id"], root=root, video_backend=VIDEO_BACKEND)
    else:
        features = {k: {**v, "shape": tuple(v["shape"])} for k, v in req["features"].items()}
        ds = LeRobotDataset.create(req["repo_id"], fps=int(req["fps"]), features=features, root=root,
                                   robot_type=req.get("robot_type"), use_videos=True)
    cameras = [k for k in ds.features if k.startswith(IMAGE_PREFIX) and ds.features[k]["dtype"] == "video"]
    frames = 0
    for path in req["episodes"]:
        with np.load(path, allow_pickle=False) as ep:
            tasks = [str(t) for t in ep["instructions"]]
            for t, task in enumerate(tasks):
                frame = {key: ep[key][t] for key in cameras}
                frame["observation.state"] = ep["observation.state"][t]
                frame["action"] = ep["action"][t]
                ds.add_frame({**frame, "task": task})
            frames += len(tasks)
        ds.save_episode()
    ds.finalize()
    return {"episodes": len(req["episodes"]), "frames": frames, "total_episodes": ds.meta.total_episodes,
            "total_frames": ds.meta.total_frames, "vcodec": ds.vcodec}


def read(req: dict[str, Any]) -> dict[str, Any]:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset(req["repo_id"], root=Path(req["root"]), video_backend=VIDEO_BACKEND)
    ds._ensure_hf_dataset_loaded()  # what __getitem__ does first
    out = Path(req["out"])
    hf = ds.hf_dataset
    index = np.asarray([int(i) for i in hf["episode_index"]])
    frames = 0
    for e in range(ds.meta.total_episodes):
        rows = np.flatnonzero(index == e).tolist()
        cols = hf[rows]  # every column of the episode's frames (LeRobot's torch transform applied)
        stamps = [float(t) for t in cols["timestamp"]]
        # one decode per camera and episode, through LeRobot's own path (what __getitem__ does frame by frame)
        images = ds._query_videos({key: stamps for key in ds.meta.video_keys}, e) if ds.meta.video_keys else {}
        images |= {key: np.stack([np.asarray(im) for im in cols[key]]) for key in ds.meta.image_keys}
        arrays: dict[str, Any] = {key: _uint8_hwc(np.asarray(v)) for key, v in images.items()}  # (T, H, W, 3) uint8
        arrays["observation.state"] = np.stack([np.asarray(v) for v in cols["observation.state"]]).astype(np.float32)
        arrays["action"] = np.stack([np.asarray(v) for v in cols["action"]]).astype(np.float32)
        arrays["instructions"] = np.asarray([ds.meta.tasks.iloc[int(t)].name for t in cols["task_index"]])
        arrays["frame_index"] = np.asarray([int(i) for i in cols["frame_index"]], np.int64)
        np.savez(out / f"episode_{e:06d}.npz", **arrays)
        frames += len(rows)
    return {"episodes": ds.meta.total_episodes, "frames": frames, "cameras": list(ds.meta.camera_keys),
            "fps": ds.fps}


def _uint8_hwc(frames: np.ndarray) -> np.ndarray:
    """LeRobot's (T, C, H, W) float frames in [0, 1] -> (T, H, W, C) uint8."""
    return (frames.transpose(0, 2, 3, 1) * 255.0).round().clip(0, 255).astype(np.uint8)


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never reach for the Hub (before lerobot)
    req = json.loads(Path(sys.argv[1]).read_text())
    # Any exception: the other process reports it; the type and message are what it needs.
    return answer(lambda: write(req) if req["mode"] == "write" else read(req), (Exception,),
                  lambda exc: f"LeRobot {req['mode']} failed: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    sys.exit(main())
