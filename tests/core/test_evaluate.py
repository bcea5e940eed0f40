"""Closed-loop evaluation feeds every camera view a policy takes, from PyTorch and from an ONNX export,
and renders only the observations a chunk is planned from without changing the episode."""

from __future__ import annotations

import numpy as np
import pytest
from core_data import tiny_config

from vla_adapter_ros.core.evaluate import OnnxPolicySource, TorchPolicySource, evaluate_task, run_episode
from vla_adapter_ros.core.export import export_model, make_random_checkpoint
from vla_adapter_ros.core.sim.metaworld_env import MetaWorldEnv, simulator_views

TASK = "reach"
CAMERAS = ("corner", "wrist")  # the Sawyer contract's names: MuJoCo corner4 and gripperPOV


class Recorder:
    """A policy source that keeps what every call got and returned (and passes it on)."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.cameras = inner, inner.name, inner.cameras
        self.calls: list[tuple[object, np.ndarray, np.ndarray]] = []

    def chunk(self, images, instruction, proprio):
        out = self.inner.chunk(images, instruction, proprio)
        frames = {k: v.copy() for k, v in images.items()} if isinstance(images, dict) else images.copy()
        self.calls.append((frames, proprio.copy(), np.array(out)))
        return out


@pytest.fixture(scope="module")
def two_camera(tmp_path_factory):
    """(checkpoint, exported model dir) of a random two-camera model with the Sawyer contract's cameras."""
    root = tmp_path_factory.mktemp("eval_2cam")
    config = tiny_config(image_size=32, patch_size=16, cameras=CAMERAS, chunk_length=4)
    checkpoint, adapters = make_random_checkpoint(root, config)
    export_model(checkpoint, adapters, root / "model", log=lambda _: None)
    return checkpoint, root / "model"


def test_simulator_views_of_a_policy():
    assert simulator_views(("camera",)) is None  # a single-camera policy: the default corner view
    assert simulator_views(CAMERAS) == {"corner": "corner4", "wrist": "gripperPOV"}


def test_a_two_camera_policy_gets_every_view_each_time_it_plans(two_camera):
    checkpoint, _ = two_camera
    source = Recorder(TorchPolicySource(checkpoint))
    with MetaWorldEnv(TASK, image_size=32, max_steps=10, views=simulator_views(CAMERAS)) as env:
        result = run_episode(env, source, "reach the target", 100000, 4)
        assert result.steps == 10 and env.render_count == 2 * 3  # 3 plans (steps 0, 4, 8), 2 views each
        for frames, _, _ in source.calls:
            assert list(frames) == list(CAMERAS) and all(f.shape == (32, 32, 3) for f in frames.values())
        corner, wrist = source.calls[0][0].values()
        assert not np.array_equal(corner, wrist)
    # the torch source stacks the views in the model's order: swapping them changes the actions
    frames, proprio, out = source.calls[0]
    assert np.array_equal(source.inner.chunk(frames, "reach the target", proprio), out)
    swapped = {"corner": frames["wrist"], "wrist": frames["corner"]}
    assert not np.allclose(source.inner.chunk(swapped, "reach the target", proprio), out)
    with pytest.raises(ValueError, match=r"takes cameras \['corner', 'wrist'\]"):
        source.inner.chunk(frames["corner"], "reach the target", proprio)


def test_rendering_only_planned_observations_leaves_the_episode_unchanged(two_camera):
    """Replay the executed actions rendering after every step: the frames and proprio the policy planned
    from are the same, bit for bit."""
    checkpoint, _ = two_camera
    source = Recorder(TorchPolicySource(checkpoint))
    k, seed = 4, 100001
    with MetaWorldEnv(TASK, image_size=32, max_steps=24, views=simulator_views(CAMERAS)) as env:
        run_episode(env, source, "reach the target", seed, k)
        obs = env.reset(seed)
        for frames, proprio, chunk in source.calls:
            assert np.array_equal(obs["proprio"], proprio)
            for camera in CAMERAS:
                assert np.array_equal(obs["views"][camera], frames[camera])
            for action in chunk[:k]:
                obs, _ = env.step(action)  # renders every step


def test_onnx_and_torch_sources_drive_the_same_two_camera_episode(two_camera):
    checkpoint, model_dir = two_camera
    torch_result = evaluate_task(TASK, TorchPolicySource(checkpoint, checkpoint.parent / "adapters" / "default"),
                                 episodes=1, n_action_steps=4, image_size=32, max_steps=16, progress=False)
    onnx = Recorder(OnnxPolicySource(model_dir, "default"))
    assert onnx.cameras == CAMERAS
    onnx_result = evaluate_task(TASK, onnx, episodes=1, n_action_steps=4, image_size=32, max_steps=16,
                                progress=False)
    assert list(onnx.calls[0][0]) == list(CAMERAS)  # OnnxPolicy.infer got {camera: frame}
    assert (onnx_result.episodes, onnx_result.results[0].steps) == (1, 16)
    assert torch_result.results[0].steps == onnx_result.results[0].steps
