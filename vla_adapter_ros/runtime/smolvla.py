"""SmolVLA on onnxruntime (no torch): the prefix graph once per frame, then the seeded denoising loop.

``SmolVLANetwork`` runs the two graphs of an exported SmolVLA (``families/smolvla/graphs.py``):

    past_keys, past_values, prefix_mask = prefix(images, lang_tokens, lang_mask, state, *vision/language adapter)
    x = noise                                     # (B, chunk, max_action_dim), from a seeded generator
    for step in range(num_steps):                 # LeRobot's sample_actions, dt = -1 / num_steps
        x = x + dt * denoise(x, 1 + step * dt, past_keys, past_values, prefix_mask, *expert adapter)

Adapter tensors are graph inputs (shared mode): one adapter's tensors are fed to both graphs (each
graph takes the keys it declares); with none fed, the graphs' initializers make the backbone alone.
``SmolVLAPreprocessor`` turns a robot's frame + instruction + raw state into those inputs the way
LeRobot's SmolVLA processors do (resize with padding, newline-terminated instruction padded to a fixed
length, mean/std state normalisation, zero padding to the model's state size).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import onnxruntime as ort

from vla_adapter_ros.runtime.errors import InputError

PREFIX_OUTPUTS = ("past_keys", "past_values", "prefix_mask")
DENOISE_OUTPUT = "v_t"


def noise_generator(seed: int) -> np.random.Generator:
    """The runtime's noise source: PCG64 seeded by ``seed`` (replaying a seed replays every chunk)."""
    return np.random.Generator(np.random.PCG64(seed))


@dataclass
class SmolVLANetwork:
    """Two sessions (prefix, denoise) and the flow-matching loop over them."""

    prefix: ort.InferenceSession
    denoise: ort.InferenceSession
    num_steps: int
    chunk_size: int
    max_action_dim: int

    def __post_init__(self) -> None:
        # Adapter inputs have initializers (identity defaults): onnxruntime lists them as overridable initializers.
        self.prefix_inputs = _input_names(self.prefix)
        self.denoise_inputs = _input_names(self.denoise)

    def run_prefix(self, feeds: Mapping[str, np.ndarray], adapter: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        extra = {k: v for k, v in adapter.items() if k in self.prefix_inputs}
        return self.prefix.run(list(PREFIX_OUTPUTS), {**feeds, **extra})

    def run_denoise_step(self, x_t: np.ndarray, time: float, kv: Sequence[np.ndarray],
                         adapter: Mapping[str, np.ndarray]) -> np.ndarray:
        keys, values, mask = kv
        feeds = {"x_t": x_t, "time": np.full((x_t.shape[0],), time, np.float32), "past_keys": keys,
                 "past_values": values, "prefix_mask": mask}
        feeds |= {k: v for k, v in adapter.items() if k in self.denoise_inputs}
        return self.denoise.run([DENOISE_OUTPUT], feeds)[0]

    def sample(self, feeds: Mapping[str, np.ndarray], noise: np.ndarray,
               adapter: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Normalised (B, chunk, max_action_dim) actions: the prefix once, then ``num_steps`` Euler steps."""
        adapter = adapter or {}
        kv = self.run_prefix(feeds, adapter)
        dt = np.float32(-1.0 / self.num_steps)
        x = np.ascontiguousarray(noise, np.float32)
        for step in range(self.num_steps):
            time = float(np.float32(1.0) + np.float32(step) * dt)
            x = x + dt * self.run_denoise_step(x, time, kv, adapter)
        return x


def _input_names(session: ort.InferenceSession) -> list[str]:
    return [i.name for i in (*session.get_inputs(), *session.get_overridable_initializers())]


def resize_with_pad(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """LeRobot's ``resize_with_pad`` on one (H, W, 3) uint8 frame -> (3, height, width) float32 in [0, 1].

    Keeps the aspect ratio (bilinear, like ``F.interpolate(align_corners=False)``) and pads with zeros
    on the left and top, as LeRobot does.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"a camera frame must be (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    h, w = rgb.shape[:2]
    ratio = max(w / width, h / height)
    rh, rw = int(h / ratio), int(w / ratio)
    img: np.ndarray = rgb.astype(np.float32) / 255.0
    if (rh, rw) != (h, w):
        img = np.asarray(cv2.resize(img, (rw, rh), interpolation=cv2.INTER_LINEAR), np.float32)
    out = np.zeros((height, width, 3), np.float32)
    out[height - rh:, width - rw:] = img
    return np.ascontiguousarray(out.transpose(2, 0, 1))
