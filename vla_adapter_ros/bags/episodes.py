"""Episodes as rosbag2 directories: :func:`read_episode` (and :class:`EpisodeWriter`, bags/writer.py).

One bag per episode (mcap by default, sqlite3 supported). Reading aligns the streams by time.

Through a robot contract (``contract=``): every camera of the contract, paired into frame sets,
with the state and the recorded action of each set by the policy node's own rules
(:mod:`vla_adapter_ros.bags.align`); a bag recorded with plain ``ros2 bag record`` of a robot's own
topics reads this way.

Without a contract, the single-camera topics of docs/DESIGN.md "Bags" (``topics``): for each camera
frame, the latest instruction at or before it, the nearest proprio sample within a tolerance, and
the action whose header stamp equals the frame's (an ``ActionChunk``) or, for a plain
``Float32MultiArray``, the first action logged at or after the frame and before the next frame.

Either way, frames that cannot be aligned are dropped and counted in
``Episode.metadata["alignment"]``, and messages are decoded by :mod:`vla_adapter_ros.decoding`,
the policy node's decoders. No torch, no rclpy.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vla_adapter_ros import decoding
from vla_adapter_ros.bags import typestore as ts
from vla_adapter_ros.bags.align import (
    action_matcher,
    align,
    contract_roles,
    decode_frames,
    stamped_series,
    unique_frames,
)
from vla_adapter_ros.bags.errors import AlignmentError, BadMessageError, BagNotFoundError
from vla_adapter_ros.bags.layout import DEFAULT_TOPICS, SINGLE_CAMERA, EpisodeTopics
from vla_adapter_ros.bags.reader import BagMessages, Role, read_roles, stored_contract  # noqa: F401 - API
from vla_adapter_ros.bags.writer import EpisodeWriter  # noqa: F401 - part of this module's API
from vla_adapter_ros.contract import RobotContract

ACTION_TYPES = (ts.ACTION_CHUNK, ts.FLOAT32_MULTI_ARRAY)  # what a single-camera episode's action topic carries


@dataclass
class Episode:
    """One aligned episode; arrays share the frame axis T.

    ``views`` holds every camera's frames in the contract's camera order (the order of
    ``ModelConfig.cameras``); an episode read without a contract has one view, ``"camera"``.
    ``images`` is the first view (the only one of a single-camera episode).
    """

    path: Path
    images: np.ndarray  # (T, H, W, 3) uint8 RGB: the first camera's frames
    instructions: list[str]  # (T,) the instruction in force at each frame
    proprio: np.ndarray  # (T, P) float32
    actions: np.ndarray  # (T, A) float32, the action answering each frame
    stamps: np.ndarray  # (T,) int64 ns, the image header stamps (a frame set's: the reference camera's)
    task: str = ""
    seed: int | None = None
    success: bool | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    proprio_names: tuple[str, ...] = ()
    action_names: tuple[str, ...] = ()
    views: dict[str, np.ndarray] = field(default_factory=dict)  # camera -> (T, H, W, 3) uint8; {} = {"camera": images}
    contract: RobotContract | None = None  # the contract it was read with

    def __post_init__(self) -> None:
        if not self.views:
            self.views = {SINGLE_CAMERA: self.images}
        elif self.images is not next(iter(self.views.values())):
            raise ValueError(f"episode {self.path}: images must be the first view ({next(iter(self.views))})")
        t = len(self.stamps)
        lengths = {"instructions": len(self.instructions), "proprio": len(self.proprio),
                   "actions": len(self.actions), **{f"views[{k!r}]": len(v) for k, v in self.views.items()}}
        if any(n != t for n in lengths.values()):
            raise ValueError(f"episode {self.path}: {t} stamps but lengths {lengths}")

    def __len__(self) -> int:
        return len(self.stamps)

    @property
    def cameras(self) -> tuple[str, ...]:
        """The camera names of ``views``, in order."""
        return tuple(self.views)

    @property
    def instruction(self) -> str:
        """The first instruction of the episode."""
        return self.instructions[0] if self.instructions else ""


def read_episode(path: str | Path, topics: EpisodeTopics = DEFAULT_TOPICS, *,
                 contract: RobotContract | str | Path | None = None, typestore: Any = None,
                 proprio_tolerance_ns: int = 50_000_000, proprio_names: Sequence[str] | None = None,
                 instruction: str | None = None) -> Episode:
    """Read and align one episode bag (directory, or a bare .mcap/.db3 file).

    ``contract`` (a :class:`RobotContract` or its YAML file): read the robot's cameras, state and
    recorded actions through it; ``topics``, ``proprio_tolerance_ns`` and ``proprio_names`` are then
    unused (the contract's ``state.max_skew`` and ``state.fields`` decide). ``instruction``: the
    instruction of a bag whose instruction topic is absent or empty (a robot's own recording).

    Without a contract, the single-camera episode of ``topics``; ``proprio_names`` selects and orders
    JointState ``position`` entries by name, None keeps them as recorded. Raises a
    :class:`~vla_adapter_ros.bags.errors.BagError` subclass naming the file (and the topic).
    """
    path = Path(path)
    typestore = typestore if typestore is not None else ts.make_typestore()
    if contract is None:
        return _read_single_camera(path, topics, typestore, proprio_tolerance_ns, proprio_names)
    if not isinstance(contract, RobotContract):
        contract = RobotContract.load(contract)
    bag = read_roles(path, contract_roles(contract, instruction_required=instruction is None), typestore, contract)
    aligned = align(bag, contract, instruction)
    return _episode(bag, aligned.stamps, aligned.views, aligned.instructions, aligned.state, aligned.actions,
                    aligned.alignment, contract.state_names, contract.action_names, contract)


def _episode(bag: BagMessages, stamps: np.ndarray, views: dict[str, np.ndarray], instructions: list[str],
             proprio: np.ndarray, actions: np.ndarray, alignment: dict[str, Any], proprio_names: tuple[str, ...],
             action_names: tuple[str, ...], contract: RobotContract | None) -> Episode:
    """An Episode, with task / seed / success from the last EpisodeStatus (the final one) or the recorder's metadata."""
    info = bag.info
    status = bag.messages["episode"][-1][1] if bag.messages.get("episode") else None
    metadata = {**info, "storage": bag.storage, "alignment": alignment,
                "finished": bool(status.done) if status is not None else None}
    return Episode(
        path=bag.path, images=next(iter(views.values())), instructions=instructions, proprio=proprio,
        actions=actions, stamps=stamps,
        task=status.task if status is not None else str(info.get("task", "")),
        seed=int(status.seed) if status is not None else info.get("seed"),
        success=bool(status.success) if status is not None else info.get("success"),
        metadata=metadata, proprio_names=proprio_names, action_names=action_names, views=views, contract=contract,
    )


# --- single-camera episodes (no contract) ----------------------------------------------------
def _read_single_camera(path: Path, topics: EpisodeTopics, typestore: Any, proprio_tolerance_ns: int,
                        proprio_names: Sequence[str] | None) -> Episode:
    roles = [Role("image", topics.image, (ts.IMAGE,)), Role("instruction", topics.instruction, (ts.STRING,)),
             Role("proprio", topics.proprio, (ts.JOINT_STATE,)) if topics.proprio is not None else None,
             Role("action", topics.action, ACTION_TYPES),
             Role("episode", topics.episode, (ts.EPISODE_STATUS,), required=False, may_be_empty=True)
             if topics.episode is not None else None]
    bag = read_roles(path, [r for r in roles if r is not None], typestore)
    msgs = bag.messages
    dropped = {"duplicate_stamp": 0, "no_instruction": 0, "no_proprio": 0, "no_action": 0}
    frames = unique_frames(msgs["image"], dropped)
    images = decode_frames(path, "image", topics.image, "Image", [f for _, f in frames])
    stamps = np.asarray([stamp for stamp, _ in frames], dtype=np.int64)
    proprio = (_proprio_series(path, msgs["proprio"], proprio_names, topics.proprio)
               if "proprio" in msgs and topics.proprio is not None else None)
    action_for, action_names = _action_matcher(path, bag.types["action"], msgs["action"], stamps, topics.action)
    keep, f_instr, f_prop, f_act = _align(path, stamps, msgs["instruction"], proprio, action_for,
                                          proprio_tolerance_ns, dropped)
    proprio_rows = (_vectors(path, "proprio", f_prop) if proprio is not None
                    else np.zeros((len(keep), 0), np.float32))
    return _episode(bag, stamps[keep], {SINGLE_CAMERA: images[keep]}, f_instr, proprio_rows,
                    _vectors(path, "action", f_act), {"frames": len(keep), "dropped": dropped},
                    proprio[2] if proprio is not None else (),
                    action_names or tuple(bag.info.get("action_names", ())), None)


def _vectors(path: Path, what: str, rows: list[np.ndarray]) -> np.ndarray:
    sizes = sorted({r.size for r in rows})
    if len(sizes) != 1 or sizes[0] == 0:
        raise BadMessageError(path, f"{what} vectors have sizes {sizes}, expected one non-zero size")
    return np.stack(rows).astype(np.float32)


def _align(path: Path, stamps: np.ndarray, instructions: list[tuple[int, Any]],
           proprio: tuple[np.ndarray, list[np.ndarray], tuple[str, ...]] | None, action_for: Any,
           tolerance_ns: int, dropped: dict[str, int]) -> tuple[list[int], list[str], list[Any], list[Any]]:
    """Frames with an instruction at or before them, the nearest proprio sample within ``tolerance_ns``
    (when proprio is recorded) and an action: (frame indices, instructions, proprio rows, actions).
    The other frames are counted in ``dropped``."""
    instr_t = np.asarray([t for t, _ in instructions], dtype=np.int64)
    keep, f_instr, f_prop, f_act = [], [], [], []
    for i, stamp in enumerate(stamps):
        j = int(np.searchsorted(instr_t, stamp, side="right")) - 1  # latest instruction at or before
        if j < 0:
            dropped["no_instruction"] += 1
            continue
        prop = np.zeros(0, np.float64)
        if proprio is not None:
            proprio_t, rows, _ = proprio
            k = int(np.searchsorted(proprio_t, stamp))
            best = min((c for c in (k - 1, k) if 0 <= c < len(proprio_t)),
                       key=lambda c: abs(int(proprio_t[c]) - int(stamp)))  # nearest sample
            if abs(int(proprio_t[best]) - int(stamp)) > tolerance_ns:
                dropped["no_proprio"] += 1
                continue
            prop = rows[best]
        act = action_for(i)
        if act is None:
            dropped["no_action"] += 1
            continue
        keep.append(i)
        f_instr.append(instructions[j][1].data)
        f_prop.append(prop)
        f_act.append(act)
    if not keep:
        raise AlignmentError(path, f"no frame of {len(stamps)} has an instruction, proprio and action; "
                                   f"dropped {dropped}")
    return keep, f_instr, f_prop, f_act


def _proprio_series(path: Path, msgs: list[tuple[int, Any]], proprio_names: Sequence[str] | None, topic: str
                    ) -> tuple[np.ndarray, list[np.ndarray], tuple[str, ...]]:
    """JointState samples sorted by header stamp: stamps, position rows (selected by name), names."""
    if not msgs:
        return np.zeros(0, np.int64), [], ()
    if proprio_names is None:  # positions as recorded
        stamps, rows = stamped_series(path, "proprio", topic, msgs, lambda m: np.asarray(m.position, np.float64))
        return stamps, rows, tuple(msgs[0][1].name)
    stamps, rows = stamped_series(path, "proprio", topic, msgs,
                                  lambda m: decoding.joint_state_to_proprio(m, proprio_names))
    return stamps, rows, tuple(proprio_names)


def _action_matcher(path: Path, msgtype: str, msgs: list[tuple[int, Any]], image_stamps: np.ndarray, topic: str
                    ) -> tuple[Callable[[int], np.ndarray | None], tuple[str, ...]]:
    """A function frame index -> action (A,) or None, and the action names if the messages carry them.

    ActionChunk: the chunk whose header stamp equals the frame's. Float32MultiArray (no header):
    the first array logged at or after the frame and before the next frame.
    """
    kind = ts.SHORT_TYPES[msgtype]
    stamps, rows = stamped_series(path, "action", topic, msgs, lambda m: decoding.action_vector(m, kind))
    names = tuple(msgs[0][1].action_names) if kind == "ActionChunk" else ()
    return action_matcher(kind, stamps, rows, image_stamps), names


def is_episode_bag(path: Path) -> bool:
    """A rosbag2 directory, or a bare storage file that is not part of one."""
    if path.is_dir():
        return (path / "metadata.yaml").is_file()
    return path.is_file() and path.suffix in (".mcap", ".db3") and not (path.parent / "metadata.yaml").exists()


def find_episodes(spec: str | Path | Iterable[str | Path]) -> list[Path]:
    """Episode bags named by ``spec``: a bag, a directory (searched recursively), a glob, or a list of these.

    Sorted within each entry, de-duplicated, in the order given. No match is a
    :class:`BagNotFoundError`.
    """
    if not isinstance(spec, (str, Path)):
        out: list[Path] = []
        for item in spec:
            out += [p for p in find_episodes(item) if p not in out]
        return out
    path = Path(spec)
    if path.exists():
        if is_episode_bag(path):
            return [path]
        if path.is_dir():
            found = sorted(p.parent for p in path.rglob("metadata.yaml"))
        else:
            found = []
    else:
        found = []
        for match in sorted(glob.glob(str(spec), recursive=True)):
            p = Path(match)
            if is_episode_bag(p):
                found.append(p)
            elif p.is_dir():
                found += sorted(q.parent for q in p.rglob("metadata.yaml"))
    found = list(dict.fromkeys(found))
    if not found:
        raise BagNotFoundError(path, "no rosbag2 episodes (directories with metadata.yaml) found")
    return found


def read_episodes(spec: str | Path | Iterable[str | Path], topics: EpisodeTopics = DEFAULT_TOPICS,
                  **kwargs: Any) -> list[Episode]:
    """:func:`read_episode` over :func:`find_episodes` with one shared typestore."""
    kwargs.setdefault("typestore", ts.make_typestore())
    return [read_episode(p, topics, **kwargs) for p in find_episodes(spec)]
