"""``vla-adapter replay BAG``: feed a recorded episode to a running policy node; catch regressions.

Publishes the bag's camera frames (``sensor_msgs/Image``), instruction (``std_msgs/String``,
reliable + transient local) and proprio (``sensor_msgs/JointState``) on the live topics,
records the node's ``ActionChunk`` answers to an output bag (the topics of
:class:`vla_adapter_ros.bags.episodes.EpisodeWriter`, original stamps, so ``read_episode``
and a later ``--golden`` read it), compares the answers with the bag's recorded actions
(MAE/RMSE/max per episode) and, with ``--golden``, with a previous run's output within
``--tolerance``; prints a table, writes a PNG and exits 1 on a regression (a frame not
answered, or a golden mismatch), 2 on an unusable bag, 3 when no node listens.

Modes:

- ``lockstep`` (default): frame i+1 is published only after the chunk for frame i arrived. A
  frame whose answer has not arrived within ``--resend-period`` is published again (the frame,
  its instruction and proprio; re-stamped, so the node's ``max_image_age`` never refuses it),
  until answered or ``--timeout``: a frame is never skipped, so the same bag and model give the
  same actions run after run, whatever the load or loss. A frame still unanswered after
  ``--timeout`` ends the replay as a regression naming the frame.
- ``timed``: frames at their recorded spacing divided by ``--rate``, like ``ros2 bag play``. A
  node that is slower than the camera skips frames (latest frame wins) and which frames it
  skips depends on machine load, so timed replay (and ``ros2 bag play``) is NOT deterministic.
  What it can promise is checked: frames keep the recorded timing, answers keep the original
  stamps and come in order; skipped frames are a count (``--min-answered`` makes too few an
  error), and a regression is only a golden mismatch on the frames both runs answered.

Before the first episode the first frame is sent as a probe until the node answers one (a
lifecycle node subscribes before it serves; probe answers are not recorded), so a node that is
still starting loses no frame of the episode. Frames are stamped with the current time when
published and mapped back to their original stamps in the output bag; a frame's JointState
carries the same stamp as its image, and the node pairs them by stamp.

With a real ROS 2 install the same topics work with the standard tools::

    ros2 bag play tests/data/demo_bag --rate 1.0          # timed, not deterministic
    ros2 bag record /vla/action -o my_actions             # record the node's answers

and ``vla-adapter replay tests/data/demo_bag --golden tests/data/golden`` is the deterministic way.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from rclpy.duration import Duration
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String

from vla_adapter_interfaces.msg import ActionChunk
from vla_adapter_ros.bags import replay as rb
from vla_adapter_ros.bags import typestore as ts
from vla_adapter_ros.bags.episodes import DEFAULT_TOPICS, EpisodeWriter, find_episodes, read_episode
from vla_adapter_ros.bags.errors import BagError
from vla_adapter_ros.bags.reader import stored_contract
from vla_adapter_ros.contract import ActionSource, ContractError, RobotContract, default_contract
from vla_adapter_ros.processing import normalize_instruction
from vla_adapter_ros.ros import qos
from vla_adapter_ros.ros.conversions import (
    STATE_MESSAGES,
    action_chunk_to_array,
    compressed_image_msg,
    ns_to_stamp,
    rgb_to_image_msg,
    state_msg,
)
from vla_adapter_ros.ros.harness import RosSession, send_until

EXIT_OK, EXIT_REGRESSION, EXIT_BAG, EXIT_NO_NODE = 0, 1, 2, 3


class NoNodeError(RuntimeError):
    """Nothing subscribes to the replayed camera topic (or does not answer at all)."""


class UnansweredFrameError(RuntimeError):
    """Lockstep: a frame was re-sent until --timeout without an answer."""


@dataclass
class EpisodePlay:
    """What one played episode gave back."""

    chunks: dict[int, np.ndarray] = field(default_factory=dict)  # original stamp -> (K, A)
    msgs: dict[int, Any] = field(default_factory=dict)  # original stamp -> ActionChunk
    latencies_ms: list[float] = field(default_factory=list)
    resent: int = 0
    out_of_order: int = 0  # answers whose original stamp is older than an earlier answer's


class Replayer:
    """Publishers (every camera of the robot, its state, the instruction) and the action subscriber, in a
    RosSession of their own. ``robot``: the contract whose topics and message types are played."""

    def __init__(self, robot: RobotContract, action_topic: str) -> None:
        self.robot = robot
        self.topics = {"camera": ", ".join(c.topic for c in robot.cameras), "instruction": robot.instruction_topic,
                       "proprio": robot.state.topic if robot.state else None, "action": action_topic}
        self.session = RosSession("vla_adapter_replay")
        node = self.session.node
        self.cameras = {c.name: node.create_publisher(Image if c.type == "Image" else CompressedImage, c.topic,
                                                      qos.camera_qos("reliable", 10)) for c in robot.cameras}
        self.camera = next(iter(self.cameras.values()))
        self.instruction = node.create_publisher(String, robot.instruction_topic, qos.instruction_qos())
        self.joints = (node.create_publisher(STATE_MESSAGES[robot.state.type], robot.state.topic, 10)
                       if robot.state else None)
        self._lock = threading.Lock()
        self.answers: dict[int, tuple[float, Any]] = {}  # live stamp -> (receive time, ActionChunk)
        self.arrival: list[int] = []  # live stamps in order of arrival
        self.stale_instruction = 0  # answers refused for being conditioned on the previous instruction
        self.session.subscribe(ActionChunk, action_topic, self._on_action, qos.actions_qos(100))

    def _on_action(self, msg: Any) -> None:
        stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        with self._lock:
            if stamp not in self.answers:
                self.answers[stamp] = (time.monotonic(), msg)
                self.arrival.append(stamp)

    def answered(self, live: int) -> bool:
        with self._lock:
            return live in self.answers

    def answered_with(self, instruction: str) -> Callable[[int], bool]:
        """A frame counts as answered only by a chunk conditioned on ITS instruction: right after an
        instruction change the node can serve a frame before its instruction callback has run (topics
        have no order between them), and that answer is refused here and the frame re-sent."""
        want = normalize_instruction(instruction)

        def check(live: int) -> bool:
            with self._lock:
                answer = self.answers.get(live)
                if answer is not None and answer[1].instruction != want:
                    del self.answers[live]  # the next answer to this stamp (a re-send's) counts
                    self.stale_instruction += 1
                    return False
            return answer is not None

        return check

    def wait_for_node(self, timeout: float) -> None:
        try:
            self.session.wait_for(lambda: all(p.get_subscription_count() > 0 for p in self.cameras.values())
                                  and self.session.node.count_publishers(self.topics["action"]) > 0, timeout, "")
        except TimeoutError:
            raise NoNodeError(
                f"no policy node: {self.camera.get_subscription_count()} subscriber(s) on {self.topics['camera']}, "
                f"{self.session.node.count_publishers(self.topics['action'])} publisher(s) on {self.topics['action']} "
                f"after {timeout:.0f} s (is vla_adapter_node running in ROS_DOMAIN_ID, with these topics?)") from None

    def wait_until_answering(self, ep: Any, timeout: float) -> None:
        """Probe with the episode's first frame until the node answers one.

        A matched subscription is not a serving node: a lifecycle node subscribes before it is
        configured and active (frames meanwhile are counted, not served), and the instruction's
        or the joint states' match can complete after the camera's. Probe answers are not part of
        the episode (their live stamps are never mapped back), so no frame of it is lost.
        """
        self.send_instruction(ep.instructions[0], timeout)
        try:
            send_until(lambda: self.publish_frame(ep, 0), self.answered,
                       self.session, timeout=timeout, interval=0.2, what="the probe frame")
        except TimeoutError:
            raise NoNodeError(f"the node on {self.topics['camera']} matched but answered no frame within "
                              f"{timeout:.0f} s (not active? instruction/proprio refused? see its status: "
                              "vla-adapter status)") from None

    def send_instruction(self, text: str, timeout: float) -> None:
        self.instruction.publish(String(data=text))
        if self.instruction.get_subscription_count() and not self.instruction.wait_for_all_acked(
                Duration(seconds=timeout)):
            raise NoNodeError(f"the instruction on {self.topics['instruction']} was not acknowledged")

    def publish_frame(self, ep: Any, i: int) -> int:
        """Frame ``i`` of ``ep``: its state, then every camera's view, with one fresh stamp (the node pairs
        them by it); returns the stamp."""
        stamp = self.session.now_ns()
        header = Header(stamp=ns_to_stamp(stamp))
        if self.joints is not None and len(ep.proprio[i]):
            self.joints.publish(state_msg(self.robot.state, ep.proprio[i], header))
        for cam in self.robot.cameras:
            rgb = ep.views[cam.name][i]
            header = Header(stamp=header.stamp, frame_id=cam.name)
            if cam.type == "Image":
                self.cameras[cam.name].publish(rgb_to_image_msg(rgb, header))
            else:  # lossless, so a replay of a compressed camera stays bit for bit deterministic
                self.cameras[cam.name].publish(compressed_image_msg(rgb, header, "png"))
        return stamp

    def close(self) -> None:
        self.session.close()


def replay_episode(rep: Replayer, ep: Any, *, mode: str, rate: float, timeout: float,
                   resend_period: float) -> EpisodePlay:
    """Publish one episode (see the module docstring for the two modes)."""
    live_to_orig: dict[int, int] = {}
    sent_at: dict[int, float] = {}
    instruction, play = None, EpisodePlay()
    t0, s0 = time.monotonic(), int(ep.stamps[0])

    def send(i: int) -> int:
        live = rep.publish_frame(ep, i)
        live_to_orig[live], sent_at[live] = int(ep.stamps[i]), time.monotonic()
        return live

    for i in range(len(ep)):
        if ep.instructions[i] != instruction:
            instruction = ep.instructions[i]
            rep.send_instruction(instruction, timeout)
        if mode == "timed":
            time.sleep(max(0.0, t0 + (int(ep.stamps[i]) - s0) * 1e-9 / rate - time.monotonic()))  # pacing
            send(i)
            continue
        sends = len(live_to_orig)
        try:
            send_until(lambda i=i: send(i), rep.answered_with(instruction), rep.session, timeout=timeout,
                       interval=resend_period, what=f"frame {i}")
        except TimeoutError:
            raise UnansweredFrameError(f"frame {i} (stamp {int(ep.stamps[i])}) unanswered after "
                                       f"{len(live_to_orig) - sends} send(s) in {timeout:g} s") from None
        play.resent += len(live_to_orig) - sends - 1
    if mode == "timed" and live_to_orig:  # latest frame wins: the last frame is always served
        last = max(live_to_orig)
        try:
            rep.session.wait_for(lambda: rep.answered(last), timeout, "the answer to the last frame")
        except TimeoutError:
            pass  # reported as unanswered frames
    return _collect(rep, live_to_orig, sent_at, play)


def _collect(rep: Replayer, live_to_orig: dict[int, int], sent_at: dict[int, float], play: EpisodePlay) -> EpisodePlay:
    with rep._lock:
        arrival = [s for s in rep.arrival if s in live_to_orig and s in rep.answers]
        answers = {s: rep.answers[s] for s in arrival}
    newest = -1
    for live in arrival:
        orig = live_to_orig[live]
        if orig in play.chunks:
            continue  # a re-sent frame answered twice
        received, msg = answers[live]
        play.chunks[orig], play.msgs[orig] = action_chunk_to_array(msg), msg
        play.latencies_ms.append((received - sent_at[live]) * 1e3)
        play.out_of_order += orig < newest
        newest = max(newest, orig)
    return play


def write_output(out: Path, ep: Any, chunks: dict[int, np.ndarray], msgs: dict[int, Any], source: Path,
                 mode: str) -> Path:
    """The answered frames with the node's chunks, as an EpisodeWriter bag at the original stamps (every
    camera of the episode's contract; the node's ActionChunks on /vla/action, whatever the robot's own
    action source was)."""
    adapters = sorted({m.adapter for m in msgs.values()})
    contract = (replace(ep.contract, action_source=ActionSource(DEFAULT_TOPICS.action, "ActionChunk"))
                if ep.contract is not None else None)
    with EpisodeWriter(out, task=ep.task or "unknown", seed=int(ep.seed or 0), dt=float(ep.metadata.get("dt", 0)),
                       proprio_names=ep.proprio_names or ("ee_x", "ee_y", "ee_z", "gripper"),
                       action_names=ep.action_names or ("dx", "dy", "dz", "gripper"),
                       action_source=",".join(adapters) or "none", contract=contract,
                       metadata={"replay_of": str(source), "replay_mode": mode,
                                 "missing_frames": len(ep) - len(chunks)}) as w:
        for i, s in enumerate(ep.stamps):
            if int(s) in chunks:
                frame = {c: v[i] for c, v in ep.views.items()} if contract is not None else ep.images[i]
                w.write_step(int(s), frame, ep.proprio[i], chunks[int(s)], instruction=ep.instructions[i])
        w.finish(success=bool(ep.success))
    return out


def _golden_bag(golden: Path, name: str, single: bool) -> Path | None:
    if (golden / name / "metadata.yaml").is_file():
        return golden / name
    if single and (golden / "metadata.yaml").is_file():
        return golden
    return None


def legacy_robot(args: argparse.Namespace, ep: Any) -> RobotContract:
    """A bag without a contract: one camera on --camera-topic, JointState positions on --proprio-topic."""
    robot = default_contract(ep.proprio_names if args.proprio_topic else (), ep.action_names or ("a",),
                             camera_topic=args.camera_topic)
    state = replace(robot.state, topic=args.proprio_topic) if robot.state is not None else None
    return replace(robot, state=state, instruction_topic=args.instruction_topic)


class GoldenMissingError(RuntimeError):
    """--golden names a directory without a bag for this episode."""


def _replay_one(rep: Replayer, args: argparse.Namespace, path: Path, ep: Any, store: Any,
                single: bool) -> tuple[Any, np.ndarray]:
    play = replay_episode(rep, ep, mode=args.mode, rate=args.rate, timeout=args.timeout,
                          resend_period=args.resend_period)
    if not play.chunks:
        raise NoNodeError(f"the node answered none of {len(ep)} frames of {path} (instruction/proprio accepted? "
                          "see vla-adapter status)")
    report = rb.EpisodeReport(path.name, ep.task, len(ep), len(play.chunks),
                              rb.action_errors(play.chunks, ep.stamps, ep.actions),
                              latency_ms_p50=float(np.median(play.latencies_ms)), mode=args.mode,
                              resent=play.resent, out_of_order=play.out_of_order, min_answered=args.min_answered)
    if args.out is not None:
        write_output(args.out / path.name, ep, play.chunks, play.msgs, path, args.mode)
    if args.golden is not None:
        gpath = _golden_bag(args.golden, path.name, single)
        if gpath is None:
            raise GoldenMissingError(f"no golden bag for {path.name} in {args.golden}")
        report.golden = rb.compare_golden(play.chunks, rb.read_action_chunks(gpath, typestore=store),
                                          args.tolerance, same_frames=args.mode == "lockstep")
    return report, rb.replayed_series(play.chunks, ep.stamps, ep.actions.shape[1])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", type=Path, help="an episode bag, or a directory of them")
    parser.add_argument("--mode", choices=("lockstep", "timed"), default="lockstep",
                        help="lockstep (deterministic, default) or timed (recorded timing, like ros2 bag play)")
    parser.add_argument("--rate", type=float, default=1.0, help="timed mode: playback speed factor")
    parser.add_argument("--out", type=Path, default=None, help="write the node's answers here (one bag per episode)")
    parser.add_argument("--golden", type=Path, default=None, help="a previous --out to compare with")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max |action - golden| allowed")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for a node, or for the answer to one frame (re-sends included)")
    parser.add_argument("--resend-period", type=float, default=0.5,
                        help="lockstep: seconds without an answer before a frame is sent again (default %(default)s)")
    parser.add_argument("--min-answered", type=float, default=0.0,
                        help="timed: fail when fewer than this fraction of frames is answered (default: report only)")
    parser.add_argument("--plot", type=Path, default=None, help="PNG path (default OUT/replay.png if --out)")
    parser.add_argument("--contract", type=Path, default=None,
                        help="robot contract to read and play the bag with (cameras, state, instruction topics); "
                             "default: the one stored in the bag, else one camera on --camera-topic")
    for role, topic in (("camera", DEFAULT_TOPICS.image), ("instruction", DEFAULT_TOPICS.instruction),
                        ("proprio", DEFAULT_TOPICS.proprio), ("action", DEFAULT_TOPICS.action)):
        parser.add_argument(f"--{role}-topic", default=topic,
                            help=f"live {role} topic (default %(default)s; "
                                 + ("the node's output)" if role == "action" else "a bag without a contract)"))


def run(args: argparse.Namespace) -> int:
    if args.rate <= 0 or args.timeout <= 0 or args.resend_period <= 0 or args.tolerance < 0 \
            or not 0 <= args.min_answered <= 1:
        print("replay: --rate, --timeout and --resend-period must be > 0, --tolerance >= 0, --min-answered in "
              "[0, 1]", file=sys.stderr)
        return EXIT_BAG
    store = ts.make_typestore()
    try:
        paths = find_episodes(args.bag)
        contract = RobotContract.load(args.contract) if args.contract else stored_contract(paths[0])
        episodes = [read_episode(p, typestore=store, contract=contract) for p in paths]
    except ContractError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return EXIT_BAG
    except BagError as exc:
        print(f"replay: cannot use {args.bag}: {exc}\n(the bag needs {DEFAULT_TOPICS.image} sensor_msgs/msg/Image, "
              f"{DEFAULT_TOPICS.instruction} std_msgs/msg/String, {DEFAULT_TOPICS.proprio} sensor_msgs/msg/JointState "
              f"and {DEFAULT_TOPICS.action} ActionChunk or Float32MultiArray)", file=sys.stderr)
        return EXIT_BAG
    if args.out is not None and args.out.exists() and any(args.out.iterdir()):
        print(f"replay: --out {args.out} exists and is not empty", file=sys.stderr)
        return EXIT_BAG
    robot = contract or legacy_robot(args, episodes[0])
    rep = Replayer(robot, args.action_topic)
    reports, series = [], []
    try:
        rep.wait_for_node(args.timeout)
        rep.wait_until_answering(episodes[0], args.timeout)
        for path, ep in zip(paths, episodes, strict=True):
            report, replayed = _replay_one(rep, args, path, ep, store, single=len(paths) == 1)
            reports.append(report)
            series.append((path.name, ep.actions, replayed))
    except NoNodeError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return EXIT_NO_NODE
    except UnansweredFrameError as exc:
        print(f"replay: REGRESSION: {exc}", file=sys.stderr)
        return EXIT_REGRESSION
    except (BagError, GoldenMissingError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return EXIT_BAG
    finally:
        rep.close()
    print(rb.format_table(reports))
    plot_path = args.plot or ((args.out / "replay.png") if args.out is not None else None)
    if plot_path is not None:
        print(f"plot: {rb.plot(reports, series, plot_path)}")
    bad = {r.name: r.problems for r in reports if r.regression}
    if bad:
        print(f"REGRESSION in {bad} (mode {args.mode}, tolerance {args.tolerance:g})")
        return EXIT_REGRESSION
    print(f"ok: {len(reports)} episode(s), {sum(r.answered for r in reports)} frames answered, "
          f"{sum(r.skipped for r in reports)} skipped, {sum(r.resent for r in reports)} re-sent")
    return EXIT_OK
