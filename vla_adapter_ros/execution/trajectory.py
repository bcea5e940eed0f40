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
from collections.abc import Sequence

import numpy as np

NS = 1_000_000_000


def smootherstep(x: float) -> float:
    """Ken Perlin's quintic 6x^5 - 15x^4 + 10x^3 on [0, 1]: zero first and second derivative at both
    ends, so a cross-fade with it keeps position, velocity and acceleration continuous."""
    x = min(1.0, max(0.0, x))
    return x * x * x * (x * (6.0 * x - 15.0) + 10.0)


def smootherstep_array(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
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
    """Base of everything the executor samples (see the module docstring). Subclasses implement
    ``sample(times) -> (N, A)``, vectorised over times: a trajectory message's points cost one
    numpy pass per chunk, not one per point."""

    newest_stamp_ns: int = 0
    adapter: str = ""

    def sample(self, times_ns: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def covers(self, t_ns: int) -> bool:
        raise NotImplementedError

    def covered_until_ns(self) -> int:
        """The end of what it plans (exclusive): where the executor's hold / ramp takes over."""
        raise NotImplementedError

    def value(self, t_ns: int) -> np.ndarray:
        return self.sample(np.array([t_ns], np.int64))[0]

    def velocities(self, times_ns: np.ndarray, h_ns: int = 1_000_000) -> np.ndarray:
        """Central differences over +-h (1 ms): what a trajectory message's velocities carry."""
        times_ns = np.asarray(times_ns, np.int64)
        return (self.sample(times_ns + h_ns) - self.sample(times_ns - h_ns)) * (NS / (2.0 * h_ns))

    def velocity(self, t_ns: int) -> np.ndarray:
        return self.velocities(np.array([t_ns], np.int64))[0]

    def mean(self, t0_ns: int, t1_ns: int, extend: bool = False) -> np.ndarray:
        """The average over ``[t0, t1)`` (rate dimensions; a tick's command holds for one period, so
        commanding the average makes the ticks integrate to the planned displacement). Exact for
        chunks and holds; a blend or an ensemble mixes its parts' averages (the weights at the
        middle of the interval).

        ``extend``: past its end a chunk's rates continue at its last rate (what :meth:`value`
        gives there) instead of stopping. A plan the executor follows stops where it ends (a tick
        straddling the end gets exactly what is left); the *old* side of a cross-fade extends: it
        stands for the motion under way, and a rate that drops to zero at the old chunk's end would
        fade every boundary towards standing still (measured: a stream of equal chunks lost up to
        half its displacement under ``blend``, docs/BENCHMARKS.md)."""
        return self.value((t0_ns + t1_ns) // 2)


class ChunkTrajectory(Trajectory):
    """One accepted chunk in command space, interpolated per dimension.

    Positions interpolated linear / cubic / spline are one table of cubic polynomials per segment,
    ``p(u) = a + b u + c u^2 + d u^3`` on ``u`` in [0, 1] from knot k to k+1, built once per chunk;
    sampling is a gather and a Horner evaluation whatever the method."""

    def __init__(self, stamp_ns: int, dt: float, values: np.ndarray, interpolation: Sequence[str],
                 is_position: np.ndarray, adapter: str = "") -> None:
        self.stamp_ns = self.newest_stamp_ns = int(stamp_ns)
        self.dt = float(dt)
        self.values = np.asarray(values, np.float64)  # (K, A), command space
        self.k, self.a = self.values.shape
        self.end_ns = self.stamp_ns + int(round(self.k * self.dt * NS))
        self.adapter = adapter
        methods = np.array(interpolation)
        # What the chunk really predicts: up to its last knot, except when every dimension holds its
        # actions over their steps (step). An ensemble counts only these votes (a chunk holding its last
        # knot would drag the average at every chunk's end).
        smooth = self.k > 1 and bool(np.any(methods != "step"))
        self.vote_end_ns = self.stamp_ns + int(round((self.k - 1) * self.dt * NS)) + 1 if smooth else self.end_ns
        is_position = np.asarray(is_position, bool)
        self._step = np.flatnonzero(methods == "step")
        self._rate_linear = np.flatnonzero((methods == "linear") & ~is_position)
        self._poly = np.flatnonzero((methods != "step") & is_position)
        self._coef = self._coefficients(self.values[:, self._poly], methods[self._poly])
        self._knots: np.ndarray | None = None
        # Rate dimensions: cumulative integrals (in steps) at step starts (step) and at step midpoints (linear).
        self._rate = np.flatnonzero(~is_position)
        self._rate_is_linear = np.isin(self._rate, self._rate_linear)
        rates = self.values[:, self._rate]
        self._cum_step = np.vstack([np.zeros((1, rates.shape[1])), np.cumsum(rates, axis=0)])
        trapezoids = (rates[:-1] + rates[1:]) / 2.0
        self._cum_mid = 0.5 * rates[:1] + np.vstack([np.zeros((1, rates.shape[1])), np.cumsum(trapezoids, axis=0)])

    @staticmethod
    def _coefficients(v: np.ndarray, methods: np.ndarray) -> np.ndarray:
        """(segments, 4, A) a, b, c, d per segment (unit spacing) for linear, cubic (Hermite with
        Catmull-Rom tangents, one-sided at the ends) and spline (natural) dimensions."""
        k = v.shape[0]
        coef = np.zeros((max(k - 1, 1), 4, v.shape[1]))
        coef[:, 0] = v[:-1] if k > 1 else v
        if k == 1:
            return coef
        p0, p1 = v[:-1], v[1:]
        coef[:, 1] = p1 - p0  # linear
        cubic = methods == "cubic"
        if cubic.any():
            m = np.empty_like(v)
            m[0], m[-1] = v[1] - v[0], v[-1] - v[-2]
            m[1:-1] = (v[2:] - v[:-2]) / 2.0
            m0, m1 = m[:-1], m[1:]
            coef[:, 1, cubic] = m0[:, cubic]
            coef[:, 2, cubic] = (-3 * p0 - 2 * m0 + 3 * p1 - m1)[:, cubic]
            coef[:, 3, cubic] = (2 * p0 + m0 - 2 * p1 + m1)[:, cubic]
        spline = methods == "spline"
        if spline.any():
            # S(u) = (1-u) p0 + u p1 + ((w^3 - w) M0 + (u^3 - u) M1) / 6, w = 1 - u, expanded in u
            m = natural_spline_second_derivatives(v[:, spline])
            m0, m1 = m[:-1], m[1:]
            coef[:, 1, spline] = (p1 - p0)[:, spline] - (2 * m0 + m1) / 6.0
            coef[:, 2, spline] = m0 / 2.0
            coef[:, 3, spline] = (m1 - m0) / 6.0
        return coef

    def covers(self, t_ns: int) -> bool:
        return self.stamp_ns <= t_ns < self.end_ns

    def covered_until_ns(self) -> int:
        return self.end_ns

    def knot_times_ns(self) -> np.ndarray:
        if self._knots is None:
            self._knots = self.stamp_ns + np.round(np.arange(self.k) * self.dt * NS).astype(np.int64)
        return self._knots

    def sample(self, times_ns: np.ndarray) -> np.ndarray:
        s = (np.asarray(times_ns, np.int64) - self.stamp_ns) / (self.dt * NS)  # (N,) steps since the stamp
        out = np.empty((s.size, self.a))
        if self._step.size:
            k = np.clip(np.floor(s), 0, self.k - 1).astype(int)
            out[:, self._step] = self.values[k][:, self._step]
        if self._poly.size:
            k, u = self._segment(s)
            c = self._coef[k]  # (N, 4, A)
            out[:, self._poly] = ((c[:, 3] * u + c[:, 2]) * u + c[:, 1]) * u + c[:, 0]
        if self._rate_linear.size:  # through the step midpoints
            k, u = self._segment(s - 0.5)
            v = self.values[:, self._rate_linear]
            out[:, self._rate_linear] = v[k] if self.k == 1 else (1.0 - u) * v[k] + u * v[k + 1]
        return out

    def _segment(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Segment k and position u in it (s = k + u), clipped to [0, K-1]: outside, the end knots hold."""
        if self.k == 1:
            return np.zeros(s.size, int), np.zeros((s.size, 1))
        s = np.clip(s, 0.0, self.k - 1.0)
        k = np.minimum(np.floor(s).astype(int), self.k - 2)
        return k, (s - k)[:, None]

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

    def mean(self, t0_ns: int, t1_ns: int, extend: bool = False) -> np.ndarray:
        """Rate dimensions averaged over [t0, t1); position dimensions are left at zero (not used)."""
        out = np.zeros(self.a)
        if self._rate.size:
            if t1_ns > t0_ns:
                area = self.integral(t1_ns) - self.integral(t0_ns)
                if extend and t1_ns > self.end_ns:  # the last rate goes on past the end
                    area = area + self.values[-1, self._rate] * ((t1_ns - max(t0_ns, self.end_ns)) / NS)
                out[self._rate] = area * (NS / (t1_ns - t0_ns))
            else:
                out[self._rate] = self.value(t0_ns)[self._rate]
        return out


class HoldTrajectory(Trajectory):
    """No fresh chunk from ``start_ns`` on: every velocity ramps linearly to zero in ``ramp_s``.

    Position dimensions start at ``position`` moving at ``velocity`` and stop after travelling
    ``velocity * ramp_s / 2``, then hold; rate dimensions go from ``velocity`` to 0. ``ramp_s = 0``
    is an immediate hold / zero velocity (``~/stop``). The ramp is bounded in time on purpose: a
    stop is never stretched by an acceleration limit.

    ``rates_from_ns``: when the rate dimensions start ramping (default ``start_ns``). After a chunk
    ends it is the chunk's end plus the executor's ``chunk_end_grace``, which may lie before the
    hold's first tick: the rates keep their value up to it and reach zero ``ramp_s`` after it,
    whenever the control ticks fall (joint_trajectory_controller's ``cmd_timeout`` is likewise
    counted from the trajectory's last point, not from the tick that noticed)."""

    def __init__(self, start_ns: int, position: np.ndarray, velocity: np.ndarray, is_position: np.ndarray,
                 ramp_s: float, newest_stamp_ns: int = 0, rates_from_ns: int | None = None) -> None:
        self.start_ns = int(start_ns)
        self.rates_from_ns = self.start_ns if rates_from_ns is None else int(rates_from_ns)
        self.p0 = np.asarray(position, np.float64).copy()
        self.v0 = np.asarray(velocity, np.float64).copy()
        self.is_position = np.asarray(is_position, bool)
        self.ramp_s = max(0.0, float(ramp_s))
        self.newest_stamp_ns = newest_stamp_ns

    def covers(self, t_ns: int) -> bool:
        return t_ns >= self.start_ns

    def covered_until_ns(self) -> int:
        return 2**62  # a hold never runs out

    def ramping(self, t_ns: int) -> bool:
        moving = self.v0 != 0.0
        positions = (t_ns - self.start_ns) / NS < self.ramp_s and bool(np.any(moving & self.is_position))
        rates = (t_ns - self.rates_from_ns) / NS < self.ramp_s and bool(np.any(moving & ~self.is_position))
        return positions or rates

    def _travelled(self, t_ns: int, from_ns: int) -> float:
        """Integral of the ramp's rate factor (1 - tau/T) from ``from_ns`` to ``t``, in seconds (negative before)."""
        s = (t_ns - from_ns) / NS
        if s <= 0.0:
            return s  # before the ramp: the full rate
        tau = min(s, self.ramp_s)
        return tau - tau * tau / (2.0 * self.ramp_s) if self.ramp_s > 0 else 0.0

    def mean(self, t0_ns: int, t1_ns: int, extend: bool = False) -> np.ndarray:
        if t1_ns <= t0_ns:
            return self.value(t0_ns)
        factor = (self._travelled(t1_ns, self.rates_from_ns) - self._travelled(t0_ns, self.rates_from_ns)) \
            * NS / (t1_ns - t0_ns)
        return np.where(self.is_position, self.value(t0_ns), self.v0 * factor)

    def sample(self, times_ns: np.ndarray) -> np.ndarray:
        times_ns = np.asarray(times_ns, np.int64)
        tau = np.clip((times_ns - self.start_ns) / NS, 0.0, self.ramp_s)[:, None]
        tau_rates = np.clip((times_ns - self.rates_from_ns) / NS, 0.0, self.ramp_s)[:, None]
        if self.ramp_s <= 0.0:
            travelled = np.zeros_like(tau)
            rate = (times_ns < self.rates_from_ns).astype(np.float64)[:, None]
        else:
            travelled, rate = tau - tau * tau / (2.0 * self.ramp_s), 1.0 - tau_rates / self.ramp_s
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

    def covered_until_ns(self) -> int:
        return self.new.covered_until_ns()

    def sample(self, times_ns: np.ndarray) -> np.ndarray:
        times_ns = np.asarray(times_ns, np.int64)
        out = self.new.sample(times_ns)
        fading = times_ns < self.end_ns
        if fading.any():
            t = times_ns[fading]
            a = smootherstep_array((t - self.start_ns) / max(1, self.end_ns - self.start_ns))[:, None]
            out[fading] = (1.0 - a) * self.old.sample(t) + a * out[fading]
        return out

    def mean(self, t0_ns: int, t1_ns: int, extend: bool = False) -> np.ndarray:
        if t0_ns >= self.end_ns:
            return self.new.mean(t0_ns, t1_ns, extend)
        if t1_ns <= self.start_ns:
            return self.old.mean(t0_ns, t1_ns, True)
        a = smootherstep(((t0_ns + t1_ns) / 2 - self.start_ns) / (self.end_ns - self.start_ns))
        return (1.0 - a) * self.old.mean(t0_ns, t1_ns, True) + a * self.new.mean(t0_ns, t1_ns, extend)

    def depth(self) -> int:
        return 1 + (self.old.depth() if isinstance(self.old, BlendTrajectory) else 0)


class EnsembleTrajectory(Trajectory):
    """ACT's temporal ensembling (Zhao et al. 2023, Algorithm 2; LeRobot ``ACTTemporalEnsembler``): every
    chunk predicting t (up to its last knot, ``vote_end_ns``) votes with weight ``exp(-m * i)``, i = 0
    for the oldest of them, normalised. m > 0 favours older chunks (ACT's 0.01 is nearly uniform),
    m < 0 newer ones. Where no chunk predicts, the newest chunk's extension is used."""

    def __init__(self, chunks: Sequence[ChunkTrajectory], m: float) -> None:
        self.chunks = list(chunks)  # accepted order = stamp order, oldest first
        self.m = float(m)
        self._starts = np.array([[c.stamp_ns] for c in self.chunks], np.int64)
        self._ends = np.array([[c.vote_end_ns] for c in self.chunks], np.int64)
        self.newest_stamp_ns = self.chunks[-1].newest_stamp_ns
        self.adapter = self.chunks[-1].adapter

    def covers(self, t_ns: int) -> bool:
        return any(c.covers(t_ns) for c in self.chunks)

    def covered_until_ns(self) -> int:
        return max(c.end_ns for c in self.chunks)

    def voters(self, t_ns: int) -> list[ChunkTrajectory]:
        return [c for c in self.chunks if c.stamp_ns <= t_ns < c.vote_end_ns]

    def _weights(self, times_ns: np.ndarray) -> np.ndarray:
        """(C, N) normalised weights: exp(-m * i) for the covering chunks, i their age rank at that time;
        the newest chunk alone where none covers."""
        t = np.asarray(times_ns, np.int64)[None, :]
        covering = (self._starts <= t) & (t < self._ends)  # (C, N)
        covering[-1] |= ~covering.any(axis=0)
        rank = np.cumsum(covering, axis=0) - 1
        weights = np.where(covering, np.exp(-self.m * rank), 0.0)
        return weights / weights.sum(axis=0)

    def sample(self, times_ns: np.ndarray) -> np.ndarray:
        weights = self._weights(times_ns)
        return sum(w[:, None] * c.sample(times_ns) for w, c in zip(weights, self.chunks, strict=True) if w.any())

    def mean(self, t0_ns: int, t1_ns: int, extend: bool = False) -> np.ndarray:
        weights = self._weights(np.array([(t0_ns + t1_ns) // 2], np.int64))[:, 0]
        return sum(w * c.mean(t0_ns, t1_ns, extend) for w, c in zip(weights, self.chunks, strict=True) if w > 0)


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
