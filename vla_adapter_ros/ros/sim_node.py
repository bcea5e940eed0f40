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
  publishes frame t+1. The arm never moves on anything but the answer to its last frame: when
  that answer has not arrived within ``resend_period`` seconds (the frame, its JointState or
  the answer lost or late), the same observation is published again (same stamp, same
  pixels, counted in ``resent_frames``); a frame unanswered for ``action_timeout`` seconds ends
  the episode as failed with ``end_reason`` "no_action" (logged, never silent). So an episode
  is a pure function of (task, seed, instruction, model) under loss too: success through ROS
  equals the in-process evaluation, and the demo runs as fast as the policy answers.
- ``timer``: a wall-clock timer at ``control_rate`` Hz (0 = the task's 1/dt = 80 Hz) steps the
  simulator whatever happens, like a real robot. Action k of the newest chunk is executed k
  steps after the chunk arrived; a chunk older than ``max_action_age`` or exhausted means no
  fresh action: the arm holds still (zero motion, gripper command kept), counted.

The JointState of a frame is published before its image (the render in between gives it a
lead of several ms) so a policy node reads the matching proprio when the image arrives.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, Header

from vla_adapter_interfaces.msg import ActionChunk, EpisodeStatus
from vla_adapter_interfaces.srv import ResetEpisode
from vla_adapter_ros.contract import RobotContract
from vla_adapter_ros.core.sim.instructions import sample_instruction
from vla_adapter_ros.core.sim.metaworld_env import (
    ACTION_DIM,
    PROPRIO_NAMES,
    MetaWorldEnv,
    UnknownTaskError,
    canonical_task,
    command_action,
    contract_views,
    gripper_of,
)
from vla_adapter_ros.core.sim.metaworld_env import hold_still as still_action
from vla_adapter_ros.ros import conversions, qos
from vla_adapter_ros.ros.entry import run_node
from vla_adapter_ros.ros.params import NodeConfig, param

MODES = ("lockstep", "timer", "command")
DELTA_KINDS = ("ee_delta", "joint_delta")  # commanded as rates: a step moves rate * dt


@dataclass
class SimNodeConfig(NodeConfig):
    """Every parameter of the simulator bridge (names = field names); all fixed at start-up."""

    NODE_NAME: ClassVar[str] = "vla_adapter_sim"

    # --- episode ---
    task: str = param("coffee-button-v3", "Meta-World v3 task of the first episode (reset can change it)")
    seed: int = param(100000, "seed of the first episode (object/goal layout)", min=0, max=2**32 - 1)
    autostart: bool = param(True, "start the first episode at start-up; false = wait for ~/reset")
    max_steps: int = param(0, "episode step limit; 0 = the task's own (500)", min=0, max=100000)
    end_on_success: bool = param(True, "end the episode at the first successful step (like vla-adapter eval)")
    # --- camera ---
    image_size: int = param(96, "square camera image size in pixels", min=16, max=1024)
    camera: str = param("corner4", "MuJoCo camera name")
    frame_id: str = param("camera", "header.frame_id of the camera image (one camera; with a contract each camera's "
                                    "frame_id is its name)")
    contract: str = param("", "robot contract of the simulated robot (e.g. config/robots/metaworld_sawyer.yaml: "
                              "corner + wrist cameras on its topics, its state topic); empty = one camera "
                              "(`camera`) on camera_topic")
    # --- stepping ---
    mode: str = param("lockstep", "lockstep: step when the action for the last frame arrives; timer: wall clock, "
                                  "executing chunks itself; command: wall clock, stepping on the newest command "
                                  "of an executor (vla_adapter_executor's Float64MultiArray) like a robot's "
                                  "controller",
                      choices=MODES)
    control_rate: float = param(0.0, "timer and command modes: Hz; 0 = the task's 1/dt (80 Hz)", min=0.0, max=1000.0)
    camera_rate: float = param(0.0, "timer and command modes: Hz of camera frames (every k-th step); 0 = every "
                                    "step", min=0.0, max=1000.0)
    command_topic: str = param("/vla/command", "command mode: std_msgs/Float64MultiArray in the contract's action "
                                               "order (delta kinds as per-second rates, others as values)",
                               topic=True)
    command_timeout: float = param(0.1, "command mode: s; an older command (or none) holds the arm still",
                                   min=0.001, max=60.0)
    actions_per_chunk: int = param(0, "actions executed per chunk in lockstep; 0 = the whole chunk", min=0, max=1000)
    resend_period: float = param(0.5, "lockstep: seconds without the answer to the last frame before it is "
                                      "published again (same stamp and pixels)", min=0.01, max=3600.0)
    action_timeout: float = param(30.0, "lockstep: seconds a frame may stay unanswered (re-sends included) "
                                        "before the episode ends as failed (end_reason no_action)",
                                  min=0.01, max=86400.0)
    max_action_age: float = param(0.5, "timer mode: a chunk older than this (s, by its header stamp) is stale",
                                  min=0.0, max=3600.0)
    # --- topics (remappable as well) ---
    camera_topic: str = param("/camera/image_raw", "sensor_msgs/Image output", topic=True)
    proprio_topic: str = param("/joint_states", "sensor_msgs/JointState output", topic=True)
    action_topic: str = param("/vla/action", "vla_adapter_interfaces/ActionChunk input", topic=True)
    status_topic: str = param("/vla/episode", "vla_adapter_interfaces/EpisodeStatus output", topic=True)

    def check(self) -> None:
        try:
            self.task = canonical_task(self.task)
        except UnknownTaskError as exc:
            raise ValueError(str(exc)) from exc


class PendingFrame(NamedTuple):
    """Lockstep: the observation awaiting its action, kept to be re-sent exactly."""

    stamp_ns: int
    joints: JointState
    images: tuple[Image, ...]  # one per camera, in camera order
    first_sent: float  # monotonic
    last_sent: float


class SimNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__(SimNodeConfig.NODE_NAME, **kwargs)
        self.config = cfg = SimNodeConfig.declare(self)  # ValueError on a bad value: main() reports it
        self.env: MetaWorldEnv | None = None
        self.episode = 0
        self.success = False
        self.done = True
        self.end_reason = ""
        self.stale_steps = 0  # timer mode
        self.resent_frames = 0  # lockstep
        self.frames = 0  # observations published this episode
        self.unmatched_actions = 0
        self._gripper = 0.0  # last gripper command: holding still keeps the grip
        self._first_obs: dict[str, Any] | None = None  # lockstep: frame 0, held back until a policy matched
        self._first_obs_at = 0.0
        self._pending: PendingFrame | None = None  # lockstep: the frame awaiting its action
        self._chunk: np.ndarray | None = None  # timer mode: newest chunk, its stamp and steps used
        self._chunk_stamp = 0
        self._chunk_used = 0
        self._last_reset: tuple[str, tuple[bool, str, str, int]] | None = None  # request_id -> reply fields

        self.robot = RobotContract.load(cfg.contract) if cfg.contract else None  # ContractError: main() exits 2
        # view name -> (MuJoCo camera, topic); one "camera" view without a contract
        self.cameras = ({c.name: (cam, c.topic) for c, cam in zip(self.robot.cameras, contract_views(
            self.robot.camera_names).values(), strict=True)} if self.robot else {"camera": (cfg.camera, cfg.camera_topic)})
        self.image_size = self._image_size()
        self.image_pubs = {name: self.create_publisher(Image, topic, qos.camera_qos("reliable", 1))
                           for name, (_, topic) in self.cameras.items()}
        state_topic = self.robot.state.topic if self.robot and self.robot.state else cfg.proprio_topic
        self.joint_pub = self.create_publisher(JointState, state_topic, qos.proprio_qos())
        self.status_pub = self.create_publisher(EpisodeStatus, cfg.status_topic, qos.status_qos())
        if cfg.mode != "command":  # command mode steps on the executor's commands alone, never on chunks
            self.create_subscription(ActionChunk, cfg.action_topic, self.on_action_chunk, qos.actions_qos())
        self.create_service(ResetEpisode, "~/reset", self.on_reset)
        self._command: tuple[np.ndarray, float] | None = None  # command mode: newest command, monotonic arrival
        self._step_dt, self._next_step = 0.0, 0.0  # wall-clock modes: the step period and the next step's time
        self.command_steps = 0
        if cfg.mode == "command":
            self.create_subscription(Float64MultiArray, cfg.command_topic, self.on_command, qos.command_qos())
            kinds = [a.kind for a in self.robot.actions] if self.robot else ["ee_delta"] * (ACTION_DIM - 1) + ["gripper"]
            self._rate_dims = np.array([k in DELTA_KINDS for k in kinds])
        if cfg.mode in ("timer", "command"):
            self._step_dt = 1.0 / (cfg.control_rate or 1.0 / self._dt(cfg.task))
            self._camera_every = max(1, round(1.0 / (cfg.camera_rate * self._step_dt))) if cfg.camera_rate else 1
            # A timer at twice the step rate; _due() keeps the steps on the wall clock (no catching up).
            self.create_timer(self._step_dt / 2, self.on_command_timer if cfg.mode == "command" else self.on_control_timer)
        else:
            self.create_timer(min(0.02, cfg.resend_period / 2), self.on_lockstep_watchdog)
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
            self.env = MetaWorldEnv(task, image_size=self.image_size,
                                    views={name: cam for name, (cam, _) in self.cameras.items()},
                                    max_steps=cfg.max_steps or None)
        self.episode += 1
        self.success, self.done, self.end_reason, self._gripper = False, False, "", 0.0
        self.stale_steps, self.resent_frames, self.frames = 0, 0, 0
        self._next_step = time.monotonic() + self._step_dt
        self._pending, self._chunk, self._first_obs = None, None, None
        obs = self.env.reset(seed, render=False)
        self.publish_status()
        self.get_logger().info(f"episode {self.episode}: {task} seed {seed} ({cfg.mode})")
        if cfg.mode == "lockstep" and not self.policy_connected():
            # Discovery is still running: the watchdog publishes frame 0 once a camera subscriber and an
            # action publisher are matched (a frame lost before that would only cost a re-send).
            self._first_obs, self._first_obs_at = obs, time.monotonic()
            return
        self.publish_observation(obs)

    def _image_size(self) -> int:
        """The square size every camera renders at: the contract's (its cameras must agree), else image_size."""
        sizes = {c.size for c in self.robot.cameras if c.size is not None} if self.robot else set()
        if len(sizes) > 1 or any(h != w for h, w in sizes):
            raise ValueError(f"contract {self.robot.robot!r}: the simulator renders square views of one size, "
                             f"the cameras have {sorted(sizes)}")
        return sizes.pop()[0] if sizes else self.config.image_size

    def policy_connected(self) -> bool:
        cameras_seen = all(pub.get_subscription_count() > 0 for pub in self.image_pubs.values())
        return cameras_seen and self.count_publishers(self.config.action_topic) > 0

    def publish_observation(self, obs: dict[str, Any]) -> None:
        """JointState, then render, then Image; both carry the same node-clock stamp."""
        stamp_ns = self.get_clock().now().nanoseconds
        stamp = conversions.ns_to_stamp(stamp_ns)
        joints = JointState(header=Header(stamp=stamp, frame_id=self.config.frame_id), name=list(PROPRIO_NAMES),
                            position=[float(v) for v in obs["proprio"]])
        self.joint_pub.publish(joints)
        frame_id = (lambda name: name) if self.robot else (lambda _name: self.config.frame_id)
        images = tuple(conversions.rgb_to_image_msg(rgb, Header(stamp=stamp, frame_id=frame_id(name)))
                       for name, rgb in self.env.render_views().items())
        now = time.monotonic()
        self._pending = PendingFrame(stamp_ns, joints, images, now, now)
        self.frames += 1
        for pub, image in zip(self.image_pubs.values(), images, strict=True):
            pub.publish(image)

    def resend_observation(self) -> None:
        """Lockstep: the unanswered frame again, exactly as first sent (same stamp, same pixels)."""
        pending = self._pending
        self.joint_pub.publish(pending.joints)
        for pub, image in zip(self.image_pubs.values(), pending.images, strict=True):
            pub.publish(image)
        self._pending = pending._replace(last_sent=time.monotonic())
        self.resent_frames += 1
        self.publish_status()

    def publish_status(self) -> None:
        env = self.env
        msg = EpisodeStatus(task=env.task, seed=int(env.seed or 0), episode=self.episode, step=int(env.steps),
                            max_steps=int(env.max_steps), success=self.success, done=self.done,
                            stale_action_steps=self.stale_steps, resent_frames=self.resent_frames,
                            frames=self.frames,
                            end_reason=self.end_reason)
        msg.header.stamp = self.get_clock().now().to_msg()
        self.status_pub.publish(msg)

    def end_episode(self, reason: str) -> None:
        self.done, self.end_reason, self._pending = True, reason, None
        log = self.get_logger().error if reason == "no_action" else self.get_logger().info
        log(f"episode {self.episode} done ({reason}): success={self.success} steps={self.env.steps} "
            f"stale={self.stale_steps} resent={self.resent_frames}")

    def step(self, actions: np.ndarray) -> None:
        """Execute (n, A) actions in order, stopping at success (if configured) or the step limit."""
        obs = None
        for action in actions:
            obs, info = self.env.step(action, render=False)
            self._gripper = gripper_of(action)
            self.success = self.success or info["success"]
            if obs["done"] or (self.success and self.config.end_on_success):
                self.end_episode("success" if self.success else "step_limit")
                break
        self.publish_status()
        if not self.done and obs is not None and (self.config.mode == "lockstep"
                                                  or self.env.steps % self._camera_every == 0):
            self.publish_observation(obs)

    def hold_still(self) -> np.ndarray:
        """One action (a batch of one) that moves nothing and keeps the gripper command."""
        return still_action(self._gripper)[None]

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
        if self._pending is None or stamp != self._pending.stamp_ns:
            # An answer to an older frame: a re-sent frame answered twice, or the previous episode's.
            self.unmatched_actions += 1
            return
        n = self.config.actions_per_chunk or chunk.shape[0]
        self._pending = None
        self.step(chunk[:n])

    def on_lockstep_watchdog(self) -> None:
        cfg, now = self.config, time.monotonic()
        if self._first_obs is not None:
            if self.policy_connected():
                obs, self._first_obs = self._first_obs, None
                self.publish_observation(obs)
            elif now - self._first_obs_at > cfg.action_timeout:
                self._first_obs = None
                self.end_episode("no_action")
                self.publish_status()
            return
        pending = self._pending
        if self.done or pending is None:
            return
        if now - pending.first_sent > cfg.action_timeout:
            self.end_episode("no_action")
            self.publish_status()
        elif now - pending.last_sent > cfg.resend_period:
            self.resend_observation()

    def on_control_timer(self) -> None:
        if self.done or self.env is None or not self._due():
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

    def on_command(self, msg: Float64MultiArray) -> None:
        values = np.asarray(msg.data, np.float32)
        if values.shape != (ACTION_DIM,) or not np.all(np.isfinite(values)):
            self.get_logger().warning(f"command {list(msg.data)} refused: need {ACTION_DIM} finite values",
                                      throttle_duration_sec=5.0)
            return
        self._command = (values, time.monotonic())

    def _due(self) -> bool:
        """Wall-clock modes: whether a step is due. A real-time robot never catches up: after the executor
        thread was busy (a reset builds a new environment) the next step comes one period later, no burst."""
        now = time.monotonic()
        if now < self._next_step:
            return False
        late = now - self._next_step > self._step_dt
        self._next_step = (now if late else self._next_step) + self._step_dt
        return True

    def on_command_timer(self) -> None:
        """One simulator step on the newest command: rates (delta kinds) times the step, values as they are."""
        if self.done or self.env is None or not self._due():
            return
        command = self._command
        if command is None or time.monotonic() - command[1] > self.config.command_timeout:
            self.stale_steps += 1
            action = self.hold_still()
        else:
            action = command_action(command[0], self._rate_dims, self.env.dt)[None]
            self.command_steps += 1
        self.step(action)

    def on_reset(self, request: ResetEpisode.Request, response: ResetEpisode.Response):
        request_id = request.request_id
        if request_id and self._last_reset is not None and self._last_reset[0] == request_id:
            # A resend of the last reset (its reply was lost): answer again, do not restart.
            response.success, response.message, response.instruction, response.episode = self._last_reset[1]
            return response
        self.reset(request, response)
        reply = (response.success, response.message, response.instruction, response.episode)
        self._last_reset = (request_id, reply) if request_id else None
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
        response.success, response.episode = True, self.episode
        response.message = f"episode {self.episode}: {task} seed {request.seed}"

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None


def main(args: list[str] | None = None) -> int:
    return run_node(SimNode, SimNodeConfig.NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())
