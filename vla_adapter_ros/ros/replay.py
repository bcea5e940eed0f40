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

- ``lockstep`` (default): frame i+1 is published only after the chunk for frame i arrived (or
  ``--timeout`` passed; that frame counts as missing). Every frame is served, with exactly its
  own proprio and instruction, so the same bag and model give the same actions run after run:
  this is what regression tests use.
- ``timed``: frames at their recorded spacing divided by ``--rate``, like ``ros2 bag play``. A
  node that is slower than the camera skips frames (latest frame wins) and which frames it
  skips depends on machine load, so timed replay (and ``ros2 bag play``) is NOT deterministic;
  use it to see the node under realistic timing.

Before the first episode the first frame is sent as a probe until the node answers one (a
lifecycle node subscribes before it serves; probe answers are not recorded), so a node that is
still starting loses no frame of the episode. Frames are re-stamped with the current time when
published (the node refuses frames older than its ``max_image_age``) and mapped back to their
original stamps in the output bag. The
JointState of a frame goes out ``--proprio-lead`` seconds before its image, so the node holds
the matching proprio when the image arrives.

With a real ROS 2 install the same topics work with the standard tools::

    ros2 bag play tests/data/demo_bag --rate 1.0          # timed, not deterministic
    ros2 bag record /vla/action -o my_actions             # record the node's answers

and ``vla-adapter replay tests/data/demo_bag --golden tests/data/golden`` is the deterministic way.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from vla_adapter_ros.bags.episodes import DEFAULT_TOPICS

EXIT_OK, EXIT_REGRESSION, EXIT_BAG, EXIT_NO_NODE = 0, 1, 2, 3


class NoNodeError(RuntimeError):
    """Nothing subscribes to the replayed camera topic (or does not answer at all)."""


class Replayer:
    """Publishers and the action subscriber in an rclpy context of its own."""

    def __init__(self, camera_topic: str, instruction_topic: str, proprio_topic: str | None,
                 action_topic: str) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import String

        from vla_adapter_interfaces.msg import ActionChunk
        from vla_adapter_ros.ros import qos

        self.topics = {"camera": camera_topic, "instruction": instruction_topic, "proprio": proprio_topic,
                       "action": action_topic}
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"vla_adapter_replay_{time.monotonic_ns() % 10**9}", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.camera = self.node.create_publisher(Image, camera_topic, qos.camera_qos("reliable", 10))
        self.instruction = self.node.create_publisher(String, instruction_topic, qos.instruction_qos())
        self.joints = self.node.create_publisher(JointState, proprio_topic, 10) if proprio_topic else None
        self.answers: dict[int, tuple[float, Any]] = {}  # live stamp -> (receive time, ActionChunk)
        self.node.create_subscription(ActionChunk, action_topic, self._on_action, qos.actions_qos(100))

    def _on_action(self, msg: Any) -> None:
        stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        self.answers.setdefault(stamp, (time.monotonic(), msg))

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            self.executor.spin_once(timeout_sec=min(left, 0.005))

    def wait_for_node(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.camera.get_subscription_count() == 0 or self.node.count_publishers(self.topics["action"]) == 0:
            if time.monotonic() > deadline:
                raise NoNodeError(
                    f"no policy node: {self.camera.get_subscription_count()} subscriber(s) on {self.topics['camera']}, "
                    f"{self.node.count_publishers(self.topics['action'])} publisher(s) on {self.topics['action']} "
                    f"after {timeout:.0f} s (is vla_adapter_node running in ROS_DOMAIN_ID, with these topics?)")
            self.spin_for(0.05)
        self.spin_for(0.2)  # let the node's side of the matches settle

    def wait_until_answering(self, ep: Any, timeout: float, proprio_lead: float) -> None:
        """Probe with the episode's first frame until the node answers one.

        A matched subscription is not a serving node: a lifecycle node subscribes before it is
        configured and active (frames meanwhile are counted, not served), and the instruction's
        or the joint states' match can complete after the camera's. Probe answers are not part of
        the episode (their live stamps are never mapped back), so no frame of it is lost.
        """
        deadline = time.monotonic() + timeout
        self.send_instruction(ep.instructions[0], timeout)
        probes: set[int] = set()
        while not probes & set(self.answers):
            if time.monotonic() > deadline:
                raise NoNodeError(f"the node on {self.topics['camera']} matched but answered no frame within "
                                  f"{timeout:.0f} s (not active? instruction/proprio refused? see its /diagnostics)")
            probes.add(self.publish_frame(ep.images[0], ep.proprio[0], ep.proprio_names, "camera", proprio_lead))
            self.spin_for(0.2)
        self.spin_for(0.1)  # stragglers of the probes

    def send_instruction(self, text: str, timeout: float) -> None:
        from rclpy.duration import Duration
        from std_msgs.msg import String

        self.instruction.publish(String(data=text))
        if self.instruction.get_subscription_count() and not self.instruction.wait_for_all_acked(
                Duration(seconds=timeout)):
            raise NoNodeError(f"the instruction on {self.topics['instruction']} was not acknowledged")
        self.spin_for(0.05)

    def publish_frame(self, rgb: np.ndarray, proprio: np.ndarray, names: tuple[str, ...], frame_id: str,
                      proprio_lead: float) -> int:
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Header

        from vla_adapter_ros.ros.conversions import ns_to_stamp, rgb_to_image_msg

        stamp = self.node.get_clock().now().nanoseconds
        header = Header(stamp=ns_to_stamp(stamp), frame_id=frame_id)
        if self.joints is not None and len(proprio):
            self.joints.publish(JointState(header=header, name=list(names), position=[float(v) for v in proprio]))
            self.spin_for(proprio_lead)
        self.camera.publish(rgb_to_image_msg(rgb, header))
        return stamp

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def replay_episode(rep: Replayer, ep: Any, *, mode: str, rate: float, timeout: float,
                   proprio_lead: float) -> tuple[dict[int, np.ndarray], dict[int, Any], list[float]]:
    """Publish one episode; returns original stamp -> chunk, original stamp -> message, latencies (ms)."""
    from vla_adapter_ros.ros.conversions import action_chunk_to_array

    live_to_orig: dict[int, int] = {}
    sent_at: dict[int, float] = {}
    instruction = None
    t0, s0 = time.monotonic(), int(ep.stamps[0])
    for i in range(len(ep)):
        if ep.instructions[i] != instruction:
            instruction = ep.instructions[i]
            rep.send_instruction(instruction, timeout)
        if mode == "timed":
            rep.spin_for(t0 + (int(ep.stamps[i]) - s0) * 1e-9 / rate - time.monotonic())
        live = rep.publish_frame(ep.images[i], ep.proprio[i], ep.proprio_names, "camera", proprio_lead)
        live_to_orig[live], sent_at[live] = int(ep.stamps[i]), time.monotonic()
        if mode == "lockstep":
            deadline = time.monotonic() + timeout
            while live not in rep.answers and time.monotonic() < deadline:
                rep.executor.spin_once(timeout_sec=0.002)
    deadline = time.monotonic() + timeout
    while not set(live_to_orig) <= set(rep.answers) and time.monotonic() < deadline:
        rep.executor.spin_once(timeout_sec=0.01)
    chunks, msgs, latencies = {}, {}, []
    for live, orig in live_to_orig.items():
        if live in rep.answers:
            received, msg = rep.answers[live]
            chunks[orig], msgs[orig] = action_chunk_to_array(msg), msg
            latencies.append((received - sent_at[live]) * 1e3)
    return chunks, msgs, latencies


def write_output(out: Path, ep: Any, chunks: dict[int, np.ndarray], msgs: dict[int, Any], source: Path,
                 mode: str) -> Path:
    """The answered frames with the node's chunks, as an EpisodeWriter bag at the original stamps."""
    from vla_adapter_ros.bags.episodes import EpisodeWriter

    adapters = sorted({m.adapter for m in msgs.values()})
    with EpisodeWriter(out, task=ep.task or "unknown", seed=int(ep.seed or 0), dt=float(ep.metadata.get("dt", 0)),
                       proprio_names=ep.proprio_names or ("ee_x", "ee_y", "ee_z", "gripper"),
                       action_names=ep.action_names or ("dx", "dy", "dz", "gripper"),
                       action_source=",".join(adapters) or "none",
                       metadata={"replay_of": str(source), "replay_mode": mode,
                                 "missing_frames": len(ep) - len(chunks)}) as w:
        for i, s in enumerate(ep.stamps):
            if int(s) in chunks:
                w.write_step(int(s), ep.images[i], ep.proprio[i], chunks[int(s)], instruction=ep.instructions[i])
        w.finish(success=bool(ep.success))
    return out


def _golden_bag(golden: Path, name: str, single: bool) -> Path | None:
    if (golden / name / "metadata.yaml").is_file():
        return golden / name
    if single and (golden / "metadata.yaml").is_file():
        return golden
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", type=Path, help="an episode bag, or a directory of them")
    parser.add_argument("--mode", choices=("lockstep", "timed"), default="lockstep",
                        help="lockstep (deterministic, default) or timed (recorded timing, like ros2 bag play)")
    parser.add_argument("--rate", type=float, default=1.0, help="timed mode: playback speed factor")
    parser.add_argument("--out", type=Path, default=None, help="write the node's answers here (one bag per episode)")
    parser.add_argument("--golden", type=Path, default=None, help="a previous --out to compare with")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max |action - golden| allowed")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a node / an answer")
    parser.add_argument("--plot", type=Path, default=None, help="PNG path (default OUT/replay.png if --out)")
    parser.add_argument("--proprio-lead", type=float, default=0.005, help="seconds between JointState and Image")
    for role, topic in (("camera", DEFAULT_TOPICS.image), ("instruction", DEFAULT_TOPICS.instruction),
                        ("proprio", DEFAULT_TOPICS.proprio), ("action", DEFAULT_TOPICS.action)):
        parser.add_argument(f"--{role}-topic", default=topic, help=f"live {role} topic (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    from vla_adapter_ros.bags import replay as rb
    from vla_adapter_ros.bags import typestore as ts
    from vla_adapter_ros.bags.episodes import find_episodes, read_episode
    from vla_adapter_ros.bags.errors import BagError

    if args.rate <= 0 or args.timeout <= 0 or args.tolerance < 0:
        print("replay: --rate and --timeout must be > 0, --tolerance >= 0", file=sys.stderr)
        return EXIT_BAG
    store = ts.make_typestore()
    try:
        paths = find_episodes(args.bag)
        episodes = [read_episode(p, typestore=store) for p in paths]
    except BagError as exc:
        print(f"replay: cannot use {args.bag}: {exc}\n(the bag needs {DEFAULT_TOPICS.image} sensor_msgs/msg/Image, "
              f"{DEFAULT_TOPICS.instruction} std_msgs/msg/String, {DEFAULT_TOPICS.proprio} sensor_msgs/msg/JointState "
              f"and {DEFAULT_TOPICS.action} ActionChunk or Float32MultiArray)", file=sys.stderr)
        return EXIT_BAG
    if args.out is not None and args.out.exists() and any(args.out.iterdir()):
        print(f"replay: --out {args.out} exists and is not empty", file=sys.stderr)
        return EXIT_BAG
    rep = Replayer(args.camera_topic, args.instruction_topic, args.proprio_topic or None, args.action_topic)
    reports, series = [], []
    try:
        rep.wait_for_node(args.timeout)
        rep.wait_until_answering(episodes[0], args.timeout, args.proprio_lead)
        for path, ep in zip(paths, episodes, strict=True):
            chunks, msgs, lat = replay_episode(rep, ep, mode=args.mode, rate=args.rate, timeout=args.timeout,
                                               proprio_lead=args.proprio_lead)
            if not chunks:
                raise NoNodeError(f"the node answered none of {len(ep)} frames of {path} (instruction/proprio "
                                  f"accepted? see its /diagnostics)")
            errors = rb.action_errors(chunks, ep.stamps, ep.actions)
            report = rb.EpisodeReport(path.name, ep.task, len(ep), len(chunks), errors,
                                      latency_ms_p50=float(np.median(lat)))
            if args.out is not None:
                write_output(args.out / path.name, ep, chunks, msgs, path, args.mode)
            if args.golden is not None:
                gpath = _golden_bag(args.golden, path.name, len(paths) == 1)
                if gpath is None:
                    print(f"replay: no golden bag for {path.name} in {args.golden}", file=sys.stderr)
                    return EXIT_BAG
                report.golden = rb.compare_golden(chunks, rb.read_action_chunks(gpath, typestore=store),
                                                  args.tolerance)
            reports.append(report)
            series.append((path.name, ep.actions, rb.replayed_series(chunks, ep.stamps, ep.actions.shape[1])))
    except NoNodeError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return EXIT_NO_NODE
    except BagError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return EXIT_BAG
    finally:
        rep.close()
    print(rb.format_table(reports))
    plot_path = args.plot or ((args.out / "replay.png") if args.out is not None else None)
    if plot_path is not None:
        print(f"plot: {rb.plot(reports, series, plot_path)}")
    bad = [r.name for r in reports if r.regression]
    if bad:
        print(f"REGRESSION in {bad} (mode {args.mode}, tolerance {args.tolerance:g})")
        return EXIT_REGRESSION
    print(f"ok: {len(reports)} episode(s), {sum(r.answered for r in reports)} frames answered")
    return EXIT_OK
