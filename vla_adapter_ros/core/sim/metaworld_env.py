"""One Meta-World v3 task seen through one or several cameras, with its scripted expert.

What a policy may see is exactly :meth:`MetaWorldEnv.observe`: the camera image(s)
and the proprioception (end-effector xyz + gripper opening, P = 4). Meta-World's
39-dim state also holds object poses and the goal; only the scripted expert
(:meth:`MetaWorldEnv.expert_action`) reads it, so a learned policy that claims
to use camera + instruction + proprio cannot cheat.

Determinism: :meth:`reset` seeds the task's own generator and samples the
object/goal layout from it (Meta-World's ``seeded_rand_vec`` path), and
``mj_resetData`` clears the physics, so one seed gives one episode whatever ran
before in the same process.

Rendering: one ``mujoco.Renderer`` per environment, created on first use and
kept until :meth:`close` (a renderer per frame costs a GL context each time), shared
by every view (``views``: view name -> MuJoCo camera, e.g. the contract
config/robots/metaworld_sawyer.yaml's ``corner`` = ``corner4`` and ``wrist`` =
``gripperPOV``). ``fast_render`` sets ``offsamples = 0`` (no multisampling) and switches
off shadows and reflections: about 10x cheaper on a CPU renderer at 96x96. A second view
costs one more scene update and render per frame (docs/ROBOTS.md: the cost of one vs two).
Headless by default: MuJoCo picks its OpenGL backend when it is first imported, so
MuJoCo and Meta-World are imported by :func:`simulator` on first use, right after it
defaults ``MUJOCO_GL`` to ``egl`` (an explicit ``MUJOCO_GL`` wins). Importing this
module changes no process state.
"""

from __future__ import annotations

import functools
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np

HEADLESS_GL = "egl"  # MUJOCO_GL unless the environment sets it (osmesa also renders without a display)

DEFAULT_CAMERA = "corner4"  # sees the whole table and the arm; objects stay in view (checked for 20 tasks)
SINGLE_VIEW = "camera"  # the view name of a one-camera environment (ModelConfig.cameras' default)
# A robot contract's camera names for the simulated Sawyer (config/robots/metaworld_sawyer.yaml) -> MuJoCo cameras.
CONTRACT_CAMERAS = {"corner": "corner4", "wrist": "gripperPOV"}
# Cameras that render upright; the others (the fixed corner and top views) render upside down and are turned.
UPRIGHT_CAMERAS = ("gripperPOV", "behindGripper")
DEFAULT_IMAGE_SIZE = 96
PROPRIO_NAMES = ("ee_x", "ee_y", "ee_z", "gripper")
ACTION_NAMES = ("dx", "dy", "dz", "gripper")
PROPRIO_DIM = len(PROPRIO_NAMES)
ACTION_DIM = len(ACTION_NAMES)
# Meta-World state layout: [0:3] hand xyz, [3] gripper opening (0..1), [4:18] object poses,
# [18:36] the previous frame of the same, [36:39] goal. Proprio is [0:4] only.
_PROPRIO_SLICE = slice(0, PROPRIO_DIM)


def hold_still(gripper: float) -> np.ndarray:
    """One action that moves nothing and keeps the last gripper command."""
    action = np.zeros(ACTION_DIM, np.float32)
    action[-1] = gripper
    return action


def command_action(values: np.ndarray, rate_dims: np.ndarray, dt: float) -> np.ndarray:
    """One simulator step on a controller command (``vla_adapter_sim`` in ``mode: command``, and the closed
    loop in virtual time): rate dimensions (delta kinds) times the step ``dt``, the others as they are."""
    return np.where(rate_dims, np.asarray(values) * dt, values).astype(np.float32)


def gripper_of(action: np.ndarray) -> float:
    """The gripper command an action leaves (what holding still keeps)."""
    return float(np.clip(action[-1], -1.0, 1.0))


def use_headless_gl() -> str:
    """Default ``MUJOCO_GL`` to :data:`HEADLESS_GL` (an explicit value wins); returns the value in force.

    Effective only before MuJoCo is first imported: :func:`simulator` calls it, and so does an
    entry point that imports MuJoCo or Meta-World by itself (the test suite's conftest).
    """
    return os.environ.setdefault("MUJOCO_GL", HEADLESS_GL)


@functools.cache
def simulator() -> SimpleNamespace:
    """``mujoco``, Meta-World's task classes (``tasks``) and scripted experts (``experts``).

    Imported on first use, after :func:`use_headless_gl`.
    """
    use_headless_gl()
    # why here: MuJoCo reads MUJOCO_GL once, when it is first imported (Meta-World imports it)
    import mujoco
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS
    from metaworld.policies import ENV_POLICY_MAP

    return SimpleNamespace(mujoco=mujoco, tasks=ALL_V3_ENVIRONMENTS, experts=ENV_POLICY_MAP)


class UnknownTaskError(ValueError):
    """The task name is not a Meta-World v3 task with a scripted expert."""


class SimStateError(RuntimeError):
    """The environment is used out of order (step before reset, after the step limit, after close)."""


def available_tasks() -> list[str]:
    """Meta-World v3 task names that have a scripted expert, e.g. ``drawer-open-v3``."""
    sim = simulator()
    return sorted(t for t in sim.tasks if t in sim.experts)


def canonical_task(name: str) -> str:
    """``'drawer-open'``, ``'drawer-open-v3'`` or ``'metaworld/drawer-open-v3'`` -> ``'drawer-open-v3'``."""
    task = str(name).strip().removeprefix("metaworld/")
    task = task if task.endswith("-v3") else f"{task}-v3"
    sim = simulator()
    if task not in sim.tasks or task not in sim.experts:
        raise UnknownTaskError(f"unknown Meta-World task {name!r}; available: {available_tasks()}")
    return task


def _size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if h <= 0 or w <= 0:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    return int(h), int(w)


def contract_views(camera_names: Sequence[str]) -> dict[str, str]:
    """A contract's camera names -> MuJoCo cameras: :data:`CONTRACT_CAMERAS`, or the name itself."""
    return {name: CONTRACT_CAMERAS.get(name, name) for name in camera_names}


def simulator_views(camera_names: Sequence[str]) -> dict[str, str] | None:
    """The ``views`` of a :class:`MetaWorldEnv` for a policy with these cameras: None (the one default
    view) for a single-camera policy's :data:`SINGLE_VIEW`, else :func:`contract_views`."""
    names = tuple(camera_names)
    return None if names == (SINGLE_VIEW,) else contract_views(names)


class MetaWorldEnv:
    """A Meta-World v3 task with fixed cameras. Context manager; call :meth:`reset` first.

    Observations are dicts: ``image`` (H, W, 3) uint8 RGB (the first view), ``views``
    {view name: (H, W, 3) uint8 RGB} in ``views`` order, ``proprio`` (4,) float32,
    ``success`` bool (the task criterion at this step), ``step`` int, ``stamp_ns``
    int (simulation time of the observation), ``done`` bool (step limit reached).

    ``views``: view name -> MuJoCo camera; default one view, ``camera`` (named ``"camera"``).
    ``flip_image``: turn the cameras that render upside down upright (all but :data:`UPRIGHT_CAMERAS`).
    """

    def __init__(self, task: str, *, image_size: int | tuple[int, int] = DEFAULT_IMAGE_SIZE,
                 camera: str = DEFAULT_CAMERA, fast_render: bool = True, max_steps: int | None = None,
                 flip_image: bool = True, views: Mapping[str, str] | None = None) -> None:
        self.task = canonical_task(task)
        self.image_size = _size(image_size)
        self.views = dict(views) if views else {SINGLE_VIEW: camera}
        self.camera = next(iter(self.views.values()))  # the first view's MuJoCo camera
        self.fast_render, self.flip_image = bool(fast_render), bool(flip_image)
        sim = simulator()
        env = sim.tasks[self.task]()
        # The goal must be in the state: several experts steer to it. Policies never see the state.
        env._partially_observable = False
        env.__dict__.pop("sawyer_observation_space", None)  # cached_property, recomputed for the new flag
        env._set_task_called = True
        env._freeze_rand_vec = False
        env.seeded_rand_vec = True  # layouts come from env.np_random, seeded in reset()
        self._env = env
        limit = int(env.max_path_length)
        if max_steps is not None and not 0 < int(max_steps) <= limit:
            raise ValueError(f"max_steps must be in 1..{limit} for {self.task}, got {max_steps}")
        self.max_steps = int(max_steps) if max_steps is not None else limit
        mujoco = sim.mujoco
        self._camera_ids = {name: mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_CAMERA, cam)
                            for name, cam in self.views.items()}
        missing = [self.views[name] for name, cid in self._camera_ids.items() if cid < 0]
        if missing:
            cams = [mujoco.mj_id2name(env.model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(env.model.ncam)]
            raise ValueError(f"camera {missing[0]!r} is not in the {self.task} model; cameras: {cams}")
        if self.fast_render:
            env.model.vis.quality.offsamples = 0  # read when the GL framebuffer is created
        self._expert = sim.experts[self.task]()
        self._renderer: Any = None  # mujoco.Renderer
        self._state: np.ndarray | None = None  # privileged: expert only
        self._success = False
        self.steps = 0
        self.seed: int | None = None
        self.render_seconds = 0.0
        self.render_count = 0
        self._closed = False

    # -- lifetime ---------------------------------------------------------------------------------
    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        if not self._closed:
            self._env.close()
            self._closed = True

    def __enter__(self) -> MetaWorldEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- properties -------------------------------------------------------------------------------
    @property
    def dt(self) -> float:
        """Seconds of simulation per control step."""
        return float(self._env.dt)

    @property
    def stamp_ns(self) -> int:
        return int(round(float(self._env.data.time) * 1e9))

    @property
    def render_ms(self) -> float:
        """Mean render time per frame so far, milliseconds."""
        return 1000.0 * self.render_seconds / max(self.render_count, 1)

    # -- episode ----------------------------------------------------------------------------------
    def reset(self, seed: int, *, render: bool = True) -> dict[str, Any]:
        """Start the episode that ``seed`` determines (object and goal layout) and observe it.

        ``render=False`` leaves ``image`` None (for expert statistics that need no camera).
        """
        if self._closed:
            raise SimStateError(f"{self.task}: environment is closed")
        self.seed = int(seed)
        self._env.seed(self.seed)
        self._state, _ = self._env.reset()
        self.steps = 0
        self._success = False
        return self.observe(render=render)

    def step(self, action: np.ndarray, *, render: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
        """Apply one action (dx, dy, dz, gripper in [-1, 1]); returns (observation, info)."""
        if self._state is None:
            raise SimStateError(f"{self.task}: call reset(seed) before step()")
        if self.steps >= self.max_steps:
            raise SimStateError(f"{self.task}: step limit {self.max_steps} reached; reset first")
        action = np.clip(np.asarray(action, dtype=np.float32).reshape(-1), -1.0, 1.0)
        if action.shape != (ACTION_DIM,):
            raise ValueError(f"action must have {ACTION_DIM} values {ACTION_NAMES}, got shape {action.shape}")
        self._state, reward, _terminated, _truncated, info = self._env.step(action)
        self.steps += 1
        self._success = bool(info.get("success", 0.0))
        return self.observe(render=render), {"success": self._success, "reward": float(reward)}

    def observe(self, *, render: bool = True) -> dict[str, Any]:
        """What a policy may see now: camera images and proprio (no object or goal state)."""
        if self._state is None:
            raise SimStateError(f"{self.task}: call reset(seed) before observe()")
        views = self.render_views() if render else None
        return {"image": next(iter(views.values())) if views else None, "views": views, "proprio": self.proprio(),
                "success": self._success, "step": self.steps, "stamp_ns": self.stamp_ns,
                "done": self.steps >= self.max_steps}

    def proprio(self) -> np.ndarray:
        """(4,) float32: end-effector xyz (m) and gripper opening (0 closed .. 1 open)."""
        if self._state is None:
            raise SimStateError(f"{self.task}: call reset(seed) before proprio()")
        return np.asarray(self._state[_PROPRIO_SLICE], dtype=np.float32).copy()

    def expert_action(self) -> np.ndarray:
        """The scripted expert's action for the current state (it reads privileged state)."""
        if self._state is None:
            raise SimStateError(f"{self.task}: call reset(seed) before expert_action()")
        with warnings.catch_warnings():  # experts warn when their gains saturate; harmless, clipped
            warnings.simplefilter("ignore")
            action = self._expert.get_action(self._state)
        return np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)

    def render(self, view: str | None = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB of one view (default the first), upright."""
        name = next(iter(self.views)) if view is None else view
        if name not in self._camera_ids:
            raise ValueError(f"no view {name!r}; views: {list(self.views)}")
        start = time.perf_counter()
        if self._renderer is None:
            h, w = self.image_size
            mujoco = simulator().mujoco
            self._renderer = mujoco.Renderer(self._env.model, height=h, width=w)
            if self.fast_render:
                self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
                self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        self._renderer.update_scene(self._env.data, camera=self._camera_ids[name])
        image = self._renderer.render()
        if self.flip_image and self.views[name] not in UPRIGHT_CAMERAS:
            image = image[::-1, ::-1]  # Meta-World's fixed cameras render upside down
        image = np.ascontiguousarray(image)
        self.render_seconds += time.perf_counter() - start
        self.render_count += 1
        return image

    def render_views(self) -> dict[str, np.ndarray]:
        """Every view, in ``views`` order: {view name: (H, W, 3) uint8 RGB}."""
        return {name: self.render(name) for name in self.views}
