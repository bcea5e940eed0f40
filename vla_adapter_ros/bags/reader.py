"""Opening an episode bag and reading the topics an episode needs, each checked for presence and type.

Only rosbags' own calls are guarded, each with the errors a damaged bag gives there
(tests/bags: truncated and damaged bags, both storages); anything else out of rosbags is a bug
and keeps its type. Every error names the bag, and the topic where there is one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw  # rosbags' sqlite3 storage reads through apsw (a rosbags dependency)
from rosbags.rosbag2 import Reader, ReaderError
from rosbags.serde import SerdeError

from vla_adapter_ros.bags.errors import BagNotFoundError, CorruptBagError, MissingTopicError, TopicTypeError
from vla_adapter_ros.bags.layout import CONTRACT_INFO_KEY, METADATA_KEY
from vla_adapter_ros.contract import ContractError, RobotContract
from vla_adapter_ros.decoding import stamp_to_ns

# Opening: ReaderError; apsw's errors (sqlite3 storage); KeyError and UnicodeDecodeError while rosbags
# parses a damaged connection record (QoS profile, topic or type text).
_OPEN_ERRORS = (ReaderError, apsw.Error, KeyError, UnicodeDecodeError)
# Reading messages: ReaderError (mcap), apsw's errors (sqlite3). Decoding one: SerdeError (wraps all).
_READ_ERRORS = (ReaderError, apsw.Error)


@dataclass(frozen=True)
class Role:
    """One topic an episode reads: ``name`` is how errors call it ("image", "camera 'wrist'", "state")."""

    name: str
    topic: str
    types: tuple[str, ...]  # accepted ROS 2 message types
    required: bool = True  # False: a bag without the topic reads without it
    may_be_empty: bool = False  # True: the topic may be present without messages


@dataclass
class BagMessages:
    """The messages of each role present in the bag, in log-time order, and what the bag says of itself."""

    path: Path
    messages: dict[str, list[tuple[int, Any]]]  # role -> [(log time ns, message)]
    types: dict[str, str]  # role -> its message type
    info: dict[str, Any] = field(default_factory=dict)  # the recorder's custom_data JSON ({} when absent)
    storage: str = "mcap"


def storage_of(path: Path) -> str:
    files = [path] if path.is_file() else list(path.iterdir())
    return "mcap" if any(p.suffix == ".mcap" for p in files) else "sqlite3"


def open_reader(path: Path) -> Reader:
    """An open rosbags Reader for a bag directory or a bare .mcap/.db3 file."""
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


def custom_info(path: Path, reader: Reader) -> dict[str, Any]:
    """The recorder's JSON in the bag's custom_data (empty when absent)."""
    custom: Mapping[str, str] = getattr(getattr(reader.storage, "metadata", None), "custom", None) or {}
    try:
        return json.loads(custom.get(METADATA_KEY, "{}"))
    except json.JSONDecodeError as exc:
        raise CorruptBagError(path, f"custom_data[{METADATA_KEY!r}] is not JSON: {exc}") from exc


def contract_in(path: Path, info: Mapping[str, Any]) -> RobotContract | None:
    """The robot contract a bag was recorded with (its custom_data), or None."""
    data = info.get(CONTRACT_INFO_KEY)
    if data is None:
        return None
    try:
        return RobotContract.from_dict(data)
    except ContractError as exc:
        raise CorruptBagError(path, f"the contract stored in custom_data[{METADATA_KEY!r}] is not valid: "
                                    f"{exc}") from exc


def stored_contract(path: str | Path) -> RobotContract | None:
    """The robot contract stored in a bag by the recorder (``EpisodeWriter(contract=...)``), or None."""
    path = Path(path)
    reader = open_reader(path)
    try:
        return contract_in(path, custom_info(path, reader))
    finally:
        reader.close()


def read_roles(path: Path, roles: Sequence[Role], typestore: Any,
               contract: RobotContract | None = None) -> BagMessages:
    """Check every role's topic (presence, type, definition) in the bag and read their messages.

    ``contract``: the one the caller reads with (None: the single-camera topics). When the bag
    stores another one, the message of a missing topic says so.
    """
    reader = open_reader(path)
    try:
        info = custom_info(path, reader)
        conns = _connections(path, reader, roles, typestore, _stored_contract_hint(path, info, contract))
        messages = _read(path, reader, conns, typestore)
    finally:
        reader.close()
    for role in roles:
        if role.name in messages and not messages[role.name] and not role.may_be_empty:
            raise MissingTopicError(path, f"{role.name} topic {role.topic!r} has no messages")
    types = {name: cs[0].msgtype for name, cs in conns.items()}
    return BagMessages(path, messages, types, info, storage_of(path))


def _stored_contract_hint(path: Path, info: Mapping[str, Any], reading: RobotContract | None) -> str:
    stored = contract_in(path, info)
    if stored is None or reading is not None and not stored.mismatches(reading):
        return ""
    return (f" (this bag was recorded with the contract of robot {stored.robot!r}, cameras "
            f"{list(stored.camera_names)}: read it with that contract, e.g. TrainConfig.contract)")


def _connections(path: Path, reader: Reader, roles: Sequence[Role], typestore: Any,
                 hint: str) -> dict[str, list[Any]]:
    """Role name -> its connections, after checking presence and message types."""
    found = sorted({c.topic for c in reader.connections})
    out: dict[str, list[Any]] = {}
    for role in roles:
        conns = [c for c in reader.connections if c.topic == role.topic]
        if not conns:
            if not role.required:
                continue
            raise MissingTopicError(path, f"{role.name} topic {role.topic!r} is not in the bag; topics: {found}"
                                          f"{hint}")
        bad = sorted({c.msgtype for c in conns if c.msgtype not in role.types})
        if bad:
            raise TopicTypeError(path, f"{role.name} topic {role.topic!r} has type {bad[0]}, expected one of "
                                       f"{list(role.types)}")
        if len({c.msgtype for c in conns}) > 1:
            raise TopicTypeError(path, f"{role.name} topic {role.topic!r} mixes types "
                                       f"{sorted({c.msgtype for c in conns})}")
        # Same type name, other definition (e.g. an older release's EpisodeStatus or ActionChunk).
        foreign = [c for c in conns if c.digest.startswith("RIHS01_") and c.digest != typestore.hash_rihs01(c.msgtype)]
        if foreign and not role.required:
            continue  # e.g. the optional episode status: task/seed/success come from the bag's metadata instead
        if foreign:
            c = foreign[0]
            raise TopicTypeError(path, f"{role.name} topic {role.topic!r}: {c.msgtype} was recorded with definition "
                                       f"{c.digest}, this typestore has {typestore.hash_rihs01(c.msgtype)}")
        out[role.name] = conns
    return out


def _read(path: Path, reader: Reader, conns: dict[str, list[Any]], typestore: Any
          ) -> dict[str, list[tuple[int, Any]]]:
    role_of = {c.id: role for role, cs in conns.items() for c in cs}
    by_role: dict[str, list[tuple[int, Any]]] = {role: [] for role in conns}
    wanted = [c for cs in conns.values() for c in cs]
    for conn, log_ns, raw in _stored_messages(path, reader, wanted):
        try:
            msg = typestore.deserialize_cdr(raw, conn.msgtype)
        except SerdeError as exc:
            raise CorruptBagError(path, f"cannot decode {conn.msgtype} on {conn.topic!r} at {log_ns} ns: {exc}") from exc
        by_role[role_of[conn.id]].append((int(log_ns), msg))
    for msgs in by_role.values():
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


def header_stamp_ns(msg: Any, log_ns: int) -> int:
    """A message's header stamp in ns; an unset stamp (0) or no header at all falls back to the log time."""
    header = getattr(msg, "header", None)
    if header is None:
        return int(log_ns)
    ns = stamp_to_ns(header.stamp)
    return ns if ns > 0 else int(log_ns)
