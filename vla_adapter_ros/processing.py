"""Pre- and post-processing shared by training (core) and serving (runtime).

One module so the two cannot drift: the dataset and the onnxruntime policy
both call :func:`image_to_rgb` and :func:`preprocess_image`, and both use a
:class:`Normalizer` loaded from the same statistics. Only numpy and OpenCV;
never torch, never rclpy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

# Batch keys, shared by datasets, the model and the exporter (LeRobot style).
IMAGE = "image"  # (B, V, 3, H, W) float32 (V views in ModelConfig.cameras order; (B, 3, H, W) = one), preprocess_image
INSTRUCTION = "instruction"  # list[str] of length B
INSTRUCTION_EMBEDDING = "instruction_embedding"  # (B, E) float32
PROPRIO = "proprio"  # (B, P) float32, normalised
ACTIONS = "actions"  # (B, K, A) float32, normalised
ACTIONS_MASK = "actions_mask"  # (B, K) bool, False on padding past episode end

# Channels per supported sensor_msgs/Image encoding.
ENCODING_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}

# Pixel normalisation: [0, 255] -> [-1, 1]. Fixed (not data-dependent) so any
# camera and any checkpoint agree.
PIXEL_MEAN = 127.5
PIXEL_SCALE = 1.0 / 127.5

MAX_IMAGE_PIXELS = 7680 * 4320  # 8K; anything larger is refused, not resized


class ProcessingError(ValueError):
    """An input cannot be turned into a model input; the message says why."""


def image_input_name(camera: str, n_cameras: int) -> str:
    """The exported graph's input for one camera view: ``image`` for a single-camera model (every
    model exported before multi-camera support has exactly that input), ``image.<camera>`` otherwise."""
    return IMAGE if n_cameras == 1 else f"{IMAGE}.{camera}"


def image_to_rgb(
    data: bytes | bytearray | memoryview | np.ndarray,
    encoding: str,
    height: int,
    width: int,
    step: int | None = None,
) -> np.ndarray:
    """Decode a raw image buffer (as in sensor_msgs/Image) to a (H, W, 3) uint8 RGB array.

    Handles rgb8, bgr8, rgba8, bgra8 and mono8, row padding (``step`` larger than
    ``width * channels``), and refuses inconsistent sizes with a message that
    quotes the numbers. The returned array never aliases ``data``.
    """
    enc = encoding.lower()
    if enc not in ENCODING_CHANNELS:
        raise ProcessingError(
            f"unsupported image encoding {encoding!r}; supported: {sorted(ENCODING_CHANNELS)}"
        )
    if height <= 0 or width <= 0:
        raise ProcessingError(f"image size must be positive, got {height}x{width}")
    if height * width > MAX_IMAGE_PIXELS:
        raise ProcessingError(f"image {height}x{width} exceeds the {MAX_IMAGE_PIXELS}-pixel limit")
    channels = ENCODING_CHANNELS[enc]
    row = width * channels
    step = row if step is None or step == 0 else int(step)
    if step < row:
        raise ProcessingError(f"step {step} is smaller than width*channels = {width}*{channels} = {row}")
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1)
    if buf.dtype != np.uint8:
        raise ProcessingError(f"image data must be uint8, got {buf.dtype}")
    # The last row may omit its padding; anything shorter is truncated data.
    needed = step * (height - 1) + row
    if buf.size < needed:
        raise ProcessingError(
            f"image data has {buf.size} bytes, {height}x{width} {enc} with step {step} needs {needed}"
        )
    if buf.size > step * height:
        raise ProcessingError(
            f"image data has {buf.size} bytes, more than step*height = {step}*{height} = {step * height}"
        )
    if buf.size < step * height:  # pad the last row so a strided view is possible
        buf = np.concatenate([buf, np.zeros(step * height - buf.size, np.uint8)])
    pixels = buf.reshape(height, step)[:, :row].reshape(height, width, channels)
    if enc == "rgb8":
        return pixels.copy()
    if enc == "bgr8":
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    if enc == "rgba8":
        return cv2.cvtColor(pixels, cv2.COLOR_RGBA2RGB)
    if enc == "bgra8":
        return cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(pixels.reshape(height, width), cv2.COLOR_GRAY2RGB)


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a (H, W, 3) uint8 image to ``size`` = (height, width); no-op when equal."""
    h, w = size
    if rgb.shape[:2] == (h, w):
        return rgb
    # INTER_AREA for shrinking (anti-aliased), INTER_LINEAR for growing.
    interp = cv2.INTER_AREA if rgb.shape[0] >= h and rgb.shape[1] >= w else cv2.INTER_LINEAR
    return cv2.resize(rgb, (w, h), interpolation=interp)


def preprocess_image(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, h, w) float32 in [-1, 1], resized to ``size`` = (h, w)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ProcessingError(f"expected a (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    resized = resize_rgb(rgb, size)
    chw = np.ascontiguousarray(resized.transpose(2, 0, 1), dtype=np.float32)  # (3, h, w)
    chw -= PIXEL_MEAN
    chw *= PIXEL_SCALE
    return chw


DEFAULT_STD_FLOOR = 1e-2


@dataclass
class Normalizer:
    """Per-dimension affine normalisation ``(x - mean) / std`` with statistics from data.

    ``std`` is floored at ``eps`` (1e-2, in the data's units) so a dimension that is constant in
    the training data does not turn small deviations at run time into huge normalised values.
    """

    mean: np.ndarray
    std: np.ndarray
    eps: float = 1e-2  # floor for std: a constant dimension (e.g. a gripper always closed) stays finite
    # (LeRobot's statistics, e.g. SmolVLA's, divide by std + 1e-8: exported with eps=1e-8 to match them)

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float32).reshape(-1)
        self.std = np.maximum(np.asarray(self.std, dtype=np.float32).reshape(-1), self.eps)
        if self.mean.shape != self.std.shape:
            raise ValueError(f"mean shape {self.mean.shape} != std shape {self.std.shape}")
        if not (np.all(np.isfinite(self.mean)) and np.all(np.isfinite(self.std))):
            raise ValueError(f"non-finite normalisation statistics: mean={self.mean}, std={self.std}")

    @classmethod
    def fit(cls, values: np.ndarray) -> Normalizer:
        """Statistics over all rows of a (N, D) array."""
        values = np.asarray(values, dtype=np.float64).reshape(-1, np.shape(values)[-1])
        return cls(values.mean(axis=0), values.std(axis=0))

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def normalize(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float32) - self.mean) / self.std).astype(np.float32)

    def denormalize(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float32) * self.std + self.mean).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mean": self.mean.tolist(), "std": self.std.tolist()}
        if self.eps != DEFAULT_STD_FLOOR:  # written only when not the default (older files stay byte-identical)
            out["eps"] = self.eps
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Normalizer:
        try:
            return cls(np.asarray(d["mean"]), np.asarray(d["std"]), float(d.get("eps", DEFAULT_STD_FLOOR)))
        except KeyError as exc:
            raise ValueError(f"normaliser statistics need 'mean' and 'std', got keys {sorted(d)}") from exc


def normalize_instruction(text: str) -> str:
    """Canonical form of an instruction (cache key, tokenizer input): stripped, single spaces."""
    return " ".join(str(text).split())
