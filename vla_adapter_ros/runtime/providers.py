"""Execution-provider selection: options per provider and model, an explicit fallback walk.

The chain comes from configuration, in order; the default is TensorRT -> CUDA -> CPU. For
each provider, in turn, :func:`create_session` builds a session and runs its first
inference (the warm-up); the first provider whose session initialises *and* runs serves.
One that this onnxruntime build lacks is skipped; one that fails to initialise (no GPU,
missing CUDA/TensorRT libraries, named by :mod:`gpu_libs`) or whose first run fails (a
TensorRT engine that cannot be built) is skipped with the reason, and the next one is
tried with its own options.

Three onnxruntime behaviours this module exists to get right:

- **Engine cache keys.** The TensorRT provider names its cached engines by a hash of input
  and node names, shapes and library versions, never the weights (onnxruntime issues 6455
  and 32254). Every merged per-adapter model is the same graph with other weights, and a
  re-exported backbone keeps its architecture, so one shared cache folder would hand the
  first model's engine to the others: wrong actions, no error. Here every model gets its
  own cache folder and prefix named by the sha256 of its bytes (:class:`ModelKey`).
- **Silent fallback.** ``InferenceSession`` re-creates itself on [CUDA, CPU] without the
  options when TensorRT fails at construction or inside ``run()``; the report would still
  say TensorRT. Sessions here are built with that fallback disabled, and the report is
  read from ``session.get_providers()`` after the warm-up.
- **Engine build at the first run.** With a dynamic batch and no optimisation profile,
  TensorRT builds (and caches) an engine for the first shape it sees and rebuilds for new
  ones. The options carry an explicit profile: batch 1 (min, opt) to ``max_batch``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnxruntime as ort

from vla_adapter_ros.runtime import gpu_libs
from vla_adapter_ros.runtime.errors import PolicyRuntimeError, ProviderConfigError, ProviderError
from vla_adapter_ros.runtime.modes import SERVING_MODES

TENSORRT = gpu_libs.TENSORRT
CUDA = gpu_libs.CUDA
CPU = "CPUExecutionProvider"
GPU_PROVIDERS = (TENSORRT, CUDA)
ALIASES = {"tensorrt": TENSORRT, "trt": TENSORRT, "cuda": CUDA, "cpu": CPU}
DEFAULT_CHAIN = ("tensorrt", "cuda", "cpu")
CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vla_adapter_ros"
DEFAULT_ENGINE_CACHE = CACHE_ROOT / "tensorrt"
MAX_BATCH_LIMIT = 1024

ProviderEntry = tuple[str, dict[str, Any]]
Shape = tuple[int | str, ...]


@dataclass(frozen=True)
class ModelKey:
    """What the TensorRT options depend on for one model: its content hash and its input shapes."""

    digest: str  # sha256 of the serialized model
    inputs: tuple[tuple[str, Shape], ...] = ()  # graph inputs; str dimensions are dynamic

    @classmethod
    def of(cls, model: bytes, inputs: Sequence[tuple[str, Sequence[int | str]]] = ()) -> ModelKey:
        return cls(hashlib.sha256(model).hexdigest(), tuple((n, tuple(s)) for n, s in inputs))

    def profile(self, max_batch: int) -> dict[str, str]:
        """``trt_profile_{min,opt,max}_shapes`` for the dynamic inputs (batch axis only): 1, 1, max_batch."""
        shapes: dict[str, list[str]] = {"min": [], "opt": [], "max": []}
        for name, shape in self.inputs:
            if not any(isinstance(d, str) for d in shape):
                continue
            if any(isinstance(d, str) for d in shape[1:]):
                raise ProviderConfigError(
                    f"input {name!r} has shape {list(shape)}: only the leading (batch) axis may be dynamic "
                    "for a TensorRT optimisation profile")
            rest = [str(d) for d in shape[1:]]
            for which, batch in (("min", 1), ("opt", 1), ("max", max_batch)):
                shapes[which].append(f"{name}:{'x'.join([str(batch), *rest])}")
        if not shapes["min"]:
            return {}
        return {f"trt_profile_{which}_shapes": ",".join(v) for which, v in shapes.items()}


@dataclass(frozen=True)
class ProviderConfig:
    """Which providers to try, in order, and how to run on them. Every field is validated here.

    ``providers`` holds names (``"tensorrt"``, ``"cuda"``, ``"cpu"`` or onnxruntime's own
    ``"...ExecutionProvider"`` names) or ``(name, options)`` pairs whose options override
    the ones built from the fields below.
    """

    providers: tuple[str | tuple[str, Mapping[str, Any]], ...] = DEFAULT_CHAIN
    # --- GPU
    device_id: int = 0  # CUDA device for CUDA and TensorRT
    fp16: bool = False  # TensorRT may pick fp16 kernels (trt_fp16_enable); CUDA and CPU ignore it
    # CUDA's fp32 matmuls in TF32 (10-bit mantissa): onnxruntime's own default is on, which measured
    # 2.5e-3 from the CPU's actions on an H200 (docs/BENCHMARKS.md, gpu_check). fp32 here means fp32;
    # TF32 (like fp16) is a speed choice the user makes.
    tf32: bool = False
    engine_cache_dir: str | Path = DEFAULT_ENGINE_CACHE  # TensorRT engines, one folder per model digest
    max_batch: int = 8  # TensorRT optimisation profile: batch 1 (min, opt) to max_batch
    # --- serving
    serving: str = "auto"  # one of SERVING_MODES
    intra_op_threads: int = 0  # 0 = onnxruntime's default

    def __post_init__(self) -> None:
        if isinstance(self.providers, str):
            raise ProviderConfigError(f"providers must be a sequence of names, got the string {self.providers!r}")
        object.__setattr__(self, "providers", tuple(self.providers))
        for name in ("device_id", "max_batch", "intra_op_threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ProviderConfigError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
        if self.device_id < 0:
            raise ProviderConfigError(f"device_id must be >= 0, got {self.device_id}")
        if not 1 <= self.max_batch <= MAX_BATCH_LIMIT:
            raise ProviderConfigError(f"max_batch must be in [1, {MAX_BATCH_LIMIT}], got {self.max_batch}")
        if self.intra_op_threads < 0:
            raise ProviderConfigError(f"intra_op_threads must be >= 0, got {self.intra_op_threads}")
        for name in ("fp16", "tf32"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ProviderConfigError(f"{name} must be a bool, got {value!r} ({type(value).__name__})")
        if self.serving not in SERVING_MODES:
            raise ProviderConfigError(f"serving must be one of {list(SERVING_MODES)}, got {self.serving!r}")
        if not isinstance(self.engine_cache_dir, str | Path) or not str(self.engine_cache_dir).strip():
            raise ProviderConfigError(f"engine_cache_dir must be a folder path, got {self.engine_cache_dir!r}")
        path = Path(self.engine_cache_dir).expanduser()
        if path.exists() and not path.is_dir():
            raise ProviderConfigError(f"engine_cache_dir {str(path)!r} exists and is not a folder")
        object.__setattr__(self, "engine_cache_dir", path)
        self.names()  # unknown or repeated provider names fail here, not at the first session

    @classmethod
    def from_params(
        cls, providers: str = "", device_id: int = 0, fp16: bool = False, engine_cache_dir: str = "",
        serving: str = "auto", max_batch: int = 8, intra_op_threads: int = 0, tf32: bool = False,
    ) -> ProviderConfig:
        """From flat values such as ROS parameters: an empty ``providers`` or ``engine_cache_dir`` is the default."""
        names = tuple(p.strip() for p in providers.split(",") if p.strip()) if providers else DEFAULT_CHAIN
        return cls(providers=names, device_id=device_id, fp16=fp16, tf32=tf32,
                   engine_cache_dir=engine_cache_dir or DEFAULT_ENGINE_CACHE, serving=serving,
                   max_batch=max_batch, intra_op_threads=intra_op_threads)

    def names(self) -> list[str]:
        """onnxruntime names of the chain, in order; raises ProviderConfigError on unknown or repeated names."""
        out: list[str] = []
        for item in self.providers:
            name = item if isinstance(item, str) else item[0]
            full = ALIASES.get(str(name).lower(), name)
            if not str(full).endswith("ExecutionProvider"):
                raise ProviderConfigError(
                    f"unknown execution provider {name!r}; known: {sorted(ALIASES)} or onnxruntime names")
            if full in out:
                raise ProviderConfigError(f"provider {name!r} is listed twice in {list(self.providers)}")
            out.append(full)
        if not out:
            raise ProviderConfigError("the provider list is empty")
        return out

    def chain(self, model: ModelKey | None = None) -> list[ProviderEntry]:
        """``[(onnxruntime name, options), ...]`` for ``model`` (a pure function of the config and the key)."""
        extras = [{} if isinstance(item, str) else dict(item[1]) for item in self.providers]
        return [(name, {**self.options(name, model), **extra}) for name, extra in zip(self.names(), extras, strict=True)]

    def options(self, provider: str, model: ModelKey | None = None) -> dict[str, Any]:
        """The provider options this config asks for ``provider`` running ``model``."""
        if provider == CUDA:
            return {"device_id": self.device_id, "use_tf32": int(self.tf32)}
        if provider != TENSORRT:
            return {}
        opts: dict[str, Any] = {
            "device_id": self.device_id,
            "trt_fp16_enable": self.fp16,
            # Timing caches hold kernel timings per layer configuration, not weights: one shared file is right.
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(self.engine_cache_dir),
        }
        if model is not None:
            opts.update(model.profile(self.max_batch))
            opts.update({
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(self.engine_cache_folder(model)),
                "trt_engine_cache_prefix": f"vla_{model.digest[:16]}",
            })
        return opts

    def engine_cache_folder(self, model: ModelKey) -> Path:
        """``<engine_cache_dir>/<model digest>-<build settings>``: another model, precision,
        profile, device or onnxruntime version never meets this folder's engines."""
        settings = json.dumps(
            {"fp16": self.fp16, "profile": model.profile(self.max_batch), "device": self.device_id,
             "onnxruntime": ort.__version__}, sort_keys=True)
        return Path(self.engine_cache_dir) / f"{model.digest[:16]}-{hashlib.sha256(settings.encode()).hexdigest()[:8]}"

    def serving_for(self, provider: str) -> str:
        """The serving mode on ``provider``: ``"plain"`` or ``"iobinding"``."""
        if self.serving in ("plain", "iobinding"):
            return self.serving
        if provider == CUDA or (self.serving == "cuda_graph" and provider == CPU):
            return "cuda_graph"  # on the CPU: the same fixed-buffer runner, no graph (what CI tests)
        return "iobinding" if provider in GPU_PROVIDERS else "plain"

    @classmethod
    def coerce(cls, value: ProviderConfig | Sequence[Any] | str | None) -> ProviderConfig:
        if value is None:
            return cls()
        if isinstance(value, ProviderConfig):
            return value
        if isinstance(value, str):
            return cls(providers=tuple(p.strip() for p in value.split(",") if p.strip()))
        return cls(providers=tuple(value))


def language_chain() -> list[ProviderEntry]:
    """Where the instruction encoder runs: the CPU, whatever the policy's chain.

    The bundled encoder is all-MiniLM-L6-v2 with int8 dynamic quantisation (DynamicQuantizeLinear,
    MatMulInteger): the CUDA provider has no kernel for those, so onnxruntime would split the graph
    and copy between host and device at every node boundary; TensorRT would build an engine per
    token length. It runs once per new instruction (results are cached), so the CPU costs nothing.
    """
    return [(CPU, {})]


def device_of(provider: str, device_id: int) -> tuple[str, int]:
    """Where a provider's inputs live: ``("cuda", id)`` for CUDA and TensorRT, else ``("cpu", 0)``."""
    return ("cuda", device_id) if provider in GPU_PROVIDERS else ("cpu", 0)


@dataclass
class ProviderReport:
    """What was asked, what runs (from the session itself, after its first run), and why others were skipped."""

    requested: list[str]
    active: str = ""
    session_providers: list[str] = field(default_factory=list)  # session.get_providers() after warm-up
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        why = "; ".join(f"{p}: {reason}" for p, reason in self.skipped)
        return f"{self.active}" + (f" (skipped {why})" if why else "")


Warmup = Callable[[ort.InferenceSession], None]


def create_session(
    model: bytes,
    chain: Sequence[ProviderEntry],
    options: ort.SessionOptions | None = None,
    label: str = "model",
    warmup: Warmup | None = None,
) -> tuple[ort.InferenceSession, ProviderReport]:
    """An InferenceSession on the first provider of ``chain`` that initialises and runs ``warmup``.

    The providers after it stay in the session's list (with their options) so nodes it cannot
    run go to the next one. onnxruntime's own fallback is disabled; any failure here, at
    construction or in the warm-up, moves on to the next provider of ``chain``.
    """
    available = set(ort.get_available_providers())
    report = ProviderReport(requested=[name for name, _ in chain])
    for i, (name, opts) in enumerate(chain):
        if name not in available:
            report.skipped.append((name, "not available in this onnxruntime build"))
            continue
        libraries = gpu_libs.preload(name) if name in GPU_PROVIDERS else None
        cache = opts.get("trt_engine_cache_path") if name == TENSORRT else None
        if cache:
            try:
                Path(cache).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                report.skipped.append((name, f"cannot create the engine cache {cache!r}: {exc.strerror or exc}"))
                continue
        rest = [(n, o) for n, o in chain[i:] if n in available]
        hint = f" ({libraries.summary()})" if libraries is not None and not libraries.ok else ""
        try:
            # enable_fallback=0: onnxruntime >= 1.24 then never re-creates the session without our options.
            with contextlib.redirect_stdout(io.StringIO()):  # where onnxruntime prints its fallback notice
                session = ort.InferenceSession(model, sess_options=options, providers=rest, enable_fallback=0)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises plain RuntimeError/Fail for init failures
            report.skipped.append((name, f"failed to initialise: {_first_line(exc)}{hint}"))
            continue
        session.disable_fallback()  # run() must raise, not quietly re-create itself on [CUDA, CPU]
        if session.get_providers()[0] != name:
            report.skipped.append((name, f"failed to initialise (the session runs {session.get_providers()[0]}){hint}"))
            continue
        if warmup is not None:
            try:
                warmup(session)
            except PolicyRuntimeError:
                raise  # the runtime's own verdict (a graph that does not match the manifest), not the provider's
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises Fail/EPFail/RuntimeException/...
                report.skipped.append((name, f"failed in its first run (warm-up): {_first_line(exc)}"))
                continue
        report.session_providers = list(session.get_providers())
        report.active = report.session_providers[0]
        return session, report
    raise ProviderError(
        f"no execution provider could run {label}: tried {report.requested}; "
        + "; ".join(f"{p}: {r}" for p, r in report.skipped)
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"
