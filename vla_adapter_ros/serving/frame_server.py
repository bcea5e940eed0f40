"""Serving one camera frame, without ROS: the rules between "a frame arrived" and "publish
this chunk".

:meth:`FrameServer.serve` runs on the inference worker thread. In order: a frame older than
``max_image_age`` is not served; the image is decoded (a malformed one is refused); the
instruction and the state nearest the frame's stamp are awaited briefly
(:class:`~vla_adapter_ros.serving.inputs.InputBuffer`); the policy runs; a result that became
too old during inference is not published. Every refusal is counted on :class:`~vla_adapter_ros.serving.stats.ServingStats` and reported
through the throttled :class:`~vla_adapter_ros.serving.stats.ProblemLog`. Run-time provider
failures rebuild the sessions on the next provider of the chain, at most
``MAX_PROVIDER_RECOVERIES`` times without a good inference between them; after that
:attr:`FrameServer.fault` holds the lasting condition (ERROR on /diagnostics).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_adapter_ros.processing import ProcessingError
from vla_adapter_ros.runtime.errors import (
    InputError,
    NonFiniteOutputError,
    PolicyRuntimeError,
    ProviderError,
    ProviderRunError,
)
from vla_adapter_ros.serving import stats as st
from vla_adapter_ros.serving.inputs import InputBuffer

# How long a frame may wait on the worker for the first instruction / the state near its stamp.
INPUT_WAIT_S = 0.25
# Session rebuilds after run-time provider failures with no good inference in between.
MAX_PROVIDER_RECOVERIES = 3


@dataclass(frozen=True)
class Frame:
    """A camera frame as received: its stamp, the monotonic receive time and how to decode it."""

    stamp_ns: int
    received: float
    # -> (H, W, 3) uint8 RGB, or {camera: (H, W, 3)} for a frame set; raises ProcessingError (with .kind)
    decode: Callable[[], np.ndarray | Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class Served:
    """A chunk ready to publish."""

    frame: Frame
    result: Any  # runtime.policy.InferenceResult
    inference_s: float


class FrameServer:
    """The serving rules for one loaded policy (rebuilt at every configure)."""

    def __init__(self, policy: Any, inputs: InputBuffer, stats: st.ServingStats, problems: st.ProblemLog, *,
                 now_ns: Callable[[], int], max_image_age: Callable[[], float], serving: Callable[[], bool],
                 newer_frame_waiting: Callable[[], bool], log_warning: Callable[[str], None],
                 log_error: Callable[[str], None], topics: dict[str, str] | None = None) -> None:
        self.policy, self.inputs, self.stats, self.problems = policy, inputs, stats, problems
        self._now_ns, self._max_age, self._serving = now_ns, max_image_age, serving
        self._newer = newer_frame_waiting
        self._warn, self._error = log_warning, log_error
        self._topics = topics or {}
        self.provider_failures = 0  # run-time provider failures since the last good inference
        self.fault = ""  # a lasting condition that stops serving, shown as ERROR on /diagnostics
        self.last_error = ""

    def serve(self, frame: Frame) -> Served | None:
        """The chunk for ``frame``, or None (counted and reported) when it is not served."""
        if not self._serving():
            self.stats.incr(st.INACTIVE)
            return None
        if self._too_old(frame.stamp_ns, "before inference"):
            return None
        try:  # first: a malformed image is refused at once, whatever else is missing
            rgb = frame.decode()
        except ProcessingError as exc:
            self._refuse(getattr(exc, "kind", "image"), str(exc))
            return None
        found = self.inputs.wait_for_frame(frame.stamp_ns, INPUT_WAIT_S,
                                           give_way=lambda: self._newer() or not self._serving())
        if not self._inputs_ok(found):
            return None
        assert found.instruction is not None  # _inputs_ok refuses a frame without one
        t0 = time.perf_counter()
        result = self._infer(rgb, found.instruction, found.state)
        inference_s = time.perf_counter() - t0
        if result is None:
            return None
        self.provider_failures, self.fault = 0, ""
        if self._too_old(frame.stamp_ns, f"after {inference_s * 1e3:.1f} ms of inference"):
            return None
        return Served(frame, result, inference_s)

    # --- the rules ---------------------------------------------------------------------
    def _inputs_ok(self, found: Any) -> bool:
        if found.instruction is None:
            self.stats.incr(st.NO_INSTRUCTION)
            topic = self._topics.get("instruction", "the instruction topic")
            self.problems.report("no_instruction", f"no instruction on {topic} yet; frames are not served until "
                                                   "one arrives")
            return False
        if found.missing == "no_state":
            self.stats.incr(st.NO_PROPRIO)
            self.problems.report("no_proprio", f"no valid state on {self._topics.get('proprio', 'the state topic')} "
                                               "yet; frames are not served")
            return False
        if found.missing == "state_skew":
            self.stats.incr(st.PROPRIO_SKEW)
            self.problems.report("proprio_skew", "no state sample within max_state_skew of the frame's stamp; not "
                                                 "served (state publisher stopped, or camera and state clocks apart?)")
            return False
        return True

    def _too_old(self, stamp_ns: int, when: str) -> bool:
        max_age = self._max_age()
        if max_age <= 0:
            return False
        age = (self._now_ns() - stamp_ns) * 1e-9
        if age <= max_age:
            return False
        self.stats.incr(st.STALE)
        self.problems.report("stale_image", f"frame stamped {age:.3f} s ago {when} exceeds max_image_age "
                                            f"{max_age:g} s; not served (camera and node clocks in sync?)")
        return True

    def _refuse(self, kind: str, message: str) -> None:
        self.stats.refuse(kind)
        self.problems.report(kind, message)

    def _infer(self, rgb: np.ndarray | Mapping[str, np.ndarray], instruction: str, state: np.ndarray | None) -> Any:
        policy = self.policy
        try:
            return policy.infer(rgb, instruction, state)
        except InputError as exc:
            self._failed("policy_input", exc, refused=True)
        except NonFiniteOutputError as exc:
            self._failed("non_finite_output", exc)
        except ProviderRunError as exc:
            self._provider_failed(exc)
        except ProviderError as exc:
            self._failed("provider", exc)
        except PolicyRuntimeError as exc:
            self._failed(type(exc).__name__, exc)
        return None

    def _failed(self, kind: str, exc: Exception, refused: bool = False) -> None:
        (self.stats.refuse if refused else self.stats.error)(kind)
        self.last_error = f"{kind}: {exc}"
        self.problems.report(kind, f"inference failed, frame not served: {exc}")

    def _provider_failed(self, exc: ProviderRunError) -> None:
        """The execution provider failed mid-run: nothing is published for this frame; the
        sessions are rebuilt on the next provider of the chain (the same one, fresh, at its
        end). After MAX_PROVIDER_RECOVERIES rebuilds with no good inference between them
        frames keep failing (nothing published, ERROR) until a run succeeds or a reconfigure."""
        self._failed("provider_run", exc)
        self.provider_failures += 1
        if self.provider_failures > MAX_PROVIDER_RECOVERIES:
            self.fault = (f"execution provider failing at run time; gave up rebuilding the sessions after "
                          f"{MAX_PROVIDER_RECOVERIES} attempts; frames are not served while it fails "
                          "(reconfigure to rebuild)")
            return
        try:
            report = self.policy.fall_back(str(exc))
        except (PolicyRuntimeError, OSError) as err:
            self.last_error = f"provider_run: {exc}; rebuilding the sessions failed: {err}"
            self._error(f"execution provider {exc.provider} failed at run time and the sessions could not be "
                        f"rebuilt ({err}); frames are not served")
            return
        self.stats.incr(st.PROVIDER_FALLBACKS)
        self._warn(f"execution provider {exc.provider} failed at run time ({exc}); sessions rebuilt on "
                   f"{report.active} (recovery {self.provider_failures}/{MAX_PROVIDER_RECOVERIES})")
