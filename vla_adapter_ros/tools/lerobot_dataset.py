"""`vla-adapter dataset to-lerobot|from-lerobot`: episode bags <-> LeRobotDataset v3, with LeRobot's own code.

``to-lerobot BAG... --out DIR [--contract FILE] [--fps N]``: every bag is read and aligned by
:func:`vla_adapter_ros.bags.episodes.read_episode` (the reader training uses: frame sets of every camera,
the state and action of each by the policy node's rules), and written by LeRobot's own writer
(``LeRobotDataset.create`` / ``add_frame`` / ``save_episode`` / ``finalize``: parquet frames, one AV1
video per camera, ``meta/info.json``, stats, tasks, episodes) in the LeRobot venv
(:mod:`vla_adapter_ros.tools.lerobot_worker`). Features: ``observation.images.<camera>`` for each camera
of the contract (``camera`` for a bag read without one), ``observation.state`` and ``action`` named by
the contract; each frame's ``task`` is its instruction; frame k of an episode is at ``k / fps`` s
(``fps`` default: the first episode's median frame rate).

``from-lerobot DIR --out BAGDIR [--contract FILE]``: a v3 dataset read by LeRobot (videos decoded with
PyAV), one episode bag per episode (``EpisodeWriter``; several cameras need the robot contract naming
them), so training reads it through the same alignment and normalisation as any bag.

Safety: a conversion writes to ``.<name>.partial`` beside ``--out`` and renames it into place when
LeRobot finished, so an interrupted run never leaves a dataset (or bag directory) under ``--out``; the
next run removes the stale partial. An existing ``--out`` dataset is appended to only when its features
are ours exactly (bags already in it, listed in ``meta/vla_adapter_ros.json``, are skipped: a resumed
conversion adds only the rest); any other dataset is refused, never mixed. No torch, no rclpy here.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vla_adapter_ros import lerobot_venv
from vla_adapter_ros.bags.episodes import Episode, find_episodes, read_episode
from vla_adapter_ros.bags.errors import BagError
from vla_adapter_ros.bags.reader import stored_contract
from vla_adapter_ros.bags.writer import EpisodeWriter
from vla_adapter_ros.contract import ContractError, RobotContract

WORKER = "vla_adapter_ros.tools.lerobot_worker"  # run as a module (it imports lerobot_venv.answer)
CODEBASE_VERSION = "v3.0"  # the LeRobotDataset format written and read (LeRobot 0.4.x)
IMAGE_PREFIX = "observation.images."
STATE, ACTION = "observation.state", "action"
SOURCES_FILE = "meta/vla_adapter_ros.json"  # the bags a dataset was converted from (resumable appends)
T0_NS = 1_000_000_000  # stamp of frame 0 in bags made from a dataset (rosbag2 stamps must be > 0)


class DatasetError(ValueError):
    """A conversion that cannot be done: the message names the file, the feature and the problem."""


# --- the LeRobot venv ------------------------------------------------------------------------------
def lerobot_python() -> str | None:
    """The Python that runs LeRobot: this interpreter when it has lerobot itself, else the LeRobot venv's
    (None: vla_adapter_ros.lerobot_venv makes it on first use)."""
    return sys.executable if importlib.util.find_spec("lerobot") is not None else None


def run_worker(request: dict[str, Any], staging: Path) -> dict[str, Any]:
    """One request to :mod:`lerobot_worker` in the LeRobot venv; its JSON reply, or a DatasetError with its message."""
    path = staging / f"request_{request['mode']}.json"
    path.write_text(json.dumps(request))
    try:
        return dict(lerobot_venv.run(WORKER, str(path), python=lerobot_python(), prefer="LeRobot "))
    except lerobot_venv.LeRobotWorkerError as exc:
        raise DatasetError(str(exc)) from exc
    except lerobot_venv.LeRobotVenvError as exc:
        raise DatasetError(f"LeRobot is not available: {exc} (LeRobot pins torch < 2.11, so it has a venv of its "
                           "own; VLA_LEROBOT_VENV chooses one with lerobot==0.4.4)") from exc


# --- bags -> LeRobot --------------------------------------------------------------------------------
def features_of(ep: Episode) -> dict[str, Any]:
    """The LeRobot features of an episode: a video per camera, state and action with their names."""
    if ep.proprio.shape[1] == 0:
        raise DatasetError(f"{ep.path}: the episode has no state (observation.state); LeRobot datasets need one")
    features: dict[str, Any] = {f"{IMAGE_PREFIX}{cam}": {"dtype": "video", "shape": list(v.shape[1:]),
                                                         "names": ["height", "width", "channels"]}
                                for cam, v in ep.views.items()}
    features[STATE] = {"dtype": "float32", "shape": [ep.proprio.shape[1]], "names": list(ep.proprio_names) or None}
    features[ACTION] = {"dtype": "float32", "shape": [ep.actions.shape[1]], "names": list(ep.action_names) or None}
    return features


def episode_fps(ep: Episode) -> int:
    if len(ep) < 2:
        raise DatasetError(f"{ep.path}: one frame; give --fps")
    return max(1, round(1e9 / float(np.median(np.diff(ep.stamps)))))


def read_info(root: Path) -> dict[str, Any]:
    """``meta/info.json`` of a LeRobotDataset v3 at ``root``; another version or no dataset is a DatasetError."""
    info_path = root / "meta" / "info.json"
    if not info_path.is_file():
        raise DatasetError(f"{root}: not a LeRobot dataset (no meta/info.json)")
    try:
        info = json.loads(info_path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{info_path}: not JSON: {exc}") from exc
    version = info.get("codebase_version")
    if version != CODEBASE_VERSION:
        raise DatasetError(f"{root}: LeRobotDataset {version!r}; only {CODEBASE_VERSION} is read and written here "
                           "(convert older datasets with LeRobot's own convert_dataset_v21_to_v30)")
    return info


def _ours(features: dict[str, Any]) -> dict[str, Any]:
    """The features that carry data (not LeRobot's index columns), their dtype, shape and names."""
    return {k: {"dtype": v["dtype"], "shape": list(v["shape"]), "names": v.get("names")}
            for k, v in features.items() if k.startswith(IMAGE_PREFIX) or k in (STATE, ACTION)}


@dataclass
class Conversion:
    out: Path
    episodes: int  # written now
    frames: int
    skipped: int  # bags already in the dataset
    seconds: float
    total_episodes: int = 0


def _partial(out: Path) -> Path:
    return out.parent / f".{out.name}.partial"


def to_lerobot(bags: Sequence[str | Path], out: str | Path, *, contract: RobotContract | None = None,
               fps: int | None = None, repo_id: str | None = None) -> Conversion:
    """Convert the episode bags ``bags`` into the LeRobotDataset v3 ``out`` (see the module docstring)."""
    start = time.perf_counter()
    out = Path(out)
    paths = find_episodes(list(bags))
    existing = read_info(out) if out.exists() and any(out.iterdir()) else None
    done = set(json.loads((out / SOURCES_FILE).read_text())) if existing and (out / SOURCES_FILE).is_file() else set()
    todo = [p for p in paths if str(p.resolve()) not in done]
    partial = _partial(out)
    shutil.rmtree(partial, ignore_errors=True)  # a previous run's, interrupted
    if not todo:
        return Conversion(out, 0, 0, len(paths), time.perf_counter() - start, existing["total_episodes"] if existing else 0)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        features, files, frames, rate = None, [], 0, fps
        for i, path in enumerate(todo):
            ep = read_episode(path, contract=contract if contract is not None else stored_contract(path))
            these = features_of(ep)
            if features is None:
                features = these
                rate = rate or episode_fps(ep)
                if existing is not None and _ours(existing["features"]) != _ours(features):
                    raise DatasetError(f"{out} holds a different dataset (features {_ours(existing['features'])}); "
                                       f"these bags have {_ours(features)}: refusing to mix them; choose another --out")
            elif these != features:
                raise DatasetError(f"{path}: features {_ours(these)} differ from the first bag's {_ours(features)} "
                                   f"({todo[0]}): one dataset holds one camera layout, state and action")
            arrays: dict[str, Any] = {f"{IMAGE_PREFIX}{cam}": v for cam, v in ep.views.items()}
            arrays |= {STATE: ep.proprio, ACTION: ep.actions, "instructions": np.asarray(ep.instructions)}
            files.append(staging / f"episode_{i:06d}.npz")
            np.savez(files[-1], **arrays)
            frames += len(ep)
        if existing is not None:
            rate = int(existing["fps"]) if fps is None else fps
            if rate != existing["fps"]:
                raise DatasetError(f"--fps {fps}: {out} is a {existing['fps']} fps dataset")
            shutil.copytree(out, partial)
        robot = contract.robot if contract is not None else None
        reply = run_worker({"mode": "write", "root": str(partial), "repo_id": repo_id or f"local/{out.name}",
                            "fps": rate, "features": features, "robot_type": robot, "append": existing is not None,
                            "episodes": [str(f) for f in files]}, staging)
        (partial / SOURCES_FILE).write_text(json.dumps(sorted(done | {str(p.resolve()) for p in todo}), indent=1))
        if existing is not None:  # swap: the old dataset stays whole until the new one is in place
            old = out.parent / f".{out.name}.old"
            out.rename(old)
            partial.rename(out)
            shutil.rmtree(old)
        else:
            if out.exists():
                out.rmdir()  # empty
            partial.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(partial, ignore_errors=True)
    return Conversion(out, len(todo), frames, len(paths) - len(todo), time.perf_counter() - start,
                      int(reply["total_episodes"]))


# --- LeRobot -> bags --------------------------------------------------------------------------------
def dataset_layout(root: Path, info: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """(cameras, state names, action names) of a dataset, each feature checked; a DatasetError names what is wrong."""
    features = info.get("features", {})
    for key, ndim in ((STATE, 1), (ACTION, 1)):
        if key not in features:
            raise DatasetError(f"{root}: feature {key!r} is missing (features: {sorted(features)})")
        shape = list(features[key].get("shape", []))
        if len(shape) != ndim or shape[0] < 1:
            raise DatasetError(f"{root}: feature {key!r} has shape {shape}, expected ({'N' if key == STATE else 'A'},)")
    cameras = [k for k, v in features.items() if k.startswith(IMAGE_PREFIX) and v.get("dtype") in ("video", "image")]
    if not cameras:
        raise DatasetError(f"{root}: no camera feature ({IMAGE_PREFIX}<camera>, dtype video or image)")
    for key in cameras:
        shape = list(features[key].get("shape", []))
        if len(shape) != 3 or shape[2] != 3:
            raise DatasetError(f"{root}: feature {key!r} has shape {shape}, expected (height, width, 3)")

    def names(key: str) -> list[str]:
        given = features[key].get("names")
        n = features[key]["shape"][0]
        given = given if isinstance(given, list) and len(given) == n and all(isinstance(s, str) for s in given) else None
        return given or [f"{key.split('.')[-1]}_{i}" for i in range(n)]

    return [k.removeprefix(IMAGE_PREFIX) for k in cameras], names(STATE), names(ACTION)


def from_lerobot(root: str | Path, out: str | Path, *, contract: RobotContract | None = None) -> Conversion:
    """Write every episode of the LeRobotDataset v3 ``root`` as an episode bag under ``out``."""
    start = time.perf_counter()
    root, out = Path(root), Path(out)
    info = read_info(root)
    cameras, state_names, action_names = dataset_layout(root, info)
    if contract is None and len(cameras) > 1:
        raise DatasetError(f"{root}: {len(cameras)} cameras {cameras}: give --contract, the robot contract naming them")
    if contract is not None:
        if sorted(contract.camera_names) != sorted(cameras):
            raise DatasetError(f"contract {contract.robot!r} has cameras {list(contract.camera_names)}, the dataset "
                               f"{cameras}")
        for what, ours, theirs in (("state", contract.state_names, state_names),
                                   ("actions", contract.action_names, action_names)):
            if len(ours) != len(theirs):
                raise DatasetError(f"contract {contract.robot!r} has {len(ours)} {what} {list(ours)}, the dataset "
                                   f"{len(theirs)} {theirs}")
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"--out {out} exists and is not empty: bags are written to a new directory only")
    partial = _partial(out)
    shutil.rmtree(partial, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    frames = 0
    try:
        reply = run_worker({"mode": "read", "root": str(root), "repo_id": f"local/{root.name}", "out": str(staging)},
                           staging)
        period = 1_000_000_000 / float(info["fps"])
        partial.mkdir()
        for e in range(int(reply["episodes"])):
            with np.load(staging / f"episode_{e:06d}.npz", allow_pickle=False) as ep:
                views = {cam: ep[f"{IMAGE_PREFIX}{cam}"] for cam in cameras}
                instructions = [str(s) for s in ep["instructions"]]
                stamps = [T0_NS + round(int(k) * period) for k in ep["frame_index"]]
                writer = EpisodeWriter(partial / f"{root.name}_episode_{e:06d}", task=instructions[0], seed=e,
                                       episode=e, proprio_names=state_names, action_names=action_names,
                                       contract=contract, dt=1.0 / float(info["fps"]), action_source="lerobot",
                                       metadata={"source": f"LeRobotDataset {root}", "lerobot_episode": e})
                with writer:
                    for t, stamp in enumerate(stamps):
                        image = {c: v[t] for c, v in views.items()} if contract is not None else views[cameras[0]][t]
                        writer.write_step(stamp, image, ep[STATE][t], ep[ACTION][t], instruction=instructions[t])
                frames += len(stamps)
        if out.exists():
            out.rmdir()
        partial.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(partial, ignore_errors=True)
    return Conversion(out, int(reply["episodes"]), frames, 0, time.perf_counter() - start, int(reply["episodes"]))


# --- CLI ----------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="dataset_command", metavar="ACTION", required=True,
                                parser_class=argparse.ArgumentParser)
    to = sub.add_parser("to-lerobot", help="episode bags -> LeRobotDataset v3 (LeRobot's own writer)")
    to.add_argument("bags", nargs="+", help="episode bags: directories (searched), bags or globs")
    to.add_argument("--out", type=Path, required=True, help="dataset directory (new, or one of these bags' to extend)")
    to.add_argument("--contract", type=Path, help="robot contract to read the bags with (default: the one in each bag)")
    to.add_argument("--fps", type=int, help="frames per second (default: the first episode's frame rate)")
    to.add_argument("--repo-id", help="repo_id in the dataset (default local/<out name>)")
    frm = sub.add_parser("from-lerobot", help="LeRobotDataset v3 -> episode bags (one per episode)")
    frm.add_argument("dataset", type=Path, help="LeRobotDataset v3 directory (with meta/info.json)")
    frm.add_argument("--out", type=Path, required=True, help="new directory for the bags")
    frm.add_argument("--contract", type=Path, help="robot contract naming the dataset's cameras (needed for several)")


def run(args: argparse.Namespace) -> int:
    try:
        contract = RobotContract.load(args.contract) if args.contract else None
        if args.dataset_command == "to-lerobot":
            c = to_lerobot(args.bags, args.out, contract=contract, fps=args.fps, repo_id=args.repo_id)
            extra = f", {c.skipped} already in it" if c.skipped else ""
            print(f"wrote {c.out}: {c.episodes} episodes, {c.frames} frames{extra} ({c.total_episodes} episodes in "
                  f"the dataset) in {c.seconds:.1f} s")
        else:
            c = from_lerobot(args.dataset, args.out, contract=contract)
            print(f"wrote {c.episodes} episode bags, {c.frames} frames, to {c.out} in {c.seconds:.1f} s")
    except (BagError, ContractError, DatasetError) as exc:
        print(f"vla-adapter dataset {args.dataset_command}: {exc}", file=sys.stderr)
        return 1
    return 0
