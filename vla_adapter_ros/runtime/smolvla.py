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

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

from vla_adapter_ros.runtime import graph_checks
from vla_adapter_ros.runtime.errors import (
    InputError,
    NonFiniteOutputError,
    ProviderRunError,
    UnknownAdapterError,
)
from vla_adapter_ros.runtime.manifest_sections import AdapterSpec
from vla_adapter_ros.runtime.manifest_smolvla import FAMILY, SmolVLAManifest
from vla_adapter_ros.runtime.policy import AdapterSwitching, InferenceResult
from vla_adapter_ros.runtime.providers import CPU, ModelKey, ProviderConfig, ProviderReport, create_session

PREFIX_OUTPUTS = ("past_keys", "past_values", "prefix_mask")
_ACTIVE = object()  # run_network's "whatever adapter is active" default
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


class SmolVLATokens:
    """LeRobot's tokenizer step: ``text + "\\n"``, tokenized, right-padded / truncated to ``max_length``."""

    def __init__(self, tokenizer_json: bytes, max_length: int, pad_token_id: int) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_str(tokenizer_json.decode("utf-8"))
        self.max_length, self.pad_token_id = max_length, pad_token_id

    def __call__(self, instruction: str) -> tuple[np.ndarray, np.ndarray]:
        """(1, L) int64 token ids and (1, L) bool mask."""
        text = instruction if instruction.endswith("\n") else instruction + "\n"  # SmolVLANewLineProcessor
        ids = self.tokenizer.encode(text).ids[: self.max_length]
        tokens = np.full((1, self.max_length), self.pad_token_id, np.int64)
        mask = np.zeros((1, self.max_length), bool)
        tokens[0, : len(ids)] = ids
        mask[0, : len(ids)] = True
        return tokens, mask


@dataclass(frozen=True)
class _Slot:
    name: str | None
    spec: AdapterSpec | None
    tensors: Mapping[str, np.ndarray]


class SmolVLAPolicy(AdapterSwitching):
    """An exported SmolVLA served with onnxruntime; the same surface as ``OnnxPolicy`` (shared mode).

    ``infer`` returns LeRobot's de-normalised chunk (K, A) for the robot's actions; the noise of each
    inference comes from ``noise_generator(seed)``, so a policy made with the same seed replays the
    same chunks for the same inputs (``reset(seed)`` starts the sequence again). Switching and
    hot-adding adapters swap which tensors are fed to the graphs: no new session.
    """

    mode = "shared"
    serving = "plain"

    def __init__(self, manifest: SmolVLAManifest, *, providers: ProviderConfig | Sequence[Any] | str | None = None,
                 adapter: str | None = None, load_adapters: Sequence[str] | None = None, seed: int = 0,
                 warmup: bool = True, **_: Any) -> None:
        t0 = time.perf_counter()
        self._manifest = manifest
        self._config = ProviderConfig.coerce(providers)
        self._lock = threading.RLock()
        s = manifest.smolvla
        self.network, self._report = self._network(self._config.names())
        self._chain = self._config.names()  # providers still to try, in order; fall_back() shortens it
        self.tokens = SmolVLATokens(manifest.read_verified(s.tokenizer), s.max_length, s.pad_token_id)
        self.language_provider = CPU
        self.fallbacks: list[tuple[str, str]] = []
        self.warmup_seconds = 0.0
        self.reset(seed)
        names = list(manifest.adapter_names if load_adapters is None else dict.fromkeys(load_adapters))
        if adapter is not None and adapter not in names:
            names.append(adapter)
        self._slots: dict[str | None, _Slot] = {None: _Slot(None, None, {})}
        for name in names:
            self._slots[name] = self._prepare(manifest, name)
        initial = adapter if adapter is not None else (
            manifest.default_adapter if manifest.default_adapter in names else next(iter(names), None))
        self._state: _Slot | None = self._slots[initial]
        if warmup:
            w0 = time.perf_counter()
            self.run_network(self._zeros(), np.zeros((1, s.chunk_size, s.max_action_dim), np.float32))
            self.warmup_seconds = time.perf_counter() - w0
        self.load_seconds = time.perf_counter() - t0 - self.warmup_seconds

    @classmethod
    def from_dir(cls, model_dir: str | Path, providers: Any = None, mode: str = "shared", adapter: str | None = None,
                 **kwargs: Any) -> SmolVLAPolicy:
        if mode != "shared":
            raise ValueError(f"a {FAMILY} model is served in mode 'shared' only, got {mode!r}")
        return cls(SmolVLAManifest.load(model_dir), providers=providers, adapter=adapter, **kwargs)

    # ------------------------------------------------------------------ properties (as OnnxPolicy's)
    @property
    def manifest(self) -> SmolVLAManifest:
        return self._manifest

    @property
    def provider(self) -> str:
        return self._report.active

    @property
    def provider_report(self) -> ProviderReport:
        return self._report

    @property
    def providers_by_adapter(self) -> dict[str | None, str]:
        return {name: self.provider for name in self._slots}

    # ------------------------------------------------------------------ adapters
    def load_adapter(self, name: str, activate: bool = False) -> AdapterSpec:
        """Hot-add adapter ``name`` (a NAME) from the model directory, re-reading its manifest if needed."""
        with self._lock:
            self._require_open()
            if name not in self._slots:
                manifest = self._manifest
                if manifest.adapter(name) is None:
                    manifest = self._reread_manifest(name)
                slot = self._prepare(manifest, name)
                self._slots = {**self._slots, name: slot}
                self._manifest = manifest
            if activate:
                self._state = self._slots[name]
            spec = self._slots[name].spec
            assert spec is not None
            return spec

    # ------------------------------------------------------------------ inference
    def reset(self, seed: int | None = None) -> None:
        """Restart the noise sequence (``seed``: a new one; None: the current seed again)."""
        self.seed = getattr(self, "seed", 0) if seed is None else int(seed)
        self._noise = noise_generator(self.seed)

    def infer(self, images: np.ndarray | Mapping[str, np.ndarray], instruction: str,
              proprio: Sequence[float] | np.ndarray | None = None, noise: np.ndarray | None = None) -> InferenceResult:
        """Camera frame(s) + instruction + raw state -> clipped (K, A) actions in robot units.

        ``noise`` (1, chunk, max_action_dim): the flow's starting point; default the next draw of the seeded generator.
        """
        slot = self._require_open()
        t0 = time.perf_counter()
        m, s = self._manifest, self._manifest.smolvla
        frames = images if isinstance(images, Mapping) else {m.camera_names[0]: images} if len(m.cameras) == 1 else None
        if frames is None or sorted(frames) != sorted(m.camera_names):
            got = list(images) if isinstance(images, Mapping) else type(images).__name__
            raise InputError(f"images for {got}; this model takes one (H, W, 3) uint8 frame for each of {list(m.camera_names)}")
        feeds = {c.input: resize_with_pad(np.asarray(frames[c.name]), c.height, c.width)[None] for c in m.cameras}
        feeds["state"] = self._state_input(proprio)
        t1 = time.perf_counter()
        feeds["lang_tokens"], feeds["lang_mask"] = self.tokens(instruction)
        if noise is None:
            with self._lock:
                noise = self._noise.standard_normal((1, s.chunk_size, s.max_action_dim)).astype(np.float32)
        t2 = time.perf_counter()
        raw = self.run_network(feeds, noise, slot)[0, :, : len(m.actions.names)]
        t3 = time.perf_counter()
        if not np.all(np.isfinite(raw)):
            raise NonFiniteOutputError(f"network output has non-finite values (adapter {slot.name!r}); no action returned")
        actions = m.actions.normalizer.denormalize(raw)
        actions = np.clip(actions, np.asarray(m.actions.low, np.float32), np.asarray(m.actions.high, np.float32))
        t4 = time.perf_counter()
        timing = {"preprocess_ms": (t1 - t0) * 1e3, "language_ms": (t2 - t1) * 1e3, "network_ms": (t3 - t2) * 1e3,
                  "postprocess_ms": (t4 - t3) * 1e3, "total_ms": (t4 - t0) * 1e3}
        return InferenceResult(actions.astype(np.float32), slot.name, instruction, self.provider, timing, False)

    def run_network(self, feeds: Mapping[str, np.ndarray], noise: np.ndarray, adapter: Any = _ACTIVE) -> np.ndarray:
        """Normalised (B, chunk, max_action_dim) from model-side inputs.

        ``adapter``: a name (None = the backbone alone); default the active one.
        """
        slot = adapter if isinstance(adapter, _Slot) else self._require_open() if adapter is _ACTIVE else self._slots.get(adapter)
        if slot is None:
            raise self._unknown(adapter)
        try:
            return self.network.sample(feeds, noise, slot.tensors)
        except (ort.capi.onnxruntime_pybind11_state.Fail, ort.capi.onnxruntime_pybind11_state.InvalidArgument) as exc:
            raise ProviderRunError(f"{self.provider} failed running {self._manifest.name!r}: {exc}", self.provider) from exc

    # ------------------------------------------------------------------ internals
    def _rebuild(self, chain: Sequence[str]) -> None:
        """Both sessions on ``chain`` (fall_back); the adapters' tensors are numpy and stay as they are."""
        network, report = self._network(chain)
        if self.warmup_seconds:  # the policy was warmed up: so are its new sessions, before they serve
            network.sample(self._zeros(), np.zeros((1, network.chunk_size, network.max_action_dim), np.float32))
        self.network, self._report, self._chain = network, report, list(chain)

    def _network(self, chain: Sequence[str]) -> tuple[SmolVLANetwork, ProviderReport]:
        """The prefix and denoise sessions, each on the first provider of ``chain`` that loads it."""
        s = self._manifest.smolvla
        so = ort.SessionOptions()
        so.log_severity_level = 3  # the adapter inputs-with-initializers are by design
        if self._config.intra_op_threads:
            so.intra_op_num_threads = self._config.intra_op_threads
        prefix, report = self._session(s.prefix, so, "prefix graph", chain)
        denoise = self._session(s.denoise, so, "denoise graph", chain)[0]
        return SmolVLANetwork(prefix, denoise, s.num_steps, s.chunk_size, s.max_action_dim), report

    def _session(self, rel: str, so: ort.SessionOptions, label: str,
                 chain: Sequence[str]) -> tuple[ort.InferenceSession, ProviderReport]:
        data = self._manifest.read_verified(rel)
        entries = [(n, o) for n, o in self._config.chain(ModelKey.of(data)) if n in chain]
        return create_session(data, entries, so, label=f"{label} ({rel})")

    def _prepare(self, manifest: SmolVLAManifest, name: str) -> _Slot:
        spec = manifest.adapter(name)
        if spec is None:
            raise self._unknown(name, "is not listed in the manifest")
        tensors = graph_checks.read_adapter_tensors(manifest.adapter_inputs, manifest.verify(spec.file), spec)
        return _Slot(name, spec, tensors)

    def _state_input(self, proprio: Any) -> np.ndarray:
        m = self._manifest
        norm = m.proprio.normalizer
        if proprio is None:
            raise InputError(f"this model needs the state {list(m.proprio_names)}, got None")
        values = np.asarray(proprio, np.float64)
        if values.shape != (norm.dim,) or not np.all(np.isfinite(values)):
            raise InputError(f"state must be {norm.dim} finite numbers {list(m.proprio_names)}, got {values.tolist()}")
        out = np.zeros((1, m.smolvla.max_state_dim), np.float32)
        out[0, : norm.dim] = norm.normalize(values)
        return out

    def _zeros(self) -> dict[str, np.ndarray]:
        m = self._manifest
        feeds = {c.input: np.zeros((1, 3, c.height, c.width), np.float32) for c in m.cameras}
        tokens, mask = self.tokens("")
        return {**feeds, "lang_tokens": tokens, "lang_mask": mask,
                "state": np.zeros((1, m.smolvla.max_state_dim), np.float32)}

    def _unknown(self, name: Any, why: str = "is not loaded") -> UnknownAdapterError:
        loaded = [n for n in self._slots if n is not None]
        return UnknownAdapterError(f"unknown adapter {name!r}: it {why}. Loaded: {loaded} (None = backbone alone); "
                                   f"listed in the manifest: {self._manifest.adapter_names}")

    def _backbone_changes(self, fresh: SmolVLAManifest) -> list[str]:
        m = self._manifest
        return [what for what, same in (("files", fresh.backbone_files == m.backbone_files),
                                        ("smolvla", fresh.smolvla == m.smolvla)) if not same]
