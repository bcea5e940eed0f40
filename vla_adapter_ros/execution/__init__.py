"""The executor's ROS-free core: ActionChunks in, control-rate commands out (issue 15).

- :mod:`.dims`: what each contract action kind commands (positions or rates; deltas as rates).
- :mod:`.trajectory`: a chunk interpolated in time (step / linear / cubic / spline), a hold or
  ramp, a cross-fade, ACT's temporal ensemble.
- :mod:`.limits`: bounds, velocity and acceleration limits per dimension.
- :mod:`.executor`: :class:`ChunkExecutor` (accept chunks, command ticks, enable / stop).
- :mod:`.timing`: the control loop thread with absolute deadlines and its period statistics.

Imports neither rclpy nor torch (tests/test_boundaries.py); the ROS node is
:mod:`vla_adapter_ros.ros.executor_node`.
"""

from vla_adapter_ros.execution.dims import INTERPOLATIONS, Dims, ExecutionError
from vla_adapter_ros.execution.executor import (
    DURATIONS,
    IGNORED,
    REFUSALS,
    STATES,
    STRATEGIES,
    ChunkExecutor,
    Command,
    ExecutorSettings,
    Verdict,
)
from vla_adapter_ros.execution.timing import MISS_CAUSES, DeadlineLoop, GcPauses, PeriodStats

__all__ = ["DURATIONS", "IGNORED", "INTERPOLATIONS", "MISS_CAUSES", "REFUSALS", "STATES", "STRATEGIES", "ChunkExecutor",
           "Command", "DeadlineLoop", "Dims", "ExecutionError", "ExecutorSettings", "GcPauses", "PeriodStats", "Verdict"]
