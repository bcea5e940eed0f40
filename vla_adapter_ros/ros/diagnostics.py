"""The nodes' status: one DiagnosticStatus built from a stats snapshot, published on /diagnostics
every period and answered on demand by ``~/get_status`` (:func:`serve_status` wires both).
:class:`DiagnosticsReport` is the policy node's, :class:`ExecutorReport` the executor's.

Level (per period, so a problem that stopped does not keep the status red; an on-demand
status compares with the last published period without starting a new one):
- ERROR: the model is not loaded because configure failed, or inferences failed this period;
- WARN: not active, inputs were refused/stale/unservable this period, or no frames arrived;
- OK otherwise.
Keys are stable (``vla-adapter status`` and the tests read them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

from vla_adapter_interfaces.srv import GetStatus
from vla_adapter_ros.execution import DURATIONS, MISS_CAUSES
from vla_adapter_ros.ros import qos
from vla_adapter_ros.ros.conversions import diagnostic_array, diagnostic_status
from vla_adapter_ros.serving import stats as st

# Counters that mean "a frame arrived but was not served" (besides per-kind refusals).
_UNSERVED = (st.STALE, st.NO_INSTRUCTION, st.NO_PROPRIO, st.PROPRIO_SKEW, st.UNPAIRED)


class DiagnosticsReport:
    def __init__(self, name: str) -> None:
        self.name = name
        self._period = st.PeriodCounts()

    def build(self, *, snapshot: dict[str, Any], state: str, adapter: str, provider: str, model: str,
              model_dir: str, instruction: str, last_error: str, config: Any, fault: str = "",
              new_period: bool = True, runtime: Mapping[str, str] | None = None,
              cameras: Mapping[str, str] | None = None, silent: Sequence[str] = ()) -> DiagnosticStatus:
        """``fault``: a lasting condition that stops serving (ERROR until it clears), e.g. a failed provider.
        ``new_period``: this status closes a period (the periodic publication); False for on-demand reads.
        ``runtime``: how the model is served (serving path, language encoder's provider, provider walk).
        ``cameras``: camera -> what to show about it; ``silent``: cameras with no recent frame (WARN)."""
        counts, refused, errors = snapshot["counts"], snapshot["refused"], snapshot["errors"]
        _, delta = self._period.delta(new_period, counts, refused=refused, errors=errors)
        level, message = ("ERROR", fault) if fault else self._level(state, delta, snapshot, adapter, provider,
                                                                     last_error)
        if silent and level != "ERROR":  # the most specific reason frames are not served
            level, message = "WARN", f"camera(s) {list(silent)} sent no frame recently: no frame sets are served"
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
            "pairing_p50_ms": snapshot["pairing_p50_ms"],
            "pairing_p95_ms": snapshot["pairing_p95_ms"],
        }
        values.update({f"camera.{name}": text for name, text in (cameras or {}).items()})
        for key in (st.FRAMES_IN, st.ACTIONS_OUT, st.SKIPPED, st.STALE, st.NO_INSTRUCTION, st.NO_PROPRIO, st.PROPRIO_SKEW,
                    st.UNPAIRED, st.INACTIVE, st.INSTRUCTIONS_IN, st.PROPRIO_IN, st.SWITCHES, st.PROVIDER_FALLBACKS):
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
        lifecycle = lifecycle_level(state, delta, last_error, unloaded="model not loaded",
                                    failures="inference(s)", idle="serving")
        if lifecycle is not None:
            return lifecycle
        refused = {k[len('refused.'):]: v for k, v in delta.items() if k.startswith("refused.") and v}
        unserved = {k: delta.get(k, 0) for k in _UNSERVED if delta.get(k, 0)}
        if refused or unserved:
            parts = [f"{k} {v}" for k, v in {**unserved, **refused}.items()]
            return "WARN", "inputs not served this period: " + ", ".join(parts)
        if delta.get(st.FRAMES_IN, 0) == 0:
            return "WARN", "no camera frames this period"
        return "OK", (f"serving adapter {adapter or '(backbone)'!r} on {provider}: "
                      f"{snap['input_rate_hz']:.1f} Hz in, {snap['output_rate_hz']:.1f} Hz out")


def lifecycle_level(state: str, delta: dict[str, int], last_error: str, *, unloaded: str, failures: str,
                    idle: str) -> tuple[str, str] | None:
    """The levels every node shares: ERROR when configure failed or work failed this period (``errors.*``
    counters), WARN when not active; None: the node's own rules decide."""
    if state == "unconfigured" and last_error:
        return "ERROR", f"{unloaded}: {last_error}"
    failed = sum(v for k, v in delta.items() if k.startswith("errors."))
    if failed:
        return "ERROR", f"{failed} {failures} failed this period: {last_error}"
    if state != "active":
        return "WARN", f"node is {state}, not {idle}"
    return None


def serve_status(node: Any, period_s: float, build: Callable[[bool], DiagnosticStatus]) -> Any:
    """``build(new_period)`` published on /diagnostics every ``period_s`` (closing a period) and
    answered by ``~/get_status`` on demand (leaving it running); returns the publisher."""
    pub = node.create_publisher(DiagnosticArray, "/diagnostics", qos.diagnostics_qos())

    def on_timer() -> None:
        pub.publish(diagnostic_array(node.get_clock().now().to_msg(), build(True)))

    def on_get_status(request: GetStatus.Request, response: GetStatus.Response) -> GetStatus.Response:
        response.status = build(False)
        return response

    node.create_service(GetStatus, "~/get_status", on_get_status)
    node.create_timer(period_s, on_timer)
    return pub


# The executor's counters shown as they are (besides refused.* / ignored.* / clamped.* / errors.*).
EXECUTOR_COUNTS = ("chunks_in", "accepted", "superseded", "adapter_switches", "state_changes", "executing_ticks",
                   "ramping_ticks", "holding_ticks", "stale_policy_ticks", "blends_cut_short", "chunks_while_inactive")


class ExecutorReport:
    """The executor's status. ERROR: the contract could not be used, or control ticks failed this
    period; WARN: not active, not executing (disabled, stopped, idle, ramping, holding: the reason
    says why), chunks refused or ignored, or control ticks missed this period; OK otherwise."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._period = st.PeriodCounts()

    def build(self, *, core: dict[str, Any] | None, timing: dict[str, Any] | None, node_counts: dict[str, int],
              errors: dict[str, int], lifecycle_state: str, contract: str, robot: str, last_error: str,
              config: Any, new_period: bool) -> DiagnosticStatus:
        core = core or {"state": "unconfigured", "reason": last_error, "counts": {}, "refused": {}, "ignored": {},
                        "clamped": {}, "adapter": "", "age_p50_ms": float("nan"), "age_p99_ms": float("nan"),
                        "last_refusal": ""}
        timing = timing or {"ticks": 0, "missed_ticks": 0}
        counts = {**core["counts"], **node_counts, "missed_ticks": timing["missed_ticks"]}
        _, delta = self._period.delta(new_period, counts, refused=core["refused"], ignored=core["ignored"],
                                      clamped=core["clamped"], errors=errors)
        values: dict[str, Any] = {
            "lifecycle_state": lifecycle_state, "state": core["state"], "state_reason": core["reason"],
            "strategy": config.strategy, "interpolation": config.interpolation, "control_loop": config.control_loop,
            "control_rate_hz": timing.get("rate_hz", config.control_rate), "contract": contract, "robot": robot,
            "active_adapter": core["adapter"], "ticks": timing["ticks"], "missed_ticks": timing["missed_ticks"],
        }
        for key in ("period_p50_ms", "period_error_p50_ms", "period_error_p99_ms", "max_period_error_ms", "max_tick_ms",
                    "max_late_ms", "gc_max_pause_ms"):
            values[key] = timing.get(key, float("nan"))
        for key in (*(f"missed_{c}" for c in MISS_CAUSES), "gc_collections"):
            values[key] = timing.get(key, 0)
        values["command_age_p50_ms"], values["command_age_p99_ms"] = core["age_p50_ms"], core["age_p99_ms"]
        for key in EXECUTOR_COUNTS:
            values[key] = counts.get(key, 0)
        for group in ("refused", "ignored", "clamped"):
            values[f"{group}_total"] = sum(core[group].values())
            values.update({f"{group}.{k}": v for k, v in sorted(core[group].items())})
        values["errors_total"] = sum(errors.values())
        values.update({f"errors.{k}": v for k, v in sorted(errors.items())})
        for key in DURATIONS:
            values[f"{key}_s"] = getattr(config, key)
        values["last_refusal"] = core["last_refusal"]
        values["last_error"] = last_error
        level, message = self._level(lifecycle_state, core, delta, last_error, values)
        return diagnostic_status(self.name, robot or "vla_adapter_executor", level, message, values)

    @staticmethod
    def _level(lifecycle_state: str, core: dict[str, Any], delta: dict[str, int], last_error: str,
               values: dict[str, Any]) -> tuple[str, str]:
        lifecycle = lifecycle_level(lifecycle_state, delta, last_error, unloaded="contract not loaded",
                                    failures="control tick(s)", idle="commanding")
        if lifecycle is not None:
            return lifecycle
        problems = [f"{k} {v}" for k, v in delta.items()
                    if v and (k.startswith("refused.") or (k.startswith("ignored.") and k != "ignored.not_enabled"))]
        if delta.get("missed_ticks", 0):
            problems.append(f"missed_ticks {delta['missed_ticks']}")
        if core["state"] != "executing":
            return "WARN", f"{core['state']}: {core['reason']}" + (f"; {', '.join(problems)}" if problems else "")
        if problems:
            return "WARN", "executing; this period: " + ", ".join(problems)
        return "OK", (f"executing ({values['strategy']}, {values['interpolation']}) at {values['control_rate_hz']:.0f} "
                      f"Hz; command age p50 {values['command_age_p50_ms']:.1f} ms")
