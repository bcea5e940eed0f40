"""Per-dimension limits from the contract, applied to every control tick's command. ROS-free.

Order per tick (vectorised over dimensions):
1. bounds: the target is clipped to ``[low, high]`` (command space: a delta kind's bounds are
   per step, so ``low/dt .. high/dt`` per second).
2. position dimensions: the velocity needed to reach the target this tick is capped so the
   dimension can still stop *relative to the target's own motion* with ``max_acceleration``
   (``v <= v_target + sqrt((aT/2)^2 + 2 a |e|) - aT/2``, the discrete-time stopping speed: no
   overshoot of a step target, no lag behind a moving one),
   then changed by at most ``max_acceleration * period`` and capped at ``max_velocity``.
3. rate dimensions: the rate is capped at ``max_velocity`` and changed by at most
   ``max_acceleration * period``.
A limit that changed a command is reported for that tick (the executor counts them).
Jerk is not limited: with cubic/spline interpolation and the blend strategy the commanded
acceleration is already continuous (docs/BENCHMARKS.md measures it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_adapter_ros.execution.dims import Dims

LIMIT_KINDS = ("bounds", "velocity", "acceleration")
_EPS = 1e-9


@dataclass(frozen=True)
class Limited:
    value: np.ndarray  # command space: positions / rates
    velocity: np.ndarray  # per second: the positions' rate of change; the rates themselves
    clamped: dict[str, np.ndarray]  # limit kind -> (A,) bool: which dimensions it changed


class Limiter:
    def __init__(self, dims: Dims) -> None:
        self.dims = dims
        self.is_position = dims.is_position
        self.low, self.high = dims.command_bounds(1.0)
        self.vmax, self.amax = dims.max_velocity, dims.max_acceleration

    def set_step(self, dt: float) -> None:
        """Bounds of delta kinds follow the step of the chunk being executed."""
        self.low, self.high = self.dims.command_bounds(dt)

    def apply(self, target: np.ndarray, prev_value: np.ndarray | None, prev_velocity: np.ndarray | None,
              period: float, target_velocity: np.ndarray | None = None, accelerate: bool = True) -> Limited:
        """The command for this tick. ``prev_*`` None: the first command (no rate limits: nothing is
        known of where the robot is). ``accelerate=False``: a hold/stop ramp, which is bounded in time
        by itself and never slowed by the acceleration limit."""
        pos = self.is_position
        wanted = np.asarray(target, np.float64)
        goal = np.clip(wanted, self.low, self.high)
        clamped = {"bounds": np.abs(goal - wanted) > _EPS}
        if prev_value is None:
            velocity = np.where(pos, 0.0, goal)
            capped = np.clip(velocity, -self.vmax, self.vmax)
            clamped["velocity"] = np.abs(capped - velocity) > _EPS
            clamped["acceleration"] = np.zeros(len(goal), bool)
            return Limited(np.where(pos, goal, capped), capped, clamped)
        prev_velocity = np.zeros(len(goal)) if prev_velocity is None else prev_velocity
        # Wanted velocity: positions, what reaches the goal this tick; rates, the goal itself.
        v_des = np.where(pos, (goal - prev_value) / period, goal)
        v = v_des.copy()
        accel = np.zeros(len(goal), bool)
        if accelerate and np.any(np.isfinite(self.amax)):
            if target_velocity is not None:
                error = goal - prev_value
                finite = np.isfinite(self.amax)
                amax = np.where(finite, self.amax, 0.0)
                # Discrete-time stopping speed: v/(2a) * v + v*T/2 <= |e| (the tick's own step included).
                half = amax * period / 2.0
                brake = target_velocity + np.sign(error) * (np.sqrt(half * half + 2.0 * amax * np.abs(error)) - half)
                over = pos & finite & (np.abs(v - target_velocity) > np.abs(brake - target_velocity))
                v = np.where(over, brake, v)
            step = self.amax * period
            v = np.clip(v, prev_velocity - step, prev_velocity + step)
            accel = np.abs(v - v_des) > _EPS
        capped = np.clip(v, -self.vmax, self.vmax)
        clamped["velocity"] = np.abs(capped - v) > _EPS
        clamped["acceleration"] = accel & ~clamped["velocity"]
        value = np.where(pos, prev_value + capped * period, capped)
        safe = np.clip(value, self.low, self.high)  # the stopping cap may leave a sliver of overshoot
        clamped["bounds"] |= np.abs(safe - value) > _EPS
        velocity = np.where(pos, (safe - prev_value) / period, safe)
        return Limited(safe, velocity, clamped)
