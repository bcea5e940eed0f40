"""SmolVLA adapters trained on the package's bag episodes: ``vla-adapter smolvla-train``.

The bags are read by the package's own data path (``bags.read_episodes``, with a robot contract
when given), every frame resized with padding exactly as the runtime serves it
(``runtime.smolvla.resize_with_pad``), and each frame paired with the chunk of the next
``chunk_size`` recorded actions (``action_is_pad`` past the episode's end, which LeRobot's loss masks).
These samples go to the LeRobot venv's worker (``families.smolvla.worker train``), which tokenizes
and normalises them with the checkpoint's own LeRobot pre-processor and trains the adapter only.
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


def train_adapter(checkpoint: str | Path, bags: Sequence[str | Path], name: str, out: str | Path, *, steps: int = 100,
                  rank: int = 16, sites: Sequence[str] = (), batch: int = 8, lr: float = 1e-3, seed: int = 0) -> dict[str, Any]:
    sizes = checkpoint_sizes(Path(checkpoint))
    with tempfile.TemporaryDirectory(prefix="smolvla-samples-") as tmp:
        samples = Path(tmp) / "samples.npz"
        write_samples(bags, samples, sizes["cameras"], sizes["image_size"], sizes["chunk_size"])
        args = [str(checkpoint), "--samples", str(samples), "--name", name, "--out", str(out), "--steps", str(steps),
                "--rank", str(rank), "--batch", str(batch), "--lr", str(lr), "--seed", str(seed)]
        if sites:
            args += ["--sites", *sites]
        result: dict[str, Any] = run_worker("train", *args)
        return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="LeRobot SmolVLA checkpoint directory")
    parser.add_argument("--bags", required=True, nargs="+", help="episode bags (or folders of them)")
    parser.add_argument("--name", required=True, help="adapter name")
    parser.add_argument("--out", required=True, type=Path, help="adapter directory to write")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--sites", nargs="*", default=(), help="adapter sites (default all: vision/language/expert attn+ffn)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)


def run(args: argparse.Namespace) -> int:
    try:
        result = train_adapter(args.checkpoint, args.bags, args.name, args.out, steps=args.steps, rank=args.rank,
                               sites=args.sites, batch=args.batch, lr=args.lr)
    except (WorkerError, OSError, ValueError, KeyError) as exc:
        print(f"vla-adapter smolvla-train: error: {exc}", file=sys.stderr)
        return 2
    losses = result["losses"]
    print(f"adapter {args.name!r} -> {args.out}: {result['samples']} samples, {result['trainable']:,} trainable parameters, "
          f"loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    return 0
