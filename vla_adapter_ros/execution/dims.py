"""What each action dimension of a contract commands, as the executor sees it.

Two command modes, chosen by the contract's ``kind``:

- ``position`` (``joint_position``, ``gripper``): an absolute target. The executor commands
  positions and reports their rate of change as the velocity; with no fresh chunk it holds.
- ``velocity`` (``joint_velocity``, ``ee_velocity``, ``joint_delta``, ``ee_delta``): a rate. A
  *delta* kind's action is an increment per policy step ``dt``; it is executed as the constant
  rate ``delta / dt`` over that step, so the increment is spread evenly over the control ticks
  of the step (a 12.5 ms Meta-World step at 100 Hz: 1.25 ticks of ``delta / 0.0125`` per
  second each) and integrates to exactly ``delta`` at any control rate. With no fresh chunk
  a rate ramps to zero.

Internally every value is in *command space*: positions for position kinds, per-second rates
for the others (deltas divided by the chunk's ``dt``). ROS-free.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vla_adapter_ros.contract import ActionDim

POSITION_KINDS = ("joint_position", "gripper")
DELTA_KINDS = ("joint_delta", "ee_delta")
RATE_KINDS = ("joint_velocity", "ee_velocity", *DELTA_KINDS)
EE_KINDS = ("ee_delta", "ee_velocity")

# Interpolation between the steps of a chunk, in increasing smoothness:
#   step   the value of action k from stamp + k*dt to stamp + (k+1)*dt (zero-order hold)
#   linear straight lines between the knots (C0 positions: velocity jumps at every knot)
#   cubic  cubic Hermite with Catmull-Rom tangents (C1: velocity continuous, acceleration jumps)
#   spline natural cubic spline through all knots of the chunk (C2: acceleration continuous)
INTERPOLATIONS = ("step", "linear", "cubic", "spline")


class ExecutionError(ValueError):
    """A contract or setting the executor cannot run with; the message names the bad part."""


@dataclass(frozen=True)
class Dims:
    """The contract's action dimensions as arrays (index = position in the ActionChunk row)."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    units: tuple[str, ...]
    low: np.ndarray  # action space (a delta per step for delta kinds)
    high: np.ndarray
    max_velocity: np.ndarray  # per second; inf = no limit
    max_acceleration: np.ndarray  # per second squared; inf = no limit

    @classmethod
    def from_actions(cls, actions: Sequence[ActionDim]) -> Dims:
        if not actions:
            raise ExecutionError("the contract has no action dimensions")

        def limit(v: float) -> float:
            return v if v > 0 else math.inf

        return cls(
            names=tuple(a.name for a in actions), kinds=tuple(a.kind for a in actions),
            units=tuple(a.unit for a in actions),
            low=np.array([a.low for a in actions], np.float64), high=np.array([a.high for a in actions], np.float64),
            max_velocity=np.array([limit(a.max_velocity) for a in actions], np.float64),
            max_acceleration=np.array([limit(a.max_acceleration) for a in actions], np.float64),
        )

    def __len__(self) -> int:
        return len(self.names)

    @property
    def is_position(self) -> np.ndarray:
        return np.array([k in POSITION_KINDS for k in self.kinds])

    @property
    def is_delta(self) -> np.ndarray:
        return np.array([k in DELTA_KINDS for k in self.kinds])

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple("position" if k in POSITION_KINDS else "velocity" for k in self.kinds)

    def interpolation(self, wanted: str) -> tuple[str, ...]:
        """The interpolation each dimension gets when ``wanted`` is asked for.

        Cubic and spline only where the value is a joint or end-effector position: a gripper
        command is often binary (a cubic would overshoot the jump) and a rate is interpolated
        linearly at most (see :mod:`.trajectory`: its linear form keeps the chunk's total
        displacement exact; a cubic through rates would not).
        """
        if wanted not in INTERPOLATIONS:
            raise ExecutionError(f"interpolation must be one of {list(INTERPOLATIONS)}, got {wanted!r}")
        smooth = wanted in ("cubic", "spline")
        return tuple("linear" if smooth and k != "joint_position" else wanted for k in self.kinds)

    def index(self, names: Sequence[str]) -> list[int]:
        """Positions of ``names`` in this set (ExecutionError naming the unknown ones)."""
        unknown = [n for n in names if n not in self.names]
        if unknown:
            raise ExecutionError(f"{unknown} are not action names {list(self.names)}")
        return [self.names.index(n) for n in names]

    def to_command_space(self, values: np.ndarray, dt: float) -> np.ndarray:
        """(K, A) actions -> command space: deltas become per-second rates (``delta / dt``)."""
        out = np.asarray(values, np.float64).copy()
        out[:, self.is_delta] /= dt
        return out

    def command_bounds(self, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """[low, high] in command space for a chunk step of ``dt`` seconds."""
        low, high = self.low.copy(), self.high.copy()
        delta = self.is_delta
        low[delta] /= dt
        high[delta] /= dt
        return low, high
