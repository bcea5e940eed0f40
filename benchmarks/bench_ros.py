"""ROS benchmark of the policy node: separate processes on loopback DDS, one run, medians/percentiles.

    python benchmarks/bench_ros.py [--model-dir DIR] [--out artifacts/bench_ros]

The policy node runs as its console script in its own process; this process plays the
robot (camera, instruction, joint states, service calls) through rclpy. Measured:

0. Reference points from the same run: a minimal rclpy echo node (Image in -> ActionChunk
   out in the callback, its own process) on the same path, and the node's per-frame CPU
   work without inference timed in one thread. They separate what the node costs from
   what DDS, rclpy and the machine's scheduling cost.
1. ROS overhead = camera publish -> ActionChunk received, minus the runtime's own
   inference time (ActionChunk.inference_time), p50 at 96x96 and 640x480 rgb8
   (frames sent at 10 Hz so nothing queues). Goals: <= 3 ms and <= 6 ms.
2. Delivery: 640x480 rgb8 at 30 Hz; frames that reached the node (its frames_in counter
   on /diagnostics) / frames sent. Goal >= 99.5 %.
3. switch_adapter round trip (service call -> reply) p50/p99 while a 30 Hz 96x96 stream runs.
   Goal p99 <= 5 ms.
4. Camera faster than inference (60 Hz, or 1.25 / inference time when inference is quicker
   than a 60 Hz period, at most 500 Hz): action age (received - published, same clock) p99
   vs the inference time. Goal <= 2x. The node's own publish - stamp age is reported too.
5. Two cameras vs one (section ``multicamera``, issue 14): two default-size random models, one
   with camera ``front``, one with ``front`` + ``wrist`` (robot contracts naming them), served by two
   node processes started together; 640x480 rgb8 frame sets (both frames of a set with one stamp,
   plus a JointState) at 30 Hz, in interleaved rounds (1, 2, 1, 2, ...) so machine load falls on
   both alike. (a) ROS overhead p50/p99 = first frame of the set published -> ActionChunk received,
   minus ActionChunk.inference_time, and the 2-camera / 1-camera p50 ratio (goal <= 1.5);
   (b) frame sets served (the node's actions_out, from ~/get_status) / sets sent (goal >= 99.5 %);
   (c) pairing = the node's own pairing_p50_ms (last frame of a set enters the camera callback ->
   set handed to the inference worker; goal <= 0.5 ms), plus FrameSetPairer.add timed in this
   process on the same Image messages as a reference.

``--sections`` runs a subset (e.g. ``--sections multicamera``); the results of the sections not run
are kept from the previous run in ``--out`` (``bench_ros_samples.json``), so the table, JSON and PNG
always show every section, each with the time it was measured.

Writes a table to stdout, ``bench_ros.json`` and ``bench_ros.png`` under ``--out``.
Without ``--model-dir`` it uses the bundled models/default; when that does not exist it
exports a default-size model with random weights into a temp dir and says so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vla_adapter_ros import dds_env  # noqa: E402
from vla_adapter_ros.ros.harness import NodeProcess, node_command  # noqa: E402
from vla_adapter_ros.ros.params import default_model_dir  # noqa: E402

NODE = "vla_adapter_bench"
GOALS = {"overhead_96_p50_ms": 3.0, "overhead_640_p50_ms": 6.0, "delivery_640_30hz": 0.995,
         "switch_p99_ms": 5.0, "age_p99_over_inference": 2.0,
         "multicamera_overhead_p50_ratio": 1.5, "multicamera_sets_served": 0.995, "pairing_p50_ms": 0.5}
SECTIONS = ("baseline", "node", "slow", "multicamera")
# Which result keys each section writes (a partial run replaces these and keeps the others).
SECTION_KEYS = {"baseline": ("baseline",), "node": ("adapters", "overhead_96", "overhead_640", "delivery_640_30hz",
                                                    "switch", "fast_camera", "node_cpu_work"),
                "slow": ("slow_policy",), "multicamera": ("multicamera",)}
MC_CAMERAS = {1: ("front",), 2: ("front", "wrist")}  # camera sets of the multicamera section


def mc_prefix(n: int) -> str:
    """Topic prefix of the n-camera model's robot (its contract, node parameters and the robot side)."""
    return f"/bench_mc{n}"


def mc_node(n: int) -> str:
    return f"vla_adapter_bench_mc{n}"


# --- the model ----------------------------------------------------------------------
# A policy clearly slower than a 60 Hz camera (~50 ms on one CPU thread; real VLAs take 50-200 ms): what a large
# VLA on a robot looks like relative to its camera, for the action-age scenario.
HEAVY_MODEL = {"d_model": 384, "n_heads": 8, "patch_size": 8, "vision_layers": 6, "fusion_layers": 4}


def export_random_default_model(root: Path, adapters: tuple[str, ...] = ("pick", "place", "open"),
                                heavy: bool = False, cameras: tuple[str, ...] = ()) -> Path:
    """Default (or HEAVY_MODEL) ModelConfig with random weights and adapters, through the real exporter.
    ``cameras``: a model with these views and a robot contract naming them (topics under
    mc_prefix(len(cameras))), saved beside the checkpoint so the exporter puts it in the manifest."""
    from vla_adapter_ros.contract import RobotContract
    from vla_adapter_ros.core.checkpoint import CONTRACT_NAME
    from vla_adapter_ros.core.config import AdapterConfig, ModelConfig
    from vla_adapter_ros.core.export import export_model, make_random_checkpoint

    config = ModelConfig(**HEAVY_MODEL) if heavy else ModelConfig(**({"cameras": cameras} if cameras else {}))
    name = "random_heavy" if heavy else f"random_default_{len(cameras)}cam" if cameras else "random_default"
    checkpoint, adapter_dirs = make_random_checkpoint(
        root / f"src_{name}", config, {n: AdapterConfig(task=f"random/{n}") for n in adapters}, seed=0)
    if cameras:
        contract = RobotContract.from_dict(mc_contract(cameras, config.proprio_names, config.action_names))
        (checkpoint / CONTRACT_NAME).write_text(contract.to_yaml())
    return export_model(checkpoint, adapter_dirs, root / name, log=lambda _msg: None).out


def mc_contract(cameras: tuple[str, ...], proprio: tuple[str, ...], actions: tuple[str, ...]) -> dict[str, Any]:
    """The benchmark robot with ``cameras``: 640x480 rgb8 Image topics (best effort, depth 1, like a
    camera driver), JointState positions, end-effector deltas + gripper; both views stamped together."""
    prefix = mc_prefix(len(cameras))
    return {"robot": f"bench_{len(cameras)}cam",
            "cameras": {c: {"topic": f"{prefix}/camera/{c}/image_raw", "type": "Image",
                            "qos": {"reliability": "best_effort", "depth": 1}, "size": [480, 640]} for c in cameras},
            "reference_camera": cameras[0], "max_camera_skew": 0.005,
            "state": {"topic": f"{prefix}/joint_states", "type": "JointState",
                      "fields": [f"position.{n}" for n in proprio], "max_skew": 0.001},
            "actions": [{"name": n, "kind": "gripper" if n == "gripper" else "ee_delta", "low": -1.0, "high": 1.0}
                        for n in actions]}


def resolve_model(model_dir: str | None, tmp: Path) -> tuple[Path, str]:
    if model_dir:
        return Path(model_dir), "given"
    bundled = default_model_dir()
    if (bundled / "manifest.json").is_file():
        return bundled, "bundled models/default"
    print("no bundled models/default yet: exporting a default-size model with RANDOM weights ...", flush=True)
    t0 = time.perf_counter()
    # In a child process: torch (and its thread pools) never live in the process that measures.
    subprocess.run([sys.executable, __file__, "--export-random", str(tmp)], check=True)
    path = tmp / "random_default"
    return path, f"default-size ModelConfig with RANDOM weights, exported in {time.perf_counter() - t0:.0f} s " \
                 "(no bundled models/default yet)"


# --- the robot side -------------------------------------------------------------------
class Robot:
    """The robot's side of the benchmark: camera (+ joint states stamped with each frame), instruction,
    action and echo subscribers, service clients; a RosSession (vla_adapter_ros.ros.harness)."""

    def __init__(self) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import String

        from vla_adapter_interfaces.msg import ActionChunk
        from vla_adapter_ros.ros import qos
        from vla_adapter_ros.ros.harness import RosSession

        self.session = RosSession("vla_bench_robot")
        self.node = self.session.node
        # A camera driver publishes best effort, like the node's subscription.
        self.camera = self.node.create_publisher(
            Image, "/camera/image_raw", QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
        self.instruction = self.node.create_publisher(String, "/vla/instruction", qos.instruction_qos())
        self.joints = self.node.create_publisher(JointState, "/joint_states", 10)
        self.joint_names: list[str] = []  # set once the model is known: then every frame carries its JointState
        self._lock = threading.Lock()
        self.sent: dict[int, float] = {}  # stamp ns -> monotonic publish time
        self.received: list[tuple[float, int, float, str]] = []  # (monotonic, stamp ns, inference s, adapter)
        self.session.subscribe(ActionChunk, "/vla/action", self._on_action, qos.actions_qos(100))
        self.echoes: list[tuple[float, int]] = []
        self.session.subscribe(ActionChunk, "/vla/action_echo", self._on_echo, qos.actions_qos(100))

    def _on_action(self, msg: Any) -> None:
        t = time.monotonic()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self._lock:
            self.received.append((t, stamp, float(msg.inference_time), msg.adapter))

    def _on_echo(self, msg: Any) -> None:
        t = time.monotonic()
        with self._lock:
            self.echoes.append((t, msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec))

    def image(self, h: int, w: int) -> Any:
        from sensor_msgs.msg import Image

        rng = np.random.default_rng(h * w)
        return Image(height=h, width=w, encoding="rgb8", step=w * 3,
                     data=rng.integers(0, 256, (h, w, 3), dtype=np.uint8).tobytes())

    def publish(self, msg: Any) -> int:
        from sensor_msgs.msg import JointState

        now = self.node.get_clock().now().nanoseconds
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
        with self._lock:
            self.sent[now] = time.monotonic()
        if self.joint_names:
            self.joints.publish(JointState(header=msg.header, name=self.joint_names,
                                           position=[0.1] * len(self.joint_names)))
        self.camera.publish(msg)
        return now

    def stream(self, msg: Any, hz: float, n: int) -> list[int]:
        period, stamps = 1.0 / hz, []
        start = time.monotonic()
        for i in range(n):
            delay = start + i * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing: the camera rate
            stamps.append(self.publish(msg))
        return stamps

    def results_for(self, stamps: list[int], timeout: float = 5.0) -> list[tuple[float, int, float, str]]:
        """The answers to ``stamps``: waits until each is answered or (skipped frames) ``timeout`` passes."""
        wanted = set(stamps)

        def answered() -> set[int]:
            with self._lock:
                return {r[1] for r in self.received} & wanted

        try:
            self.session.wait_for(lambda: answered() == wanted, timeout, "")
        except TimeoutError:
            pass  # frames skipped by the node (newest frame wins) or lost: counted by the caller
        with self._lock:
            return [r for r in self.received if r[1] in wanted]

    def node_status(self, timeout: float = 10.0, node: str = NODE) -> dict[str, str]:
        """The policy node's status now (its ~/get_status service)."""
        from vla_adapter_interfaces.srv import GetStatus
        from vla_adapter_ros.ros.conversions import diagnostic_values

        return diagnostic_values(self.session.call(GetStatus, f"/{node}/get_status", GetStatus.Request(),
                                                   timeout).status)

    def frames_in(self) -> int:
        return int(self.node_status()["frames_in"])

    def call(self, client: Any, request: Any, timeout: float = 5.0, resend: bool = False) -> tuple[Any, float]:
        """Reply and round trip. ``resend``: send again every second until a reply, for a
        client's first (idempotent) call, whose reply DDS can drop right after discovery
        (see vla_adapter_ros.ros.harness.await_reply); measured calls are sent once."""
        from vla_adapter_ros.ros.harness import await_reply

        t0 = time.perf_counter()
        done = await_reply(client, request, timeout, resend_s=1.0 if resend else 0.0)
        if done is None:
            raise RuntimeError("service call timed out")
        return done.result(), time.perf_counter() - t0

    def close(self) -> None:
        self.session.close()


# --- measurements ---------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def overhead(robot: Robot, h: int, w: int, n: int) -> dict[str, Any]:
    stamps = robot.stream(robot.image(h, w), hz=10.0, n=n)
    got = robot.results_for(stamps)
    with robot._lock:
        sent = dict(robot.sent)
    e2e = [(t - sent[s]) * 1e3 for t, s, _, _ in got]
    inf = [i * 1e3 for _, _, i, _ in got]
    ovh = [a - b for a, b in zip(e2e, inf, strict=True)]
    node = robot.node_status()  # the node's own view: frame received -> action published (window = n frames)
    return {"size": f"{w}x{h}", "frames": n, "actions": len(got), "e2e_p50_ms": pct(e2e, 50),
            "node_latency_p50_ms": float(node["latency_p50_ms"]), "node_inference_p50_ms": float(node["inference_p50_ms"]),
            "inference_p50_ms": pct(inf, 50), "overhead_p50_ms": pct(ovh, 50), "overhead_p95_ms": pct(ovh, 95),
            "overhead_ms": ovh}


def delivery(robot: Robot, n: int) -> dict[str, Any]:
    before = robot.frames_in()
    stamps = robot.stream(robot.image(480, 640), hz=30.0, n=n)
    got = robot.results_for(stamps)  # answered, or given up on after 5 s (lost or skipped)
    after = robot.frames_in()
    return {"frames_sent": n, "frames_reached_node": after - before, "ratio": (after - before) / n,
            "actions": len(got)}


def switching(robot: Robot, adapters: list[str], calls: int) -> dict[str, Any]:
    from vla_adapter_interfaces.srv import SwitchAdapter

    client = robot.session.client(SwitchAdapter, f"/{NODE}/switch_adapter")
    assert client.wait_for_service(timeout_sec=10)
    stop = threading.Event()
    msg = robot.image(96, 96)

    def camera() -> None:
        while not stop.wait(1 / 30):  # pacing: a 30 Hz camera
            robot.publish(msg)

    robot.call(client, SwitchAdapter.Request(adapter=adapters[-1]), timeout=10, resend=True)  # warm, unmeasured
    cam = threading.Thread(target=camera, daemon=True)
    cam.start()
    rtt, failures = [], 0
    try:
        for i in range(calls):
            reply, dt = robot.call(client, SwitchAdapter.Request(adapter=adapters[i % len(adapters)]))
            failures += not reply.success
            rtt.append(dt * 1e3)
            stop.wait(0.01)  # pacing: calls 10 ms apart
    finally:
        stop.set()
        cam.join()
    return {"calls": calls, "failures": failures, "p50_ms": pct(rtt, 50), "p99_ms": pct(rtt, 99), "rtt_ms": rtt}


def fast_camera(robot: Robot, inference_ms: float, seconds: float) -> dict[str, Any]:
    """Camera faster than inference: age = action received - frame published (same clock)."""
    hz = min(500.0, max(60.0, 1.25e3 / max(inference_ms, 1e-3)))  # camera period < inference time
    n = int(hz * seconds)
    stamps = robot.stream(robot.image(96, 96), hz=hz, n=n)
    got = robot.results_for(stamps)
    with robot._lock:
        sent = dict(robot.sent)
    age = [(t - sent[s]) * 1e3 for t, s, _, _ in got]
    inf = [i * 1e3 for _, _, i, _ in got]
    node = robot.node_status()  # publish - stamp inside the node, last latency_window actions
    return {"camera_hz": hz, "frames": n, "actions": len(got), "inference_p50_ms": pct(inf, 50),
            "camera_faster_than_inference": 1e3 / hz < pct(inf, 50),
            "age_p50_ms": pct(age, 50), "age_p99_ms": pct(age, 99),
            "node_age_p50_ms": float(node["action_age_p50_ms"]), "node_age_p95_ms": float(node["action_age_p95_ms"]),
            "age_p99_over_inference": pct(age, 99) / max(pct(inf, 50), 1e-9), "age_ms": age}


def node_cpu_work(robot: Robot, n: int = 200) -> dict[str, float]:
    """What the node itself does per frame besides inference, timed in one thread (no scheduling):
    Image -> RGB conversion, ActionChunk construction, publish, clock + stats."""
    from std_msgs.msg import Header

    from vla_adapter_interfaces.msg import ActionChunk
    from vla_adapter_ros.ros import conversions, qos
    from vla_adapter_ros.serving.stats import ServingStats

    pub = robot.node.create_publisher(ActionChunk, "/vla_bench/cpu_work", qos.actions_qos())
    stats, actions, out = ServingStats(), np.zeros((4, 4), np.float32), {}
    for h, w in ((96, 96), (480, 640)):
        msg = robot.image(h, w)
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            conversions.image_msg_to_rgb(msg)
            pub.publish(conversions.action_chunk_msg(
                Header(), actions, adapter="a", instruction="x", action_names=["a", "b", "c", "d"], dt=0.1,
                sequence=i, inference_time=0.0, execution_provider="CPUExecutionProvider"))
            robot.node.get_clock().now()
            stats.record_output(0.0, 0.0, 0.0)
            times.append((time.perf_counter() - t0) * 1e3)
        out[str(h)] = pct(times, 50)
    robot.node.destroy_publisher(pub)
    return {"96_p50_ms": out["96"], "640_p50_ms": out["480"]}


# --- baseline: the cheapest possible rclpy node on the same path ------------------------
def echo_node() -> int:
    """Image in -> empty ActionChunk (same header) out, in the callback: the floor any rclpy node pays."""
    from rclpy.node import Node
    from sensor_msgs.msg import Image

    from vla_adapter_interfaces.msg import ActionChunk
    from vla_adapter_ros.ros import qos
    from vla_adapter_ros.ros.entry import run_node

    class Echo(Node):
        def __init__(self) -> None:
            super().__init__("vla_adapter_bench_echo")
            pub = self.create_publisher(ActionChunk, "/vla/action_echo", qos.actions_qos())
            self.create_subscription(Image, "/camera/image_raw", lambda m: pub.publish(ActionChunk(header=m.header)),
                                     qos.camera_qos())

    return run_node(Echo, "vla_adapter_bench_echo", args=[])


def baseline(robot: Robot, h: int, w: int, n: int) -> dict[str, Any]:
    stamps = robot.stream(robot.image(h, w), hz=10.0, n=n)
    wanted = set(stamps)

    def echoed() -> bool:
        with robot._lock:
            return wanted <= {s for _, s in robot.echoes}

    try:
        robot.session.wait_for(echoed, 5.0, "")
    except TimeoutError:
        pass  # best effort: lost echoes are counted
    with robot._lock:
        sent, echoes = dict(robot.sent), [r for r in robot.echoes if r[1] in set(stamps)]
    rtt = [(t - sent[s]) * 1e3 for t, s in echoes]
    return {"size": f"{w}x{h}", "frames": n, "echoes": len(echoes), "p50_ms": pct(rtt, 50), "p95_ms": pct(rtt, 95)}


# --- two cameras vs one (section multicamera) ------------------------------------------------
class CameraRig:
    """The robot side of one n-camera model: a best-effort Image publisher per camera (each with its own
    640x480 picture), the JointState stamped with each set, and the node's ActionChunks."""

    def __init__(self, robot: Robot, n: int, proprio: tuple[str, ...]) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image, JointState

        from vla_adapter_interfaces.msg import ActionChunk
        from vla_adapter_ros.ros import qos

        self.robot, self.n, self.node_name, self.proprio = robot, n, mc_node(n), list(proprio)
        prefix, node = mc_prefix(n), robot.node
        best_effort = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.cameras = {c: node.create_publisher(Image, f"{prefix}/camera/{c}/image_raw", best_effort)
                        for c in MC_CAMERAS[n]}
        self.frames = {}
        for i, c in enumerate(MC_CAMERAS[n]):
            frame = robot.image(480, 640)
            frame.data = np.random.default_rng(100 + i).integers(0, 256, 480 * 640 * 3, dtype=np.uint8).tobytes()
            frame.header.frame_id = c
            self.frames[c] = frame
        self.joints = node.create_publisher(JointState, f"{prefix}/joint_states", 10)
        self._state = JointState(name=self.proprio, position=[0.1] * len(self.proprio))
        self._lock = threading.Lock()
        self.sent: dict[int, tuple[float, float]] = {}  # stamp -> (first frame published, last frame published)
        self.received: dict[int, tuple[float, float]] = {}  # stamp -> (received, inference s)
        robot.session.subscribe(ActionChunk, f"{prefix}/vla/action", self._on_action, qos.actions_qos(100))

    def _on_action(self, msg: Any) -> None:
        t = time.monotonic()
        with self._lock:
            self.received[msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec] = (t, msg.inference_time)

    def publish(self) -> int:
        """One frame set: the state, then every camera's frame, all with one header stamp."""
        now = self.robot.node.get_clock().now().nanoseconds
        sec, nanosec = divmod(now, 1_000_000_000)
        self._state.header.stamp.sec, self._state.header.stamp.nanosec = sec, nanosec
        t0 = time.monotonic()
        self.joints.publish(self._state)
        for c, pub in self.cameras.items():
            frame = self.frames[c]
            frame.header.stamp.sec, frame.header.stamp.nanosec = sec, nanosec
            pub.publish(frame)
        with self._lock:
            self.sent[now] = (t0, time.monotonic())
        return now

    def stream(self, hz: float, n: int) -> list[int]:
        period, stamps = 1.0 / hz, []
        start = time.monotonic()
        for i in range(n):
            delay = start + i * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing: the cameras' rate
            stamps.append(self.publish())
        return stamps

    def answered(self, stamps: list[int], timeout: float = 5.0) -> dict[int, tuple[float, float]]:
        """The answers to ``stamps``: waits until each is answered or (lost, skipped sets) ``timeout`` passes."""
        wanted = set(stamps)

        def done() -> bool:
            with self._lock:
                return wanted <= self.received.keys()

        try:
            self.robot.session.wait_for(done, timeout, "")
        except TimeoutError:
            pass  # sets lost or not served: counted by the caller
        with self._lock:
            return {s: self.received[s] for s in stamps if s in self.received}

    def status(self) -> dict[str, str]:
        return self.robot.node_status(node=self.node_name)

    def until_serving(self) -> None:
        """Lifecycle 'active', every camera and the state matched, a first set answered, 20 sets of warm-up."""
        from vla_adapter_ros.ros.harness import send_until, wait_for_lifecycle_state

        wait_for_lifecycle_state(self.robot.session, self.node_name, "active", 120)
        for pub in (*self.cameras.values(), self.joints):
            self.robot.session.wait_for_subscribers(pub, 30)
        send_until(self.publish, lambda s: bool(self.answered([s], 0.0)), self.robot.session, timeout=60,
                   interval=0.5, what=f"the {self.n}-camera node's first frame set")
        self.answered(self.stream(30.0, 20))


def pairing_in_process(robot: Robot, n: int = 2000) -> dict[str, float]:
    """Reference for (c): FrameSetPairer.add of the frame that completes a two-camera set, in this
    process, on the same deserialised 640x480 Image messages (no DDS, no callback, no hand-over)."""
    from vla_adapter_ros.pairing import FrameSetPairer

    pairer: FrameSetPairer[Any] = FrameSetPairer(MC_CAMERAS[2], 0.005)
    front, wrist = robot.image(480, 640), robot.image(480, 640)
    first, last = [], []
    for i in range(n):
        stamp = 1_000_000_000 + i * 33_333_333
        t0 = time.perf_counter()
        pairer.add("front", stamp, front)
        t1 = time.perf_counter()
        frame_set = pairer.add("wrist", stamp, wrist)
        t2 = time.perf_counter()
        assert frame_set is not None
        first.append((t1 - t0) * 1e3)
        last.append((t2 - t1) * 1e3)
    return {"sets": n, "first_frame_p50_ms": pct(first, 50), "completing_frame_p50_ms": pct(last, 50),
            "completing_frame_p99_ms": pct(last, 99)}


def multicamera(robot: Robot, models: dict[int, Path], sets: int, rounds: int) -> dict[str, Any]:
    """Two cameras vs one, both nodes up, measured in interleaved rounds of sets/rounds frame sets at 30 Hz."""
    from std_msgs.msg import String

    from vla_adapter_ros.runtime.manifest import Manifest

    rigs = {n: CameraRig(robot, n, tuple(Manifest.load(models[n]).proprio_names)) for n in sorted(models)}
    robot.session.wait_for(lambda: robot.instruction.get_subscription_count() >= len(rigs), 60,
                           "both nodes on the instruction topic")
    robot.instruction.publish(String(data="open the drawer"))  # reliable + transient local: both nodes get it
    for rig in rigs.values():
        rig.until_serving()
    per_round = max(1, sets // rounds)
    out: dict[str, Any] = {"sets_per_config": per_round * rounds, "rounds": rounds, "hz": 30.0, "size": "640x480",
                           "load_before": os.getloadavg()[0]}
    acc = {n: {"overhead_ms": [], "overhead_last_ms": [], "e2e_ms": [], "inference_ms": [], "sent": 0,
               "answered": 0, "served": 0, "frames_in": 0, "unpaired": 0, "skipped": 0} for n in rigs}
    round_p50: dict[int, list[float]] = {n: [] for n in rigs}
    # Counters once around all rounds (a node's counters only move while its own cameras stream).
    before = {n: rig.status() for n, rig in rigs.items()}
    for _ in range(rounds):
        for n, rig in rigs.items():
            stamps = rig.stream(30.0, per_round)
            got = rig.answered(stamps, timeout=2.0)
            a = acc[n]
            with rig._lock:
                sent = {s: rig.sent[s] for s in stamps}
            round_p50[n].append(pct([(t - sent[s][0] - inf) * 1e3 for s, (t, inf) in got.items()], 50))
            for s, (t, inf) in got.items():
                a["e2e_ms"].append((t - sent[s][0]) * 1e3)
                a["inference_ms"].append(inf * 1e3)
                a["overhead_ms"].append((t - sent[s][0] - inf) * 1e3)
                a["overhead_last_ms"].append((t - sent[s][1] - inf) * 1e3)
            a["sent"] += len(stamps)
            a["answered"] += len(got)
    for n, rig in rigs.items():
        after, a = rig.status(), acc[n]
        for key, counter in (("served", "actions_out"), ("frames_in", "frames_in"), ("unpaired", "unpaired_frames"),
                             ("skipped", "skipped_frames")):
            a[key] = int(after[counter]) - int(before[n][counter])
        a["pairing_p50_ms"], a["pairing_p95_ms"] = float(after["pairing_p50_ms"]), float(after["pairing_p95_ms"])
        a["node_inference_p50_ms"] = float(after["inference_p50_ms"])
    for n, a in acc.items():
        a.update({"cameras": list(MC_CAMERAS[n]), "overhead_p50_ms": pct(a["overhead_ms"], 50),
                  "overhead_p99_ms": pct(a["overhead_ms"], 99), "overhead_last_p50_ms": pct(a["overhead_last_ms"], 50),
                  "e2e_p50_ms": pct(a["e2e_ms"], 50), "inference_p50_ms": pct(a["inference_ms"], 50),
                  "served_ratio": a["served"] / a["sent"]})
        out[f"{n}cam"] = a
    out["overhead_p50_ratio"] = acc[2]["overhead_p50_ms"] / acc[1]["overhead_p50_ms"]
    # each round's 2-camera p50 over the 1-camera p50 of the same round: load bursts that hit one round show
    out["round_overhead_p50_ms"] = {f"{n}cam": v for n, v in round_p50.items()}
    out["round_ratios"] = [b / a for a, b in zip(round_p50[1], round_p50[2], strict=True)]
    out["median_round_ratio"] = float(np.median(out["round_ratios"]))
    out["pairing_in_process"] = pairing_in_process(robot)
    out["load_after"] = os.getloadavg()[0]
    return out


def run_multicamera(robot: Robot, args: argparse.Namespace, tmp: Path, params: dict[str, Any],
                    out: Path) -> dict[str, Any]:
    """Export the 1- and 2-camera default-size random models (child processes), start both nodes, measure."""
    models = {}
    for n, cams in MC_CAMERAS.items():
        print(f"multicamera: exporting a default-size random model with cameras {list(cams)} ...", flush=True)
        subprocess.run([sys.executable, __file__, "--export-random", str(tmp), "--cameras", ",".join(cams)],
                       check=True)
        models[n] = tmp / f"random_default_{n}cam"
    mc_params = {**params, "latency_window": max(10, args.multicamera_sets)}
    with NodeProcess(node_command("vla_adapter_node", mc_node(1), {
            **mc_params, "model_dir": str(models[1]), "action_topic": f"{mc_prefix(1)}/vla/action"}),
            os.environ, out / "node_mc1.log"), \
         NodeProcess(node_command("vla_adapter_node", mc_node(2), {
            **mc_params, "model_dir": str(models[2]), "action_topic": f"{mc_prefix(2)}/vla/action"}),
            os.environ, out / "node_mc2.log"):
        res = multicamera(robot, models, args.multicamera_sets, args.multicamera_rounds)
    res["model"] = "default-size ModelConfig with RANDOM weights, cameras " + \
        " vs ".join(str(list(c)) for c in MC_CAMERAS.values())
    return res


# --- main -------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", help="exported model directory (default: bundled, else a random one)")
    ap.add_argument("--out", default=str(ROOT / "artifacts" / "bench_ros"))
    ap.add_argument("--providers", default="cpu")
    ap.add_argument("--intra-op-threads", type=int, default=1, help="node parameter intra_op_threads")
    ap.add_argument("--frames", type=int, default=100, help="frames per overhead measurement")
    ap.add_argument("--delivery-frames", type=int, default=300)
    ap.add_argument("--switches", type=int, default=200)
    ap.add_argument("--echo-node", action="store_true", help=argparse.SUPPRESS)  # the baseline process
    ap.add_argument("--export-random", metavar="DIR", help=argparse.SUPPRESS)  # the export child process
    ap.add_argument("--heavy", action="store_true", help=argparse.SUPPRESS)  # with --export-random
    ap.add_argument("--cameras", default="", help=argparse.SUPPRESS)  # with --export-random: front,wrist
    ap.add_argument("--skip-slow-policy", action="store_true",
                    help="skip the slow-policy action-age scenario (exports a heavy random model, ~40 s)")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help=f"comma-separated subset of {','.join(SECTIONS)} (default all); the other sections' "
                         "results are kept from the previous run in --out")
    ap.add_argument("--multicamera-sets", type=int, default=300, help="frame sets per camera count (>= 300)")
    ap.add_argument("--multicamera-rounds", type=int, default=30,
                    help="interleaved rounds (1 camera, 2 cameras, 1, 2, ...) the sets are split into")
    args = ap.parse_args(argv)
    if args.echo_node:
        return echo_node()
    if args.export_random:
        export_random_default_model(Path(args.export_random), heavy=args.heavy,
                                    cameras=tuple(c for c in args.cameras.split(",") if c))
        return 0
    sections = [x.strip() for x in args.sections.split(",") if x.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        ap.error(f"--sections: unknown {unknown}; choose from {list(SECTIONS)}")
    if args.skip_slow_policy and "slow" in sections:
        sections.remove("slow")
    lease = dds_env.lease_domain(7)  # held until this process exits
    os.environ.update(dds_env.localhost_env(lease.domain_id))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if "node" in sections or "slow" in sections:
            model_dir, model_note = resolve_model(args.model_dir, Path(tmp))
            print(f"model: {model_dir} ({model_note})", flush=True)
            args.model_dir_resolved = model_dir
            res["model"] = {"dir": str(model_dir), "note": model_note}
        robot = Robot()
        try:
            load = os.getloadavg()
            spans: dict[str, dict[str, Any]] = {}
            params = node_parameters(args)
            if "baseline" in sections:
                with span(spans, "baseline"), NodeProcess([sys.executable, __file__, "--echo-node"], os.environ,
                                                          out / "echo.log"):
                    res["baseline"] = run_baseline(robot, args)
            if "node" in sections:
                with span(spans, "node"), NodeProcess(node_command(
                        "vla_adapter_node", NODE, {**params, "model_dir": str(model_dir)}), os.environ, out / "node.log"):
                    res.update(run_all(robot, args))
            if "multicamera" in sections:
                with span(spans, "multicamera"):
                    res["multicamera"] = run_multicamera(robot, args, Path(tmp), params, out)
            if "slow" in sections:
                print("slow-policy scenario: exporting a heavy random model ...", flush=True)
                subprocess.run([sys.executable, __file__, "--export-random", tmp, "--heavy"], check=True)
                heavy_dir = Path(tmp) / "random_heavy"
                with span(spans, "slow"), NodeProcess(node_command(
                        "vla_adapter_node", NODE, {**params, "model_dir": str(heavy_dir)}), os.environ,
                        out / "node_slow.log"):
                    res["slow_policy"] = run_slow_policy(robot, heavy_dir)
        finally:
            robot.close()
    machine = {"cpu_count": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
               "loadavg_1min_at_start": load[0], "loadavg_1min_at_end": os.getloadavg()[0],
               "measured_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "sections": sections}
    res["machine"] = machine
    report(merge_previous(res, sections, spans, out), out)
    return 0


@contextlib.contextmanager
def span(spans: dict[str, dict[str, Any]], section: str) -> Iterator[None]:
    """When a section ran and the machine's load average (1 min) before and after it."""
    start = os.getloadavg()[0]
    yield
    spans[section] = {"cpu_count": os.cpu_count(), "loadavg_1min_at_start": start,
                      "loadavg_1min_at_end": os.getloadavg()[0],
                      "measured_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}


def merge_previous(res: dict[str, Any], sections: list[str], spans: dict[str, dict[str, Any]],
                   out: Path) -> dict[str, Any]:
    """This run's sections over the previous run's (``bench_ros_samples.json`` in ``out``, samples included):
    a partial run keeps the other sections' results, each section with the machine state it was measured in."""
    samples = out / "bench_ros_samples.json"
    previous = json.loads(samples.read_text()) if samples.is_file() else {}
    merged = {k: v for k, v in previous.items() if k != "machine"}
    runs = dict(previous.get("machine_per_section", {}))
    for section in sections:
        for key in SECTION_KEYS[section]:
            merged.pop(key, None)
        runs[section] = spans.get(section, res["machine"])
    merged.update(res)
    merged["machine_per_section"] = runs
    samples.write_text(json.dumps(merged, default=float))
    return merged


def node_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The policy node's parameters for a benchmark run (the model directory is added per run)."""
    return {"providers": args.providers, "diagnostics_period": 0.5, "max_image_age": 5.0,
            "latency_window": max(10, args.frames), "intra_op_threads": args.intra_op_threads}


def run_baseline(robot: Robot, args: argparse.Namespace) -> dict[str, Any]:
    from vla_adapter_ros.ros.harness import send_until

    robot.session.wait_for_subscribers(robot.camera, 30)
    robot.session.wait_for_publishers("/vla/action_echo", 30)

    def echoed(stamp: int) -> bool:
        with robot._lock:
            return any(s == stamp for _, s in robot.echoes)

    # warm-up: the echo node answers (its matches are complete), then 10 more frames
    send_until(lambda: robot.publish(robot.image(96, 96)), echoed, robot.session, timeout=30, interval=0.2,
               what="the echo node")
    robot.stream(robot.image(96, 96), hz=20.0, n=10)
    n = max(30, args.frames // 2)
    return {"96": baseline(robot, 96, 96, n), "640": baseline(robot, 480, 640, n)}


def serving(robot: Robot, model_dir: Path) -> list[str]:
    """Until the node at NODE serves: lifecycle 'active', adapters listed, instruction delivered, a first
    frame answered (first-instruction embedding, caches), then a warm-up stream. Returns the adapters."""
    from std_msgs.msg import String

    from vla_adapter_interfaces.srv import ListAdapters
    from vla_adapter_ros.ros.harness import send_until, wait_for_lifecycle_state
    from vla_adapter_ros.runtime.manifest import Manifest

    wait_for_lifecycle_state(robot.session, NODE, "active", 120)
    listing = robot.session.call(ListAdapters, f"/{NODE}/list_adapters", ListAdapters.Request(), 10)
    adapters = [a.name for a in listing.adapters]
    if not adapters:
        raise RuntimeError("policy node has no adapters (configure failed? see node.log)")
    robot.joint_names = list(Manifest.load(model_dir).proprio_names)
    robot.session.wait_for_subscribers(robot.instruction, 30)
    robot.instruction.publish(String(data="open the drawer"))
    send_until(lambda: robot.publish(robot.image(96, 96)), lambda s: bool(robot.results_for([s], 0.0)),
               robot.session, timeout=60, interval=0.5, what="the first frame")
    robot.results_for(robot.stream(robot.image(96, 96), hz=20.0, n=20))
    return adapters


def run_all(robot: Robot, args: argparse.Namespace) -> dict[str, Any]:
    adapters = serving(robot, args.model_dir_resolved)
    res: dict[str, Any] = {"adapters": adapters}
    res["overhead_96"] = overhead(robot, 96, 96, args.frames)
    res["overhead_640"] = overhead(robot, 480, 640, args.frames)
    res["delivery_640_30hz"] = delivery(robot, args.delivery_frames)
    res["switch"] = switching(robot, adapters, args.switches)
    res["fast_camera"] = fast_camera(robot, res["overhead_96"]["inference_p50_ms"], seconds=6.0)
    res["node_cpu_work"] = node_cpu_work(robot)
    return res


def run_slow_policy(robot: Robot, model_dir: Path) -> dict[str, Any]:
    """A policy slower than a 60 Hz camera: no queue may build up, action age p99 <= 2 x inference."""
    serving(robot, model_dir)
    probe = overhead(robot, 96, 96, 20)
    res = fast_camera(robot, probe["inference_p50_ms"], seconds=8.0)
    res["model"] = dict(HEAVY_MODEL)
    return res


def report(res: dict[str, Any], out: Path) -> None:
    rows = node_rows(res) if "overhead_96" in res else []
    if "slow_policy" in res:
        g = res["slow_policy"]
        rows.append((f"action age p99, slow policy, {g['camera_hz']:.0f} Hz camera", f"{g['age_p99_ms']:.2f} ms",
                     f"<= 2 x inference ({2 * g['inference_p50_ms']:.2f} ms)",
                     g["age_p99_over_inference"] <= GOALS["age_p99_over_inference"] and g["camera_faster_than_inference"],
                     f"random model {g['model']}: inference p50 {g['inference_p50_ms']:.2f} ms > camera period "
                     f"{1e3 / g['camera_hz']:.2f} ms; age p50 {g['age_p50_ms']:.2f} ms, ratio p99/inference "
                     f"{g['age_p99_over_inference']:.2f}; in the node (publish - stamp) p50 {g['node_age_p50_ms']:.2f} / "
                     f"p95 {g['node_age_p95_ms']:.2f} ms; {g['actions']}/{g['frames']} frames answered (rest skipped: "
                     "newest frame wins)"))
    if "baseline" in res:
        b96, b640 = res["baseline"]["96"], res["baseline"]["640"]
        rows.insert(0, ("baseline: minimal rclpy echo, 96x96", f"{b96['p50_ms']:.2f} ms", "(reference)", True,
                        f"publish -> echo received, p95 {b96['p95_ms']:.2f} ms, {b96['echoes']}/{b96['frames']}"))
        rows.insert(1, ("baseline: minimal rclpy echo, 640x480", f"{b640['p50_ms']:.2f} ms", "(reference)", True,
                        f"publish -> echo received, p95 {b640['p95_ms']:.2f} ms, {b640['echoes']}/{b640['frames']}"))
    if "multicamera" in res:
        rows += multicamera_rows(res["multicamera"])
    if "model" in res:
        print(f"\nmodel: {res['model']['dir']} ({res['model']['note']}); adapters {res.get('adapters')}")
    for section, m in res.get("machine_per_section", {}).items():
        print(f"{section}: measured {m.get('measured_at', '?')}, {m['cpu_count']} CPUs, load average "
              f"{m['loadavg_1min_at_start']:.1f} -> {m['loadavg_1min_at_end']:.1f} (other work on the machine inflates "
              "every latency)")
    print(f"{'metric':<38} {'result':<24} {'goal':<30} {'met':<4} detail")
    for name, value, goal, ok, detail in rows:
        print(f"{name:<38} {value:<24} {goal:<30} {'yes' if ok else 'NO':<4} {detail}")
    summary = {k: {kk: vv for kk, vv in v.items() if not kk.endswith("_ms") or not isinstance(vv, list)}
               if isinstance(v, dict) else v for k, v in res.items()}
    if "multicamera" in summary:  # its per-camera-count entries hold sample lists too
        summary["multicamera"] = {k: {kk: vv for kk, vv in v.items() if not (isinstance(vv, list) and kk.endswith("_ms"))}
                                  if isinstance(v, dict) else v for k, v in summary["multicamera"].items()}
    summary["goals"] = GOALS
    summary["table"] = [{"metric": r[0], "result": r[1], "goal": r[2], "met": bool(r[3]), "detail": r[4]}
                        for r in rows]
    (out / "bench_ros.json").write_text(json.dumps(summary, indent=2))
    plot(res, out / "bench_ros.png")
    print(f"\nwrote {out / 'bench_ros.json'} and {out / 'bench_ros.png'}")


def node_rows(res: dict[str, Any]) -> list[tuple[str, str, str, bool, str]]:
    o96, o640, d, s, f = (res["overhead_96"], res["overhead_640"], res["delivery_640_30hz"], res["switch"],
                          res["fast_camera"])
    c = res["node_cpu_work"]
    return [
        ("ROS overhead p50, 96x96 rgb8", f"{o96['overhead_p50_ms']:.2f} ms", f"<= {GOALS['overhead_96_p50_ms']} ms",
         o96["overhead_p50_ms"] <= GOALS["overhead_96_p50_ms"],
         f"e2e {o96['e2e_p50_ms']:.2f} ms, inference {o96['inference_p50_ms']:.2f} ms, "
         f"in-node {o96['node_latency_p50_ms'] - o96['node_inference_p50_ms']:.2f} ms, "
         f"{o96['actions']}/{o96['frames']} answered"),
        ("ROS overhead p50, 640x480 rgb8", f"{o640['overhead_p50_ms']:.2f} ms",
         f"<= {GOALS['overhead_640_p50_ms']} ms", o640["overhead_p50_ms"] <= GOALS["overhead_640_p50_ms"],
         f"e2e {o640['e2e_p50_ms']:.2f} ms, inference {o640['inference_p50_ms']:.2f} ms, "
         f"in-node {o640['node_latency_p50_ms'] - o640['node_inference_p50_ms']:.2f} ms, "
         f"{o640['actions']}/{o640['frames']} answered"),
        ("node CPU work per frame (no inference)", f"{c['96_p50_ms']:.3f} / {c['640_p50_ms']:.3f} ms",
         "(reference)", True, "96x96 / 640x480: conversion + ActionChunk + publish + stats, one "
         "thread, no waiting: the rest of 'in-node' is thread wake-up and CPU contention"),
        ("640x480 rgb8 @30 Hz delivered", f"{100 * d['ratio']:.2f} %", ">= 99.5 %",
         d["ratio"] >= GOALS["delivery_640_30hz"],
         f"{d['frames_reached_node']}/{d['frames_sent']} reached the node, {d['actions']} actions"),
        ("switch_adapter round trip", f"p50 {s['p50_ms']:.2f} / p99 {s['p99_ms']:.2f} ms", "p99 <= 5 ms",
         s["p99_ms"] <= GOALS["switch_p99_ms"], f"{s['calls']} calls during a 30 Hz stream, {s['failures']} failed"),
        # The goal is about a camera FASTER than inference; when this model is quicker than the
        # fastest camera we can drive, the row is a reference and the slow-policy row is the test.
        (f"action age p99, camera {f['camera_hz']:.0f} Hz", f"{f['age_p99_ms']:.2f} ms",
         f"<= 2 x inference ({2 * f['inference_p50_ms']:.2f} ms)" if f["camera_faster_than_inference"]
         else "(reference: camera not faster)",
         f["age_p99_over_inference"] <= GOALS["age_p99_over_inference"] or not f["camera_faster_than_inference"],
         f"received - published; p50 {f['age_p50_ms']:.2f} ms; in the node (publish - stamp) p50 "
         f"{f['node_age_p50_ms']:.2f} / p95 {f['node_age_p95_ms']:.2f} ms; inference p50 {f['inference_p50_ms']:.2f} ms, "
         f"{f['actions']}/{f['frames']} frames answered; camera period {1e3 / f['camera_hz']:.2f} ms "
         f"{'<' if f['camera_faster_than_inference'] else '>='} inference (camera "
         f"{'IS' if f['camera_faster_than_inference'] else 'is NOT'} faster than inference)"),
    ]


def multicamera_rows(m: dict[str, Any]) -> list[tuple[str, str, str, bool, str]]:
    one, two, ref = m["1cam"], m["2cam"], m["pairing_in_process"]
    rows: list[tuple[str, str, str, bool, str]] = []
    for n, a in ((1, one), (2, two)):
        rows.append((f"{n}-camera ROS overhead p50 / p99", f"{a['overhead_p50_ms']:.2f} / {a['overhead_p99_ms']:.2f} ms",
                     "(see ratio)", True,
                     f"640x480 rgb8 x{n} @30 Hz, first frame published -> chunk received - inference; from the last "
                     f"frame published p50 {a['overhead_last_p50_ms']:.2f} ms; e2e p50 {a['e2e_p50_ms']:.2f} ms, "
                     f"inference p50 {a['inference_p50_ms']:.2f} ms, {a['answered']}/{a['sent']} answered"))
    ratio = m["overhead_p50_ratio"]
    rows.append(("2-camera / 1-camera overhead p50", f"{ratio:.2f} x", f"<= {GOALS['multicamera_overhead_p50_ratio']} x",
                 ratio <= GOALS["multicamera_overhead_p50_ratio"],
                 f"{two['overhead_p50_ms']:.2f} / {one['overhead_p50_ms']:.2f} ms; {m['rounds']} interleaved rounds, "
                 f"median of the per-round ratios "
                 f"{m['median_round_ratio']:.2f} (quartiles {pct(m['round_ratios'], 25):.2f}-"
                 f"{pct(m['round_ratios'], 75):.2f})"))
    for n, a in ((1, one), (2, two)):
        rows.append((f"{n}-camera frame sets served @30 Hz", f"{100 * a['served_ratio']:.2f} %", ">= 99.5 %",
                     a["served_ratio"] >= GOALS["multicamera_sets_served"],
                     f"{a['served']}/{a['sent']} (node actions_out via ~/get_status); frames in {a['frames_in']}/"
                     f"{a['sent'] * n}, unpaired {a['unpaired']}, skipped {a['skipped']}; inference p50 "
                     f"{a['inference_p50_ms']:.2f} ms < 33.3 ms period"))
    rows.append(("pairing p50 in the node, 2 cameras", f"{two['pairing_p50_ms']:.3f} ms",
                 f"<= {GOALS['pairing_p50_ms']} ms", two["pairing_p50_ms"] <= GOALS["pairing_p50_ms"],
                 f"node's pairing_p50_ms: last frame enters the camera callback -> set handed to the inference "
                 f"worker; p95 {two['pairing_p95_ms']:.3f} ms; 1 camera (no partner to find) p50 "
                 f"{one['pairing_p50_ms']:.3f} ms"))
    rows.append(("FrameSetPairer.add in-process", f"{ref['completing_frame_p50_ms']:.4f} ms", "(reference)", True,
                 f"the frame completing a 2-camera set, 640x480 Image msgs, no DDS; p99 "
                 f"{ref['completing_frame_p99_ms']:.4f} ms; first frame p50 {ref['first_frame_p50_ms']:.4f} ms"))
    return rows


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[Any] = []
    if "overhead_96" in res:
        panels += [plot_overhead, plot_switch]
    panels += [lambda ax, r, key=key, label=label: plot_age(ax, r[key], label)
               for key, label in (("fast_camera", "small model"), ("slow_policy", "slow policy")) if key in res]
    if "multicamera" in res:
        panels.append(lambda ax, r: plot_multicamera(ax, r["multicamera"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        panel(ax, res)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_overhead(ax: Any, res: dict[str, Any]) -> None:
    for key, label in (("overhead_96", "96x96"), ("overhead_640", "640x480")):
        ax.hist(res[key]["overhead_ms"], bins=40, alpha=0.6, label=label)
    ax.set(title="ROS overhead (e2e - inference)", xlabel="ms", ylabel="frames")
    ax.legend()


def plot_switch(ax: Any, res: dict[str, Any]) -> None:
    ax.plot(res["switch"]["rtt_ms"], ".", ms=3)
    ax.axhline(GOALS["switch_p99_ms"], color="r", lw=1, label="goal p99")
    ax.set(title="switch_adapter round trip", xlabel="call", ylabel="ms")
    ax.legend()


def plot_age(ax: Any, f: dict[str, Any], label: str) -> None:
    ax.plot(f["age_ms"], ".", ms=3)
    ax.axhline(2 * f["inference_p50_ms"], color="r", lw=1, label="2 x inference p50")
    ax.set(title=f"action age, {label}, camera {f['camera_hz']:.0f} Hz", xlabel="action", ylabel="ms")
    ax.legend()


def plot_multicamera(ax: Any, m: dict[str, Any]) -> None:
    one, two = m["1cam"], m["2cam"]
    high = max(pct(one["overhead_ms"], 95), pct(two["overhead_ms"], 95))  # the tail piles into the last bin
    bins = np.linspace(0, high, 50)
    for n, a in ((1, one), (2, two)):
        ax.hist(np.clip(a["overhead_ms"], 0, high), bins=bins, alpha=0.6,
                label=f"{n} camera{'s' if n > 1 else ''}: p50 {a['overhead_p50_ms']:.2f} ms")
    ax.axvline(GOALS["multicamera_overhead_p50_ratio"] * one["overhead_p50_ms"], color="r", lw=1,
               label="goal: 1.5 x one-camera p50")
    ax.set(title=f"ROS overhead, 2 vs 1 camera: {m['overhead_p50_ratio']:.2f} x", ylabel="frame sets",
           xlabel="ms (640x480 rgb8 @30 Hz; last bin: the tail beyond p95)")
    ax.legend(fontsize=8)


if __name__ == "__main__":
    sys.exit(main())
