"""``vla_adapter_sim``: a Meta-World task served as a robot over ROS 2.

Publishes what a robot would: the rendered camera (``sensor_msgs/Image``, rgb8) and the
proprioception (``sensor_msgs/JointState`` named ``ee_x ee_y ee_z gripper``), both stamped with
the node clock at the moment of the observation; executes received ``ActionChunk`` messages;
publishes ``EpisodeStatus`` after every step; ``~/reset`` (ResetEpisode) selects task and seed
and replies with a suggested instruction (a repeated ``request_id`` gets the same reply without a
second reset, so callers can resend safely). Rendering is MuJoCo's software/EGL renderer, headless.

Two stepping modes (parameter ``mode``):

- ``lockstep`` (default, what ``make demo`` and the tests use): after publishing frame t the
  simulator waits for the ActionChunk whose header stamp equals frame t's, executes its first
  ``actions_per_chunk`` actions (0 = the whole chunk, exactly like ``vla-adapter eval``), then
  publishes frame t+1. The episode is a pure function of (task, seed, instruction, model), so
  success through ROS equals the in-process evaluation, and the demo runs as fast as the
  policy answers instead of at a wall-clock rate. If no matching chunk arrives within
  ``action_timeout`` seconds, the arm holds still for one step (counted in
  ``stale_action_steps``) and the next frame is published.
- ``timer``: a wall-clock timer at ``control_rate`` Hz (0 = the task's 1/dt = 80 Hz) steps the
  simulator whatever happens, like a real robot. Action k of the newest chunk is executed k
  steps after the chunk arrived; a chunk older than ``max_action_age`` or exhausted means no
  fresh action: the arm holds still (zero motion, gripper command kept), counted.

The JointState of a frame is published before its image (the render in between gives it a
lead of several ms) so a policy node reads the matching proprio when the image arrives.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header

from vla_adapter_interfaces.msg import ActionChunk, EpisodeStatus
from vla_adapter_interfaces.srv import ResetEpisode
from vla_adapter_ros.core.sim.instructions import sample_instruction
from vla_adapter_ros.core.sim.metaworld_env import (
    ACTION_DIM,
    PROPRIO_NAMES,
    MetaWorldEnv,
    UnknownTaskError,
    canonical_task,
)
from vla_adapter_ros.ros import conversions, qos
from vla_adapter_ros.ros.entry import run_node

NODE_NAME = "vla_adapter_sim"
MODES = ("lockstep", "timer")


def _p(default: Any, description: str, **limits: Any) -> Any:
    return field(default=default, metadata={"description": description, **limits})


@dataclass
class SimNodeConfig:
    """Every parameter of the simulator bridge (names = field names); all fixed at start-up."""

    # --- episode ---
    task: str = _p("coffee-button-v3", "Meta-World v3 task of the first episode (reset can change it)")
    seed: int = _p(100000, "seed of the first episode (object/goal layout)", min=0, max=2**32 - 1)
    autostart: bool = _p(True, "start the first episode at start-up; false = wait for ~/reset")
    max_steps: int = _p(0, "episode step limit; 0 = the task's own (500)", min=0, max=100000)
    end_on_success: bool = _p(True, "end the episode at the first successful step (like vla-adapter eval)")
    # --- camera ---
    image_size: int = _p(96, "square camera image size in pixels", min=16, max=1024)
    camera: str = _p("corner4", "MuJoCo camera name")
    frame_id: str = _p("camera", "header.frame_id of the camera image")
    # --- stepping ---
    mode: str = _p("lockstep", "lockstep: step when the action for the last frame arrives; timer: wall clock")
    control_rate: float = _p(0.0, "timer mode: Hz; 0 = the task's 1/dt", min=0.0, max=1000.0)
    actions_per_chunk: int = _p(0, "actions executed per chunk in lockstep; 0 = the whole chunk", min=0, max=1000)
    action_timeout: float = _p(2.0, "lockstep: seconds to wait for an action before holding still one step",
                               min=0.01, max=3600.0)
    max_action_age: float = _p(0.5, "timer mode: a chunk older than this (s, by its header stamp) is stale",
                               min=0.0, max=3600.0)
    # --- topics (remappable as well) ---
    camera_topic: str = _p("/camera/image_raw", "sensor_msgs/Image output")
    proprio_topic: str = _p("/joint_states", "sensor_msgs/JointState output")
    action_topic: str = _p("/vla/action", "vla_adapter_interfaces/ActionChunk input")
    status_topic: str = _p("/vla/episode", "vla_adapter_interfaces/EpisodeStatus output")

    def __post_init__(self) -> None:
        for f in fields(self):
            value, expected = getattr(self, f.name), _TYPES[f.type]
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                setattr(self, f.name, value)
            if type(value) is not expected:
                raise ValueError(f"{f.name} must be {expected.__name__}, got {value!r} ({type(value).__name__})")
            if expected is float and not math.isfinite(value):
                raise ValueError(f"{f.name} must be finite, got {value!r}")
            lo, hi = f.metadata.get("min"), f.metadata.get("max")
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise ValueError(f"{f.name} must be in [{lo}, {hi}], got {value!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {self.mode!r}")
        try:
            self.task = canonical_task(self.task)
        except UnknownTaskError as exc:
            raise ValueError(str(exc)) from exc


_TYPES = {"str": str, "bool": bool, "int": int, "float": float}


def declare_parameters(node: Node) -> SimNodeConfig:
    """Declare every SimNodeConfig field as a read-only ROS parameter; return the validated config."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

    ros_types = {"str": ParameterType.PARAMETER_STRING, "bool": ParameterType.PARAMETER_BOOL,
                 "int": ParameterType.PARAMETER_INTEGER, "float": ParameterType.PARAMETER_DOUBLE}
    base = SimNodeConfig()
    for f in fields(SimNodeConfig):
        meta = f.metadata
        desc = ParameterDescriptor(name=f.name, type=ros_types[f.type], description=meta["description"],
                                   read_only=True)
        if "min" in meta and f.type == "int" and meta["max"] < 2**63:
            desc.integer_range = [IntegerRange(from_value=meta["min"], to_value=meta["max"], step=0)]
        elif "min" in meta and f.type == "float":
            desc.floating_point_range = [FloatingPointRange(from_value=float(meta["min"]),
                                                            to_value=float(meta["max"]), step=0.0)]
        node.declare_parameter(f.name, getattr(base, f.name), desc)
    names = [f.name for f in fields(SimNodeConfig)]
    return SimNodeConfig(**{p.name: p.value for p in node.get_parameters(names)})


def status_qos() -> QoSProfile:
    """Reliable + transient local: a late subscriber still gets the current episode status."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


class SimNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.config = cfg = declare_parameters(self)  # ValueError on a bad value: main() reports it
        self.env: MetaWorldEnv | None = None
        self.episode = 0
        self.success = False
        self.done = True
        self.stale_steps = 0
        self.unmatched_actions = 0
        self._gripper = 0.0  # last gripper command: holding still keeps the grip
        self._first_obs: dict[str, Any] | None = None  # lockstep: frame 0, held back until matched
        self._pending_stamp: int | None = None  # lockstep: stamp of the frame awaiting its action
        self._published_at = 0.0
        self._chunk: np.ndarray | None = None  # timer mode: newest chunk, its stamp and steps used
        self._chunk_stamp = 0
        self._chunk_used = 0
        self._last_reset: tuple[str, tuple[bool, str, str]] | None = None  # request_id -> reply fields

        self.image_pub = self.create_publisher(Image, cfg.camera_topic, qos.camera_qos("reliable", 1))
        self.joint_pub = self.create_publisher(JointState, cfg.proprio_topic, qos.proprio_qos())
        self.status_pub = self.create_publisher(EpisodeStatus, cfg.status_topic, status_qos())
        self.create_subscription(ActionChunk, cfg.action_topic, self.on_action_chunk, qos.actions_qos())
        self.create_service(ResetEpisode, "~/reset", self.on_reset)
        if cfg.mode == "timer":
            self.create_timer(1.0 / (cfg.control_rate or 1.0 / self._dt(cfg.task)), self.on_control_timer)
        else:
            self.create_timer(0.02, self.on_lockstep_watchdog)
        if cfg.autostart:
            self.start_episode(cfg.task, cfg.seed)

    # --- episodes -----------------------------------------------------------------
    @staticmethod
    def _dt(task: str) -> float:
        with MetaWorldEnv(task, image_size=16) as env:
            return env.dt

    def start_episode(self, task: str, seed: int) -> None:
        """Reset to ``task``/``seed`` (a new env when the task changes) and publish the first frame."""
        cfg = self.config
        if self.env is None or self.env.task != task:
            if self.env is not None:
                self.env.close()
            self.env = None  # a failing constructor must not leave the closed env behind
            self.env = MetaWorldEnv(task, image_size=cfg.image_size, camera=cfg.camera,
                                    max_steps=cfg.max_steps or None)
        self.episode += 1
        self.success, self.done, self.stale_steps, self._gripper = False, False, 0, 0.0
        self._pending_stamp, self._chunk, self._first_obs = None, None, None
        obs = self.env.reset(seed, render=False)
        self.publish_status()
        self.get_logger().info(f"episode {self.episode}: {task} seed {seed} ({cfg.mode})")
        if cfg.mode == "lockstep" and not self.policy_connected():
            # Discovery is still running: publishing now would lose frame 0 and count a stale step.
            # The watchdog publishes it once a camera subscriber and an action publisher are matched.
            self._first_obs, self._published_at = obs, time.monotonic()
            return
        self.publish_observation(obs)

    def policy_connected(self) -> bool:
        return self.image_pub.get_subscription_count() > 0 and self.count_publishers(self.config.action_topic) > 0

    def publish_observation(self, obs: dict[str, Any]) -> None:
        """JointState, then render, then Image; both carry the same node-clock stamp."""
        stamp_ns = self.get_clock().now().nanoseconds
        header = Header(stamp=conversions.ns_to_stamp(stamp_ns), frame_id=self.config.frame_id)
        self.joint_pub.publish(JointState(header=header, name=list(PROPRIO_NAMES),
                                          position=[float(v) for v in obs["proprio"]]))
        rgb = self.env.render()
        self._pending_stamp, self._published_at = stamp_ns, time.monotonic()
        self.image_pub.publish(conversions.rgb_to_image_msg(rgb, header))

    def publish_status(self) -> None:
        env = self.env
        msg = EpisodeStatus(task=env.task, seed=int(env.seed or 0), episode=self.episode, step=int(env.steps),
                            max_steps=int(env.max_steps), success=self.success, done=self.done,
                            stale_action_steps=self.stale_steps)
        msg.header.stamp = self.get_clock().now().to_msg()
        self.status_pub.publish(msg)

    def step(self, actions: np.ndarray) -> None:
        """Execute (n, A) actions in order, stopping at success (if configured) or the step limit."""
        obs = None
        for action in actions:
            obs, info = self.env.step(action, render=False)
            self._gripper = float(np.clip(action[-1], -1.0, 1.0))
            self.success = self.success or info["success"]
            if obs["done"] or (self.success and self.config.end_on_success):
                self.done = True
                break
        self.publish_status()
        if self.done:
            self._pending_stamp = None
            self.get_logger().info(f"episode {self.episode} done: success={self.success} steps={self.env.steps} "
                                   f"stale={self.stale_steps}")
        elif obs is not None:
            self.publish_observation(obs)

    def hold_still(self) -> np.ndarray:
        """One action that moves nothing and keeps the gripper command."""
        action = np.zeros((1, ACTION_DIM), np.float32)
        action[0, -1] = self._gripper
        return action

    # --- callbacks ----------------------------------------------------------------
    def on_action_chunk(self, msg: ActionChunk) -> None:
        if self.done or self.env is None:
            return
        try:
            chunk = conversions.action_chunk_to_array(msg)
        except conversions.ConversionError as exc:
            self.get_logger().warning(f"action chunk refused: {exc}")
            return
        if chunk.shape[1] != ACTION_DIM or chunk.shape[0] == 0:
            self.get_logger().warning(f"action chunk {chunk.shape} refused: need (K >= 1, {ACTION_DIM})")
            return
        stamp = conversions.stamp_to_ns(msg.header.stamp)
        if self.config.mode == "timer":
            self._chunk, self._chunk_stamp, self._chunk_used = chunk, stamp, 0
            return
        if stamp != self._pending_stamp:
            self.unmatched_actions += 1  # an answer to an older frame (e.g. of the previous episode)
            return
        n = self.config.actions_per_chunk or chunk.shape[0]
        self.step(chunk[:n])

    def on_lockstep_watchdog(self) -> None:
        if self._first_obs is not None:
            waited = time.monotonic() - self._published_at
            if self.policy_connected() or waited > self.config.action_timeout:
                obs, self._first_obs = self._first_obs, None
                self.publish_observation(obs)
            return
        if self.done or self._pending_stamp is None:
            return
        if time.monotonic() - self._published_at > self.config.action_timeout:
            self.stale_steps += 1
            self.step(self.hold_still())

    def on_control_timer(self) -> None:
        if self.done or self.env is None:
            return
        chunk = self._chunk
        age = (self.get_clock().now().nanoseconds - self._chunk_stamp) * 1e-9
        if chunk is not None and self._chunk_used < chunk.shape[0] and (
                self.config.max_action_age <= 0 or age <= self.config.max_action_age):
            action = chunk[self._chunk_used:self._chunk_used + 1]
            self._chunk_used += 1
        else:
            self.stale_steps += 1
            action = self.hold_still()
        self.step(action)

    def on_reset(self, request: ResetEpisode.Request, response: ResetEpisode.Response):
        request_id = request.request_id
        if request_id and self._last_reset is not None and self._last_reset[0] == request_id:
            # A resend of the last reset (its reply was lost): answer again, do not restart.
            response.success, response.message, response.instruction = self._last_reset[1]
            return response
        self.reset(request, response)
        self._last_reset = (request_id, (response.success, response.message, response.instruction)) \
            if request_id else None
        return response

    def reset(self, request: ResetEpisode.Request, response: ResetEpisode.Response) -> None:
        try:
            task = canonical_task(request.task) if request.task.strip() else (
                self.env.task if self.env is not None else self.config.task)
        except UnknownTaskError as exc:
            response.success, response.message = False, str(exc)
            return
        try:
            response.instruction = sample_instruction(task, request.seed)
        except KeyError:
            response.instruction = ""  # a Meta-World task without instructions: the caller sends its own
        self.start_episode(task, int(request.seed))
        response.success = True
        response.message = f"episode {self.episode}: {task} seed {request.seed}"

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None


def config_dict(config: SimNodeConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def main(args: list[str] | None = None) -> int:
    return run_node(SimNode, NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())
