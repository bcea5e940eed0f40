"""The deployed policy: an exported model directory served with onnxruntime.

Two modes over the same directory:

- ``"shared"``: one InferenceSession of the shared backbone, whose adapter weights are
  graph inputs with identity defaults; each task adapter is an onnxruntime adapter file
  (``LoraAdapter``) activated per run through its own ``RunOptions``. Switching adapters
  swaps which prepared RunOptions the next run uses: no new session, no backbone reload,
  and an extra adapter costs about its file size.
- ``"merged"``: one InferenceSession per self-contained model (backbone + adapter baked in).
  Simplest for TensorRT; each adapter costs a whole backbone.

Each prepared adapter (a "slot") runs through one of two runners (``runtime/serving.py``):
plain ``session.run`` with RunOptions adapters, or device-resident IOBinding (adapter tensors
uploaded to the provider's device once, a preallocated input buffer); ``ProviderConfig.serving``
chooses ("auto": IOBinding on CUDA/TensorRT, plain on the CPU).

Switching is one reference assignment under a lock. ``infer`` reads that reference once
when it starts, so an inference already running finishes with the adapter it started with
and reports that adapter, while the next one uses the new adapter.

Cameras: ``infer`` takes a single-camera model's frame as one (H, W, 3) uint8 array, or a mapping
camera name -> frame for any model (the names and order are ``manifest.cameras``); each frame is
resized and normalised by ``processing.preprocess_image`` and fed to that camera's graph input.

Imports neither torch nor rclpy (a robot needs numpy, OpenCV, tokenizers and onnxruntime).
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import onnxruntime as ort

from vla_adapter_ros import processing
from vla_adapter_ros.runtime import graph_checks
from vla_adapter_ros.runtime.errors import (
    InputError,
    ManifestError,
    NonFiniteOutputError,
    PolicyRuntimeError,
    ProviderError,
    ProviderRunError,
    UnknownAdapterError,
)
from vla_adapter_ros.runtime.language import LanguageEncoder
from vla_adapter_ros.runtime.manifest import (
    POLICY_OUTPUTS,
    AdapterSpec,
    CameraInput,
    Manifest,
    TensorSpec,
    load_manifest,
)
from vla_adapter_ros.runtime.providers import (
    CPU,
    CUDA,
    ModelKey,
    ProviderConfig,
    ProviderReport,
    create_session,
    device_of,
    language_chain,
)
from vla_adapter_ros.runtime.serving import BoundRunner, GraphRunner, GraphSession, PlainRunner

if TYPE_CHECKING:
    from vla_adapter_ros.runtime.smolvla import SmolVLAPolicy

MODES = ("shared", "merged")
# Manifest sections a re-read manifest must keep unchanged before load_adapter trusts it.
_BACKBONE_KEYS = ("inputs", "outputs", "image", "cameras", "contract", "proprio", "actions", "language", "shared")
_ACTIVE = object()  # run_network's "whatever adapter is active" default


@dataclass(frozen=True)
class InferenceResult:
    """One action chunk: de-normalised, clipped (K, A) actions and how they were made."""

    actions: np.ndarray
    adapter: str | None
    instruction: str
    provider: str
    timing: dict[str, float] = field(default_factory=dict)  # milliseconds
    instruction_cached: bool = False


@dataclass(frozen=True)
class _Slot:
    """Everything one inference needs for one adapter, prepared in advance."""

    name: str | None
    spec: AdapterSpec | None
    session: ort.InferenceSession
    runner: PlainRunner | BoundRunner | GraphRunner
    provider: str  # what this slot's session runs on (its get_providers()[0] after warm-up)

    @property
    def run_options(self) -> ort.RunOptions | None:
        return self.runner.run_options


class _SlotWarmupError(Exception):
    """An adapter's first run failed on ``provider`` after its session had been chosen."""

    def __init__(self, message: str, provider: str) -> None:
        super().__init__(message)
        self.provider = provider


def _label(adapter: str | None) -> str:
    return "the backbone alone" if adapter is None else f"adapter {adapter!r}"


_P = TypeVar("_P", bound="AdapterSwitching")


class AdapterSwitching:
    """Switching among prepared adapter slots, provider fall-back and the lifetime, the same for every
    policy family (OnnxPolicy, runtime.smolvla.SmolVLAPolicy). A family provides ``_slots`` (name -> a
    slot with ``.name`` and ``.spec``; None = the backbone alone), ``_state`` (the active slot; None once
    closed), ``_lock``, ``_manifest``, ``_chain`` (the providers its sessions may use, in order),
    ``fallbacks``, ``provider`` / ``provider_report``, ``_unknown(name)`` and ``_rebuild(chain)``."""

    _slots: dict[str | None, Any]
    _state: Any
    _lock: Any
    _manifest: Any
    _chain: list[str]
    fallbacks: list[tuple[str, str]]  # (failed provider, reason) per fall_back()

    @property
    def provider(self) -> str:
        raise NotImplementedError

    @property
    def provider_report(self) -> ProviderReport:
        raise NotImplementedError

    def _unknown(self, name: Any, why: str = "is not loaded") -> UnknownAdapterError:
        raise NotImplementedError

    def _backbone_changes(self, fresh: Any) -> list[str]:
        """What differs between the loaded manifest's backbone and ``fresh``'s (empty: the same backbone)."""
        raise NotImplementedError

    def _rebuild(self, chain: Sequence[str]) -> None:
        """Every session again on the first provider of ``chain`` that works, published only when all are
        ready (a failure leaves the old sessions in place); ``_chain`` becomes the chain used."""
        raise NotImplementedError

    @property
    def active_adapter(self) -> str | None:
        state = self._state
        return None if state is None else state.name

    @property
    def adapters(self) -> list[AdapterSpec]:
        """Loaded adapters (switchable now), in load order."""
        return [s.spec for s in self._slots.values() if s.spec is not None]

    @property
    def action_names(self) -> tuple[str, ...]:
        return tuple(self._manifest.actions.names)

    def switch(self, name: str | None) -> str | None:
        """Make ``name`` the adapter of the next inference; returns the previous one.

        ``None`` selects the backbone alone (shared mode only: the identity defaults).
        """
        with self._lock:
            previous: str | None = self._require_open().name
            slot = self._slots.get(name) if isinstance(name, str | None) else None
            if slot is None:
                raise self._unknown(name)
            self._state = slot
            return previous

    def _require_open(self) -> Any:
        state = self._state
        if state is None:
            raise PolicyRuntimeError("the policy is closed")
        return state

    def _reread_manifest(self, name: str) -> Any:
        """The model directory's manifest read again to hot-add ``name``; refused when the backbone changed."""
        try:
            fresh = type(self._manifest).load(self._manifest.root)
        except ManifestError as exc:
            raise ManifestError(f"adapter {name!r} is not in the loaded manifest and re-reading it failed: {exc}") from exc
        if fresh.adapter(name) is None:
            raise self._unknown(name, "is not listed in the manifest")
        changed = self._backbone_changes(fresh)
        if changed:
            raise ManifestError(f"adapter {name!r} belongs to a manifest whose backbone changed ({changed}); "
                                "reload the policy instead of hot-adding")
        return fresh

    # ------------------------------------------------------------------ provider failure
    def fall_back(self, reason: str = "") -> ProviderReport:
        """Rebuild every session on the provider after the current one (TensorRT -> CUDA -> CPU).

        For a provider that fails at run time (:class:`ProviderRunError`). On the last
        provider of the chain the sessions are rebuilt on that same provider (a transient
        fault clears; a permanent one keeps failing and the caller stops serving). The
        loaded adapters and the active one are kept; until the new sessions are ready the
        old state stays in place, and if rebuilding fails it is restored unchanged.
        Returns the new provider report.
        """
        with self._lock:
            active = self._require_open().name
            failed = self.provider
            at = self._chain.index(failed) if failed in self._chain else 0
            self._rebuild(self._chain[at + 1:] or self._chain[at:])
            self._state = self._slots[active]
            self.fallbacks.append((failed, reason))
            return self.provider_report

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        with self._lock:
            self._state = None
            self._slots = {}

    def __enter__(self: _P) -> _P:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OnnxPolicy(AdapterSwitching):
    """Serve an exported model directory; see :meth:`from_dir`. A context manager."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        mode: str = "shared",
        providers: ProviderConfig | Sequence[Any] | str | None = None,
        adapter: str | None = None,
        load_adapters: Sequence[str] | None = None,
        precision: str = "fp32",
        cache_size: int = 256,
        warmup: bool = True,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"precision must be 'fp32' or 'fp16', got {precision!r}")
        if precision == "fp16" and mode != "merged":
            raise ValueError("precision='fp16' needs mode='merged' (the fp16 files are self-contained models)")
        self._manifest = manifest
        self.mode = mode
        self.precision = precision
        self._config = ProviderConfig.coerce(providers)
        self._chain = self._config.names()  # providers still to try, in order; fall_back() shortens it
        self._lock = threading.RLock()
        self._slots: dict[str | None, _Slot] = {}
        self._state: _Slot | None = None
        # serving "cuda_graph": one graph session per ordinary session (the backbone in shared mode)
        self._graphs: weakref.WeakKeyDictionary[ort.InferenceSession, GraphSession] = weakref.WeakKeyDictionary()
        self._warmup = warmup
        self._cache_size = cache_size
        self._report: ProviderReport | None = None
        self._backbone: ort.InferenceSession | None = None
        self.language: LanguageEncoder
        self.language_provider = ""
        self.fallbacks: list[tuple[str, str]] = []  # (failed provider, reason) per fall_back()
        self.load_seconds = 0.0
        self.warmup_seconds = 0.0  # first runs (a TensorRT engine is built or read from its cache here)

        t0 = time.perf_counter()
        names = list(manifest.adapter_names if load_adapters is None else dict.fromkeys(load_adapters))
        initial: str | None = adapter
        if adapter is None:  # the manifest's default if it is loaded, else the first loaded, else none
            initial = manifest.default_adapter if manifest.default_adapter in names else next(iter(names), None)
        elif adapter not in names:
            names.append(adapter)
        for name in names:
            if manifest.adapter(name) is None:
                raise self._unknown(name, "is not listed in the manifest")
        self._build_walking(names, self._chain)
        self.load_seconds = time.perf_counter() - t0 - self.warmup_seconds
        self._state = self._slots[initial]

    def _build_walking(self, names: Sequence[str], chain: Sequence[str]) -> None:
        """:meth:`_build` on ``chain``; when an adapter's first run fails after its session was chosen,
        again on the providers after the one that failed. Raises ProviderError when none is left."""
        skipped: list[tuple[str, str]] = []
        while True:
            try:
                self._build(names, chain)
            except _SlotWarmupError as exc:
                skipped.append((exc.provider, str(exc)))
                rest = list(chain[chain.index(exc.provider) + 1:]) if exc.provider in chain else []
                if not rest:
                    raise ProviderError(f"no execution provider could run {self._manifest.name!r}: "
                                        + "; ".join(f"{p}: {r}" for p, r in skipped)) from exc
                chain = rest
                continue
            assert self._report is not None
            self._report.skipped[:0] = skipped
            self._chain = list(chain)
            return

    def _build(self, names: Sequence[str], chain: Sequence[str]) -> None:
        """Language encoder, backbone and one warmed-up slot per adapter on ``chain``, published at the
        end (concurrent readers see the old state or the new one, never a half-built one)."""
        language = self._load_language()
        backbone: ort.InferenceSession | None = None
        report: ProviderReport | None = None
        slots: dict[str | None, _Slot] = {}
        if self.mode == "shared":
            backbone, report = self._session(self._manifest.shared_file, "shared backbone", chain,
                                             self._manifest.adapter_inputs)
            # The identity adapter = the backbone alone (its adapter inputs keep their defaults).
            slots[None] = self._slot(None, None, backbone, report.active, {}, rel=self._manifest.shared_file)
        if self.mode == "merged" and not names:
            raise ManifestError("merged mode needs at least one adapter to load")
        for name in names:
            slots[name], report = self._prepare(self._manifest, name, backbone, report, chain)
        if self._warmup:
            self._timed_warmup(lambda: language.encode_batch(["warm up"]))
            for slot in slots.values():
                self._warm(slot)
        self.language, self.language_provider = language, CPU
        self._backbone, self._report, self._slots = backbone, report, slots

    @classmethod
    def from_dir(
        cls,
        model_dir: str | Path,
        providers: ProviderConfig | Sequence[Any] | str | None = None,
        mode: str = "shared",
        adapter: str | None = None,
        **kwargs: Any,
    ) -> OnnxPolicy | SmolVLAPolicy:
        """Load ``model_dir`` through its manifest (every file's sha256 is checked before use).

        The manifest's ``family`` chooses the class: the package's own VLA is served by OnnxPolicy, a
        SmolVLA by ``runtime.smolvla.SmolVLAPolicy`` (the same surface: infer, switch, load_adapter, ...).

        ``providers``: names in order (default TensorRT -> CUDA -> CPU) or a ProviderConfig.
        ``adapter``: the adapter active after loading (default: the manifest's default).
        Keyword options: ``load_adapters`` (names to load now, default all), ``precision``
        (``"fp16"`` uses the fp16 merged files), ``cache_size`` (instruction LRU), ``warmup``.
        """
        manifest = load_manifest(model_dir)  # one dispatch on the manifest's family
        if manifest.family == "smolvla":
            # why here: runtime.smolvla builds on this module (InferenceResult), so it cannot be imported at the top.
            from vla_adapter_ros.runtime.smolvla import SmolVLAPolicy

            if mode != "shared":
                raise ValueError(f"a smolvla model is served in mode 'shared' only, got {mode!r}")
            return SmolVLAPolicy(manifest, providers=providers, adapter=adapter, **kwargs)
        return cls(manifest, mode=mode, providers=providers, adapter=adapter, **kwargs)

    # ------------------------------------------------------------------ properties
    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @property
    def provider(self) -> str:
        """The execution provider that runs the active adapter (read from its session after warm-up)."""
        state = self._state
        return self.provider_report.active if state is None else state.provider

    @property
    def serving(self) -> str:
        """How the active adapter runs: ``"plain"`` (session.run + RunOptions) or ``"iobinding"``."""
        state = self._require_open()
        return state.runner.serving

    @property
    def providers_by_adapter(self) -> dict[str | None, str]:
        """Each loaded adapter's provider (in merged mode, sessions could land on different ones)."""
        return {name: slot.provider for name, slot in self._slots.items()}

    @property
    def provider_report(self) -> ProviderReport:
        """Requested providers, the one that runs, and why the others were skipped."""
        assert self._report is not None  # set by the first session, before __init__ returns
        return self._report

    # ------------------------------------------------------------------ adapters
    def load_adapter(self, name: str, activate: bool = False) -> AdapterSpec:
        """Hot-add adapter ``name`` from the model directory (a NAME, never a path).

        Looks it up in the loaded manifest, or in a re-read ``manifest.json`` whose backbone
        sections are unchanged; checks the file's sha256 and its tensor names, shapes and
        dtypes against the graph; only then makes it switchable. Any failure leaves the
        runtime exactly as it was.
        """
        with self._lock:
            self._require_open()
            if name in self._slots:
                if activate:
                    self.switch(name)
                return self._slots[name].spec  # type: ignore[return-value]
            manifest = self._manifest
            if manifest.adapter(name) is None:
                manifest = self._reread_manifest(name)
            slot, _ = self._prepare(manifest, name, self._backbone, self._report, self._chain)
            if self._warmup:
                try:
                    self._warm(slot)
                except _SlotWarmupError as exc:
                    raise ProviderRunError(f"adapter {name!r} was not added: {exc}", exc.provider) from exc
            # Publish: a new dict, then one assignment, so readers never see a half-built state.
            slots = dict(self._slots)
            slots[name] = slot
            self._slots = slots
            self._manifest = manifest
            if activate:
                self._state = slot
            return slot.spec  # type: ignore[return-value]

    # ------------------------------------------------------------------ inference
    def infer(
        self, images: np.ndarray | Mapping[str, np.ndarray], instruction: str,
        proprio: Sequence[float] | np.ndarray | None = None,
    ) -> InferenceResult:
        """Camera frame(s) + instruction + raw proprio -> clipped (K, A) actions in robot units.

        ``images``: the (H, W, 3) uint8 RGB frame of a single-camera model, or a mapping camera name ->
        frame with exactly the cameras of ``manifest.cameras`` (any model).
        """
        slot = self._require_open()  # read once: this inference uses this adapter throughout
        t0 = time.perf_counter()
        feeds = {}
        for camera, rgb in self._by_camera(images, "(H, W, 3) uint8 frame"):
            try:
                feeds[camera.input] = processing.preprocess_image(np.asarray(rgb), camera.size)[None]  # (1, 3, H, W)
            except processing.ProcessingError as exc:
                where = "" if isinstance(images, np.ndarray) else f"camera {camera.name!r}: "
                raise InputError(f"{where}{exc}") from exc
        prop = self._proprio(proprio)  # (1, P)
        t1 = time.perf_counter()
        embedding, cached = self.language.encode(instruction)
        t2 = time.perf_counter()
        feeds |= {processing.INSTRUCTION_EMBEDDING: embedding[None], processing.PROPRIO: prop}
        (raw,) = self._run(slot, feeds)
        t3 = time.perf_counter()
        actions = self._postprocess(raw[0], slot.name, instruction)
        t4 = time.perf_counter()
        timing = {
            "preprocess_ms": (t1 - t0) * 1e3,
            "language_ms": (t2 - t1) * 1e3,
            "network_ms": (t3 - t2) * 1e3,
            "postprocess_ms": (t4 - t3) * 1e3,
            "total_ms": (t4 - t0) * 1e3,
        }
        return InferenceResult(actions, slot.name, instruction, slot.provider, timing, cached)

    def run_network(
        self, image: np.ndarray | Mapping[str, np.ndarray], instruction_embedding: np.ndarray, proprio: np.ndarray,
        adapter: Any = _ACTIVE,
    ) -> np.ndarray:
        """Raw network call on already-processed batches -> normalised (B,K,A).

        ``image``: (B, V, 3, H, W) in ``manifest.cameras`` order, (B, 3, H, W) for a single-camera model,
        or a mapping camera name -> (B, 3, H, W); then (B, E) embeddings and (B, P) normalised proprio.
        For parity checks and benchmarks; ``adapter`` defaults to the active one.
        """
        slot = self._require_open() if adapter is _ACTIVE else self._slots.get(adapter)
        if slot is None:
            raise self._unknown(adapter)
        cameras = self._manifest.cameras
        if isinstance(image, np.ndarray) and image.ndim == 5:
            if image.shape[1] != len(cameras):
                raise InputError(f"image has {image.shape[1]} views (shape {image.shape}); this model takes "
                                 f"{len(cameras)}: {list(self._manifest.camera_names)}")
            image = {c.name: image[:, i] for i, c in enumerate(cameras)}  # (B, 3, H, W) per camera
        feeds = {camera.input: np.ascontiguousarray(x, np.float32) for camera, x in self._by_camera(image, "(B, 3, H, W) batch")}
        feeds |= {
            processing.INSTRUCTION_EMBEDDING: np.ascontiguousarray(instruction_embedding, np.float32),
            processing.PROPRIO: np.ascontiguousarray(proprio, np.float32),
        }
        return self._run(slot, feeds)[0]

    def _by_camera(self, images: Any, what: str) -> list[tuple[CameraInput, Any]]:
        """(camera, its image) in ``manifest.cameras`` order, from one array (a single-camera model) or a
        mapping camera name -> array; any other camera set is an InputError naming the expected ones."""
        cameras = self._manifest.cameras
        expected = list(self._manifest.camera_names)
        if isinstance(images, Mapping):
            missing = [c for c in expected if c not in images]
            unknown = [c for c in images if c not in expected]
            if missing or unknown:
                raise InputError(f"images for cameras {list(images)}: missing {missing}, unknown {unknown}; "
                                 f"this model takes one {what} for each of {expected}")
            return [(c, images[c.name]) for c in cameras]
        if len(cameras) != 1:
            raise InputError(f"this model has {len(cameras)} cameras {expected}: pass a mapping camera name -> {what}, "
                             f"got {type(images).__name__}")
        return [(cameras[0], images)]

    def _run(self, slot: _Slot, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return slot.runner.run(feeds)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises Fail/EPFail/RuntimeException/... for run failures
            raise ProviderRunError(
                f"{slot.provider} failed running {_label(slot.name)} ({slot.runner.serving}): "
                f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
                slot.provider,
            ) from exc

    def _rebuild(self, chain: Sequence[str]) -> None:
        # _build publishes only when everything is built and warmed up: a failure changes nothing.
        self._build_walking([n for n in self._slots if n is not None], chain)

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        with self._lock:
            super().close()
            self._backbone = None

    def __repr__(self) -> str:
        return (
            f"OnnxPolicy({self._manifest.name!r}, mode={self.mode!r}, provider={self.provider!r}, "
            f"active={self.active_adapter!r}, loaded={[a.name for a in self.adapters]})"
        )

    # ------------------------------------------------------------------ internals
    def _unknown(self, name: Any, why: str = "is not loaded") -> UnknownAdapterError:
        loaded = [n for n in self._slots if n is not None]
        hint = "" if name not in self._manifest.adapter_names else f"; call load_adapter({name!r}) first"
        backbone = " (None = backbone alone)" if self.mode == "shared" else ""
        return UnknownAdapterError(
            f"unknown adapter {name!r}: it {why}{hint}. Loaded: {loaded}{backbone}; "
            f"listed in the manifest: {self._manifest.adapter_names}"
        )

    def _session_options(self) -> ort.SessionOptions:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Errors only: the shared graph's adapter inputs-with-initializers are by design, and
        # onnxruntime warns about each of them at load.
        so.log_severity_level = 3
        if self._config.intra_op_threads:
            so.intra_op_num_threads = self._config.intra_op_threads
        return so

    def _session(self, rel: str, label: str, chain: Sequence[str],
                 adapter_inputs: Sequence[TensorSpec] = ()) -> tuple[ort.InferenceSession, ProviderReport]:
        """A session of model file ``rel`` on the first provider of ``chain`` that loads it, matches the
        manifest and runs its first inference; options built for this file's content hash."""
        data = self._manifest.read_verified(rel)
        key = ModelKey.of(data, [(t.name, t.shape) for t in self._manifest.inputs])
        entries = [(n, o) for n, o in self._config.chain(key) if n in chain]

        def first_run(session: ort.InferenceSession) -> None:
            graph_checks.check_graph(self._manifest, session, adapter_inputs, rel)  # a ManifestError is no provider's fault
            if self._warmup:
                self._timed_warmup(lambda: session.run(list(POLICY_OUTPUTS), self._zeros()))

        return create_session(data, entries, self._session_options(), label=f"{label} ({rel})", warmup=first_run)

    def _load_language(self) -> LanguageEncoder:
        spec = self._manifest.language
        data = self._manifest.read_verified(spec.file)
        session, _ = create_session(data, language_chain(), self._session_options(), label=f"language encoder ({spec.file})")
        tokenizer = self._manifest.read_verified(spec.tokenizer)
        return LanguageEncoder.from_bytes(session, tokenizer, spec.embedding_dim, spec.max_length, self._cache_size)

    def _prepare(self, manifest: Manifest, name: str, backbone: ort.InferenceSession | None,
                 report: ProviderReport | None, chain: Sequence[str]) -> tuple[_Slot, ProviderReport]:
        """The slot for adapter ``name`` and the provider report (the first session's, in merged mode)."""
        spec = manifest.adapter(name)
        if spec is None:
            raise self._unknown(name, "is not listed in the manifest")
        if self.mode == "merged":
            rel = spec.merged_file
            if self.precision == "fp16":
                if spec.fp16_file is None:
                    raise ManifestError(f"adapter {name!r} has no fp16 file; re-export with --fp16")
                rel = spec.fp16_file
            # After the first session, start the chain at the provider that worked.
            if report is not None and report.active in chain:
                chain = chain[list(chain).index(report.active):]
            session, first = self._session(rel, f"adapter {name!r}", chain)
            return self._slot(name, spec, session, first.active, {}, rel=rel), report or first
        assert backbone is not None and report is not None  # shared mode builds the backbone first
        path = manifest.verify(spec.file)
        tensors = graph_checks.read_adapter_tensors(self._manifest.adapter_inputs, path, spec)
        return self._slot(name, spec, backbone, report.active, tensors, path, rel=manifest.shared_file), report

    def _slot(self, name: str | None, spec: AdapterSpec | None, session: ort.InferenceSession, provider: str,
              tensors: dict[str, np.ndarray], adapter_file: Path | None = None, *, rel: str = "") -> _Slot:
        """A slot serving through the runner the config asks for on ``provider`` (``rel``: the model
        file of ``session``, for the CUDA-graph session made beside it)."""
        outputs = list(POLICY_OUTPUTS)
        serving = self._config.serving_for(provider)
        if serving == "cuda_graph" and not (self.mode == "shared" and name is None):
            # (the identity slot of shared mode, the backbone's own defaults, runs plain: see GraphRunner)
            graph = self._graphs.get(session)
            if graph is None:
                graph = self._graphs[session] = self._graph_session(session, rel, provider)
            return _Slot(name, spec, session, GraphRunner(graph, tensors), provider)
        if serving == "iobinding":
            # Adapter tensors go to the provider's device once, here; the input buffers hold batch 1.
            shapes = {k: v.shape for k, v in self._zeros().items()}
            runner: PlainRunner | BoundRunner = BoundRunner(
                session, outputs, device_of(provider, self._config.device_id), shapes, tensors)
        elif adapter_file is None:
            runner = PlainRunner(session, outputs, None)
        else:
            lora = ort.LoraAdapter()
            lora.Load(str(adapter_file))
            options = ort.RunOptions()
            options.add_active_adapter(lora)
            runner = PlainRunner(session, outputs, options, lora)
        return _Slot(name, spec, session, runner, provider)

    def _graph_session(self, session: ort.InferenceSession, rel: str, provider: str) -> GraphSession:
        """A second session of ``rel`` with CUDA graphs on, bound to fixed buffers (serving.GraphSession)."""
        options = dict(session.get_provider_options().get(provider, {}))
        if provider == CUDA:
            options["enable_cuda_graph"] = "1"
        graph = ort.InferenceSession(self._manifest.read_verified(rel), self._session_options(),
                                     providers=[(provider, options)])
        adapter_shapes = ({t.name: tuple(int(d) for d in t.shape) for t in self._manifest.adapter_inputs}
                          if self.mode == "shared" else {})
        shapes = {k: v.shape for k, v in self._zeros().items()}
        return GraphSession(graph, session, list(POLICY_OUTPUTS), device_of(provider, self._config.device_id),
                            shapes, adapter_shapes)

    def _zeros(self) -> dict[str, np.ndarray]:
        """Batch-1 network inputs of the manifest's shapes (warm-up feeds, IOBinding buffer shapes)."""
        m = self._manifest
        return {
            **{c.input: np.zeros((1, 3, c.height, c.width), np.float32) for c in m.cameras},
            processing.INSTRUCTION_EMBEDDING: np.zeros((1, m.language.embedding_dim), np.float32),
            processing.PROPRIO: np.zeros((1, len(m.proprio_names)), np.float32),
        }

    def _timed_warmup(self, fn: Any) -> None:
        t0 = time.perf_counter()
        try:
            fn()
        finally:
            self.warmup_seconds += time.perf_counter() - t0

    def _warm(self, slot: _Slot) -> None:
        """The slot's first run through its own runner (adapter tensors, bindings); a failure here is
        the provider's: :meth:`_build_walking` moves on to the next one."""
        try:
            self._timed_warmup(lambda: slot.runner.run(self._zeros()))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises Fail/EPFail/RuntimeException/...
            text = str(exc).strip().splitlines()
            raise _SlotWarmupError(
                f"{_label(slot.name)} failed in its first run ({slot.runner.serving}): "
                f"{type(exc).__name__}: {text[0][:300] if text else ''}", slot.provider) from exc

    def _proprio(self, proprio: Any) -> np.ndarray:
        norm = self._manifest.proprio_normalizer
        if proprio is None:
            if norm.dim == 0:
                return np.zeros((1, 0), np.float32)
            raise InputError(f"this model needs proprio {list(self._manifest.proprio_names)}, got None")
        try:
            values = np.asarray(proprio, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InputError(f"proprio must be {norm.dim} numbers, got {proprio!r}") from exc
        if values.shape != (norm.dim,):
            raise InputError(
                f"proprio has shape {values.shape}, expected ({norm.dim},) for {list(self._manifest.proprio_names)}"
            )
        if not np.all(np.isfinite(values)):
            raise InputError(f"proprio has non-finite values: {values.tolist()}")
        with np.errstate(over="ignore", invalid="ignore"):
            return norm.normalize(values)[None]  # (1, P); an overflow here surfaces as non-finite output

    def _postprocess(self, raw: np.ndarray, adapter: str | None, instruction: str) -> np.ndarray:
        spec = self._manifest.actions
        if not np.all(np.isfinite(raw)):
            raise NonFiniteOutputError(
                f"network output has {int(np.size(raw) - np.isfinite(raw).sum())} non-finite values "
                f"(adapter {adapter!r}, instruction {instruction!r}); no action returned"
            )
        with np.errstate(over="ignore", invalid="ignore"):
            actions = spec.normalizer.denormalize(raw)  # (K, A)
        if not np.all(np.isfinite(actions)):
            raise NonFiniteOutputError(
                f"de-normalised actions are non-finite (adapter {adapter!r}); check the manifest's action statistics "
                f"mean={spec.normalizer.mean.tolist()} std={spec.normalizer.std.tolist()}"
            )
        return np.clip(actions, np.asarray(spec.low, np.float32), np.asarray(spec.high, np.float32)).astype(np.float32)

    def _backbone_changes(self, fresh: Manifest) -> list[str]:
        old, new = self._manifest.raw, fresh.raw
        changed = [k for k in _BACKBONE_KEYS if json.dumps(old.get(k), sort_keys=True) != json.dumps(new.get(k), sort_keys=True)]
        return changed or (["files"] if fresh.backbone_files != self._manifest.backbone_files else [])
