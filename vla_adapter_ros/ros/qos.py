"""Every QoS profile of the package, built in one place and passed in (demo_nodes_py ``talker_qos``).

- camera: best effort, keep last, depth 1 by default. A best-effort reader matches
  reliable and best-effort camera drivers alike, and depth 1 means the newest frame
  replaces an unread one instead of queueing behind it.
- instruction: reliable + transient local, depth 1, so a node that starts late still
  receives the current instruction. The publisher must be transient local too
  (``vla-adapter send-instruction`` is); a volatile publisher does not match.
- actions: reliable, volatile, a small queue: controllers should see every chunk.
- commands (the executor's control-rate outputs): reliable, volatile, keep last 1: what
  ros2_controllers and MoveIt Servo subscribe with (system default QoS) matches, and a
  command that a newer one overtook is worth nothing, so none queue up.
- proprio: best effort, depth 1 (only the newest joint state matters).
- diagnostics: what diagnostic_aggregator and rqt_robot_monitor expect (reliable, depth 10).
- episode status (simulator): reliable + transient local, so a late subscriber still gets the
  current episode's status.
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}


def camera_qos(reliability: str = "best_effort", depth: int = 1) -> QoSProfile:
    if reliability not in RELIABILITY:
        raise ValueError(f"camera reliability must be one of {sorted(RELIABILITY)}, got {reliability!r}")
    if depth < 1:
        raise ValueError(f"camera QoS depth must be >= 1, got {depth!r}")
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=int(depth), reliability=RELIABILITY[reliability],
        durability=DurabilityPolicy.VOLATILE,
    )


def instruction_qos() -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )


def proprio_qos() -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE,
    )


def recorder_qos(reliable: bool = False, depth: int = 100) -> QoSProfile:
    """A recorder's subscription (the demo's bags): a deep history, so a busy recorder loses nothing it was
    sent; best effort matches every publisher, reliable only reliable ones."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=int(depth),
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE,
    )


def actions_qos(depth: int = 10) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=int(depth), reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def command_qos() -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def diagnostics_qos() -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def status_qos() -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)
