"""A robot's episode read through its contract: frame sets of every camera, the state and the action of each.

The rules are the policy node's, so training sees the frame sets the node will serve:

- frame sets: every camera's frames, fed in stamp order to :class:`vla_adapter_ros.pairing.FrameSetPairer`
  with the contract's ``max_camera_skew`` and ``reference_camera`` (the node's pairer); a set's stamp
  is the reference camera's;
- state: the sample nearest the set's stamp within ``state.max_skew`` (ties: the newer), as
  :class:`vla_adapter_ros.serving.inputs.InputBuffer` matches it (:func:`nearest`);
- action, by ``action_source.type``: an ActionChunk whose header stamp is the set's; a MultiArray
  (no header): the first logged at or after the set and before the next set; a JointState (leader
  arm) or TwistStamped: the sample nearest the set's stamp within ``action_source.max_skew``;
- instruction: the latest logged at or before the set (or the caller's, for a bag with none).

Frames that cannot be aligned are dropped and counted per reason. No torch, no rclpy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vla_adapter_ros import decoding
from vla_adapter_ros.bags import typestore as ts
from vla_adapter_ros.bags.errors import AlignmentError, BadMessageError
from vla_adapter_ros.bags.reader import BagMessages, Role, header_stamp_ns
from vla_adapter_ros.contract import ActionSource, RobotContract
from vla_adapter_ros.pairing import FrameSet, FrameSetPairer

DEFAULT_ACTION_SOURCE = ActionSource("/vla/action", "ActionChunk")  # a contract without action_source
DROP_REASONS = ("duplicate_stamp", "unpaired_frame", "no_instruction", "no_proprio", "no_action")


def camera_role(name: str) -> str:
    return f"camera {name!r}"


def contract_roles(contract: RobotContract, *, instruction_required: bool = True,
                   episode_topic: str | None = "/vla/episode") -> list[Role]:
    """The topics an episode of ``contract`` reads; the instruction topic may be absent when the
    caller gives the instruction, the simulator's EpisodeStatus always."""
    roles = [Role(camera_role(c.name), c.topic, (ts.CONTRACT_TYPES[c.type],)) for c in contract.cameras]
    roles.append(Role("instruction", contract.instruction_topic, (ts.STRING,), required=instruction_required,
                      may_be_empty=not instruction_required))
    if contract.state is not None:
        roles.append(Role("state", contract.state.topic, (ts.CONTRACT_TYPES[contract.state.type],)))
    source = contract.action_source or DEFAULT_ACTION_SOURCE
    roles.append(Role("action", source.topic, (ts.CONTRACT_TYPES[source.type],)))
    if episode_topic is not None:
        roles.append(Role("episode", episode_topic, (ts.EPISODE_STATUS,), required=False, may_be_empty=True))
    return roles


def nearest(stamps: np.ndarray, stamp: int, max_skew_ns: int) -> int | None:
    """Index into sorted ``stamps`` of the sample nearest ``stamp`` within ``max_skew_ns`` (None if none).

    The policy node's rule (``InputBuffer.match``): the nearest stamp, the newer one on a tie, the first
    of equal stamps. ``max_skew_ns <= 0`` means the newest sample, which offline is the newest stamped
    at or before ``stamp``.
    """
    k = int(np.searchsorted(stamps, stamp, side="left"))  # first sample at or after the stamp
    if max_skew_ns <= 0:
        k = int(np.searchsorted(stamps, stamp, side="right")) - 1
        return int(np.searchsorted(stamps, stamps[k], side="left")) if k >= 0 else None
    candidates = [int(stamps[c]) for c in (k - 1, k) if 0 <= c < len(stamps)]
    if not candidates:
        return None
    best = min(candidates, key=lambda s: (abs(s - stamp), -s))
    if abs(best - stamp) > max_skew_ns:
        return None
    return int(np.searchsorted(stamps, best, side="left"))


def frame_sets(contract: RobotContract, frames: dict[str, list[tuple[int, Any]]]
               ) -> tuple[list[FrameSet[Any]], dict[str, int]]:
    """Every camera's (stamp, item) frames paired by the node's pairer, fed in stamp order (ties in
    camera order); returns the sets and the frames of each camera no set took."""
    pairer: FrameSetPairer[Any] = FrameSetPairer(contract.camera_names, contract.max_camera_skew,
                                                 contract.reference_camera)
    order = {name: i for i, name in enumerate(contract.camera_names)}
    feed = sorted(((stamp, order[name], name, item) for name, fs in frames.items() for stamp, item in fs),
                  key=lambda f: (f[0], f[1]))
    sets = [s for s in (pairer.add(name, stamp, item) for stamp, _, name, item in feed) if s is not None]
    return sets, {name: len(frames[name]) - len(sets) for name in contract.camera_names}


@dataclass
class Aligned:
    """What :func:`align` keeps: arrays share the frame axis T (the kept frame sets)."""

    stamps: np.ndarray  # (T,) int64, the reference camera's stamps
    views: dict[str, np.ndarray]  # camera -> (T, H, W, 3) uint8 RGB, in contract order
    instructions: list[str]
    state: np.ndarray  # (T, P) float32
    actions: np.ndarray  # (T, A) float32
    alignment: dict[str, Any]  # frames, dropped per reason, unpaired per camera, max_camera_skew_ns


def align(bag: BagMessages, contract: RobotContract, instruction: str | None = None) -> Aligned:
    """The frame sets of ``bag`` with their instruction, state and action (see the module docstring)."""
    dropped = dict.fromkeys(DROP_REASONS, 0)
    frames = {c.name: unique_frames(bag.messages[camera_role(c.name)], dropped) for c in contract.cameras}
    sets, unpaired = frame_sets(contract, frames)
    dropped["unpaired_frame"] = sum(unpaired.values())
    instruction_at = _instruction_lookup(bag, contract, instruction)
    state_at = _state_lookup(bag, contract)
    action_at = _action_lookup(bag, contract, [s.stamp_ns for s in sets])
    kept: list[tuple[FrameSet[Any], str, np.ndarray, np.ndarray]] = []
    for i, frame_set in enumerate(sets):
        text = instruction_at(frame_set.stamp_ns)
        state = state_at(frame_set.stamp_ns) if text is not None else None
        action = action_at(i) if state is not None else None
        reason = "no_instruction" if text is None else "no_proprio" if state is None else "no_action"
        if text is None or state is None or action is None:
            dropped[reason] += 1
            continue
        kept.append((frame_set, text, state, action))
    if not kept:
        raise AlignmentError(bag.path, f"no frame set of {len(sets)} has an instruction, state and action; "
                                       f"dropped {dropped}")
    views = {c.name: decode_frames(bag.path, f"camera {c.name!r} image", c.topic, c.type,
                                   [fs.items[c.name] for fs, *_ in kept]) for c in contract.cameras}
    for c in contract.cameras:
        if c.size is not None and views[c.name].shape[1:3] != c.size:
            h, w = views[c.name].shape[1:3]
            raise BadMessageError(bag.path, f"camera {c.name!r} on {c.topic!r} publishes {w}x{h} images, the "
                                            f"contract says {c.size[1]}x{c.size[0]} (remove its size to accept any)")
    alignment = {"frames": len(kept), "dropped": dropped, "unpaired": unpaired,
                 "max_camera_skew_ns": max(fs.skew_ns for fs, *_ in kept)}
    return Aligned(np.asarray([fs.stamp_ns for fs, *_ in kept], np.int64), views, [k[1] for k in kept],
                   np.stack([k[2] for k in kept]).astype(np.float32), np.stack([k[3] for k in kept]), alignment)


def unique_frames(msgs: list[tuple[int, Any]], dropped: dict[str, int]) -> list[tuple[int, Any]]:
    """(header stamp, (log time, message)) of one camera, sorted by stamp; a repeated stamp keeps the first."""
    seen: dict[int, tuple[int, Any]] = {}
    for log_ns, msg in msgs:
        stamp = header_stamp_ns(msg, log_ns)
        if stamp in seen:
            dropped["duplicate_stamp"] += 1
            continue
        seen[stamp] = (log_ns, msg)
    return sorted(seen.items(), key=lambda f: f[0])


def decode_frames(path: Path, label: str, topic: str, msg_type: str, frames: list[tuple[int, Any]]) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB of one camera's (log time, message) frames; a size change is an error."""
    images = []
    for log_ns, msg in frames:
        try:
            images.append(decoding.camera_msg_to_rgb(msg, msg_type))
        except decoding.DecodeError as exc:
            raise BadMessageError(path, f"{label} at {header_stamp_ns(msg, log_ns)} ns on {topic!r}: {exc}") from exc
    shapes = sorted({im.shape for im in images})
    if len(shapes) != 1:
        raise BadMessageError(path, f"{label}s on {topic!r} change size within the episode: {shapes}")
    return np.stack(images)


def _instruction_lookup(bag: BagMessages, contract: RobotContract, default: str | None) -> Callable[[int], str | None]:
    """stamp -> the instruction logged last at or before it (None: none yet); ``default`` for a bag with none."""
    msgs = bag.messages.get("instruction", [])
    if not msgs:
        if default is None:
            raise AlignmentError(bag.path, f"instruction topic {contract.instruction_topic!r} has no messages and "
                                           "no instruction was given (TrainConfig.instruction)")
        return lambda stamp: default
    log_t = np.asarray([t for t, _ in msgs], dtype=np.int64)

    def at(stamp: int) -> str | None:
        j = int(np.searchsorted(log_t, stamp, side="right")) - 1
        return msgs[j][1].data if j >= 0 else None

    return at


def stamped_series(path: Path, label: str, topic: str, msgs: list[tuple[int, Any]],
                   decode: Callable[[Any], np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Every message decoded, sorted by stamp (header, else log time): (stamps, vectors)."""
    stamps, rows = [], []
    for log_ns, msg in msgs:
        stamp = header_stamp_ns(msg, log_ns)
        try:
            rows.append(decode(msg))
        except decoding.DecodeError as exc:
            raise BadMessageError(path, f"{label} message at {stamp} ns on {topic!r}: {exc}") from exc
        stamps.append(stamp)
    order = np.argsort(np.asarray(stamps, dtype=np.int64), kind="stable")
    return np.asarray(stamps, dtype=np.int64)[order], [rows[i] for i in order]


def _nearest_lookup(stamps: np.ndarray, rows: list[np.ndarray], max_skew_s: float) -> Callable[[int], Any]:
    skew_ns = int(max_skew_s * 1e9)

    def at(stamp: int) -> np.ndarray | None:
        i = nearest(stamps, stamp, skew_ns)
        return rows[i] if i is not None else None

    return at


def _state_lookup(bag: BagMessages, contract: RobotContract) -> Callable[[int], np.ndarray | None]:
    state = contract.state
    if state is None:
        empty = np.zeros(0, np.float32)
        return lambda stamp: empty
    stamps, rows = stamped_series(bag.path, "state", state.topic, bag.messages["state"],
                                  lambda m: decoding.state_vector(m, state.type, state.fields))
    return _nearest_lookup(stamps, rows, state.max_skew)


def _action_lookup(bag: BagMessages, contract: RobotContract, set_stamps: list[int]
                   ) -> Callable[[int], np.ndarray | None]:
    """frame set index -> its action (A,) float32, or None."""
    source = contract.action_source or DEFAULT_ACTION_SOURCE

    def decode(msg: Any) -> np.ndarray:
        names = list(getattr(msg, "action_names", ()) or ())
        if names and names != list(contract.action_names):
            raise decoding.DecodeError("action_names", f"ActionChunk action_names {names} are not the contract's "
                                                       f"{list(contract.action_names)}")
        values = decoding.action_vector(msg, source.type, source.fields)
        if values.size != len(contract.actions):
            raise decoding.DecodeError("action_shape", f"{values.size} action values for the contract's "
                                                       f"{len(contract.actions)} actions {list(contract.action_names)}")
        return values

    stamps, rows = stamped_series(bag.path, "action", source.topic, bag.messages["action"], decode)
    return action_matcher(source.type, stamps, rows, set_stamps, source.max_skew)


def action_matcher(source_type: str, stamps: np.ndarray, rows: list[np.ndarray], frame_stamps: Sequence[int] | np.ndarray,
                   max_skew_s: float = 0.0) -> Callable[[int], np.ndarray | None]:
    """frame index -> the action recorded for it, or None (see the module docstring for each source type).

    ``stamps``: the action messages' sorted stamps (header stamps; log times for a MultiArray).
    """
    if source_type == "ActionChunk":
        by_stamp: dict[int, np.ndarray] = {}
        for stamp, row in zip(stamps.tolist(), rows, strict=True):
            by_stamp.setdefault(stamp, row)
        return lambda i: by_stamp.get(int(frame_stamps[i]))
    if source_type in ("JointState", "TwistStamped"):
        at = _nearest_lookup(stamps, rows, max_skew_s)
        return lambda i: at(int(frame_stamps[i]))
    end = np.iinfo(np.int64).max

    def first_after(i: int) -> np.ndarray | None:
        nxt = frame_stamps[i + 1] if i + 1 < len(frame_stamps) else end
        a = int(np.searchsorted(stamps, frame_stamps[i], side="left"))
        return rows[a] if a < len(stamps) and stamps[a] < nxt else None

    return first_after
