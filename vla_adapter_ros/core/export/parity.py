"""Parity between the exported directory (served by the runtime) and PyTorch eager."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from vla_adapter_ros import processing
from vla_adapter_ros.core.adapters import set_adapter
from vla_adapter_ros.runtime.policy import OnnxPolicy

from .errors import ExportError

PARITY_SENTENCES = (
    "open the drawer",
    "pick up the puck and place it at the goal",
    "press the button from the top",
    "push the red puck to the green spot, then stop",
    "a",
)


@dataclass
class ParityRow:
    check: str  # "policy" | "infer" | "language" | "fp16"
    artifact: str  # "shared" | "merged" | "merged_fp16" | "language"
    adapter: str
    inputs: str  # "random" | "real"
    batch: int
    max_abs_diff: float
    tolerance: float | None  # None = measured, not gated

    @property
    def passed(self) -> bool:
        if not np.isfinite(self.max_abs_diff):
            return False
        return self.tolerance is None or self.max_abs_diff <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "passed": self.passed}


def format_table(rows: Sequence[ParityRow]) -> str:
    header = ("check", "artifact", "adapter", "inputs", "batch", "max |diff|", "tolerance", "result")
    cells = [
        (r.check, r.artifact, r.adapter, r.inputs, str(r.batch), f"{r.max_abs_diff:.3e}",
         "measured" if r.tolerance is None else f"{r.tolerance:.0e}",
         ("ok" if r.tolerance is not None else "info") if r.passed else "FAIL")
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def check_parity(rows: Sequence[ParityRow]) -> None:
    """Raise ExportError naming the worst failed row, if any row failed."""
    failed = [r for r in rows if not r.passed]
    if failed:
        worst = max(failed, key=lambda r: r.max_abs_diff if np.isfinite(r.max_abs_diff) else np.inf)
        raise ExportError(
            f"parity failed for {len(failed)} check(s), worst: {worst.check} {worst.artifact} adapter "
            f"{worst.adapter!r} {worst.inputs} inputs: max |diff| {worst.max_abs_diff:.3e} > {worst.tolerance}"
        )


def scene_frames(n: int, seed: int = 0, size: tuple[int, int] = (480, 640)) -> list[np.ndarray]:
    """Realistic-looking camera frames (table, objects, gripper, noise), uint8 RGB, for parity checks."""
    rng = np.random.default_rng(seed)
    h, w = size
    frames = []
    for _ in range(n):
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        base = np.stack([110 + 60 * yy / h, 90 + 40 * xx / w, 70 + 30 * (yy + xx) / (h + w)], -1)
        img = np.clip(base + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)
        cv2.rectangle(img, (0, int(h * 0.55)), (w, h), tuple(int(c) for c in rng.integers(120, 200, 3)), -1)
        for _ in range(int(rng.integers(2, 5))):
            color = tuple(int(c) for c in rng.integers(0, 256, 3))
            cx, cy = int(rng.integers(0, w)), int(rng.integers(h // 3, h))
            if rng.random() < 0.5:
                cv2.circle(img, (cx, cy), int(rng.integers(15, 60)), color, -1)
            else:
                cv2.rectangle(img, (cx, cy), (cx + int(rng.integers(20, 120)), cy + int(rng.integers(20, 90))), color, -1)
        cv2.line(img, (w // 2, 0), (int(rng.integers(w // 4, 3 * w // 4)), h // 2), (60, 60, 70), 18)
        frames.append(img)
    return frames


def measure_parity(
    tmp: Path, model: Any, encoder: Any, names: list[str], tolerance: float, fp16: bool, quantized_language: bool
) -> list[ParityRow]:
    """Model directory ``tmp`` served by the runtime vs ``model`` in PyTorch, one row per check.

    Shared and merged mode (and fp16, measured only), every adapter, random and realistic
    inputs at batch 3 and 2 (one frame per camera); the language encoder against ``encoder``; and
    ``infer`` end to end (frames + text + raw proprio) against the training code path.
    """
    cfg = model.config
    size, V = (cfg.image_size, cfg.image_size), len(cfg.cameras)
    g = torch.Generator().manual_seed(1234)
    random_inputs = (
        torch.rand(3, *(() if V == 1 else (V,)), 3, *size, generator=g) * 2 - 1,  # (B, V, 3, H, W); one view: (B, 3, H, W)
        torch.nn.functional.normalize(torch.randn(3, cfg.lang_dim, generator=g), dim=-1),
        torch.randn(3, cfg.proprio_dim, generator=g),
    )
    frames = scene_frames(2 * V, seed=7)
    samples = [frames[b * V:(b + 1) * V] for b in range(2)]  # per sample, one frame per camera
    stats = model.stats
    rng = np.random.default_rng(7)
    raw_proprio = stats["proprio"].mean + stats["proprio"].std * rng.normal(0, 0.5, (2, cfg.proprio_dim)).astype(np.float32)
    rows: list[ParityRow] = []

    def real_inputs(adapter: str) -> tuple[Any, ...]:
        c = model.tuner_configs[adapter]
        texts = (list(c.instruction_examples) + [c.task or adapter, "do the task"])[:2]
        return batch_images(samples, size), encoder.encode(texts).detach().cpu(), torch.from_numpy(stats["proprio"].normalize(raw_proprio)), texts

    ref: dict[tuple[str, str], np.ndarray] = {}
    inputs: dict[tuple[str, str], tuple[Any, ...]] = {}
    with torch.no_grad():
        for n in names:
            set_adapter(model, n)
            for kind, x in (("random", random_inputs), ("real", real_inputs(n)[:3])):
                inputs[(n, kind)] = x
                ref[(n, kind)] = model.predict(*x).numpy()
        set_adapter(model, None)

    modes = [("shared", "shared", "fp32"), ("merged", "merged", "fp32")] + ([("merged", "merged_fp16", "fp16")] if fp16 else [])
    for mode, artifact, precision in modes:
        policy = OnnxPolicy.from_dir(tmp, providers=["cpu"], mode=mode, precision=precision, warmup=False)
        with policy:
            for n in names:
                for kind in ("random", "real"):
                    x = [t.numpy() for t in inputs[(n, kind)]]
                    got = policy.run_network(*x, adapter=n)
                    diff = float(np.abs(got - ref[(n, kind)]).max()) if got.shape == ref[(n, kind)].shape else np.inf
                    check = "fp16" if precision == "fp16" else "policy"
                    rows.append(ParityRow(check, artifact, n, kind, len(x[0]), diff, None if precision == "fp16" else tolerance))
            if mode == "shared":
                rows += _language_rows(policy, encoder, tolerance, quantized_language)
                rows += _infer_rows(policy, model, encoder, names, samples[0], raw_proprio[0], real_inputs, tolerance,
                                    quantized_language)
    return rows


def _language_rows(policy: Any, encoder: Any, tolerance: float, quantized: bool) -> list[ParityRow]:
    texts = list(PARITY_SENTENCES)
    got = policy.language.encode_batch(texts)
    ref = encoder.encode(texts).detach().cpu().numpy()
    diff = float(np.abs(got - ref).max())
    return [ParityRow("language", "language", "-", "sentences", len(texts), diff, None if quantized else tolerance)]


def batch_images(samples: Sequence[Sequence[np.ndarray]], size: tuple[int, int]) -> torch.Tensor:
    """B samples of V (H, W, 3) uint8 camera frames -> (B, V, 3, H, W) model input; (B, 3, H, W) for one camera."""
    image = np.stack([np.stack([processing.preprocess_image(f, size) for f in views]) for views in samples])
    return torch.from_numpy(image[:, 0] if image.shape[1] == 1 else image)  # (B, V, 3, H, W)


def _infer_rows(
    policy: Any, model: Any, encoder: Any, names: list[str], views: Sequence[np.ndarray], raw_proprio: np.ndarray,
    real_inputs: Callable[[str], tuple[Any, ...]], tolerance: float, quantized: bool,
) -> list[ParityRow]:
    """End to end: one frame per camera + text + raw proprio through runtime.infer vs the training code path."""
    spec = policy.manifest.actions
    cameras = policy.manifest.camera_names
    # What a caller passes: a single-camera model's one frame as is (today's call), else camera -> frame.
    images = views[0] if len(cameras) == 1 else dict(zip(cameras, views, strict=True))
    rows = []
    for n in names:
        text = real_inputs(n)[3][0]
        policy.switch(n)
        result = policy.infer(images, text, raw_proprio)
        with torch.no_grad():
            set_adapter(model, n)
            image = batch_images([views], policy.manifest.image_size)
            prop = torch.from_numpy(model.stats["proprio"].normalize(raw_proprio)[None])
            actions = model.denormalize_actions(model.predict(image, encoder.encode([text]), prop))[0].numpy()
            set_adapter(model, None)
        expected = np.clip(actions, spec.low, spec.high)
        # Compare in normalised units so the tolerance means the same for every action scale.
        diff = float(np.abs((result.actions - expected) / spec.normalizer.std).max())
        rows.append(ParityRow("infer", "shared", n, "frame+text", 1, diff, None if quantized else tolerance))
    return rows
