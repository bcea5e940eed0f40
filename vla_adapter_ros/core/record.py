"""`vla-adapter record-sim`: Meta-World expert demonstrations as rosbag2 episodes.

For each task and seed, the scripted expert runs until the task succeeds or the
step limit; every frame (camera image(s), proprio, expert action) goes to one bag
per episode through :class:`~vla_adapter_ros.bags.episodes.EpisodeWriter`, with
an instruction drawn by the seed from the task's *training* paraphrases. Bags
land in ``OUT/<task>/<task>_seed<seed>/``; seed, success, camera and image size
are recorded in the bag (EpisodeStatus + metadata.yaml custom_data).

With ``--contract`` (config/robots/metaworld_sawyer.yaml) every camera of the contract is
rendered (corner = MuJoCo ``corner4``, wrist = ``gripperPOV``, :data:`CONTRACT_CAMERAS`) and
written on the contract's topics, and the contract is stored in each bag.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vla_adapter_ros.bags.episodes import EpisodeWriter
from vla_adapter_ros.bags.errors import BagError, BagWriteError
from vla_adapter_ros.bags.typestore import make_typestore
from vla_adapter_ros.contract import ContractError, RobotContract
from vla_adapter_ros.core.sim.instructions import sample_instruction
from vla_adapter_ros.core.sim.metaworld_env import (
    ACTION_NAMES,
    DEFAULT_CAMERA,
    DEFAULT_IMAGE_SIZE,
    PROPRIO_NAMES,
    MetaWorldEnv,
    UnknownTaskError,
    canonical_task,
    contract_views,
)


@dataclass
class EpisodeSummary:
    task: str
    seed: int
    success: bool
    frames: int
    instruction: str
    path: Path | None  # None: not written (--only-success and the expert failed)
    sim_seconds: float  # expert + physics + rendering
    render_seconds: float
    write_seconds: float


def episode_path(out: Path, task: str, seed: int) -> Path:
    return Path(out) / task / f"{task}_seed{seed:06d}"


def rollout(env: Any, seed: int) -> tuple[list[tuple[int, Any, Any, Any, bool]], bool]:
    """Run the expert from ``reset(seed)``; returns frames (stamp_ns, views, proprio, action, success) and
    success, ``views`` = {view name: image}.

    Stops at the first step whose success flag is set, or at the step limit.
    """
    obs = env.reset(seed)
    frames = []
    while True:
        action = env.expert_action()
        stamp, views, proprio = obs["stamp_ns"], obs["views"], obs["proprio"]
        obs, info = env.step(action)
        frames.append((stamp, views, proprio, action, info["success"]))
        if info["success"] or obs["done"]:
            return frames, bool(info["success"])


def record_episode(env: Any, out: Path, seed: int, *, storage: str = "mcap", typestore: Any = None,
                   only_success: bool = False, episode: int = 0, contract: RobotContract | None = None
                   ) -> EpisodeSummary:
    """One expert episode of ``env`` (a MetaWorldEnv) with ``seed``, written unless it failed and ``only_success``.

    ``contract``: write every view of ``env`` (named as the contract's cameras) through it."""
    path = episode_path(out, env.task, seed)
    if path.exists():
        raise BagWriteError(path, "exists already; choose another --out or remove it")
    instruction = sample_instruction(env.task, seed, "train")
    render_before = env.render_seconds
    start = time.perf_counter()
    frames, success = rollout(env, seed)
    sim_seconds = time.perf_counter() - start
    summary = EpisodeSummary(env.task, seed, success, len(frames), instruction, None, sim_seconds,
                             env.render_seconds - render_before, 0.0)
    if only_success and not success:
        return summary
    start = time.perf_counter()
    h, w = env.image_size
    metadata = {"instruction": instruction, "instruction_split": "train", "camera": env.camera,
                "image_size": [h, w], "fast_render": env.fast_render, "max_steps": env.max_steps,
                "source": "metaworld scripted expert", "recorder": "vla-adapter record-sim"}
    if contract is not None:
        metadata["cameras"] = dict(env.views)  # contract camera -> MuJoCo camera
    writer = EpisodeWriter(path, task=env.task, seed=seed, episode=episode, max_steps=env.max_steps,
                           storage=storage, typestore=typestore, proprio_names=PROPRIO_NAMES,
                           action_names=ACTION_NAMES, dt=env.dt, metadata=metadata, contract=contract).open()
    try:
        for stamp, views, proprio, action, step_success in frames:
            writer.write_step(stamp, views, proprio, action, instruction=instruction, success=step_success)
        writer.finish(success=success)
        writer.close()
    except BaseException:  # incl. Ctrl-C: leave no half-written bag (it would block a re-run)
        writer.abort()
        shutil.rmtree(path, ignore_errors=True)
        raise
    summary.write_seconds = time.perf_counter() - start
    summary.path = path
    return summary


def contract_image_size(contract: RobotContract, image_size: int | None) -> int:
    """The square image size to render a contract's cameras at: theirs (all alike), or ``image_size``
    when the contract leaves it open; a ``image_size`` other than the contract's is an error."""
    sizes = sorted({c.size for c in contract.cameras if c.size is not None})
    if not sizes:
        return DEFAULT_IMAGE_SIZE if image_size is None else image_size
    if len(sizes) > 1 or sizes[0][0] != sizes[0][1]:
        raise ValueError(f"contract {contract.robot!r}: record-sim renders square views of one size, the cameras "
                         f"have sizes {sizes}")
    if image_size is not None and image_size != sizes[0][0]:
        raise ValueError(f"--image-size {image_size}: contract {contract.robot!r} says its cameras publish "
                         f"{sizes[0][1]}x{sizes[0][0]} images")
    return sizes[0][0]


def record(tasks: Sequence[str], episodes: int, seed: int, out: str | Path, *, image_size: int | None = None,
           storage: str = "mcap", only_success: bool = False, max_steps: int | None = None,
           camera: str | None = None, max_attempts: int | None = None, progress: bool = True,
           contract: RobotContract | None = None) -> list[EpisodeSummary]:
    """Record ``episodes`` per task with seeds ``seed, seed + 1, ...``.

    With ``only_success`` failed episodes are not written and further seeds are
    tried until ``episodes`` succeed or ``max_attempts`` (default ``2 * episodes + 10``) seeds were used.
    ``contract``: render and write every camera of it (``camera`` must then be None).
    Returns one summary per attempted episode.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if contract is not None and camera is not None:
        raise ValueError(f"--camera {camera!r}: the contract {contract.robot!r} names the cameras")
    views = contract_views(contract.camera_names) if contract is not None else None
    size = contract_image_size(contract, image_size) if contract is not None else image_size or DEFAULT_IMAGE_SIZE
    names = [canonical_task(t) for t in tasks]
    attempts_per_task = (max_attempts or 2 * episodes + 10) if only_success else episodes
    typestore = make_typestore()
    out = Path(out)
    results: list[EpisodeSummary] = []
    bar = tqdm(total=len(names) * episodes, unit="ep", desc="record-sim", disable=not progress)
    try:
        for task in names:
            with MetaWorldEnv(task, image_size=size, camera=camera or DEFAULT_CAMERA, max_steps=max_steps,
                              views=views) as env:
                written = 0
                for attempt in range(attempts_per_task):
                    if written == episodes:
                        break
                    s = record_episode(env, out, seed + attempt, storage=storage, typestore=typestore,
                                       only_success=only_success, episode=written, contract=contract)
                    results.append(s)
                    bar.set_postfix(task=task, success=f"{sum(r.success for r in results)}/{len(results)}",
                                    frames=sum(r.frames for r in results if r.path is not None), refresh=False)
                    if s.path is not None:
                        written += 1
                        bar.update(1)
    finally:
        bar.close()
    return results


def format_summary(results: Sequence[EpisodeSummary], out: Path) -> str:
    written = [r for r in results if r.path is not None]
    frames = sum(r.frames for r in results)
    rate = sum(r.success for r in results) / max(len(results), 1)
    sim = sum(r.sim_seconds for r in results)
    render = sum(r.render_seconds for r in results)
    write = sum(r.write_seconds for r in written)
    written_frames = sum(r.frames for r in written)
    lines = [
        f"recorded {len(written)} episodes ({len(results)} attempted) to {out}",
        f"success rate {100 * rate:.1f}% ({sum(r.success for r in results)}/{len(results)}), "
        f"frames written {written_frames}, mean length {frames / max(len(results), 1):.1f}",
        f"ms per frame: simulate {1000 * sim / max(frames, 1):.2f} (render {1000 * render / max(frames, 1):.2f}), "
        f"write {1000 * write / max(written_frames, 1):.2f}",
    ]
    for task in dict.fromkeys(r.task for r in results):
        rs = [r for r in results if r.task == task]
        lines.append(f"  {task}: {sum(r.success for r in rs)}/{len(rs)} success, "
                     f"mean length {sum(r.frames for r in rs) / len(rs):.1f}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", action="append", required=True, metavar="TASK",
                        help="Meta-World v3 task, e.g. drawer-open or drawer-open-v3 (repeat for several)")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per task (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="first seed; episode i uses seed + i (default 0)")
    parser.add_argument("--out", type=Path, required=True, help="output directory (one bag per episode)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="square camera image size (default: the contract's, else 96)")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="rosbag2 storage")
    parser.add_argument("--only-success", action="store_true",
                        help="write successful episodes only, trying further seeds until --episodes succeed")
    parser.add_argument("--max-steps", type=int, default=None, help="step limit (default: the task's, 500)")
    parser.add_argument("--camera", default=None, help="MuJoCo camera name (default corner4)")
    parser.add_argument("--contract", type=Path, default=None, metavar="FILE",
                        help="robot contract (config/robots/metaworld_sawyer.yaml): record each of its cameras "
                             "(corner = corner4, wrist = gripperPOV) on its topics and store it in the bags")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    try:
        contract = RobotContract.load(args.contract) if args.contract is not None else None
        results = record(args.task, args.episodes, args.seed, args.out, image_size=args.image_size,
                         storage=args.storage, only_success=args.only_success, max_steps=args.max_steps,
                         camera=args.camera, progress=not args.no_progress, contract=contract)
    except (UnknownTaskError, BagError, ContractError, ValueError) as exc:
        print(f"record-sim: {exc}", file=sys.stderr)
        return 2
    print(format_summary(results, args.out))
    return 0 if any(r.path is not None for r in results) else 1
