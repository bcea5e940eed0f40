"""Writing one episode bag: :class:`EpisodeWriter`.

One rosbag2 directory per episode (mcap by default, sqlite3 supported). Without a contract, the
single-camera topics of docs/DESIGN.md "Bags"; with a robot contract, every camera of the contract
on its own topic, the state and instruction on the contract's topics, ActionChunks on its
``action_source`` topic, and the contract itself in the bag's custom metadata, so the bag says
which robot made it (:func:`vla_adapter_ros.bags.reader.stored_contract`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Writer, WriterError

from vla_adapter_ros.bags import typestore as ts
from vla_adapter_ros.bags.errors import BagWriteError
from vla_adapter_ros.bags.layout import (
    CONTRACT_INFO_KEY,
    DEFAULT_ACTION_NAMES,
    DEFAULT_PROPRIO_NAMES,
    DEFAULT_TOPICS,
    METADATA_KEY,
    SINGLE_CAMERA,
    STORAGES,
    EpisodeTopics,
)
from vla_adapter_ros.contract import RobotContract
from vla_adapter_ros.processing import ENCODING_CHANNELS

_TO_BGR = {"rgb8": cv2.COLOR_RGB2BGR, "rgba8": cv2.COLOR_RGBA2BGRA}  # what cv2.imencode expects


def _qos(reliable: bool, transient_local: bool, depth: int) -> Qos:
    zero = QosTime(0, 0)  # rosbag2: 0 = the rmw default (infinite)
    return Qos(QosHistory.KEEP_LAST, depth,
               QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
               QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
               zero, zero, QosLiveliness.AUTOMATIC, zero, False)


def _stamp(ns: int, types: Any) -> Any:
    ns = int(ns)
    if ns < 0:
        raise ValueError(f"stamp must be >= 0 ns, got {ns}")
    return types["builtin_interfaces/msg/Time"](sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _contract_layout(contract: RobotContract) -> tuple[dict[str, tuple[str, str]], EpisodeTopics, tuple[str, ...]]:
    """(camera -> (topic, type), the other topics, proprio names) of a contract a writer can record."""
    state = contract.state
    if state is not None and (state.type != "JointState" or any(f.source != "position" for f in state.fields)):
        raise ValueError(f"EpisodeWriter records state as JointState positions; contract {contract.robot!r} "
                         f"selects {[f.name for f in state.fields]} from a {state.type}")
    source = contract.action_source
    if source is not None and source.type != "ActionChunk":
        raise ValueError(f"EpisodeWriter records actions as ActionChunks; contract {contract.robot!r} takes them "
                         f"from a {source.type} on {source.topic!r} (record that robot with ros2 bag record)")
    topics = EpisodeTopics(image="", instruction=contract.instruction_topic,
                           proprio=state.topic if state is not None else None,
                           action=source.topic if source is not None else DEFAULT_TOPICS.action,
                           episode=DEFAULT_TOPICS.episode)
    cameras = {c.name: (c.topic, c.type) for c in contract.cameras}
    return cameras, topics, contract.state_names


class EpisodeWriter:
    """Write one episode bag. Context manager; the directory ``path`` must not exist.

    Typical use (what ``vla-adapter record-sim`` does)::

        with EpisodeWriter(out / "ep0", task="drawer-open-v3", seed=3) as w:
            for t, (rgb, proprio, action) in enumerate(frames):
                w.write_step(stamp_ns[t], rgb, proprio, action, instruction="open the drawer")
            w.finish(success=True)

    With ``contract``, ``write_step`` takes the frame of every camera, ``{camera: rgb}``; topics,
    state names and action names come from the contract (``topics``, ``proprio_names`` and
    ``action_names`` are then ignored), and the contract is stored in the bag.
    """

    def __init__(self, path: str | Path, *, task: str, seed: int, episode: int = 0, max_steps: int = 0,
                 storage: str = "mcap", topics: EpisodeTopics = DEFAULT_TOPICS, typestore: Any = None,
                 proprio_names: Sequence[str] = DEFAULT_PROPRIO_NAMES,
                 action_names: Sequence[str] = DEFAULT_ACTION_NAMES, frame_id: str = "camera",
                 dt: float = 0.0, action_source: str = "expert",
                 metadata: Mapping[str, Any] | None = None, contract: RobotContract | None = None) -> None:
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
        if not 0 <= int(seed) < 2**32:
            raise ValueError(f"seed must fit EpisodeStatus.seed (uint32), got {seed}")
        self.path = Path(path)
        self.task, self.seed, self.episode, self.max_steps = task, int(seed), int(episode), int(max_steps)
        self.storage, self.contract = storage, contract
        if contract is None:
            self.cameras = {SINGLE_CAMERA: (topics.image, "Image")}
        else:
            self.cameras, topics, proprio_names = _contract_layout(contract)
            action_names = contract.action_names
        self.topics = topics
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
        plan: list[tuple[str, str | None, str, Qos]] = [
            (f"camera:{name}", topic, ts.CONTRACT_TYPES[kind], _qos(False, False, 1))
                for name, (topic, kind) in self.cameras.items()]
        plan += [("instruction", t.instruction, ts.STRING, _qos(True, True, 1)),
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
        if self.contract is not None:
            info[CONTRACT_INFO_KEY] = self.contract.to_dict()
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

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
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

    def _header(self, stamp_ns: int, frame_id: str | None = None) -> Any:
        types = self.typestore.types
        return types["std_msgs/msg/Header"](stamp=_stamp(stamp_ns, types),
                                            frame_id=self.frame_id if frame_id is None else frame_id)

    def write_instruction(self, text: str, stamp_ns: int) -> None:
        self._write("instruction", self.typestore.types[ts.STRING](data=str(text)), ts.STRING, stamp_ns)
        self._instruction = str(text)

    def write_image(self, image: np.ndarray, stamp_ns: int, encoding: str = "rgb8", camera: str | None = None) -> None:
        """``image`` holds pixels already in ``encoding``: (H, W, C) uint8, or (H, W) for mono8.

        ``camera``: the contract camera it comes from (default: the first). A CompressedImage
        camera gets the pixels as a lossless PNG.
        """
        name = camera if camera is not None else next(iter(self.cameras))
        if name not in self.cameras:
            raise ValueError(f"no camera {name!r}; cameras: {list(self.cameras)}")
        image = np.asarray(image)
        channels = ENCODING_CHANNELS.get(encoding)
        shape_ok = image.ndim == 3 and image.shape[2] == channels or image.ndim == 2 and channels == 1
        if channels is None or image.dtype != np.uint8 or not shape_ok:
            raise ValueError(f"image {image.shape} {image.dtype} does not match encoding {encoding!r}")
        frame_id = self.frame_id if self.contract is None else name
        h, w = image.shape[:2]
        types, kind = self.typestore.types, self.cameras[name][1]
        if kind == "CompressedImage":
            ok, png = cv2.imencode(".png", cv2.cvtColor(image, _TO_BGR[encoding]) if encoding in _TO_BGR else image)
            if not ok:
                raise ValueError(f"cannot encode a {image.shape} image as PNG")
            msg = types[ts.COMPRESSED_IMAGE](header=self._header(stamp_ns, frame_id), format="png",
                                             data=png.reshape(-1))
        else:
            msg = types[ts.IMAGE](header=self._header(stamp_ns, frame_id), height=h, width=w, encoding=encoding,
                                  is_bigendian=0, step=w * channels, data=np.ascontiguousarray(image).reshape(-1))
        self._write(f"camera:{name}", msg, ts.CONTRACT_TYPES[kind], stamp_ns)

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
            frames=self.steps, resent_frames=0, end_reason=("success" if self.success else "step_limit") if done else "")
        self._write("episode", msg, ts.EPISODE_STATUS, stamp_ns)

    def write_step(self, stamp_ns: int, image: np.ndarray | Mapping[str, np.ndarray], proprio: np.ndarray,
                   action: np.ndarray, *, instruction: str | None = None, success: bool = False,
                   encoding: str = "rgb8") -> None:
        """One frame: instruction (first time and on change), image(s), proprio, action, all at ``stamp_ns``.

        ``image``: the frame of the one camera, or ``{camera: frame}`` for every camera.
        ``success`` is the task's success flag after this step; the episode succeeds once any step did.
        """
        views = dict(image) if isinstance(image, Mapping) else {next(iter(self.cameras)): image}
        if set(views) != set(self.cameras):
            raise ValueError(f"a step needs the frame of every camera {list(self.cameras)}, got {sorted(views)}")
        if self.steps == 0 and self.topics.episode is not None:
            self.write_status(stamp_ns, done=False)
        if instruction is not None and instruction != self._instruction:
            self.write_instruction(instruction, stamp_ns)
        if self._instruction is None:
            raise BagWriteError(self.path, "the first step needs an instruction")
        for name in self.cameras:
            self.write_image(views[name], stamp_ns, encoding, camera=name)
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
