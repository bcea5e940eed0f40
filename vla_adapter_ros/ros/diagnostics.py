"""The policy node's status: one DiagnosticStatus built from a stats snapshot, published on
/diagnostics every period and answered on demand by ``~/get_status``.

Level (per period, so a problem that stopped does not keep the status red; an on-demand
status compares with the last published period without starting a new one):
- ERROR: the model is not loaded because configure failed, or inferences failed this period;
- WARN: not active, inputs were refused/stale/unservable this period, or no frames arrived;
- OK otherwise.
Keys are stable (``vla-adapter status`` and the tests read them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus

from vla_adapter_ros.ros.conversions import diagnostic_status
from vla_adapter_ros.serving import stats as st

# Counters that mean "a frame arrived but was not served" (besides per-kind refusals).
_UNSERVED = (st.STALE, st.NO_INSTRUCTION, st.NO_PROPRIO, st.PROPRIO_SKEW)


class DiagnosticsReport:
    def __init__(self, name: str) -> None:
        self.name = name
        self._previous: dict[str, int] = {}

    def build(self, *, snapshot: dict[str, Any], state: str, adapter: str, provider: str, model: str,
              model_dir: str, instruction: str, last_error: str, config: Any, fault: str = "",
              new_period: bool = True, runtime: Mapping[str, str] | None = None) -> DiagnosticStatus:
        """``fault``: a lasting condition that stops serving (ERROR until it clears), e.g. a failed provider.
        ``new_period``: this status closes a period (the periodic publication); False for on-demand reads.
        ``runtime``: how the model is served (serving path, language encoder's provider, provider walk)."""
        counts, refused, errors = snapshot["counts"], snapshot["refused"], snapshot["errors"]
        flat = {**counts, **{f"refused.{k}": v for k, v in refused.items()},
                **{f"errors.{k}": v for k, v in errors.items()}}
        delta = {k: v - self._previous.get(k, 0) for k, v in flat.items()}
        if new_period:
            self._previous = flat
        level, message = ("ERROR", fault) if fault else self._level(state, delta, snapshot, adapter, provider,
                                                                     last_error)
        values: dict[str, Any] = {
            "lifecycle_state": state,
            "active_adapter": adapter,
            "execution_provider": provider,
            **(runtime or {}),
            "model": model,
            "model_dir": model_dir,
            "instruction": instruction,
            "input_rate_hz": snapshot["input_rate_hz"],
            "output_rate_hz": snapshot["output_rate_hz"],
            "latency_p50_ms": snapshot["latency_p50_ms"],
            "latency_p95_ms": snapshot["latency_p95_ms"],
            "inference_p50_ms": snapshot["inference_p50_ms"],
            "inference_p95_ms": snapshot["inference_p95_ms"],
            "action_age_p50_ms": snapshot["age_p50_ms"],
            "action_age_p95_ms": snapshot["age_p95_ms"],
        }
        for key in (st.FRAMES_IN, st.ACTIONS_OUT, st.SKIPPED, st.STALE, st.NO_INSTRUCTION, st.NO_PROPRIO, st.PROPRIO_SKEW,
                    st.INACTIVE, st.INSTRUCTIONS_IN, st.PROPRIO_IN, st.SWITCHES, st.PROVIDER_FALLBACKS):
            values[key] = counts.get(key, 0)
        values["refused_total"] = sum(refused.values())
        values.update({f"refused.{k}": v for k, v in sorted(refused.items())})
        values["errors_total"] = sum(errors.values())
        values.update({f"errors.{k}": v for k, v in sorted(errors.items())})
        values["max_image_age_s"] = config.max_image_age
        values["max_rate_hz"] = config.max_rate
        values["last_error"] = last_error
        return diagnostic_status(self.name, model or "vla_adapter", level, message, values)

    @staticmethod
    def _level(state: str, delta: dict[str, int], snap: dict[str, Any], adapter: str, provider: str,
               last_error: str) -> tuple[str, str]:
        if state == "unconfigured" and last_error:
            return "ERROR", f"model not loaded: {last_error}"
        failed = sum(v for k, v in delta.items() if k.startswith("errors."))
        if failed:
            return "ERROR", f"{failed} inference(s) failed this period: {last_error}"
        if state != "active":
            return "WARN", f"node is {state}, not serving"
        refused = {k[len('refused.'):]: v for k, v in delta.items() if k.startswith("refused.") and v}
        unserved = {k: delta.get(k, 0) for k in _UNSERVED if delta.get(k, 0)}
        if refused or unserved:
            parts = [f"{k} {v}" for k, v in {**unserved, **refused}.items()]
            return "WARN", "inputs not served this period: " + ", ".join(parts)
        if delta.get(st.FRAMES_IN, 0) == 0:
            return "WARN", "no camera frames this period"
        return "OK", (f"serving adapter {adapter or '(backbone)'!r} on {provider}: "
                      f"{snap['input_rate_hz']:.1f} Hz in, {snap['output_rate_hz']:.1f} Hz out")
