"""Time functions the executor samples at control rate: one chunk, a hold/ramp, a cross-fade.

Every trajectory answers ``value(t_ns) -> (A,)`` in command space (:mod:`.dims`) for any time,
and ``covers(t_ns)``: whether ``t`` lies inside what it plans (outside, it extends its ends).

Chunk timing is the ActionChunk's: action k is meant for ``stamp + k*dt``; the chunk covers
``[stamp, stamp + K*dt)``, the last action lasting one step.

Interpolation (per dimension, :meth:`Dims.interpolation`):
- positions: ``step`` holds action k over its step; ``linear``/``cubic``/``spline`` pass
  through action k *at* ``stamp + k*dt`` and hold the last one over the last step. ``cubic`` is a
  cubic Hermite with Catmull-Rom tangents (C1); ``spline`` a natural cubic spline through all
  knots (C2, solved with the Thomas algorithm: the tridiagonal solve joint_trajectory_controller's
  ``positions_upsampling`` uses, ros2_controllers PR 2491, but with natural ends instead of rest
  ends ``v0 = vN = 0``, which PR 2573 found to make streamed chunks slow down at every boundary).
- rates (velocities, deltas as rates): ``step`` is exact per step; ``linear`` joins the step
  *midpoints* ``stamp + (k + 1/2)*dt`` and is constant over the first and last half steps, which
  keeps the integral over the chunk, i.e. the chunk's total displacement, exactly
  ``sum(delta_k)``. Derivation: half step of r_0 + trapezoids between midpoints + half step of
  r_{K-1} = dt * sum(r_k).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

NS = 1_000_000_000


def smootherstep(x: float) -> float:
    """Ken Perlin's quintic 6x^5 - 15x^4 + 10x^3 on [0, 1]: zero first and second derivative at both
    ends, so a cross-fade with it keeps position, velocity and acceleration continuous."""
    x = min(1.0, max(0.0, x))
    return x * x * x * (x * (6.0 * x - 15.0) + 10.0)


def natural_spline_second_derivatives(values: np.ndarray) -> np.ndarray:
    """(K, A) knots at unit spacing -> (K, A) second derivatives of the natural cubic spline.

    M_{k-1} + 4 M_k + M_{k+1} = 6 (p_{k+1} - 2 p_k + p_{k-1}), M_0 = M_{K-1} = 0, solved by the
    Thomas algorithm in O(K) for all dimensions at once."""
    k = values.shape[0]
    m = np.zeros_like(values)
    if k < 3:
        return m
    rhs = 6.0 * (values[2:] - 2.0 * values[1:-1] + values[:-2])  # (K-2, A)
    n = k - 2
    c = np.zeros(n)
    d = np.zeros_like(rhs)
    c[0], d[0] = 1.0 / 4.0, rhs[0] / 4.0
    for i in range(1, n):
        denom = 4.0 - c[i - 1]
        c[i] = 1.0 / denom
        d[i] = (rhs[i] - d[i - 1]) / denom
    m[n] = d[n - 1]
    for i in range(n - 2, -1, -1):
        m[i + 1] = d[i] - c[i] * m[i + 2]
    return m


class Trajectory:
    """Base of everything the executor samples (see the module docstring)."""

    newest_stamp_ns: int = 0
    adapter: str = ""

    def value(self, t_ns: int) -> np.ndarray:
        raise NotImplementedError

    def covers(self, t_ns: int) -> bool:
        raise NotImplementedError

    def velocity(self, t_ns: int, h_ns: int = 1_000_000) -> np.ndarray:
        """Central difference over +-h (1 ms): what a trajectory message's velocities carry."""
        return (self.value(t_ns + h_ns) - self.value(t_ns - h_ns)) * (NS / (2.0 * h_ns))

    def mean(self, t0_ns: int, t1_ns: int) -> np.ndarray:
        """The average over ``[t0, t1)`` (rate dimensions; a tick's command holds for one period, so
        commanding the average makes the ticks integrate to the planned displacement). Exact for
        chunks and holds; a blend or an ensemble mixes its parts' averages (the weights at the
        middle of the interval)."""
        return self.value((t0_ns + t1_ns) // 2)


class ChunkTrajectory(Trajectory):
    """One accepted chunk in command space, interpolated per dimension."""

    def __init__(self, stamp_ns: int, dt: float, values: np.ndarray, interpolation: Sequence[str],
                 is_position: np.ndarray, adapter: str = "") -> None:
        self.stamp_ns = self.newest_stamp_ns = int(stamp_ns)
        self.dt = float(dt)
        self.values = np.asarray(values, np.float64)  # (K, A), command space
        self.k, self.a = self.values.shape
        self.end_ns = self.stamp_ns + int(round(self.k * self.dt * NS))
        self.adapter = adapter
        methods = np.array(interpolation)
        is_position = np.asarray(is_position, bool)
        # Index groups, fixed per chunk so value() does no per-dimension Python work.
        self._step = np.flatnonzero(methods == "step")
        self._pos_linear = np.flatnonzero((methods == "linear") & is_position)
        self._rate_linear = np.flatnonzero((methods == "linear") & ~is_position)
        self._cubic = np.flatnonzero(methods == "cubic")
        self._spline = np.flatnonzero(methods == "spline")
        if self._cubic.size and self.k > 1:
            v = self.values[:, self._cubic]
            tangents = np.empty_like(v)  # per step (unit spacing); one-sided at the ends
            tangents[0], tangents[-1] = v[1] - v[0], v[-1] - v[-2]
            tangents[1:-1] = (v[2:] - v[:-2]) / 2.0
            self._tangents = tangents
        if self._spline.size:
            self._second = natural_spline_second_derivatives(self.values[:, self._spline])
        rates = self.values[:, ~is_position]
        self._rate = np.flatnonzero(~is_position)
        self._rate_is_linear = np.isin(self._rate, self._rate_linear)
        # Cumulative integrals (in steps) at step starts (step) and at step midpoints (linear).
        self._cum_step = np.vstack([np.zeros((1, rates.shape[1])), np.cumsum(rates, axis=0)])
        trapezoids = (rates[:-1] + rates[1:]) / 2.0
        self._cum_mid = 0.5 * rates[:1] + np.vstack([np.zeros((1, rates.shape[1])), np.cumsum(trapezoids, axis=0)])

    def covers(self, t_ns: int) -> bool:
        return self.stamp_ns <= t_ns < self.end_ns

    def knot_times_ns(self) -> np.ndarray:
        return self.stamp_ns + np.round(np.arange(self.k) * self.dt * NS).astype(np.int64)

    def value(self, t_ns: int) -> np.ndarray:
        s = (t_ns - self.stamp_ns) / (self.dt * NS)  # steps since the stamp
        out = np.empty(self.a)
        last = self.k - 1
        if self._step.size:
            out[self._step] = self.values[min(last, max(0, math.floor(s))), self._step]
        if self._rate_linear.size:
            out[self._rate_linear] = self._lerp(s - 0.5, self._rate_linear)
        if self._pos_linear.size:
            out[self._pos_linear] = self._lerp(s, self._pos_linear)
        if self._cubic.size:
            out[self._cubic] = self._hermite(s)
        if self._spline.size:
            out[self._spline] = self._natural(s)
        return out

    def integral(self, t_ns: int) -> np.ndarray:
        """Rate dimensions: the integral from the stamp to ``t`` (value x seconds); zero outside the
        chunk, so ticks straddling its end get exactly what is left."""
        s = min(max((t_ns - self.stamp_ns) / (self.dt * NS), 0.0), float(self.k))
        k = min(self.k - 1, math.floor(s))
        rates = self.values[:, self._rate]
        out = self._cum_step[k] + (s - k) * rates[k]  # step
        if self._rate_is_linear.any():
            if s <= 0.5 or self.k == 1:
                lin = s * rates[0]
            elif s >= self.k - 0.5:
                lin = self._cum_mid[self.k - 1] + (s - self.k + 0.5) * rates[-1]
            else:
                j = min(self.k - 2, math.floor(s - 0.5))
                u = s - 0.5 - j
                lin = self._cum_mid[j] + rates[j] * u + (rates[j + 1] - rates[j]) * u * u / 2.0
            out = np.where(self._rate_is_linear, lin, out)
        return out * self.dt

    def mean(self, t0_ns: int, t1_ns: int) -> np.ndarray:
        out = self.value(t0_ns)
        if self._rate.size and t1_ns > t0_ns:
            out[self._rate] = (self.integral(t1_ns) - self.integral(t0_ns)) * (NS / (t1_ns - t0_ns))
        return out

    def _segment(self, s: float) -> tuple[int, float] | None:
        """(k, u) with s = k + u inside [0, K-1], or None when s lies outside (hold an end)."""
        if s <= 0.0 or self.k == 1:
            return None
        k = min(self.k - 2, math.floor(s))
        return (k, s - k) if s < self.k - 1 else None

    def _end(self, s: float, idx: np.ndarray) -> np.ndarray:
        return self.values[0 if s <= 0.0 else self.k - 1, idx]

    def _lerp(self, s: float, idx: np.ndarray) -> np.ndarray:
        seg = self._segment(s)
        if seg is None:
            return self._end(s, idx)
        k, u = seg
        return (1.0 - u) * self.values[k, idx] + u * self.values[k + 1, idx]

    def _hermite(self, s: float) -> np.ndarray:
        seg = self._segment(s)
        if seg is None:
            return self._end(s, self._cubic)
        k, u = seg
        u2, u3 = u * u, u * u * u
        p0, p1 = self.values[k, self._cubic], self.values[k + 1, self._cubic]
        m0, m1 = self._tangents[k], self._tangents[k + 1]
        return ((2 * u3 - 3 * u2 + 1) * p0 + (u3 - 2 * u2 + u) * m0 + (-2 * u3 + 3 * u2) * p1
                + (u3 - u2) * m1)

    def _natural(self, s: float) -> np.ndarray:
        seg = self._segment(s)
        if seg is None:
            return self._end(s, self._spline)
        k, u = seg
        w = 1.0 - u
        p0, p1 = self.values[k, self._spline], self.values[k + 1, self._spline]
        m0, m1 = self._second[k], self._second[k + 1]
        return w * p0 + u * p1 + ((w ** 3 - w) * m0 + (u ** 3 - u) * m1) / 6.0


class HoldTrajectory(Trajectory):
    """No fresh chunk from ``start_ns`` on: every velocity ramps linearly to zero in ``ramp_s``.

    Position dimensions start at ``position`` moving at ``velocity`` and stop after travelling
    ``velocity * ramp_s / 2``, then hold; rate dimensions go from ``velocity`` to 0. ``ramp_s = 0``
    is an immediate hold / zero velocity (``~/stop``). The ramp is bounded in time on purpose: a
    stop is never stretched by an acceleration limit."""

    def __init__(self, start_ns: int, position: np.ndarray, velocity: np.ndarray, is_position: np.ndarray,
                 ramp_s: float, newest_stamp_ns: int = 0) -> None:
        self.start_ns = int(start_ns)
        self.p0 = np.asarray(position, np.float64).copy()
        self.v0 = np.asarray(velocity, np.float64).copy()
        self.is_position = np.asarray(is_position, bool)
        self.ramp_s = max(0.0, float(ramp_s))
        self.newest_stamp_ns = newest_stamp_ns

    def covers(self, t_ns: int) -> bool:
        return t_ns >= self.start_ns

    def ramping(self, t_ns: int) -> bool:
        return (t_ns - self.start_ns) / NS < self.ramp_s and bool(np.any(self.v0 != 0.0))

    def _travelled(self, t_ns: int) -> float:
        """Integral of the ramp's rate factor (1 - tau/T) from the start to ``t``, in seconds."""
        tau = min(max(0.0, (t_ns - self.start_ns) / NS), self.ramp_s)
        return tau - tau * tau / (2.0 * self.ramp_s) if self.ramp_s > 0 else 0.0

    def mean(self, t0_ns: int, t1_ns: int) -> np.ndarray:
        if t1_ns <= t0_ns:
            return self.value(t0_ns)
        factor = (self._travelled(t1_ns) - self._travelled(t0_ns)) * NS / (t1_ns - t0_ns)
        return np.where(self.is_position, self.value(t0_ns), self.v0 * factor)

    def value(self, t_ns: int) -> np.ndarray:
        tau = min(max(0.0, (t_ns - self.start_ns) / NS), self.ramp_s)
        if self.ramp_s <= 0.0:
            travelled, rate = 0.0, 0.0
        else:
            travelled, rate = tau - tau * tau / (2.0 * self.ramp_s), 1.0 - tau / self.ramp_s
        return np.where(self.is_position, self.p0 + self.v0 * travelled, self.v0 * rate)


class BlendTrajectory(Trajectory):
    """Cross-fade from ``old`` to ``new`` over ``[start, start + window]`` with :func:`smootherstep`.

    g = (1 - a) old + a new; g' = (1 - a) old' + a new' + a' (new - old): with a' = a'' = 0 at both
    ends of the window, position, velocity and acceleration stay as continuous as ``old`` and
    ``new`` are. ``old`` may itself be a blend (a chunk arriving mid-blend) or a hold."""

    def __init__(self, old: Trajectory, new: Trajectory, start_ns: int, window_s: float) -> None:
        self.old, self.new = old, new
        self.start_ns = int(start_ns)
        self.end_ns = self.start_ns + int(round(window_s * NS))
        self.newest_stamp_ns = new.newest_stamp_ns
        self.adapter = new.adapter

    def covers(self, t_ns: int) -> bool:
        return self.new.covers(t_ns)

    def value(self, t_ns: int) -> np.ndarray:
        if t_ns >= self.end_ns:
            return self.new.value(t_ns)
        if t_ns <= self.start_ns:
            return self.old.value(t_ns)
        a = smootherstep((t_ns - self.start_ns) / (self.end_ns - self.start_ns))
        return (1.0 - a) * self.old.value(t_ns) + a * self.new.value(t_ns)

    def mean(self, t0_ns: int, t1_ns: int) -> np.ndarray:
        if t0_ns >= self.end_ns:
            return self.new.mean(t0_ns, t1_ns)
        if t1_ns <= self.start_ns:
            return self.old.mean(t0_ns, t1_ns)
        a = smootherstep(((t0_ns + t1_ns) / 2 - self.start_ns) / (self.end_ns - self.start_ns))
        return (1.0 - a) * self.old.mean(t0_ns, t1_ns) + a * self.new.mean(t0_ns, t1_ns)

    def depth(self) -> int:
        return 1 + (self.old.depth() if isinstance(self.old, BlendTrajectory) else 0)


class EnsembleTrajectory(Trajectory):
    """ACT's temporal ensembling (Zhao et al. 2023, Algorithm 2; LeRobot ``ACTTemporalEnsembler``): every
    chunk covering t votes with weight ``exp(-m * i)``, i = 0 for the oldest of them, normalised. m > 0
    favours older chunks (ACT's 0.01 is nearly uniform), m < 0 newer ones. Outside every chunk the
    newest chunk's extension is used."""

    def __init__(self, chunks: Sequence[ChunkTrajectory], m: float) -> None:
        self.chunks = list(chunks)  # accepted order = stamp order, oldest first
        self.m = float(m)
        self.newest_stamp_ns = self.chunks[-1].newest_stamp_ns
        self.adapter = self.chunks[-1].adapter

    def covers(self, t_ns: int) -> bool:
        return any(c.covers(t_ns) for c in self.chunks)

    def voters(self, t_ns: int) -> list[ChunkTrajectory]:
        return [c for c in self.chunks if c.covers(t_ns)]

    def _vote(self, t_ns: int, sample: Callable[[ChunkTrajectory], np.ndarray]) -> np.ndarray:
        voters = self.voters(t_ns)
        if not voters:
            return sample(self.chunks[-1])
        weights = np.exp(-self.m * np.arange(len(voters)))
        weights /= weights.sum()
        return np.sum([w * sample(c) for w, c in zip(weights, voters, strict=True)], axis=0)

    def value(self, t_ns: int) -> np.ndarray:
        return self._vote(t_ns, lambda c: c.value(t_ns))

    def mean(self, t0_ns: int, t1_ns: int) -> np.ndarray:
        return self._vote((t0_ns + t1_ns) // 2, lambda c: c.mean(t0_ns, t1_ns))


def settle(plan: Trajectory, now_ns: int, max_depth: int) -> tuple[Trajectory, int]:
    """Drop finished cross-fades (only their ``new`` side is left) and bound the nesting; returns the
    plan and how many unfinished blends were cut short.

    A burst of chunks nests one blend per control tick; beyond ``max_depth`` the oldest blend is
    finished early (its ``old`` side dropped): a small discontinuity that only more than
    ``max_depth`` chunks within one blend window can cause."""
    if not isinstance(plan, BlendTrajectory):
        return plan, 0
    if now_ns >= plan.end_ns:
        return settle(plan.new, now_ns, max_depth)
    if max_depth > 1:
        plan.old, cut = settle(plan.old, now_ns, max_depth - 1)
        return plan, cut
    if isinstance(plan.old, BlendTrajectory):
        plan.old = plan.old.new
        return plan, 1
    return plan, 0
