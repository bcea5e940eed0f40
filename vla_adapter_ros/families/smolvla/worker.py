"""The SmolVLA worker: ``python -m vla_adapter_ros.families.smolvla.worker COMMAND ...`` in the LeRobot venv.

Commands (the last stdout line is a JSON result; errors go to stderr with exit status 1):

- ``make-tiny OUT [--real-sizes]``: a random SmolVLA checkpoint saved by LeRobot (``tiny.make_checkpoint``).
- ``check DIR...``: load each checkpoint; per directory ``{"ok": true, ...}`` or ``{"ok": false, "error": ...}``.
- ``adapter CKPT --name N --out DIR [--rank R] [--sites S ...] [--init-random]``: attach a bottleneck adapter
  (zero-initialised: exactly the backbone, checked; ``--init-random``: a small random up-projection, for
  benchmarks that need an adapter that acts without training it) and save it untrained. Training is ``train``'s:
  the package has one training loop.
- ``train CKPT --samples NPZ --name N --out DIR [--method adapter|lora|full] [--steps K] [--resume]``: training
  on bag samples written by ``core.smolvla.write_samples`` through the package's training loop
  (``train.py``; each batch through LeRobot's own pre-processor, the loss LeRobot's ``SmolVLAPolicy.forward``);
  ``DIR`` is the run directory (logs, resume state, the adapter or checkpoint).
- ``export CKPT --out DIR [--adapter DIR ...]``: the prefix and denoise graphs, each adapter's tensors in
  the graphs' layout, and a reference (inputs, noise, LeRobot's ``predict_action_chunk``) for parity.
- ``export-unrolled CKPT --out DIR [--adapter DIR ...]``: the one-graph form (prefix + every denoising step,
  ``graphs/unrolled.onnx``), the same adapter tensors and reference; for the benchmark and its parity test.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ... import processing
from ...core.tuners import TunerError, mark_only_adapter_trainable
from ...lerobot_venv import answer
from . import graphs, model, tiny, train

REFERENCE_FILE = "reference.npz"
META_FILE = "smolvla.json"
UNROLLED_META_FILE = "unrolled.json"


def synthetic_batch(policy: Any, batch_size: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """Model-side inputs (images at the padded size in [0, 1], tokens, mask, normalised state, actions)."""
    cfg = policy.config
    g = torch.Generator().manual_seed(seed)
    side = cfg.resize_imgs_with_padding[0]
    vocab = policy.model.vlm_with_expert.config.text_config.vocab_size
    length = cfg.tokenizer_max_length
    mask = torch.ones(batch_size, length, dtype=torch.bool)
    mask[:, length // 2 + 1:] = False  # a padded instruction, as the tokenizer step makes them
    out = {f"observation.images.{k.rsplit('.', 1)[-1]}": torch.rand(batch_size, 3, side, side, generator=g)
           for k in cfg.image_features}
    state_dim = cfg.robot_state_feature.shape[0]
    out |= {
        "observation.state": torch.randn(batch_size, state_dim, generator=g),
        "observation.language.tokens": torch.randint(4, vocab, (batch_size, length), generator=g) * mask,
        "observation.language.attention_mask": mask,
        "action": torch.randn(batch_size, cfg.chunk_size, cfg.action_feature.shape[0], generator=g),
    }
    return out


def predict(policy: Any, batch: dict[str, torch.Tensor], noise: torch.Tensor) -> torch.Tensor:
    policy.reset()
    return policy.predict_action_chunk({k: v for k, v in batch.items() if k != "action"}, noise=noise.clone())


def cameras_of(policy: Any) -> list[str]:
    return [k.rsplit(".", 1)[-1] for k in policy.config.image_features]


def _noise(policy: Any, batch_size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, policy.config.chunk_size, policy.config.max_action_dim, generator=g)


# ----------------------------------------------------------------------------- commands
def cmd_make_tiny(a: argparse.Namespace) -> dict[str, Any]:
    out = Path(a.out)
    sizes = tiny.REAL if a.real_sizes else tiny.TINY
    vlm = tiny.make_vlm_dir(out / "vlm", sizes)
    extra: dict[str, Any] = {}
    if a.real_sizes:  # SmolVLA's own settings for its real sizes
        extra = dict(chunk_size=50, num_steps=10, tokenizer_max_length=48, num_vlm_layers=16)
    ckpt = tiny.make_checkpoint(out / "checkpoint", vlm, seed=a.seed, **extra)
    return {"checkpoint": str(ckpt), "vlm": str(vlm)}


def cmd_check(a: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for d in a.dirs:
        try:
            policy = model.load_policy(d)
        except model.CheckpointError as exc:
            results.append({"dir": d, "ok": False, "error": str(exc)})
            continue
        results.append({"dir": d, "ok": True, "fingerprint": model.backbone_fingerprint(policy),
                        "parameters": sum(p.numel() for p in policy.parameters()), "cameras": cameras_of(policy)})
    return results


def cmd_adapter(a: argparse.Namespace) -> dict[str, Any]:
    policy = model.load_policy(a.checkpoint)
    config = model.SmolVLAAdapterConfig(rank=a.rank, sites=tuple(a.sites or model.SITES), task=a.task,
                                        init="small_random" if a.init_random else "zeros")
    sites = model.add_adapter(policy, a.name, config)
    batch = synthetic_batch(policy, seed=a.seed)
    noise = _noise(policy, 2, a.seed)
    before = predict(policy, batch, noise)
    model.activate(policy, a.name)
    identity = float((predict(policy, batch, noise) - before).abs().max())
    if not a.init_random and identity != 0.0:
        raise ValueError(f"a zero-initialised adapter changed the output by {identity:g}; adapter sites are wrong")
    params = mark_only_adapter_trainable(policy, a.name)
    frozen = sum(p.numel() for p in policy.parameters() if not p.requires_grad)
    model.save_adapter(policy, a.name, a.out)
    return {"adapter": a.out, "sites": len(sites), "identity_max_abs": identity,
            "trainable": sum(p.numel() for p in params), "frozen": frozen}


def cmd_train(a: argparse.Namespace) -> dict[str, Any]:
    """Adapter, LoRA or full training on bag samples (``core.smolvla.write_samples``) through the package's
    training loop (``families/smolvla/train.py``)."""
    cfg = train.SmolVLATrainConfig(method=a.method, name=a.name, rank=a.rank, sites=tuple(a.sites or model.SITES),
                                   task=a.task, steps=a.steps, batch_size=a.batch, lr=a.lr, warmup_steps=a.warmup_steps,
                                   seed=a.seed, resume=a.resume, save_every=a.save_every)
    return train.train(cfg, a.checkpoint, a.samples, a.out, stop_after=a.stop_after)


def cmd_bench(a: argparse.Namespace) -> dict[str, Any]:
    """PyTorch eager latency (ms, median of ``repeats``, batch 1): the whole chunk, the prefix, one denoise step;
    the backbone alone and with ``--adapter`` active."""
    torch.set_num_threads(a.threads)
    policy = model.load_policy(a.checkpoint)
    names = [model.load_adapter(policy, d) for d in a.adapter]
    batch = synthetic_batch(policy, batch_size=1, seed=0)
    noise = _noise(policy, 1, 0)
    cams = cameras_of(policy)
    images = [batch[f"observation.images.{c}"] for c in cams]
    tokens, mask = batch["observation.language.tokens"], batch["observation.language.attention_mask"]
    state = model_state(policy, batch)

    def median_ms(fn: Any) -> float:
        fn()  # warm-up
        times = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return float(np.median(times))

    out: dict[str, Any] = {"parameters": int(sum(p.numel() for p in policy.parameters())), "rows": {}}
    for name in [None, *names]:
        model.activate(policy, name)
        with torch.no_grad():
            kv = graphs.prefix_forward(policy, images, tokens, mask, state)
            time1 = torch.ones(1)
            out["rows"][name or ""] = {
                "chunk_ms": median_ms(lambda: predict(policy, batch, noise)),
                "prefix_ms": median_ms(lambda: graphs.prefix_forward(policy, images, tokens, mask, state)),
                "denoise_step_ms": median_ms(lambda kv=kv, t=time1: graphs.denoise_forward(policy, noise, t, *kv)),
            }
    return out


class _Export:
    """What both exports start from: the policy with its adapters, a synthetic batch, noise, and LeRobot's own
    ``predict_action_chunk`` on them per adapter (``reference``: the model-side inputs, the noise, ``actions.NAME``)."""

    def __init__(self, a: argparse.Namespace) -> None:
        self.t0 = time.perf_counter()
        self.policy = policy = model.load_policy(a.checkpoint)
        self.fingerprint = model.backbone_fingerprint(policy)
        self.names = [model.load_adapter(policy, d, fingerprint=self.fingerprint) for d in a.adapter]
        self.out = Path(a.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.cams = cams = cameras_of(policy)
        self.batch = batch = synthetic_batch(policy, batch_size=a.batch, seed=a.seed)
        self.noise = _noise(policy, a.batch, a.seed + 7)
        state = model_state(policy, batch)
        self.reference: dict[str, np.ndarray] = {
            **{processing.image_input_name(c, len(cams)): batch[f"observation.images.{c}"].numpy() for c in cams},
            "lang_tokens": batch["observation.language.tokens"].numpy(),
            "lang_mask": batch["observation.language.attention_mask"].numpy(), "state": state.numpy(),
            "noise": self.noise.numpy()}
        action_dim = policy.config.action_feature.shape[0]
        for name in [None, *self.names]:  # LeRobot's own predict_action_chunk, per adapter, same noise
            model.activate(policy, name)
            self.reference[f"actions.{name or ''}"] = predict(policy, batch, self.noise).numpy()[:, :, :action_dim]
        self.export_batch = {**{f"observation.images.{c}": batch[f"observation.images.{c}"] for c in cams},
                             "tokens": batch["observation.language.tokens"],
                             "mask": batch["observation.language.attention_mask"], "state": state}

    def save(self, io_info: dict[str, Any]) -> None:
        """Each adapter's tensors in the layout of the graphs' adapter inputs, and the reference."""
        all_keys = [k.removeprefix(graphs.ADAPTER_INPUT_PREFIX) for rel in io_info for k in io_info[rel]["adapter_inputs"]]
        for name in self.names:
            np.savez(self.out / f"adapter.{name}.npz", **graphs.padded_tensors(self.policy, name, all_keys))
        np.savez(self.out / REFERENCE_FILE, **self.reference)


def cmd_export(a: argparse.Namespace) -> dict[str, Any]:
    """Graphs + adapter tensors + reference into ``out`` (a staging directory the main venv finishes)."""
    e = _Export(a)
    policy, names, out, t0 = e.policy, e.names, e.out, e.t0
    pre, _post = model.load_processors(a.checkpoint)
    pipeline, pad_token_id = pipeline_reference(policy, pre, _post, names, out, a.seed)
    e.reference |= pipeline
    model.activate(policy, None)
    t1 = time.perf_counter()
    io_info = graphs.export_graphs(policy, out, names, e.export_batch, e.cams)
    t2 = time.perf_counter()
    e.save(io_info)
    meta = export_meta(policy, a.checkpoint, pre, names, e.fingerprint, io_info)
    meta |= {"pad_token_id": pad_token_id, "instruction": INSTRUCTION,
             "timing_s": {"load_and_reference": t1 - t0, "onnx_export": t2 - t1}}
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return {"out": str(out), "adapters": names, **meta["timing_s"]}


def cmd_export_unrolled(a: argparse.Namespace) -> dict[str, Any]:
    """The one-graph form (``graphs.export_unrolled``) + adapter tensors + reference into ``out``: the same batch,
    noise and reference as ``export`` (parity: ``core.export.smolvla.measure_unrolled_parity``)."""
    e = _Export(a)
    model.activate(e.policy, None)
    t1 = time.perf_counter()
    io_info = graphs.export_unrolled(e.policy, e.out, e.names, e.export_batch, e.cams, e.noise)
    t2 = time.perf_counter()
    e.save(io_info)
    meta = {"file": graphs.UNROLLED_FILE, "graph": io_info[graphs.UNROLLED_FILE], "adapters": e.names,
            "action_dim": e.policy.config.action_feature.shape[0], "num_steps": e.policy.config.num_steps,
            "timing_s": {"load_and_reference": t1 - e.t0, "onnx_export": t2 - t1}}
    (e.out / UNROLLED_META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return {"out": str(e.out), **meta}


INSTRUCTION = "pick the red cube"


def pipeline_reference(policy: Any, pre: Any, post: Any, names: list[str], out: Path,
                       seed: int) -> tuple[dict[str, np.ndarray], int]:
    """Raw robot inputs through LeRobot's own processors + ``predict_action_chunk``, per adapter.

    One uint8 frame per camera (at the padded size), a raw state and ``INSTRUCTION``; the tokenizer
    the pre-processor uses is saved as ``out/tokenizer.json``. Returns the arrays and its pad id.
    """
    step = next(s for s in pre.steps if hasattr(s, "input_tokenizer"))
    tokenizer = step.input_tokenizer
    saved = out / "_tokenizer"
    tokenizer.save_pretrained(saved)
    shutil.move(str(saved / "tokenizer.json"), out / "tokenizer.json")
    shutil.rmtree(saved)
    rng = np.random.default_rng(seed + 11)
    side = policy.config.resize_imgs_with_padding[0]
    ref: dict[str, np.ndarray] = {}
    obs: dict[str, Any] = {"task": INSTRUCTION}
    for c in cameras_of(policy):
        frame = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        ref[f"pipeline.frame.{c}"] = frame
        obs[f"observation.images.{c}"] = torch.from_numpy(frame).permute(2, 0, 1).float() / 255.0
    state = rng.normal(size=policy.config.robot_state_feature.shape[0]).astype(np.float32) * 2
    ref["pipeline.state"] = state
    obs["observation.state"] = torch.from_numpy(state)
    batch = pre(obs)
    ref["pipeline.tokens"] = batch["observation.language.tokens"].numpy()
    noise = _noise(policy, 1, seed + 13)
    ref["pipeline.noise"] = noise.numpy()
    action_dim = policy.config.action_feature.shape[0]
    for name in [None, *names]:
        model.activate(policy, name)
        ref[f"pipeline.actions.{name or ''}"] = post(predict(policy, batch, noise)).numpy()[0, :, :action_dim]
    return ref, int(tokenizer.pad_token_id)


def model_state(policy: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return policy.prepare_state(batch)  # zero-padded to max_state_dim, as the model sees it


def export_meta(policy: Any, checkpoint: str, pre: Any, names: list[str], fingerprint: str,
                io_info: dict[str, Any]) -> dict[str, Any]:
    """What the main venv needs for the manifest: sizes, normalisation statistics, adapters, graph I/O."""
    cfg = policy.config
    stats: dict[str, Any] = {}
    for step in pre.steps:
        for key, s in (getattr(step, "stats", None) or {}).items():
            if "mean" in s and "std" in s:
                stats[key] = {"mean": np.asarray(s["mean"], np.float64).tolist(),
                              "std": np.asarray(s["std"], np.float64).tolist()}
    adapters = {}
    for n in names:
        c = policy.tuner_configs[n]
        adapters[n] = {"config": c.to_dict(),
                       "num_parameters": int(sum(v.numel() for v in model.adapter_tensors(policy, n).values()))}
    kv = io_info[graphs.DENOISE_FILE]
    return {
        "family": model.FAMILY, "checkpoint": Path(checkpoint).name, "fingerprint": fingerprint,
        "cameras": cameras_of(policy), "image_size": list(cfg.resize_imgs_with_padding),
        "state_dim": cfg.robot_state_feature.shape[0], "action_dim": cfg.action_feature.shape[0],
        "max_state_dim": cfg.max_state_dim, "max_action_dim": cfg.max_action_dim, "chunk_size": cfg.chunk_size,
        "num_steps": cfg.num_steps, "tokenizer_max_length": cfg.tokenizer_max_length,
        "stats": stats, "adapters": adapters, "graphs": io_info, "denoise_inputs": kv["inputs"],
        "parameters": int(sum(p.numel() for n, p in policy.named_parameters() if graphs.TEMPLATE not in n)),
        "versions": {"torch": torch.__version__, "lerobot": _version("lerobot"), "transformers": _version("transformers")},
    }


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smolvla-worker")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("make-tiny")
    s.add_argument("out")
    s.add_argument("--real-sizes", action="store_true")
    s.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("check")
    s.add_argument("dirs", nargs="+")
    s = sub.add_parser("adapter")
    s.add_argument("checkpoint")
    s.add_argument("--name", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--rank", type=int, default=16)
    s.add_argument("--sites", nargs="*")
    s.add_argument("--task", default="")
    s.add_argument("--init-random", action="store_true", help="small random up-projection (benchmarks: no training)")
    s.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("train")
    s.add_argument("checkpoint")
    s.add_argument("--samples", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--method", choices=train.METHODS, default="adapter")
    s.add_argument("--rank", type=int, default=16)
    s.add_argument("--sites", nargs="*")
    s.add_argument("--task", default="")
    s.add_argument("--steps", type=int, default=100)
    s.add_argument("--batch", type=int, default=8)
    s.add_argument("--lr", type=float, default=0.0, help="0: the method's default (core.config.DEFAULT_LR)")
    s.add_argument("--warmup-steps", type=int, default=10)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--save-every", type=int, default=0)
    s.add_argument("--resume", action="store_true")
    s.add_argument("--stop-after", type=int, default=None)
    s = sub.add_parser("bench")
    s.add_argument("checkpoint")
    s.add_argument("--adapter", action="append", default=[])
    s.add_argument("--repeats", type=int, default=5)
    s.add_argument("--threads", type=int, default=1)
    for form in ("export", "export-unrolled"):  # the same inputs: one _Export
        s = sub.add_parser(form)
        s.add_argument("checkpoint")
        s.add_argument("--out", required=True)
        s.add_argument("--adapter", action="append", default=[])
        s.add_argument("--batch", type=int, default=2)
        s.add_argument("--seed", type=int, default=0)
    return p


COMMANDS = {"make-tiny": cmd_make_tiny, "check": cmd_check, "adapter": cmd_adapter, "train": cmd_train,
            "bench": cmd_bench, "export": cmd_export, "export-unrolled": cmd_export_unrolled}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return answer(lambda: COMMANDS[args.command](args), (model.CheckpointError, TunerError, ValueError, FileNotFoundError))


if __name__ == "__main__":
    sys.exit(main())
