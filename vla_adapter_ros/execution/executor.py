"""The executor: ActionChunks in (camera rate), one command per control tick out (100-500 Hz). ROS-free.

``accept(...)`` judges a chunk (:class:`Verdict`); ``command(now_ns)`` gives the command of the
tick (:class:`Command`). Both take the caller's clock (the node's ROS clock, the same clock
that stamps the camera frames), so every rule is testable with made-up times.

Strategies (how chunks combine; within a chunk the interpolation of :mod:`.trajectory`):
- ``hold``: the newest chunk replaces the previous one at the first tick after it arrives;
  action k applies from ``stamp + k*dt`` (the simulator's timer mode, the behaviour before this
  executor). Position jumps at chunk boundaries reach the robot (up to the limits).
- ``temporal_ensemble``: ACT's weighted vote of every chunk covering the tick
  (:class:`EnsembleTrajectory`); chunks of a previous adapter stop voting when a new one arrives.
- ``blend``: the running trajectory cross-fades into the new chunk over ``blend_window`` s
  (:class:`BlendTrajectory`), so position, velocity and acceleration stay continuous. Resuming
  after a hold blends from the held position too.

States: ``disabled`` (no commands; one final hold when disabled), ``idle`` (enabled, no chunk
executed yet and no position known: nothing published), ``executing``, ``ramping`` (no fresh
chunk: velocities ramping to zero within ``ramp_time``), ``holding`` (ramp done: positions
held, rates zero), ``stopped`` (``stop()``: immediate hold / zero velocity until enabled again).
A chunk is fresh while it covers the tick and a chunk arrived within ``stale_policy_timeout``.
At most one new chunk enters per tick: a newer one arriving first replaces it (``superseded``).
"""

from __future__ import annotations

import math
import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from vla_adapter_ros.execution.dims import INTERPOLATIONS, Dims, ExecutionError
from vla_adapter_ros.execution.limits import LIMIT_KINDS, Limiter
from vla_adapter_ros.execution.trajectory import (
    NS,
    BlendTrajectory,
    ChunkTrajectory,
    EnsembleTrajectory,
    HoldTrajectory,
    Trajectory,
    settle,
)

STRATEGIES = ("hold", "temporal_ensemble", "blend")
STATES = ("disabled", "idle", "executing", "ramping", "holding", "stopped")
MAX_CHUNK_LENGTH = 10_000
MIN_DT, MAX_DT = 1e-4, 10.0  # s per chunk step: outside is a units bug (ms for s), not a policy
MAX_ENSEMBLE = 32  # chunks voting at most (ACT: chunk_size of them)
MAX_BLEND_DEPTH = 8
# Bad input (refused.<kind>, WARN) and good messages that cannot be used now (ignored.<kind>).
REFUSALS = ("action_names", "action_shape", "non_finite", "bad_dt", "future_stamp")
IGNORED = ("stale", "expired", "out_of_order", "duplicate", "not_enabled")
# The settings that are durations in seconds: range-checked alike, changeable while running, on /diagnostics as <name>_s.
DURATIONS = ("max_chunk_age", "max_clock_skew", "blend_window", "stale_policy_timeout", "ramp_time", "chunk_end_grace")


@dataclass(frozen=True)
class ExecutorSettings:
    control_rate: float  # Hz
    strategy: str = "blend"
    interpolation: str = "cubic"
    max_chunk_age: float = 0.5  # s, now - header.stamp at arrival; 0 = no limit
    max_clock_skew: float = 0.05  # s a stamp may lie in the future (clock offset between machines)
    ensemble_m: float = 0.01
    blend_window: float = 0.1  # s
    stale_policy_timeout: float = 0.5  # s without any chunk: hold/ramp; 0 = off
    ramp_time: float = 0.2  # s for every velocity to reach zero with no fresh chunk
    # s a rate keeps the newest chunk's last value past the chunk's end before its ramp starts (at the end, not at
    # the first tick after it; velocity kinds: zero at most chunk_end_grace + ramp_time after the end)
    chunk_end_grace: float = 0.025

    def __post_init__(self) -> None:
        if not (math.isfinite(self.control_rate) and 1.0 <= self.control_rate <= 2000.0):
            raise ExecutionError(f"control_rate must be in [1, 2000] Hz, got {self.control_rate!r}")
        if self.strategy not in STRATEGIES:
            raise ExecutionError(f"strategy must be one of {list(STRATEGIES)}, got {self.strategy!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ExecutionError(f"interpolation must be one of {list(INTERPOLATIONS)}, got {self.interpolation!r}")
        for name in DURATIONS:
            v = getattr(self, name)
            if not (math.isfinite(v) and 0.0 <= v <= 3600.0):
                raise ExecutionError(f"{name} must be in [0, 3600] s, got {v!r}")
        if not (math.isfinite(self.ensemble_m) and abs(self.ensemble_m) <= 100.0):
            raise ExecutionError(f"ensemble_m must be in [-100, 100], got {self.ensemble_m!r}")

    @property
    def period(self) -> float:
        return 1.0 / self.control_rate


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    kind: str  # "accepted", or a REFUSALS / IGNORED kind
    reason: str = ""
    note: str = ""  # something an accepted chunk makes worth a log line (adapter switch)
    chunk: ChunkTrajectory | None = None

    @property
    def refused(self) -> bool:
        return self.kind in REFUSALS


@dataclass(frozen=True)
class Command:
    stamp_ns: int  # the tick's time
    state: str
    publish: bool  # False: nothing to send (disabled, or no position known yet)
    value: np.ndarray  # (A,) command space: positions / per-second rates
    velocity: np.ndarray  # (A,) per second
    clamped: tuple[str, ...] = ()  # "name:limit" changed by a limit this tick
    source_stamp_ns: int = 0  # header stamp of the newest chunk in the command (0: none)
    adapter: str = ""
    # Future points for trajectory outputs: seconds from stamp_ns (strictly increasing), (N, A) each.
    preview_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    preview_value: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    preview_velocity: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))


def _quiet(_msg: str) -> None:
    pass


class ChunkExecutor:
    """Thread-safe: chunks arrive on one thread (the ROS executor), ticks run on another."""

    def __init__(self, dims: Dims, settings: ExecutorSettings, *, info: Callable[[str], None] = _quiet,
                 warning: Callable[[str], None] = _quiet, age_window: int = 1000) -> None:
        self.dims = dims
        self.settings = settings
        self.interpolation = dims.interpolation(settings.interpolation)
        self.is_position = dims.is_position
        self._all_positions = bool(self.is_position.all())
        self._info, self._warning = info, warning
        self._lock = threading.Lock()
        self._limiter = Limiter(dims)
        self.counts: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.ignored: Counter[str] = Counter()
        self.clamps: Counter[str] = Counter()
        self._ages: deque[float] = deque(maxlen=age_window)
        self.state = "disabled"
        self.reason = "start-up: disabled until ~/enable"
        self.last_refusal = ""  # "<kind>: <reason>" of the last chunk not executed (log lines are throttled)
        self._enabled = self._stopped = self._final_pending = False
        self._pending: ChunkTrajectory | None = None
        self._newest: ChunkTrajectory | None = None  # newest chunk in the plan
        self._plan: Trajectory | None = None
        self._hold: HoldTrajectory | None = None
        self._last_value: np.ndarray | None = None
        self._last_velocity: np.ndarray | None = None
        self._last_target: np.ndarray | None = None
        self._newest_stamp = 0
        self._last_accept_ns: int | None = None
        self._last_tick_ns: int | None = None
        self._adapter = ""

    # --- settings -----------------------------------------------------------------
    def update(self, **changes: Any) -> None:
        """Change settings now (max ages, timeouts, ramp, blend window, ensemble m); ExecutionError if bad.
        Strategy and interpolation apply to the chunks that arrive from now on."""
        with self._lock:
            self.settings = replace(self.settings, **changes)
            self.interpolation = self.dims.interpolation(self.settings.interpolation)

    # --- chunks -------------------------------------------------------------------
    def accept(self, stamp_ns: int, dt: float, names: Sequence[str], actions: Any, adapter: str,
               now_ns: int) -> Verdict:
        return self._count(self._judge(stamp_ns, dt, names, actions, adapter, now_ns))

    def refuse(self, kind: str, reason: str) -> Verdict:
        """Count a chunk refused before the core could read it (e.g. its actions do not unpack)."""
        return self._count(Verdict(False, kind, reason))

    def _count(self, verdict: Verdict) -> Verdict:
        with self._lock:
            self.counts["chunks_in"] += 1
            if verdict.refused:
                self.refused[verdict.kind] += 1
            elif not verdict.accepted:
                self.ignored[verdict.kind] += 1
            if not verdict.accepted and verdict.kind != "not_enabled":
                self.last_refusal = f"{verdict.kind}: {verdict.reason}"
        return verdict

    def _judge(self, stamp_ns: int, dt: float, names: Sequence[str], actions: Any, adapter: str,
               now_ns: int) -> Verdict:
        want = self.dims.names
        if tuple(names) != want:
            return Verdict(False, "action_names", f"chunk action names {list(names)} differ from the contract's "
                                                  f"{list(want)} (same names, same order)")
        values = np.asarray(actions, np.float64)
        if values.ndim != 2 or values.shape[1] != len(want) or not 1 <= values.shape[0] <= MAX_CHUNK_LENGTH:
            return Verdict(False, "action_shape", f"chunk of shape {values.shape}: need (K, {len(want)}) with "
                                                  f"1 <= K <= {MAX_CHUNK_LENGTH}")
        bad = ~np.isfinite(values)
        if bad.any():
            steps, dims = np.nonzero(bad)
            where = sorted({want[d] for d in dims})
            return Verdict(False, "non_finite", f"{int(bad.sum())} NaN/Inf value(s) in {where} at step(s) "
                                                f"{sorted(set(steps.tolist()))[:10]}")
        if not (math.isfinite(dt) and MIN_DT <= dt <= MAX_DT):
            return Verdict(False, "bad_dt", f"dt {dt!r} s is not in [{MIN_DT}, {MAX_DT}] s")
        s = self.settings
        age = (now_ns - stamp_ns) / NS
        if -age > s.max_clock_skew:
            return Verdict(False, "future_stamp", f"stamp {stamp_ns / NS:.6f} s lies {-age:.3f} s in the future "
                                                  f"(max_clock_skew {s.max_clock_skew} s): clocks out of sync?")
        with self._lock:
            if not self._enabled or self._stopped:
                return Verdict(False, "not_enabled", f"executor is {self.state}; chunk not executed")
            if s.max_chunk_age > 0 and age > s.max_chunk_age:
                return Verdict(False, "stale", f"chunk is {age:.3f} s old (max_chunk_age {s.max_chunk_age} s)"
                               + (" - stamp unset?" if stamp_ns == 0 else ""))
            length = values.shape[0] * dt
            if (stamp_ns + int(round(length * NS))) <= now_ns:
                return Verdict(False, "expired", f"chunk covers {length:.3f} s from a stamp {age:.3f} s ago: "
                                                 "all of it is in the past")
            if stamp_ns <= self._newest_stamp:
                kind = "duplicate" if stamp_ns == self._newest_stamp else "out_of_order"
                return Verdict(False, kind, f"stamp {stamp_ns / NS:.6f} s is not newer than the newest accepted "
                                            f"{self._newest_stamp / NS:.6f} s")
            chunk = ChunkTrajectory(stamp_ns, dt, self.dims.to_command_space(values, dt), self.interpolation,
                                    self.is_position, adapter)
            note = ""
            if self._adapter and adapter != self._adapter:
                note = f"adapter switched {self._adapter!r} -> {adapter!r} (chunk stamp {stamp_ns / NS:.6f} s)"
                self.counts["adapter_switches"] += 1
            self._adapter = adapter
            if self._pending is not None:
                self.counts["superseded"] += 1  # a burst: the newer chunk wins before any tick used this one
            self._pending, self._newest_stamp, self._last_accept_ns = chunk, stamp_ns, now_ns
            self.counts["accepted"] += 1
            return Verdict(True, "accepted", note=note, chunk=chunk)

    # --- safety -------------------------------------------------------------------
    def enable(self, on: bool, now_ns: int) -> str:
        with self._lock:
            if on:
                was = self.state
                self._enabled, self._stopped = True, False
                self._forget()
                if self._last_value is not None:  # resume from where the commands stopped (blend starts there)
                    self._hold = self._make_hold(now_ns, ramp=0.0)
                self._set_state("idle" if self._last_value is None else "holding", f"enabled (was {was})")
                return f"enabled (was {was}); executing the next fresh chunk"
            if not self._enabled:
                return "already disabled"
            self._enabled, self._stopped = False, False
            self._final_pending = self._last_value is not None
            self._forget()
            self._set_state("disabled", "disabled by request")
            return "disabled: one final hold / zero-velocity command, then no commands"

    def stop(self, now_ns: int) -> str:
        with self._lock:
            if not self._enabled:
                return f"not enabled ({self.state}); nothing to stop"
            self._stopped = True
            self._forget()
            if self._last_value is not None:
                self._hold = self._make_hold(now_ns, ramp=0.0)
            self._set_state("stopped", "stop requested: hold / zero velocity now")
            return "stopped: holding position / zero velocity; ~/enable true resumes"

    def _forget(self) -> None:
        self._pending = self._plan = self._newest = self._hold = None
        self._last_target = None

    def _make_hold(self, now_ns: int, ramp: float) -> HoldTrajectory:
        assert self._last_value is not None  # a hold starts from a commanded value
        velocity = self._last_velocity if ramp > 0 and self._last_velocity is not None else np.zeros(len(self.dims))
        return HoldTrajectory(now_ns, self._last_value, velocity, self.is_position, ramp,
                              self._newest.newest_stamp_ns if self._newest is not None else 0)

    def _set_state(self, state: str, why: str) -> None:
        if state == self.state:
            return
        self.counts["state_changes"] += 1
        message = f"executor state {self.state} -> {state}: {why}"
        self.state, self.reason = state, why
        # One call site per severity: rclpy refuses a logging call site that changes severity.
        if state in ("ramping", "stopped"):
            self._warning(message)
        else:
            self._info(message)

    # --- control ticks ------------------------------------------------------------
    def command(self, now_ns: int, preview_points: int = 0) -> Command:
        with self._lock:
            self.counts["ticks"] += 1
            if not self._enabled or self._stopped:
                final, self._final_pending = self._final_pending, False
                cmd = self._resting(now_ns, "stopped" if self._enabled else "disabled",
                                    publish=self._stopped or final)
                return self._with_preview(cmd, None, preview_points) if preview_points > 0 else cmd
            self._promote(now_ns)
            fresh, why = self._fresh(now_ns)
            s = self.settings
            # Velocities and rate limits over the time that really passed since the last tick (a late tick
            # moves further, not faster); a pause beyond a few periods counts as one period.
            elapsed = (now_ns - self._last_tick_ns) / NS if self._last_tick_ns is not None else s.period
            period = elapsed if 0.0 < elapsed <= 4.0 * s.period else s.period
            self._last_tick_ns = now_ns
            if fresh:
                plan = self._plan
                assert plan is not None  # _fresh is true only with a plan
                target = self._target(plan, now_ns)
                target_velocity = None if self._last_target is None else (target - self._last_target) / period
                if self._hold is not None:
                    self._hold = None
                limited = self._limiter.apply(target, self._last_value, self._last_velocity, period, target_velocity)
                self._last_target = target
                self._set_state("executing", f"executing chunk stamped {plan.newest_stamp_ns / NS:.6f} s")
                self._ages.append((now_ns - plan.newest_stamp_ns) / NS)
                source = plan
            else:
                if self._last_value is None:
                    self._set_state("idle", why)
                    return self._empty(now_ns, "idle")
                if self._hold is None:
                    # After the plan's end its tail (the ramp timed from the end); a policy gone stale while
                    # the plan still covers the tick: the ramp from the last command, from now.
                    ended = self._plan is not None and not self._plan.covers(now_ns)
                    self._hold = self._tail(self._plan, now_ns) if ended else self._make_hold(now_ns, s.ramp_time)
                target = self._target(self._hold, now_ns)
                limited = self._limiter.apply(target, self._last_value, self._last_velocity, period,
                                              accelerate=False)
                self._last_target = None
                self._set_state("ramping" if self._hold.ramping(now_ns) else "holding", why)
                source = self._hold
            self.counts[f"{self.state}_ticks"] += 1
            self._last_value, self._last_velocity = limited.value, limited.velocity
            clamped = []
            for kind in LIMIT_KINDS:
                hit = limited.clamped[kind]
                if hit.any():
                    self.clamps[kind] += 1
                    clamped += [f"{self.dims.names[i]}:{kind}" for i in np.flatnonzero(hit)]
            cmd = Command(now_ns, self.state, True, limited.value, limited.velocity, tuple(clamped),
                          source.newest_stamp_ns, source.adapter or self._adapter)
            return self._with_preview(cmd, source, preview_points) if preview_points > 0 else cmd

    def _tail(self, plan: Trajectory | None, now_ns: int) -> HoldTrajectory:
        """What follows the plan's end when no chunk is fresh: positions hold from the last command (as
        :meth:`_make_hold`); rates keep the plan's last rate up to ``end + chunk_end_grace`` and ramp to zero
        within ``ramp_time`` after that. Timed from the plan's end, not from the first tick after it, so a
        chunk's end costs no motion whatever the phase of the ticks (docs/BENCHMARKS.md, "tick phase")."""
        assert plan is not None
        s = self.settings
        end = min(plan.covered_until_ns(), now_ns)
        planned = plan.value(end - 1)  # rates: the last ones the plan gives (a chunk's last action)
        position = self._last_value if self._last_value is not None else planned
        last = self._last_velocity if self._last_velocity is not None else np.zeros(len(self.dims))
        velocity = np.where(self.is_position, last, planned)
        return HoldTrajectory(now_ns, position, velocity, self.is_position, s.ramp_time,
                              plan.newest_stamp_ns, rates_from_ns=end + int(round(s.chunk_end_grace * NS)))

    def _target(self, plan: Trajectory, now_ns: int) -> np.ndarray:
        """Positions as planned at the tick; rates averaged over the tick (so deltas add up exactly).

        A tick that outlasts the plan's end commands the plan's rates up to the end and, after it, what
        the executor would do without a fresh chunk (:meth:`_tail`: the last rate, then the ramp). Counting
        zero past the end instead halved such a tick's rate and started the ramp from that half: with ticks
        half a period out of phase with the simulator, faucet-open at 33 ms fell from 10/10 to 6/10."""
        value = plan.value(now_ns)
        if self._all_positions:
            return value
        t1 = now_ns + int(round(self.settings.period * NS))
        end = plan.covered_until_ns()
        if end >= t1 or end <= now_ns:
            return np.where(self.is_position, value, plan.mean(now_ns, t1))
        tail = self._tail(plan, end)
        rates = (plan.mean(now_ns, end) * (end - now_ns) + tail.mean(end, t1) * (t1 - end)) / (t1 - now_ns)
        return np.where(self.is_position, value, rates)

    def _promote(self, now_ns: int) -> None:
        """The pending chunk joins the plan at this tick."""
        chunk, self._pending = self._pending, None
        s = self.settings
        if chunk is not None:
            self._limiter.set_step(chunk.dt)
            self._newest = chunk
            if s.strategy == "hold":
                self._plan = chunk
            elif s.strategy == "temporal_ensemble":
                old = self._plan.chunks if isinstance(self._plan, EnsembleTrajectory) else []
                keep = [c for c in old if c.end_ns > now_ns and c.adapter == chunk.adapter][-(MAX_ENSEMBLE - 1):]
                self._plan = EnsembleTrajectory([*keep, chunk], s.ensemble_m)
            else:
                base = self._hold if self._hold is not None else self._plan
                # The cross-fade ends one control period before the new chunk does, so that at least the last
                # tick inside it executes the new chunk alone. A window longer than what is left of the chunk
                # (a 4-step chunk of 12.5 ms arriving 30 ms after its frame has 20 ms left) kept mixing in
                # older predictions until the chunk ran out, and the hold/ramp after it started from that
                # mix: with chunks that end before the next arrives, every command was an average of older
                # ones (a lag: faucet-open 15/30 against 27/30 for hold, docs/BENCHMARKS.md). With less than
                # a period left there is nothing to fade over: the chunk takes over at once, as under hold.
                window = min(s.blend_window, max(0.0, (chunk.end_ns - now_ns) / NS - s.period))
                self._plan = chunk if base is None or window <= 0 else BlendTrajectory(base, chunk, now_ns, window)
        if isinstance(self._plan, BlendTrajectory):
            self._plan, cut = settle(self._plan, now_ns, MAX_BLEND_DEPTH)
            self.counts["blends_cut_short"] += cut

    def _fresh(self, now_ns: int) -> tuple[bool, str]:
        timeout = self.settings.stale_policy_timeout
        if self._last_accept_ns is not None and timeout > 0 and now_ns - self._last_accept_ns > timeout * NS:
            self.counts["stale_policy_ticks"] += 1
            return False, (f"policy stale: no chunk for {(now_ns - self._last_accept_ns) / NS:.3f} s "
                           f"(stale_policy_timeout {timeout} s)")
        if self._plan is None:
            return False, "waiting for a chunk"
        if not self._plan.covers(now_ns):
            return False, f"chunk exhausted: the newest (stamp {self._plan.newest_stamp_ns / NS:.6f} s) has ended"
        return True, ""

    def _resting(self, now_ns: int, state: str, publish: bool) -> Command:
        """Disabled / stopped: the last positions held, zero velocity (nothing if none known)."""
        if not publish or self._last_value is None:
            return self._empty(now_ns, state)
        value = np.where(self.is_position, self._last_value, 0.0)
        self._last_velocity = np.zeros(len(self.dims))
        self._last_value = value
        return Command(now_ns, state, True, value, self._last_velocity.copy(), (), 0, self._adapter)

    def _empty(self, now_ns: int, state: str) -> Command:
        zeros = np.zeros(len(self.dims))
        return Command(now_ns, state, False, zeros, zeros)

    def _with_preview(self, cmd: Command, source: Trajectory | None, points: int) -> Command:
        """The tick's command one control period ahead (the first point must lie in the future: a
        trajectory controller drops points at or before now; MoveIt Servo uses one publish period),
        then the newest chunk's remaining knots, as the plan gives them, clipped to the bounds."""
        period_ns = int(round(self.settings.period * NS))
        times = [cmd.stamp_ns + period_ns]
        if cmd.state == "executing" and source is not None and self._newest is not None:
            later = self._newest.knot_times_ns()
            times += [int(t) for t in later[later > times[0] + 1_000_000]][: points - 1]
        later = np.array(times[1:], np.int64)
        values, velocities = cmd.value[None, :], cmd.velocity[None, :]
        if later.size and source is not None:
            values = np.vstack([values, np.clip(source.sample(later), self._limiter.low, self._limiter.high)])
            velocities = np.vstack([velocities, source.velocities(later)])
        offsets = (np.array(times, np.int64) - cmd.stamp_ns) / NS
        return replace(cmd, preview_s=offsets, preview_value=values, preview_velocity=velocities)

    # --- status -------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            ages = list(self._ages)
            out: dict[str, Any] = {
                "state": self.state, "reason": self.reason, "enabled": self._enabled, "stopped": self._stopped,
                "counts": dict(self.counts), "refused": dict(self.refused), "ignored": dict(self.ignored),
                "clamped": dict(self.clamps), "adapter": self._adapter, "newest_stamp_ns": self._newest_stamp,
                "last_refusal": self.last_refusal,
            }
        p50, p99 = (np.percentile(ages, [50, 99]) * 1e3).tolist() if ages else (float("nan"),) * 2
        out["age_p50_ms"], out["age_p99_ms"] = p50, p99
        return out
