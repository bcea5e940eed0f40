"""Episodes as rosbag2 directories: :class:`EpisodeWriter` and :func:`read_episode`.

One bag per episode (mcap by default, sqlite3 supported), with the topics of
docs/DESIGN.md "Bags". Reading aligns the streams by time: for each camera
frame, the latest instruction at or before it, the nearest proprio sample
within a tolerance, and the action whose header stamp equals the frame's (an
``ActionChunk``) or, for a plain ``Float32MultiArray``, the first action logged
at or after the frame and before the next frame. Frames that cannot be aligned
are dropped and counted in ``Episode.metadata["alignment"]``.

No torch, no rclpy: rosbags, numpy and :mod:`vla_adapter_ros.processing` only.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw  # rosbags' sqlite3 storage reads through apsw (a rosbags dependency)
import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.serde import SerdeError

from vla_adapter_ros.bags import typestore as ts
from vla_adapter_ros.bags.errors import (
    AlignmentError,
    BadMessageError,
    BagNotFoundError,
    BagWriteError,
    CorruptBagError,
    MissingTopicError,
    TopicTypeError,
)
from vla_adapter_ros.processing import ENCODING_CHANNELS, ProcessingError, image_to_rgb

DEFAULT_PROPRIO_NAMES = ("ee_x", "ee_y", "ee_z", "gripper")
DEFAULT_ACTION_NAMES = ("dx", "dy", "dz", "gripper")
METADATA_KEY = "vla_adapter_ros.episode"  # rosbag2 custom_data key holding a JSON object
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
ACTION_TYPES = (ts.ACTION_CHUNK, ts.FLOAT32_MULTI_ARRAY)
# What rosbags raises on a damaged bag, caught around its calls only (tests/bags: truncated and damaged
# bags, both storages). Opening: ReaderError; apsw's errors (sqlite3 storage); KeyError and
# UnicodeDecodeError while it parses a damaged connection record (QoS profile, topic or type text).
_OPEN_ERRORS = (ReaderError, apsw.Error, KeyError, UnicodeDecodeError)
# Reading messages: ReaderError (mcap), apsw's errors (sqlite3). Decoding one: SerdeError (wraps all).
_READ_ERRORS = (ReaderError, apsw.Error)


def _qos(reliable: bool, transient_local: bool, depth: int) -> Qos:
    zero = QosTime(0, 0)  # rosbag2: 0 = the rmw default (infinite)
    return Qos(QosHistory.KEEP_LAST, depth,
               QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
               QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
               zero, zero, QosLiveliness.AUTOMATIC, zero, False)


@dataclass(frozen=True)
class EpisodeTopics:
    """Topic names of one episode. ``proprio`` and ``episode`` may be None (not recorded)."""

    image: str = "/camera/image_raw"
    instruction: str = "/vla/instruction"
    proprio: str | None = "/joint_states"
    action: str = "/vla/action"
    episode: str | None = "/vla/episode"


DEFAULT_TOPICS = EpisodeTopics()  # the topic table of docs/DESIGN.md


@dataclass
class Episode:
    """One aligned episode; arrays share the frame axis T."""

    path: Path
    images: np.ndarray  # (T, H, W, 3) uint8 RGB
    instructions: list[str]  # (T,) the instruction in force at each frame
    proprio: np.ndarray  # (T, P) float32
    actions: np.ndarray  # (T, A) float32, the action answering each frame
    stamps: np.ndarray  # (T,) int64 ns, the image header stamps
    task: str = ""
    seed: int | None = None
    success: bool | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    proprio_names: tuple[str, ...] = ()
    action_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        t = len(self.stamps)
        lengths = {"images": len(self.images), "instructions": len(self.instructions),
                   "proprio": len(self.proprio), "actions": len(self.actions)}
        if any(n != t for n in lengths.values()):
            raise ValueError(f"episode {self.path}: {t} stamps but lengths {lengths}")

    def __len__(self) -> int:
        return len(self.stamps)

    @property
    def instruction(self) -> str:
        """The first instruction of the episode."""
        return self.instructions[0] if self.instructions else ""


def _stamp(ns: int, types: Any) -> Any:
    ns = int(ns)
    if ns < 0:
        raise ValueError(f"stamp must be >= 0 ns, got {ns}")
    return types["builtin_interfaces/msg/Time"](sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


class EpisodeWriter:
    """Write one episode bag. Context manager; the directory ``path`` must not exist.

    Typical use (what ``vla-adapter record-sim`` does)::

        with EpisodeWriter(out / "ep0", task="drawer-open-v3", seed=3) as w:
            for t, (rgb, proprio, action) in enumerate(frames):
                w.write_step(stamp_ns[t], rgb, proprio, action, instruction="open the drawer")
            w.finish(success=True)
    """

    def __init__(self, path: str | Path, *, task: str, seed: int, episode: int = 0, max_steps: int = 0,
                 storage: str = "mcap", topics: EpisodeTopics = DEFAULT_TOPICS, typestore: Any = None,
                 proprio_names: Sequence[str] = DEFAULT_PROPRIO_NAMES,
                 action_names: Sequence[str] = DEFAULT_ACTION_NAMES, frame_id: str = "camera",
                 dt: float = 0.0, action_source: str = "expert",
                 metadata: Mapping[str, Any] | None = None) -> None:
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
        if not 0 <= int(seed) < 2**32:
            raise ValueError(f"seed must fit EpisodeStatus.seed (uint32), got {seed}")
        self.path = Path(path)
        self.task, self.seed, self.episode, self.max_steps = task, int(seed), int(episode), int(max_steps)
        self.storage, self.topics = storage, topics
        self.typestore = typestore if typestore is not None else ts.make_typestore()
        self.proprio_names, self.action_names = tuple(proprio_names), tuple(action_names)
        self.frame_id, self.dt, self.action_source = frame_id, float(dt), action_source
        self.metadata = dict(metadata or {})
        self.steps = 0
        self.success = False
        self._instruction: str | None = None
        self._last_stamp = 0
        self._finished = False
        self._writer: Writer | None = None
        self._conns: dict[str, Any] = {}

    # -- lifetime ---------------------------------------------------------------------------------
    def open(self) -> EpisodeWriter:
        try:
            self._writer = Writer(self.path, version=Writer.VERSION_LATEST, storage_plugin=STORAGES[self.storage])
            self._writer.open()
        except WriterError as exc:
            self._writer = None
            raise BagWriteError(self.path, str(exc)) from exc
        t = self.topics
        plan = [("image", t.image, ts.IMAGE, _qos(False, False, 1)),
                ("instruction", t.instruction, ts.STRING, _qos(True, True, 1)),
                ("proprio", t.proprio, ts.JOINT_STATE, _qos(True, False, 10)),
                ("action", t.action, ts.ACTION_CHUNK, _qos(True, False, 10)),
                ("episode", t.episode, ts.EPISODE_STATUS, _qos(True, True, 1))]
        for key, topic, msgtype, qos in plan:
            if topic is not None:
                self._conns[key] = self._writer.add_connection(
                    topic, msgtype, typestore=self.typestore, offered_qos_profiles=[qos])
        return self

    def close(self) -> None:
        """Write the final EpisodeStatus (if :meth:`finish` was not called) and metadata.yaml."""
        if self._writer is None:
            return
        if not self._finished:
            self.finish(self.success)
        info = {"task": self.task, "seed": self.seed, "episode": self.episode, "success": self.success,
                "frames": self.steps, "storage": self.storage, "proprio_names": list(self.proprio_names),
                "action_names": list(self.action_names), "dt": self.dt, **self.metadata}
        writer, self._writer = self._writer, None
        writer.set_custom_data(METADATA_KEY, json.dumps(info, sort_keys=True))
        writer.close()

    def abort(self) -> None:
        """Stop without metadata.yaml; the directory is left as an unfinished bag."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.abort()

    def __enter__(self) -> EpisodeWriter:
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- messages ---------------------------------------------------------------------------------
    def _write(self, key: str, msg: Any, msgtype: str, stamp_ns: int) -> None:
        if self._writer is None:
            raise BagWriteError(self.path, "writer is not open (use it as a context manager)")
        conn = self._conns.get(key)
        if conn is None:
            raise BagWriteError(self.path, f"no {key} topic configured in {self.topics}")
        self._writer.write(conn, int(stamp_ns), self.typestore.serialize_cdr(msg, msgtype))
        self._last_stamp = max(self._last_stamp, int(stamp_ns))

    def _header(self, stamp_ns: int) -> Any:
        types = self.typestore.types
        return types["std_msgs/msg/Header"](stamp=_stamp(stamp_ns, types), frame_id=self.frame_id)

    def write_instruction(self, text: str, stamp_ns: int) -> None:
        self._write("instruction", self.typestore.types[ts.STRING](data=str(text)), ts.STRING, stamp_ns)
        self._instruction = str(text)

    def write_image(self, image: np.ndarray, stamp_ns: int, encoding: str = "rgb8") -> None:
        """``image`` holds pixels already in ``encoding``: (H, W, C) uint8, or (H, W) for mono8."""
        image = np.asarray(image)
        channels = ENCODING_CHANNELS.get(encoding)
        shape_ok = image.ndim == 3 and image.shape[2] == channels or image.ndim == 2 and channels == 1
        if channels is None or image.dtype != np.uint8 or not shape_ok:
            raise ValueError(f"image {image.shape} {image.dtype} does not match encoding {encoding!r}")
        h, w = image.shape[:2]
        msg = self.typestore.types[ts.IMAGE](
            header=self._header(stamp_ns), height=h, width=w, encoding=encoding, is_bigendian=0,
            step=w * channels, data=np.ascontiguousarray(image).reshape(-1))
        self._write("image", msg, ts.IMAGE, stamp_ns)

    def write_proprio(self, values: np.ndarray, stamp_ns: int) -> None:
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if values.size != len(self.proprio_names):
            raise ValueError(f"proprio has {values.size} values, names are {self.proprio_names}")
        empty = np.zeros(0, np.float64)
        msg = self.typestore.types[ts.JOINT_STATE](
            header=self._header(stamp_ns), name=list(self.proprio_names), position=values,
            velocity=empty, effort=empty)
        self._write("proprio", msg, ts.JOINT_STATE, stamp_ns)

    def write_action(self, action: np.ndarray, stamp_ns: int, sequence: int | None = None,
                     inference_time: float = 0.0) -> None:
        """``action`` (A,) or a chunk (K, A); ``stamp_ns`` = the stamp of the image it answers."""
        chunk = np.asarray(action, dtype=np.float32)
        chunk = chunk.reshape(1, -1) if chunk.ndim == 1 else chunk
        if chunk.ndim != 2 or chunk.shape[1] != len(self.action_names):
            raise ValueError(f"action {np.shape(action)} does not match names {self.action_names}")
        msg = self.typestore.types[ts.ACTION_CHUNK](
            header=self._header(stamp_ns), adapter=self.action_source, instruction=self._instruction or "",
            action_names=list(self.action_names), chunk_length=chunk.shape[0], action_dim=chunk.shape[1],
            dt=self.dt, actions=chunk.reshape(-1), sequence=self.steps if sequence is None else sequence,
            inference_time=float(inference_time), execution_provider="")
        self._write("action", msg, ts.ACTION_CHUNK, stamp_ns)

    def write_status(self, stamp_ns: int, *, done: bool) -> None:
        msg = self.typestore.types[ts.EPISODE_STATUS](
            header=self._header(stamp_ns), task=self.task, seed=self.seed, episode=self.episode,
            step=self.steps, max_steps=self.max_steps, success=self.success, done=done, stale_action_steps=0,
            resent_frames=0, end_reason=("success" if self.success else "step_limit") if done else "")
        self._write("episode", msg, ts.EPISODE_STATUS, stamp_ns)

    def write_step(self, stamp_ns: int, image: np.ndarray, proprio: np.ndarray, action: np.ndarray, *,
                   instruction: str | None = None, success: bool = False, encoding: str = "rgb8") -> None:
        """One frame: instruction (first time and on change), image, proprio, action, all at ``stamp_ns``.

        ``success`` is the task's success flag after this step; the episode succeeds once any step did.
        """
        if self.steps == 0 and self.topics.episode is not None:
            self.write_status(stamp_ns, done=False)
        if instruction is not None and instruction != self._instruction:
            self.write_instruction(instruction, stamp_ns)
        if self._instruction is None:
            raise BagWriteError(self.path, "the first step needs an instruction")
        self.write_image(image, stamp_ns, encoding)
        if self.topics.proprio is not None:
            self.write_proprio(proprio, stamp_ns)
        self.write_action(action, stamp_ns)
        self.steps += 1
        self.success = self.success or bool(success)

    def finish(self, success: bool | None = None, stamp_ns: int | None = None) -> None:
        """Write the final EpisodeStatus (done=True); ``success`` overrides the per-step flags."""
        if success is not None:
            self.success = bool(success)
        if self.topics.episode is not None:
            self.write_status(self._last_stamp if stamp_ns is None else stamp_ns, done=True)
        self._finished = True


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------
def _stamp_ns(header: Any, log_ns: int) -> int:
    ns = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
    return ns if ns > 0 else int(log_ns)  # an unset header stamp falls back to the log time


def _storage_of(path: Path) -> str:
    files = [path] if path.is_file() else list(path.iterdir())
    return "mcap" if any(p.suffix == ".mcap" for p in files) else "sqlite3"


def _open_reader(path: Path) -> Reader:
    if not path.exists():
        raise BagNotFoundError(path, "does not exist")
    if path.is_dir() and not (path / "metadata.yaml").exists():
        storage = sorted(p.name for p in path.iterdir() if p.suffix in (".mcap", ".db3"))
        problem = (f"metadata.yaml is missing (recording not closed?); storage files: {storage}"
                   if storage else "is not a rosbag2 directory (no metadata.yaml)")
        raise (CorruptBagError if storage else BagNotFoundError)(path, problem)
    try:
        reader = Reader(path)
        reader.open()
    except _OPEN_ERRORS as exc:
        raise CorruptBagError(path, f"cannot open bag (truncated or damaged?): {exc}") from exc
    return reader


def _connections(path: Path, reader: Reader, topics: EpisodeTopics, typestore: Any) -> dict[str, list[Any]]:
    """Role -> connections, after checking presence and message types."""
    expected = {"image": (ts.IMAGE,), "instruction": (ts.STRING,), "proprio": (ts.JOINT_STATE,),
                "action": ACTION_TYPES, "episode": (ts.EPISODE_STATUS,)}
    optional = {"episode"}
    found = {c.topic: c for c in reader.connections}
    out: dict[str, list[Any]] = {}
    for role, types in expected.items():
        topic = getattr(topics, role)
        if topic is None:
            continue
        conns = [c for c in reader.connections if c.topic == topic]
        if not conns:
            if role in optional:
                continue
            raise MissingTopicError(path, f"{role} topic {topic!r} is not in the bag; topics: {sorted(found)}")
        bad = sorted({c.msgtype for c in conns if c.msgtype not in types})
        if bad:
            raise TopicTypeError(path, f"{role} topic {topic!r} has type {bad[0]}, expected one of {list(types)}")
        if len({c.msgtype for c in conns}) > 1:
            raise TopicTypeError(path, f"{role} topic {topic!r} mixes types {sorted({c.msgtype for c in conns})}")
        # Same type name, other definition (e.g. an older release's EpisodeStatus or ActionChunk).
        foreign = [c for c in conns if c.digest.startswith("RIHS01_") and c.digest != typestore.hash_rihs01(c.msgtype)]
        if foreign and role in optional:
            continue  # the optional episode status: task/seed/success come from the bag's metadata instead
        if foreign:
            c = foreign[0]
            raise TopicTypeError(path, f"{role} topic {topic!r}: {c.msgtype} was recorded with definition "
                                       f"{c.digest}, this typestore has {typestore.hash_rihs01(c.msgtype)}")
        out[role] = conns
    return out


def _read_messages(path: Path, reader: Reader, conns: dict[str, list[Any]], typestore: Any):
    role_of = {c.id: role for role, cs in conns.items() for c in cs}
    by_role: dict[str, list[tuple[int, Any]]] = {role: [] for role in conns}
    wanted = [c for cs in conns.values() for c in cs]
    for conn, log_ns, raw in _stored_messages(path, reader, wanted):
        try:
            msg = typestore.deserialize_cdr(raw, conn.msgtype)
        except SerdeError as exc:
            raise CorruptBagError(path, f"cannot decode {conn.msgtype} on {conn.topic!r} at {log_ns} ns: {exc}") from exc
        by_role[role_of[conn.id]].append((int(log_ns), msg))
    for role, msgs in by_role.items():
        if not msgs and role != "episode":
            raise MissingTopicError(path, f"{role} topic {conns[role][0].topic!r} has no messages")
        msgs.sort(key=lambda m: m[0])
    return by_role


def _stored_messages(path: Path, reader: Reader, connections: list[Any]) -> Iterator[tuple[Any, int, bytes]]:
    """``reader.messages(connections)``; the storage's errors on damaged data become CorruptBagError."""
    messages = reader.messages(connections=connections)
    while True:
        try:
            item = next(messages)
        except StopIteration:
            return
        except _READ_ERRORS as exc:
            raise CorruptBagError(path, f"cannot read messages (truncated or damaged storage?): {exc}") from exc
        yield item


def _action_vector(path: Path, msgtype: str, msg: Any) -> np.ndarray:
    if msgtype == ts.ACTION_CHUNK:
        k, a = int(msg.chunk_length), int(msg.action_dim)
        values = np.asarray(msg.actions, dtype=np.float32)
        if k < 1 or a < 1 or values.size != k * a:
            raise BadMessageError(path, f"ActionChunk with chunk_length={k}, action_dim={a} has {values.size} "
                                        "actions")
        return values.reshape(k, a)[0]  # the action for the frame itself (k = 0)
    values = np.asarray(msg.data, dtype=np.float32)
    dims = [int(d.size) for d in msg.layout.dim]
    if len(dims) >= 2 and dims[0] > 0 and values.size == int(np.prod(dims)):
        return values.reshape(dims[0], -1)[0]  # a (K, A) array: its first row
    return values


def _vectors(path: Path, what: str, rows: list[np.ndarray]) -> np.ndarray:
    sizes = sorted({r.size for r in rows})
    if len(sizes) != 1 or sizes[0] == 0:
        raise BadMessageError(path, f"{what} vectors have sizes {sizes}, expected one non-zero size")
    return np.stack(rows).astype(np.float32)


def read_episode(path: str | Path, topics: EpisodeTopics = DEFAULT_TOPICS, *, typestore: Any = None,
                 proprio_tolerance_ns: int = 50_000_000, proprio_names: Sequence[str] | None = None) -> Episode:
    """Read and align one episode bag (directory, or a bare .mcap/.db3 file).

    ``proprio_names`` selects and orders JointState ``position`` entries by name; None keeps them as
    recorded. Raises a :class:`~vla_adapter_ros.bags.errors.BagError` subclass naming the file.
    """
    path = Path(path)
    typestore = typestore if typestore is not None else ts.make_typestore()
    reader = _open_reader(path)
    try:
        conns = _connections(path, reader, topics, typestore)
        msgs = _read_messages(path, reader, conns, typestore)
        custom = getattr(getattr(reader.storage, "metadata", None), "custom", None) or {}
    finally:
        reader.close()

    dropped = {"duplicate_stamp": 0, "no_instruction": 0, "no_proprio": 0, "no_action": 0}
    stamps, images = _decode_images(path, msgs["image"], topics.image, dropped)
    proprio = _proprio_series(path, msgs["proprio"], proprio_names) if "proprio" in msgs else None
    action_for, action_names = _action_matcher(path, conns["action"][0].msgtype, msgs["action"], stamps)
    keep, f_instr, f_prop, f_act = _align(path, stamps, msgs["instruction"], proprio, action_for,
                                          proprio_tolerance_ns, dropped)
    info = _custom_info(path, custom)
    status = msgs["episode"][-1][1] if msgs.get("episode") else None  # the last status is the final one
    metadata = {**info, "storage": _storage_of(path), "alignment": {"frames": len(keep), "dropped": dropped},
                "finished": bool(status.done) if status is not None else None}
    return Episode(
        path=path,
        images=np.stack([images[i] for i in keep]),
        instructions=f_instr,
        proprio=_vectors(path, "proprio", f_prop) if proprio is not None else np.zeros((len(keep), 0), np.float32),
        actions=_vectors(path, "action", f_act),
        stamps=stamps[keep],
        task=status.task if status is not None else str(info.get("task", "")),
        seed=int(status.seed) if status is not None else info.get("seed"),
        success=bool(status.success) if status is not None else info.get("success"),
        metadata=metadata,
        proprio_names=proprio[2] if proprio is not None else (),
        action_names=action_names or tuple(info.get("action_names", ())),
    )


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


def _custom_info(path: Path, custom: Mapping[str, str]) -> dict[str, Any]:
    """The recorder's JSON in the bag's custom_data (empty when absent)."""
    try:
        return json.loads(custom.get(METADATA_KEY, "{}"))
    except json.JSONDecodeError as exc:
        raise CorruptBagError(path, f"custom_data[{METADATA_KEY!r}] is not JSON: {exc}") from exc


def _decode_images(path: Path, msgs: list[tuple[int, Any]], topic: str,
                   dropped: dict[str, int]) -> tuple[np.ndarray, list[np.ndarray]]:
    """(T,) int64 header stamps, sorted, and the RGB frames; a repeated stamp keeps the first frame."""
    stamps, images, seen = [], [], set()
    for log_ns, m in msgs:
        stamp = _stamp_ns(m.header, log_ns)
        if stamp in seen:
            dropped["duplicate_stamp"] += 1
            continue
        try:
            rgb = image_to_rgb(m.data, m.encoding, int(m.height), int(m.width), int(m.step))
        except ProcessingError as exc:
            raise BadMessageError(path, f"image at {stamp} ns on {topic!r}: {exc}") from exc
        seen.add(stamp)
        stamps.append(stamp)
        images.append(rgb)
    shapes = sorted({im.shape for im in images})
    if len(shapes) != 1:
        raise BadMessageError(path, f"images on {topic!r} change size within the episode: {shapes}")
    order = np.argsort(np.asarray(stamps, dtype=np.int64), kind="stable")
    return np.asarray(stamps, dtype=np.int64)[order], [images[i] for i in order]


def _proprio_series(path: Path, msgs: list[tuple[int, Any]], proprio_names: Sequence[str] | None
                    ) -> tuple[np.ndarray, list[np.ndarray], tuple[str, ...]]:
    """JointState samples sorted by header stamp: stamps, position rows (selected by name), names."""
    if not msgs:
        return np.zeros(0, np.int64), [], ()
    stamps = np.asarray([_stamp_ns(m.header, t) for t, m in msgs], dtype=np.int64)
    rows = []
    for _, m in msgs:
        pos = np.asarray(m.position, dtype=np.float64)
        if proprio_names is not None:
            index = {n: i for i, n in enumerate(m.name)}
            missing = [n for n in proprio_names if n not in index]
            if missing or pos.size != len(m.name):
                raise BadMessageError(path, f"JointState names {list(m.name)} with {pos.size} positions "
                                            f"lack {missing or 'positions'}")
            pos = pos[[index[n] for n in proprio_names]]
        rows.append(pos)
    names = tuple(proprio_names) if proprio_names is not None else tuple(msgs[0][1].name)
    order = np.argsort(stamps, kind="stable")
    return stamps[order], [rows[i] for i in order], names


def _action_matcher(path: Path, msgtype: str, msgs: list[tuple[int, Any]], image_stamps: np.ndarray):
    """A function frame index -> action (A,) or None, and the action names if the messages carry them.

    ActionChunk: the chunk whose header stamp equals the frame's. Float32MultiArray (no header):
    the first array logged at or after the frame and before the next frame.
    """
    if msgtype == ts.ACTION_CHUNK:
        by_stamp: dict[int, np.ndarray] = {}
        for t, m in msgs:
            by_stamp.setdefault(_stamp_ns(m.header, t), _action_vector(path, msgtype, m))
        return (lambda i: by_stamp.get(int(image_stamps[i]))), tuple(msgs[0][1].action_names)
    log_t = np.asarray([t for t, _ in msgs], dtype=np.int64)
    rows = [_action_vector(path, msgtype, m) for _, m in msgs]
    end = np.iinfo(np.int64).max

    def match(i: int) -> np.ndarray | None:
        nxt = image_stamps[i + 1] if i + 1 < len(image_stamps) else end
        a = int(np.searchsorted(log_t, image_stamps[i], side="left"))
        return rows[a] if a < len(log_t) and log_t[a] < nxt else None

    return match, ()


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
