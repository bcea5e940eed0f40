"""Counters, latency percentiles and throttled problem reports of the policy node. ROS-free.

Nothing here is silent: every refused input, stale frame or failed inference is counted
per kind (reported on /diagnostics) and logged the first time a kind occurs, then at most
once per ``period_s`` with the number seen since.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import numpy as np

# Counter names (diagnostics keys). Refusals and errors are kept per kind in their own maps.
FRAMES_IN = "frames_in"  # camera messages received (every camera)
UNPAIRED = "unpaired_frames"  # camera frames that never became part of a frame set (skew, a silent camera)
ACTIONS_OUT = "actions_out"
SKIPPED = "skipped_frames"  # replaced by a newer frame before inference started
STALE = "stale_frames"  # older than max_image_age
NO_INSTRUCTION = "frames_without_instruction"
NO_PROPRIO = "frames_without_proprio"
PROPRIO_SKEW = "frames_without_proprio_near_stamp"  # state samples exist, none within max_state_skew
INACTIVE = "frames_while_inactive"
INSTRUCTIONS_IN = "instructions_in"
PROPRIO_IN = "proprio_in"
SWITCHES = "adapter_switches"
PROVIDER_FALLBACKS = "provider_fallbacks"  # sessions rebuilt after a run-time provider failure


class ServingStats:
    """Thread-safe counters and rolling latency windows (the worker and the executor both write)."""

    def __init__(self, window: int = 300) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()  # bad inputs, per kind (image_encoding, proprio_nonfinite, ...)
        self.errors: Counter[str] = Counter()  # failed inferences, per kind (ProviderError, ...)
        self.latency: deque[float] = deque(maxlen=window)  # frame received -> action published, s
        self.inference: deque[float] = deque(maxlen=window)  # runtime infer() call, s
        self.age: deque[float] = deque(maxlen=window)  # action published - image stamp, s
        # pairing: the frame that completes a frame set arrives in the camera callback -> the set handed to
        # the inference worker (pairing, counters, hand-over; the callback's own share of the node's work), s
        self.pairing: deque[float] = deque(maxlen=window)
        self._last_rates: tuple[float, int, int] | None = None

    def incr(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    def refuse(self, kind: str) -> None:
        with self._lock:
            self.refused[kind] += 1

    def error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] += 1

    def record_output(self, latency_s: float, inference_s: float, age_s: float) -> None:
        with self._lock:
            self.counts[ACTIONS_OUT] += 1
            self.latency.append(latency_s)
            self.inference.append(inference_s)
            self.age.append(age_s)

    def record_pairing(self, seconds: float) -> None:
        """A frame set handed to inference ``seconds`` after its last frame entered the camera callback."""
        with self._lock:
            self.pairing.append(seconds)

    def snapshot(self, now: float | None = None, new_period: bool = True) -> dict[str, Any]:
        """Totals, per-kind maps, p50/p95 in milliseconds, and rates since the previous period's
        snapshot; ``new_period=False`` (an on-demand read) leaves the period running."""
        now = time.monotonic() if now is None else now
        with self._lock:
            counts, refused, errors = dict(self.counts), dict(self.refused), dict(self.errors)
            windows = {"latency": list(self.latency), "inference": list(self.inference), "age": list(self.age),
                       "pairing": list(self.pairing)}
            frames, actions = counts.get(FRAMES_IN, 0), counts.get(ACTIONS_OUT, 0)
            prev = self._last_rates
            if new_period:
                self._last_rates = (now, frames, actions)
        out: dict[str, Any] = {"counts": counts, "refused": refused, "errors": errors}
        for key, values in windows.items():
            p50, p95 = (np.percentile(values, [50, 95]) * 1e3).tolist() if values else (float("nan"),) * 2
            out[f"{key}_p50_ms"], out[f"{key}_p95_ms"] = p50, p95
        if prev is None or now <= prev[0]:
            out["input_rate_hz"] = out["output_rate_hz"] = 0.0
        else:
            dt = now - prev[0]
            out["input_rate_hz"] = (frames - prev[1]) / dt
            out["output_rate_hz"] = (actions - prev[2]) / dt
        return out


class PeriodCounts:
    """Counter totals flattened (``group.kind`` for per-kind maps) and their change since the last
    closed period: a /diagnostics status judges what happened in its period, not since start-up."""

    def __init__(self) -> None:
        self._previous: dict[str, int] = {}

    def delta(self, new_period: bool, counts: dict[str, int], **groups: dict[str, int]) -> tuple[dict[str, int], dict[str, int]]:
        """(flat totals, change since the last period); ``new_period`` closes the period (False: an
        on-demand read that leaves it running)."""
        flat = dict(counts)
        for group, kinds in groups.items():
            flat.update({f"{group}.{k}": v for k, v in kinds.items()})
        delta = {k: v - self._previous.get(k, 0) for k, v in flat.items()}
        if new_period:
            self._previous = flat
        return flat, delta


class ProblemLog:
    """Log a problem the first time its kind occurs, then at most once per ``period_s`` per kind."""

    def __init__(self, log: Callable[[str], None], period_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._period = period_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def report(self, kind: str, message: str) -> bool:
        """Returns True when this report was logged (False = throttled, still counted)."""
        now = self._clock()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self._period:
                self._suppressed[kind] += 1
                return False
            self._last[kind] = now
            suppressed, self._suppressed[kind] = self._suppressed[kind], 0
        if last is None:
            self._log(f"[{kind}] {message} (further '{kind}' reports throttled to one per {self._period:g} s)")
        else:
            self._log(f"[{kind}] {message} ({suppressed} more since the last report)")
        return True
