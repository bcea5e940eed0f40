"""SmolVLA trained on the package's bag episodes: ``vla-adapter smolvla-train``.

The bags are read by the package's own data path (``bags.read_episodes``, with a robot contract
when given), every frame resized with padding exactly as the runtime serves it
(``runtime.smolvla.resize_with_pad``), and each frame paired with the chunk of the next
``chunk_size`` recorded actions (``action_is_pad`` past the episode's end, which LeRobot's loss masks).
These samples go to the LeRobot venv's worker (``families.smolvla.worker train``), which tokenizes
and normalises them with the checkpoint's own LeRobot pre-processor and trains them through the package's
training loop (``core/loop.py``): a bottleneck adapter, or LoRA / full fine-tuning as baselines.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vla_adapter_ros.bags.episodes import read_episodes
from vla_adapter_ros.core.config import SMOLVLA_METHODS as METHODS
from vla_adapter_ros.core.train_state import plot_log
from vla_adapter_ros.families.smolvla.bridge import WorkerError, run_worker
from vla_adapter_ros.runtime.smolvla import resize_with_pad


def checkpoint_sizes(checkpoint: Path) -> dict[str, Any]:
    """Cameras, image size and chunk size from a SmolVLA checkpoint's config.json."""
    cfg = json.loads((Path(checkpoint) / "config.json").read_text())
    cams = [k.rsplit(".", 1)[-1] for k, f in cfg["input_features"].items() if f["type"] == "VISUAL"]
    return {"cameras": cams, "image_size": tuple(cfg["resize_imgs_with_padding"]), "chunk_size": int(cfg["chunk_size"])}


def write_samples(bags: Sequence[str | Path], out: Path, cameras: Sequence[str], image_size: tuple[int, int],
                  chunk_size: int) -> int:
    """Every frame of the episodes as a training sample in ``out`` (npz); returns how many."""
    images: dict[str, list[np.ndarray]] = {c: [] for c in cameras}
    states, chunks, pads, instructions = [], [], [], []
    for episode in read_episodes(list(bags)):
        views = episode.views if len(cameras) > 1 else {cameras[0]: episode.images}
        t_len = len(episode.stamps)
        for t in range(t_len):
            for c in cameras:
                images[c].append(resize_with_pad(views[c][t], *image_size))  # (3, S, S) in [0, 1]
            idx = np.arange(t, t + chunk_size)
            pads.append(idx >= t_len)
            chunks.append(episode.actions[np.minimum(idx, t_len - 1)])  # (chunk, A); padded steps are masked
            states.append(episode.proprio[t])
            instructions.append(episode.instructions[t])
    np.savez(out, **{f"image.{c}": np.stack(v).astype(np.float32) for c, v in images.items()},
             state=np.stack(states).astype(np.float32), actions=np.stack(chunks).astype(np.float32),
             action_is_pad=np.stack(pads), instructions=np.array(json.dumps(instructions)))
    return len(states)




def train_smolvla(checkpoint: str | Path, bags: Sequence[str | Path], name: str, out: str | Path, *,
                  method: str = "adapter", steps: int = 100, rank: int = 16, sites: Sequence[str] = (), batch: int = 8,
                  lr: float = 0.0, warmup_steps: int = 10, seed: int = 0, save_every: int = 0, resume: bool = False,
                  stop_after: int | None = None) -> dict[str, Any]:
    """Train ``method`` on the bags' samples in the LeRobot venv (the package's training loop); ``out`` is the run
    directory: log.csv / log.jsonl / curves.png, resume/, and what export takes (the summary's ``export``)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    sizes = checkpoint_sizes(Path(checkpoint))
    with tempfile.TemporaryDirectory(prefix="smolvla-samples-") as tmp:
        samples = Path(tmp) / "samples.npz"
        write_samples(bags, samples, sizes["cameras"], sizes["image_size"], sizes["chunk_size"])
        args = [str(checkpoint), "--samples", str(samples), "--name", name, "--out", str(out), "--method", method,
                "--steps", str(steps), "--rank", str(rank), "--batch", str(batch), "--lr", str(lr),
                "--warmup-steps", str(warmup_steps), "--seed", str(seed), "--save-every", str(save_every)]
        if sites:
            args += ["--sites", *sites]
        if resume:
            args.append("--resume")
        if stop_after is not None:
            args += ["--stop-after", str(stop_after)]
        result: dict[str, Any] = run_worker("train", *args)
    # the LeRobot venv has no matplotlib: the curve of its log is drawn here
    result["curves"] = str(plot_log(Path(out), title=f"smolvla {method} ({name})"))
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="LeRobot SmolVLA checkpoint directory")
    parser.add_argument("--bags", required=True, nargs="+", help="episode bags (or folders of them)")
    parser.add_argument("--name", required=True, help="adapter name")
    parser.add_argument("--out", required=True, type=Path,
                        help="run directory: logs, resume state, adapters/NAME (adapter, lora) and checkpoint/ (lora merged, full)")
    parser.add_argument("--method", choices=METHODS, default="adapter",
                        help="adapter (default), lora (baseline, r=--rank at the same sites) or full (every backbone parameter)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--sites", nargs="*", default=(), help="adapter sites (default all: vision/language/expert attn+ffn)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.0, help="peak learning rate; 0: the method's default (1e-3 / 1e-3 / 1e-4)")
    parser.add_argument("--warmup-steps", type=int, default=10)
    parser.add_argument("--save-every", type=int, default=0, help="steps between resume states (0: only at the end)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/resume")


def run(args: argparse.Namespace) -> int:
    try:
        result = train_smolvla(args.checkpoint, args.bags, args.name, args.out, method=args.method, steps=args.steps,
                               rank=args.rank, sites=args.sites, batch=args.batch, lr=args.lr,
                               warmup_steps=args.warmup_steps, save_every=args.save_every, resume=args.resume)
    except (WorkerError, OSError, ValueError, KeyError) as exc:
        print(f"vla-adapter smolvla-train: error: {exc}", file=sys.stderr)
        return 2
    print(summary(result))
    return 0


def summary(result: dict[str, Any]) -> str:
    """What a run trained, what it cost, and what export takes."""
    losses, export = result["losses"], result["export"] or {}
    peak = result["peak_rss_bytes"] / 2**20
    delta = result["peak_rss_delta_bytes"]
    takes = " ".join(f"--{k} {v}" for k, v in export.items() if k != "note") + \
        (f" ({export['note']})" if "note" in export else "")
    return (f"smolvla {result['method']} -> {result['out']}: {result['samples']} samples, {result['step']} steps, "
            f"{result['trainable']:,} of {result['total']:,} parameters trained, "
            f"{result['seconds_per_step']:.3f} s/step, peak RSS {peak:.0f} MiB"
            + (f" (+{delta / 2**20:.1f} MiB in the steps)" if delta is not None else "")
            + f"; loss {losses[0]:.4f} -> {losses[-1]:.4f} (fixed probe {result['probe_loss_before']:.4f} -> "
            f"{result['probe_loss_after']:.4f})\nexport takes: {takes or '(the run stopped before its last step)'}\n"
            + json.dumps(result))
