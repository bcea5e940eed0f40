"""Closed-loop evaluation on Meta-World (`vla-adapter eval`).

The policy drives the simulator from what a robot would have: the rendered
camera image of every view the policy takes (a two-camera model gets the corner and
the wrist view, named as in its robot contract), the instruction text and the
proprioception (end-effector xyz + gripper). Success is Meta-World's own criterion, counted when it holds at any
step within the episode limit. Evaluation seeds are disjoint from the
recording seeds (default start 100000; recordings start at 0).

Two policy sources share one loop, so PyTorch checkpoints and exported ONNX
model directories are measured the same way:

- :class:`TorchPolicySource` — a backbone checkpoint, optionally with one adapter
  (or LoRA) directory activated;
- :class:`OnnxPolicySource` — an exported model directory through the runtime.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from matplotlib.figure import Figure
from tqdm import tqdm

from vla_adapter_ros import processing as P
from vla_adapter_ros.core.sim.instructions import sample_instruction
from vla_adapter_ros.core.sim.metaworld_env import MetaWorldEnv, simulator_views
from vla_adapter_ros.runtime.policy import OnnxPolicy

EVAL_SEED_START = 100_000


Frames = np.ndarray | Mapping[str, np.ndarray]  # one (H, W, 3) uint8 frame, or camera name -> frame


class PolicySource(Protocol):
    """Anything that turns one observation into a de-normalised (K, A) action chunk.

    ``cameras``: the views it takes, in order; ``chunk`` gets a single-camera source's frame as one
    array and a multi-camera source's as a mapping camera name -> frame (what ``OnnxPolicy.infer`` takes).
    """

    name: str
    cameras: tuple[str, ...]

    def chunk(self, images: Frames, instruction: str, proprio: np.ndarray) -> np.ndarray: ...


class TorchPolicySource:
    """A PyTorch checkpoint (+ optional adapter/LoRA directory) on the CPU or a GPU."""

    def __init__(self, checkpoint: str | Path, adapter: str | Path | None = None, *, device: str = "cpu",
                 name: str | None = None) -> None:
        # why here: the ROS demo evaluates ONNX models through this module and must not load torch.
        import torch

        from vla_adapter_ros.core.adapters import load_adapter
        from vla_adapter_ros.core.checkpoint import load_checkpoint
        from vla_adapter_ros.core.language import LanguageEncoder

        self._torch = torch
        self.model = load_checkpoint(checkpoint, map_location=device, adapters=False)
        self.adapter = load_adapter(self.model, adapter, activate=True) if adapter else None
        self.model.eval()
        self.language = LanguageEncoder().to(device)
        self.device = device
        self.size = (self.model.config.image_size, self.model.config.image_size)
        self.cameras = tuple(self.model.config.cameras)
        self.name = name or (f"{Path(checkpoint).name}+{self.adapter}" if self.adapter else Path(checkpoint).name)

    def chunk(self, images: Frames, instruction: str, proprio: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.no_grad():
            image = torch.from_numpy(self._image(images))[None].to(self.device)  # (1, V, 3, H, W) or (1, 3, H, W)
            emb = self.language.encode([instruction])  # (1, E)
            prop = self.model.normalize_proprio(torch.as_tensor(proprio, dtype=torch.float32, device=self.device)[None])
            out = self.model.denormalize_actions(self.model.predict(image, emb, prop))  # (1, K, A)
        return out[0].cpu().numpy()

    def _image(self, images: Frames) -> np.ndarray:
        """(V, 3, H, W) float32 in ``cameras`` order from a mapping; (3, H, W) from a single camera's frame."""
        if not isinstance(images, Mapping):
            if len(self.cameras) != 1:
                raise ValueError(f"{self.name} takes cameras {list(self.cameras)}: pass a mapping camera name -> "
                                 f"frame, got one {type(images).__name__}")
            return P.preprocess_image(images, self.size)  # (3, H, W)
        missing = [c for c in self.cameras if c not in images]
        if missing:
            raise ValueError(f"{self.name} takes cameras {list(self.cameras)}; the frames have {list(images)}, "
                             f"missing {missing}")
        return np.stack([P.preprocess_image(images[c], self.size) for c in self.cameras])  # (V, 3, H, W)


class OnnxPolicySource:
    """An exported model directory served by the onnxruntime runtime (what the robot runs)."""

    def __init__(self, model_dir: str | Path, adapter: str | None = None, *, providers: list[str] | None = None,
                 mode: str = "shared") -> None:
        self.policy = OnnxPolicy.from_dir(model_dir, providers=providers, mode=mode, adapter=adapter)
        self.name = f"onnx:{Path(model_dir).name}+{self.policy.active_adapter}"
        self.cameras = tuple(self.policy.manifest.camera_names)

    def chunk(self, images: Frames, instruction: str, proprio: np.ndarray) -> np.ndarray:
        return self.policy.infer(images, instruction, proprio).actions


@dataclass
class EpisodeResult:
    task: str
    seed: int
    instruction: str
    success: bool
    steps: int  # control steps until success (or the limit)
    inference_ms_p50: float


@dataclass
class TaskResult:
    task: str
    policy: str
    instruction_split: str
    episodes: int
    successes: int
    success_rate: float
    ci95: tuple[float, float]
    mean_steps: float
    inference_ms_p50: float
    results: list[EpisodeResult] = field(default_factory=list)


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for k successes out of n (sensible at 0/n and n/n)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def run_episode(env: Any, source: PolicySource, instruction: str, seed: int, n_action_steps: int) -> EpisodeResult:
    """One closed-loop episode: re-plan a chunk every ``n_action_steps`` control steps.

    The source gets ``obs["image"]`` from a one-view environment and ``obs["views"]`` (camera name ->
    frame) from a multi-view one.
    """
    obs = env.reset(seed)
    timings: list[float] = []
    success = False
    frames = "image" if len(env.views) == 1 else "views"
    while not obs["done"]:
        start = time.perf_counter()
        chunk = source.chunk(obs[frames], instruction, obs["proprio"])  # (K, A)
        timings.append((time.perf_counter() - start) * 1e3)
        if not np.all(np.isfinite(chunk)):
            raise FloatingPointError(f"{source.name}: non-finite actions on {env.task} seed {seed}")
        actions = chunk[:n_action_steps]
        for i, action in enumerate(actions):
            # Success is tested on every step; only the observation the next chunk is planned from needs
            # pictures (rendering reads the simulation and changes nothing in it: same episode, measured
            # ~2x faster with two views).
            obs, info = env.step(action, render=i == len(actions) - 1)
            if info["success"]:
                success = True
                break
            if obs["done"]:
                break
        if success:
            break
    return EpisodeResult(env.task, seed, instruction, success, int(obs["step"]), float(np.median(timings)))


def evaluate_task(task: str, source: PolicySource, *, episodes: int = 10, seed_start: int = EVAL_SEED_START,
                  instruction_split: str = "train", n_action_steps: int = 0, image_size: int = 96,
                  max_steps: int | None = None, progress: bool = True) -> TaskResult:
    """Success rate of ``source`` on ``episodes`` seeds of ``task``, with a 95% interval."""
    results: list[EpisodeResult] = []
    views = simulator_views(source.cameras)
    with MetaWorldEnv(task, image_size=image_size, max_steps=max_steps, views=views) as env:
        k = n_action_steps or 1
        bar = tqdm(range(seed_start, seed_start + episodes), desc=f"eval {env.task} [{source.name}]",
                   disable=not progress, leave=False)
        for seed in bar:
            instruction = sample_instruction(env.task, seed, instruction_split)
            results.append(run_episode(env, source, instruction, seed, k))
            bar.set_postfix(success=f"{sum(r.success for r in results)}/{len(results)}")
    return summarize(env.task, source.name, instruction_split, results)


def summarize(task: str, policy: str, instruction_split: str, results: list[EpisodeResult]) -> TaskResult:
    """Success rate, 95% interval, mean steps and median inference time of some episodes."""
    wins = sum(r.success for r in results)
    return TaskResult(
        task=task, policy=policy, instruction_split=instruction_split, episodes=len(results),
        successes=wins, success_rate=wins / max(len(results), 1), ci95=wilson_interval(wins, len(results)),
        mean_steps=float(np.mean([r.steps for r in results])) if results else 0.0,
        inference_ms_p50=float(np.median([r.inference_ms_p50 for r in results])) if results else 0.0,
        results=list(results),
    )


def format_table(rows: list[TaskResult]) -> str:
    lines = [f"{'task':<24} {'policy':<36} {'instr':<8} {'success':>9} {'95% CI':>13} {'steps':>6} {'ms':>6}"]
    for r in rows:
        lines.append(
            f"{r.task:<24} {r.policy[:36]:<36} {r.instruction_split:<8} {r.successes:>3}/{r.episodes:<3} "
            f"  [{r.ci95[0]:.2f},{r.ci95[1]:.2f}] {r.mean_steps:>6.0f} {r.inference_ms_p50:>6.1f}"
        )
    if rows:
        mean = float(np.mean([r.success_rate for r in rows]))
        lines.append(f"{'mean success':<24} {mean:.3f}")
    return "\n".join(lines)


def save_results(rows: list[TaskResult], out: str | Path) -> Path:
    """results.json and success.png (per task, with 95% intervals) in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    fig = Figure(figsize=(max(4, 0.8 * len(rows) + 2), 3.2))
    ax = fig.subplots()
    x = np.arange(len(rows))
    rates = np.array([r.success_rate for r in rows])
    err = np.array([[r.success_rate - r.ci95[0], r.ci95[1] - r.success_rate] for r in rows]).T.reshape(2, -1)
    ax.bar(x, rates, yerr=err, capsize=3, color="tab:blue")
    ax.set_xticks(x, [r.task.removesuffix("-v3") for r in rows], rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate (95% CI)")
    ax.set_title(rows[0].policy if rows else "")
    fig.tight_layout()
    fig.savefig(out / "success.png", dpi=120)
    return out


# --- CLI ---------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="PyTorch backbone checkpoint directory")
    src.add_argument("--model-dir", type=Path, help="exported ONNX model directory (the runtime)")
    parser.add_argument("--adapter", default=None,
                        help="adapter directory (with --checkpoint) or adapter name (with --model-dir)")
    parser.add_argument("--task", action="append", required=True, help="Meta-World task (repeat for several)")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per task (default 10)")
    parser.add_argument("--seed-start", type=int, default=EVAL_SEED_START,
                        help=f"first evaluation seed (default {EVAL_SEED_START}, disjoint from recording seeds)")
    parser.add_argument("--instructions", choices=("train", "heldout"), default="train",
                        help="instruction set: training paraphrases or the held-out ones")
    parser.add_argument("--n-action-steps", type=int, default=0, help="actions executed per chunk (0 = whole chunk)")
    parser.add_argument("--max-steps", type=int, default=None, help="episode step limit (default: the task's)")
    parser.add_argument("--out", type=Path, default=None, help="write results.json + success.png here")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    if args.checkpoint:
        source: PolicySource = TorchPolicySource(args.checkpoint, args.adapter)
        k = args.n_action_steps or source.model.config.chunk_length
    else:
        source = OnnxPolicySource(args.model_dir, args.adapter)
        k = args.n_action_steps or source.policy.manifest.actions.chunk_length
    rows = [
        evaluate_task(t, source, episodes=args.episodes, seed_start=args.seed_start,
                      instruction_split=args.instructions, n_action_steps=k, max_steps=args.max_steps,
                      progress=not args.no_progress)
        for t in args.task
    ]
    print(format_table(rows))
    if args.out:
        print(f"wrote {save_results(rows, args.out)}")
    return 0
