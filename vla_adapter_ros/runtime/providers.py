"""Execution-provider selection with explicit fallback.

The chain comes from configuration, in order; the default is TensorRT (with an engine
cache) -> CUDA -> CPU. A provider that this onnxruntime build lacks is skipped; one that
is listed but fails to initialise (no GPU, missing CUDA/TensorRT libraries) is detected by
comparing what the session actually runs with what was asked, and the next one is tried.
onnxruntime's own Python fallback jumps straight to CPU, so the chain is walked here to
honour the configured order. The result says which provider runs and why the others do not.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnxruntime as ort

from vla_adapter_ros.runtime.errors import ProviderError

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
ALIASES = {"tensorrt": TENSORRT, "trt": TENSORRT, "cuda": CUDA, "cpu": CPU}
DEFAULT_CHAIN = ("tensorrt", "cuda", "cpu")
DEFAULT_TRT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vla_adapter_ros" / "tensorrt"

ProviderEntry = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class ProviderConfig:
    """Which providers to try, in order, and their options.

    ``providers`` holds names (``"tensorrt"``, ``"cuda"``, ``"cpu"`` or onnxruntime's own
    ``"...ExecutionProvider"`` names) or ``(name, options)`` pairs whose options override
    the defaults built from the fields below.
    """

    providers: tuple[str | tuple[str, Mapping[str, Any]], ...] = DEFAULT_CHAIN
    trt_cache_dir: str | Path = DEFAULT_TRT_CACHE
    trt_fp16: bool = False
    device_id: int = 0
    intra_op_threads: int = 0  # 0 = onnxruntime's default

    def chain(self) -> list[ProviderEntry]:
        """Validated ``[(onnxruntime name, options), ...]``; raises ProviderError on unknown names."""
        out: list[ProviderEntry] = []
        if isinstance(self.providers, str):
            raise ProviderError(f"providers must be a sequence of names, got the string {self.providers!r}")
        for item in self.providers:
            name, extra = (item, {}) if isinstance(item, str) else (item[0], dict(item[1]))
            full = ALIASES.get(str(name).lower(), name)
            if full not in (TENSORRT, CUDA, CPU) and not str(full).endswith("ExecutionProvider"):
                raise ProviderError(f"unknown execution provider {name!r}; known: {sorted(ALIASES)} or onnxruntime names")
            opts: dict[str, Any] = {}
            if full == TENSORRT:
                opts = {
                    "device_id": self.device_id,
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(self.trt_cache_dir),
                    "trt_timing_cache_enable": True,
                    "trt_timing_cache_path": str(self.trt_cache_dir),
                    "trt_fp16_enable": bool(self.trt_fp16),
                }
            elif full == CUDA:
                opts = {"device_id": self.device_id}
            opts.update(extra)
            if any(full == n for n, _ in out):
                raise ProviderError(f"provider {name!r} is listed twice in {list(self.providers)}")
            out.append((full, opts))
        if not out:
            raise ProviderError("the provider list is empty")
        return out

    @classmethod
    def coerce(cls, value: ProviderConfig | Sequence[Any] | None) -> ProviderConfig:
        if value is None:
            return cls()
        if isinstance(value, ProviderConfig):
            return value
        if isinstance(value, str):
            return cls(providers=tuple(p.strip() for p in value.split(",") if p.strip()))
        return cls(providers=tuple(value))


@dataclass
class ProviderReport:
    """What was asked, what runs, and why each skipped provider was skipped."""

    requested: list[str]
    active: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        why = "; ".join(f"{p}: {reason}" for p, reason in self.skipped)
        return f"{self.active}" + (f" (skipped {why})" if why else "")


def create_session(
    model: bytes | str,
    chain: Sequence[ProviderEntry],
    options: ort.SessionOptions | None = None,
    label: str = "model",
) -> tuple[ort.InferenceSession, ProviderReport]:
    """An InferenceSession on the first provider of ``chain`` that initialises.

    The provider behind it stays in the session's list so nodes it cannot run fall back in
    order (TensorRT -> CUDA -> CPU) inside one session.
    """
    available = set(ort.get_available_providers())
    report = ProviderReport(requested=[name for name, _ in chain])
    for i, (name, _) in enumerate(chain):
        if name not in available:
            report.skipped.append((name, "not available in this onnxruntime build"))
            continue
        rest = [(n, o) for n, o in chain[i:] if n in available]
        cache = chain[i][1].get("trt_engine_cache_path") if name == TENSORRT else None
        if cache:
            try:
                Path(cache).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                report.skipped.append((name, f"cannot create the engine cache {cache!r}: {exc.strerror or exc}"))
                continue
        try:
            session = ort.InferenceSession(
                model,
                sess_options=options,
                providers=[n for n, _ in rest],
                provider_options=[o for _, o in rest],
            )
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises plain RuntimeError/Fail for init failures
            reason = f"failed to initialise: {str(exc).splitlines()[0][:300]}"
            report.skipped.append((name, reason))
            continue
        runs = session.get_providers()[0]
        if runs != name:
            report.skipped.append((name, f"failed to initialise (onnxruntime fell back to {runs})"))
            if len(rest) > 1 and runs == rest[1][0]:
                report.active = runs  # the fallback is the provider we would try next anyway
                return session, report
            continue
        report.active = name
        return session, report
    raise ProviderError(
        f"no execution provider could run {label}: tried {report.requested}; "
        + "; ".join(f"{p}: {r}" for p, r in report.skipped)
    )
