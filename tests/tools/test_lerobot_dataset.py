"""`vla-adapter dataset to-lerobot|from-lerobot` against the real LeRobot 0.4.4 (its own venv, offline).

The LeRobot venv comes from scripts/lerobot_env.sh (made on first use, ~2 min; a missing venv is built,
never skipped). What we write is loaded by LeRobot's public ``LeRobotDataset(repo_id, root=DIR)`` in
that venv; images come back through its video decoder (AV1 written by LeRobot, decoded by PyAV), so
they are compared within the codec's error, measured here on Meta-World frames: mean |diff| about 3-4
(of 255) per frame, a few isolated pixels more (4:2:0 chroma on thin coloured edges).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vla_adapter_ros.bags.episodes import read_episode
from vla_adapter_ros.cli import main
from vla_adapter_ros.contract import RobotContract
from vla_adapter_ros.core.record import record
from vla_adapter_ros.processing import PIXEL_SCALE
from vla_adapter_ros.tools import lerobot_dataset as lr

ROOT = Path(__file__).resolve().parents[2]
SAWYER_FILE = ROOT / "config" / "robots" / "metaworld_sawyer.yaml"
SAWYER = RobotContract.load(SAWYER_FILE)
DEMO_BAG = ROOT / "tests" / "data" / "demo_bag"
# the first use builds the LeRobot venv (~2 min and more on a cold cache): beyond the suite's 300 s per test
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
MEAN_ERROR = 8.0  # per frame, of 255: the AV1 codec's (measured ~3.7 on these frames)

CHECK = r"""
import json, sys, numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset
ds = LeRobotDataset(sys.argv[1], root=sys.argv[2], video_backend="pyav")
items = [ds[i] for i in range(len(ds))]
cams = list(ds.meta.camera_keys)
np.savez(sys.argv[3], **{k: np.stack([(it[k].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for it in items])
                         for k in cams},
         state=np.stack([it["observation.state"].numpy() for it in items]),
         action=np.stack([it["action"].numpy() for it in items]),
         episode=np.asarray([int(it["episode_index"]) for it in items]),
         task=np.asarray([it["task"] for it in items]))
print(json.dumps({"episodes": ds.num_episodes, "frames": ds.num_frames, "fps": ds.fps, "cameras": cams,
                  "version": ds.meta.info["codebase_version"], "features": sorted(ds.features)}))
"""


@pytest.fixture(scope="session")
def lerobot_env() -> str:
    """The LeRobot venv's python (scripts/lerobot_env.sh makes it when missing); VLA_LEROBOT_VENV points at it."""
    venv = subprocess.run([str(ROOT / "scripts" / "lerobot_env.sh")], capture_output=True, text=True, timeout=1800)
    assert venv.returncode == 0, venv.stderr[-3000:]
    os.environ["VLA_LEROBOT_VENV"] = venv.stdout.strip().splitlines()[-1]
    return str(Path(os.environ["VLA_LEROBOT_VENV"]) / "bin" / "python")


@pytest.fixture(scope="module")
def sawyer_bags(tmp_path_factory) -> list[Path]:
    """Two real two-camera Meta-World episodes (corner + wrist, 96x96) of different lengths, with the contract."""
    out = tmp_path_factory.mktemp("sawyer")
    a = record(["reach"], 1, 0, out, max_steps=14, contract=SAWYER, progress=False)
    b = record(["drawer-open"], 1, 1, out, max_steps=9, contract=SAWYER, progress=False)
    return [s.path for s in a + b if s.path is not None]


def load_with_lerobot(python: str, root: Path, tmp: Path) -> tuple[dict, dict]:
    """LeRobot's own LeRobotDataset(repo_id, root=DIR), offline: its summary and every frame."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"}
    done = subprocess.run([python, "-c", CHECK, f"local/{root.name}", str(root), str(tmp / "frames.npz")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(tmp / "frames.npz") as f:
        return json.loads(done.stdout.strip().splitlines()[-1]), dict(f)


@pytest.fixture(scope="module")
def converted(lerobot_env, sawyer_bags, tmp_path_factory) -> Path:
    """The two bags as a LeRobot dataset, written as a resumed conversion: the first, then both."""
    out = tmp_path_factory.mktemp("lerobot") / "ds"
    assert main(["dataset", "to-lerobot", str(sawyer_bags[0]), "--out", str(out), "--fps", "20"]) == 0
    assert lr.read_info(out)["total_episodes"] == 1
    # resumed with both bags: the one already in it is skipped, the dataset grows by the other
    assert main(["dataset", "to-lerobot", *map(str, sawyer_bags), "--out", str(out)]) == 0
    assert not list(out.parent.glob(".ds.*"))  # no partial, staging or old copy left
    return out


def test_to_lerobot_loads_in_lerobot_with_our_frames_and_appends_resumably(lerobot_env, sawyer_bags, converted,
                                                                          tmp_path):
    out = converted
    summary, frames = load_with_lerobot(lerobot_env, out, tmp_path)
    episodes = [read_episode(p, contract=SAWYER) for p in sawyer_bags]
    assert (summary["version"], summary["episodes"], summary["fps"]) == ("v3.0", 2, 20)
    assert summary["frames"] == sum(len(e) for e in episodes) and len(episodes[0]) != len(episodes[1])
    assert summary["cameras"] == ["observation.images.corner", "observation.images.wrist"]
    assert {"observation.state", "action"} <= set(summary["features"])
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["features"]["observation.state"]["names"] == list(SAWYER.state_names)
    assert info["features"]["action"]["names"] == list(SAWYER.action_names)
    assert (out / "meta" / "stats.json").is_file() and (out / "meta" / "tasks.parquet").is_file()
    for e, ep in enumerate(episodes):
        rows = frames["episode"] == e
        assert np.array_equal(frames["state"][rows], ep.proprio) and np.array_equal(frames["action"][rows], ep.actions)
        assert list(frames["task"][rows]) == ep.instructions
        for cam in ("corner", "wrist"):
            err = np.abs(frames[f"observation.images.{cam}"][rows].astype(np.float32) - ep.views[cam])
            assert err.mean(axis=(1, 2, 3)).max() < MEAN_ERROR, (cam, err.mean(axis=(1, 2, 3)))


def test_round_trip_gives_the_same_training_batches(sawyer_bags, converted, tmp_path, capsys):
    from vla_adapter_ros.core.config import ModelConfig
    from vla_adapter_ros.core.train import build_dataset

    assert main(["dataset", "from-lerobot", str(converted), "--out", str(tmp_path / "bags")]) == 1
    assert "2 cameras" in capsys.readouterr().err and not (tmp_path / "bags").exists()  # which cameras are which?
    assert main(["dataset", "from-lerobot", str(converted), "--out", str(tmp_path / "bags"),
                 "--contract", str(SAWYER_FILE)]) == 0
    back = sorted((tmp_path / "bags").iterdir())
    assert len(back) == 2
    config = ModelConfig(image_size=96, patch_size=12, d_model=32, vision_layers=1, fusion_layers=1, n_heads=2,
                         mlp_ratio=2, chunk_length=3, cameras=("corner", "wrist"))
    ours = build_dataset([str(p) for p in sawyer_bags], config, contract=SAWYER)
    theirs = build_dataset([str(p) for p in back], config, contract=SAWYER)
    assert len(ours) == len(theirs) and ours.instructions == theirs.instructions
    for i in range(len(ours)):
        a, b = ours[i], theirs[i]
        assert a.keys() == b.keys()
        for key in a:
            if key == "image":  # (V, 3, H, W) normalised pixels: within the codec's error, in pixel units
                err = np.abs(np.asarray(a[key]) - np.asarray(b[key])) / PIXEL_SCALE
                assert float(err.mean()) < MEAN_ERROR, (i, float(err.mean()))
            elif isinstance(a[key], str):
                assert a[key] == b[key]
            else:
                assert np.array_equal(np.asarray(a[key]), np.asarray(b[key])), key


def test_bad_input_is_refused_with_what_is_wrong(sawyer_bags, converted, tmp_path, capsys):
    def fails(*argv: str) -> str:
        assert main(["dataset", *argv]) == 1
        return capsys.readouterr().err

    # a bag without a topic the contract needs
    assert "/camera/corner/image_raw" in fails("to-lerobot", str(DEMO_BAG), "--out", str(tmp_path / "x"),
                                               "--contract", str(SAWYER_FILE))
    # one camera in one episode, two in the other
    err = fails("to-lerobot", str(DEMO_BAG), str(sawyer_bags[0]), "--out", str(tmp_path / "x"))
    assert "differ from the first bag's" in err and "observation.images.corner" in err
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.*"))
    # a directory holding another dataset is never mixed into
    before = (converted / "meta" / "info.json").read_text()
    assert "holds a different dataset" in fails("to-lerobot", str(DEMO_BAG), "--out", str(converted))
    assert (converted / "meta" / "info.json").read_text() == before and not list(converted.parent.glob(".ds.*"))
    # LeRobot datasets: missing feature, wrong shape, another version
    for edit, needle in ((lambda f: f.pop("action"), "feature 'action' is missing"),
                         (lambda f: f["observation.state"].update(shape=[2, 2]), "'observation.state' has shape [2, 2]"),
                         (lambda f: f["observation.images.wrist"].update(shape=[96, 96]),
                          "'observation.images.wrist' has shape [96, 96]")):
        bad = tmp_path / "bad"
        subprocess.run(["cp", "-r", str(converted), str(bad)], check=True)
        info = json.loads((bad / "meta" / "info.json").read_text())
        edit(info["features"])
        (bad / "meta" / "info.json").write_text(json.dumps(info))
        assert needle in fails("from-lerobot", str(bad), "--out", str(tmp_path / "b"))
        subprocess.run(["rm", "-rf", str(bad)], check=True)
    info = json.loads(before)
    (tmp_path / "old" / "meta").mkdir(parents=True)
    (tmp_path / "old" / "meta" / "info.json").write_text(json.dumps({**info, "codebase_version": "v2.1"}))
    assert "LeRobotDataset 'v2.1'; only v3.0" in fails("from-lerobot", str(tmp_path / "old"), "--out",
                                                       str(tmp_path / "b"))
    assert "LeRobotDataset 'v2.1'" in fails("to-lerobot", str(DEMO_BAG), "--out", str(tmp_path / "old"))
    assert "not a LeRobot dataset" in fails("from-lerobot", str(tmp_path), "--out", str(tmp_path / "b"))


def test_an_interrupted_conversion_leaves_no_dataset_and_the_next_run_completes(lerobot_env, sawyer_bags, tmp_path):
    out = tmp_path / "ds"
    cmd = [sys.executable, "-m", "vla_adapter_ros.cli", "dataset", "to-lerobot", *map(str, sawyer_bags), "--out",
           str(out)]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / ".ds.partial" / "meta").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the conversion finished before it could be interrupted"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its LeRobot process: a power cut
        proc.wait()
    assert not out.exists()  # nothing under --out that LeRobot could load
    assert main(["dataset", "to-lerobot", *map(str, sawyer_bags), "--out", str(out)]) == 0
    assert not (tmp_path / ".ds.partial").exists()
    assert lr.read_info(out)["total_episodes"] == 2


def test_train_straight_from_a_lerobot_dataset(converted, tmp_path, capsys):
    """`vla-adapter train --lerobot DIR`: the dataset's episodes as bags (once), read like any bag."""
    out = tmp_path / "run"
    argv = ["train", "--regime", "pretrain", "--lerobot", str(converted), "--contract", str(SAWYER_FILE),
            "--steps", "1", "--out-dir", str(out), "--set", "batch_size=2", "--set", "warmup_steps=0",
            "--set", "progress=false", "--set", "plot=false", "--set", "model.d_model=32",
            "--set", "model.vision_layers=1", "--set", "model.fusion_layers=1", "--set", "model.n_heads=2"]
    assert main(argv) == 0
    assert "converted" in capsys.readouterr().err
    bags = sorted((out / "lerobot_bags" / converted.name).iterdir())
    assert len(bags) == 2 and (out / "checkpoint" / "model.safetensors").is_file()
    assert main(argv) == 0  # again: the bags are converted once
    assert "converted" not in capsys.readouterr().err
