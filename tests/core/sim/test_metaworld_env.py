"""MetaWorldEnv: what the policy sees (image + 4-dim proprio), determinism, fast persistent rendering."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from vla_adapter_ros.core.sim.metaworld_env import (
    PROPRIO_DIM,
    MetaWorldEnv,
    SimStateError,
    UnknownTaskError,
    available_tasks,
    canonical_task,
    simulator,
)


@pytest.fixture(scope="module")
def env():
    with MetaWorldEnv("pick-place", image_size=24, max_steps=30) as e:
        yield e


def test_observation_is_image_and_four_dim_proprio(env):
    obs = env.reset(0)
    assert set(obs) == {"image", "views", "proprio", "success", "step", "stamp_ns", "done"}
    assert list(obs["views"]) == ["camera"] and obs["views"]["camera"] is obs["image"]
    assert obs["image"].shape == (24, 24, 3) and obs["image"].dtype == np.uint8 and obs["image"].std() > 5
    assert obs["proprio"].shape == (PROPRIO_DIM,) == (4,) and obs["proprio"].dtype == np.float32
    hand = env._env.data.body("hand").xpos
    assert np.allclose(obs["proprio"][:3], hand, atol=1e-6)
    assert 0.0 <= obs["proprio"][3] <= 1.0
    assert obs["stamp_ns"] > 0 and obs["step"] == 0 and obs["success"] is False


def test_proprio_holds_no_object_state(env):
    """Two seeds place the object differently; the proprio at reset is identical, so it cannot encode it."""
    env.reset(1)
    obj_a, goal_a, p_a = env._state[4:7].copy(), env._state[36:39].copy(), env.proprio()
    env.reset(2)
    obj_b, goal_b, p_b = env._state[4:7].copy(), env._state[36:39].copy(), env.proprio()
    assert not np.allclose(obj_a, obj_b) and not np.allclose(goal_a, goal_b)
    assert np.array_equal(p_a, p_b)
    for value in np.concatenate([obj_a, obj_b]):
        assert not np.any(np.isclose(p_a, value, atol=1e-9))


def test_same_seed_same_episode(env):
    def run(seed):
        obs = env.reset(seed)
        frames = [(obs["image"], obs["proprio"])]
        for _ in range(4):
            obs, _ = env.step(env.expert_action())
            frames.append((obs["image"], obs["proprio"]))
        return frames

    a, b, c = run(5), run(5), run(6)
    assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b, strict=True))
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, c, strict=True))


def test_renderer_is_persistent_and_fast_flags_are_set(env):
    env.reset(0)
    renderer = env._renderer
    for _ in range(3):
        env.render()
    assert env._renderer is renderer
    assert env._env.model.vis.quality.offsamples == 0
    mujoco = simulator().mujoco
    assert renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] == 0
    assert renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] == 0
    assert env.render_count >= 3 and env.render_ms > 0


def test_step_limit_and_order(env):
    with MetaWorldEnv("reach", image_size=16, max_steps=2) as small:
        with pytest.raises(SimStateError, match="reset"):
            small.step(np.zeros(4))
        small.reset(0, render=False)
        obs, info = small.step(np.zeros(4), render=False)
        assert obs["image"] is None and not obs["done"] and set(info) == {"success", "reward"}
        obs, _ = small.step(np.ones(4), render=False)
        assert obs["done"]
        with pytest.raises(SimStateError, match="step limit"):
            small.step(np.zeros(4))
        with pytest.raises(ValueError, match="4 values"):
            small.reset(0)
            small.step(np.zeros(3))


def test_task_names_and_camera():
    assert canonical_task("drawer-open") == canonical_task("metaworld/drawer-open-v3") == "drawer-open-v3"
    assert len(available_tasks()) == 50
    with pytest.raises(UnknownTaskError, match="unknown Meta-World task 'fly'"):
        canonical_task("fly")
    with pytest.raises(ValueError, match="camera 'nope'"):
        MetaWorldEnv("reach", camera="nope")


HEADLESS = r"""
import json, os, sys
from vla_adapter_ros.core.sim import metaworld_env as me
imported = {"mujoco": "mujoco" in sys.modules, "gl": os.environ.get("MUJOCO_GL")}
with me.MetaWorldEnv("reach", image_size=16, max_steps=2) as env:
    image = env.reset(0)["image"]
print(json.dumps({**imported, "gl_after": os.environ.get("MUJOCO_GL"), "std": float(image.std())}))
"""


def test_importing_changes_no_process_state_and_rendering_is_headless_by_default():
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "DISPLAY", "PYOPENGL_PLATFORM")}
    out = subprocess.run([sys.executable, "-c", HEADLESS], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["mujoco"] is False and res["gl"] is None  # importing the module: nothing loaded, nothing set
    assert res["gl_after"] == "egl" and res["std"] > 5  # the first environment: EGL, a real picture


def test_several_named_views_share_one_renderer():
    """The simulated Sawyer's contract cameras: corner = corner4 (as the one-camera environment renders it),
    wrist = gripperPOV (upright as rendered), both in one observation."""
    from vla_adapter_ros.core.sim.metaworld_env import contract_views

    views = contract_views(("corner", "wrist"))
    assert views == {"corner": "corner4", "wrist": "gripperPOV"}
    with MetaWorldEnv("pick-place", image_size=32, views=views) as two, MetaWorldEnv("pick-place", image_size=32) as one:
        first, single = two.reset(4), one.reset(4)
        assert list(first["views"]) == ["corner", "wrist"] and first["image"] is first["views"]["corner"]
        assert np.array_equal(first["views"]["corner"], single["image"])
        wrist = [first["views"]["wrist"]]
        for _ in range(40):  # the expert reaches for the object: the wrist view changes as it comes close
            obs, _ = two.step(two.expert_action())
            wrist.append(obs["views"]["wrist"])
        assert two.render_count == 2 * 41 and two._renderer is not None
        assert wrist[0].std() > 5 and np.abs(wrist[-1].astype(int) - wrist[0]).mean() > 10
        assert two.render("wrist").shape == (32, 32, 3)
    with pytest.raises(ValueError, match="camera 'eye' is not in the reach-v3 model"):
        MetaWorldEnv("reach", views={"corner": "corner4", "eye": "eye"})
