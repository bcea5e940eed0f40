"""Multi-camera policies: every view through one vision encoder, a per-view embedding, all views fused.

One view must stay exactly the model it was before views existed (the bundled checkpoint's outputs,
bit for bit); two views must train, take adapters and export (the runtime side of the exported
two-camera model is tested in tests/runtime/test_multiview.py).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from core_data import INSTRUCTIONS, tensors_equal, tiny_config
from torch.utils.data import Dataset

from vla_adapter_ros import processing as P
from vla_adapter_ros.contract import RobotContract, default_contract
from vla_adapter_ros.core.adapters import add_adapter, load_adapter, set_adapter
from vla_adapter_ros.core.checkpoint import CONTRACT_NAME, load_checkpoint, save_checkpoint
from vla_adapter_ros.core.config import AdapterConfig, TrainConfig
from vla_adapter_ros.core.export import ExportError, export_model, make_random_checkpoint
from vla_adapter_ros.core.model import VLAPolicy, example_inputs, graph_inputs
from vla_adapter_ros.core.train import train
from vla_adapter_ros.core.tuners import tuner_parameters

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "models" / "metaworld_torch"
REFERENCE = ROOT / "tests" / "data" / "metaworld_torch_reference.npz"  # computed before views existed (7baae40)
CAMERAS = ("front", "wrist")
STATS = {
    "proprio": P.Normalizer([0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]),
    "actions": P.Normalizer([0.1, -0.1, 0.0, 0.5], [0.2, 0.2, 0.2, 0.5]),
}


def two_view_config(**overrides):
    return tiny_config(cameras=CAMERAS, **overrides)


@pytest.fixture
def two_view_policy():
    torch.manual_seed(0)
    return VLAPolicy(two_view_config(), stats=STATS).eval()


def test_two_views_go_through_one_encoder_into_one_fusion(two_view_policy):
    config = two_view_policy.config
    image, emb, proprio = example_inputs(config, batch_size=3, seed=1)
    assert image.shape == (3, 2, 3, 32, 32)
    tokens = two_view_policy.encode_views(image)
    N, C = config.n_patches, config.d_model
    assert tokens.shape == (3, 2, N, C) and two_view_policy.fusion.n_tokens == config.chunk_length + 2 * N + 2
    # the same encoder, view by view: each view's tokens are what the encoder gives that image alone
    with torch.no_grad():
        for v in range(2):
            torch.testing.assert_close(tokens[:, v], two_view_policy.vision(image[:, v]), rtol=0, atol=1e-6)
    out = two_view_policy.predict(image, emb, proprio)
    assert out.shape == (3, config.chunk_length, config.action_dim)
    # the views are told apart: swapping the cameras' frames changes the actions
    swapped = two_view_policy.predict(image.flip(1), emb, proprio)
    assert (out - swapped).abs().max() > 1e-4
    # the exported signature: one (B, 3, H, W) image per camera, stacked back in camera order
    args = graph_inputs(config, image, emb, proprio)
    assert [tuple(a.shape) for a in args[:2]] == [(3, 3, 32, 32)] * 2
    assert torch.equal(two_view_policy.predictor()(*args), out)


def test_a_second_view_adds_only_its_view_embeddings():
    one, two = VLAPolicy(tiny_config()), VLAPolicy(two_view_config())
    a, b = one.backbone_state_dict(), two.backbone_state_dict()
    assert set(b) - set(a) == {"fusion.view_embed"} and set(a) <= set(b)
    assert all(a[k].shape == b[k].shape for k in a)  # positions are shared by the views: same shapes
    assert b["fusion.view_embed"].shape == (1, 2, 1, 32)
    assert two.num_backbone_parameters() - one.num_backbone_parameters() == 2 * 32
    assert two.backbone_fingerprint() != VLAPolicy(tiny_config(cameras=("wrist", "front"))).backbone_fingerprint()


@pytest.mark.parametrize(
    ("config", "shape", "message"),
    [
        (two_view_config(), (2, 3, 32, 32), r"takes \(B, 2, 3, H, W\): cameras \['front', 'wrist'\]"),
        (two_view_config(), (2, 3, 3, 32, 32), r"image has shape \(2, 3, 3, 32, 32\)"),
        (tiny_config(), (2, 2, 3, 32, 32), r"takes \(B, 1, 3, H, W\) or \(B, 3, H, W\): cameras \['camera'\]"),
    ],
)
def test_an_image_of_the_wrong_views_names_the_cameras(config, shape, message):
    model = VLAPolicy(config).eval()
    _, emb, proprio = example_inputs(config, batch_size=2)
    with pytest.raises(ValueError, match=message):
        model.predict(torch.zeros(shape), emb, proprio)


def test_one_view_reproduces_the_bundled_checkpoint():
    """models/metaworld_torch + its adapters give the actions they gave before views existed: bit for bit on
    the CPU that computed the reference, within float32 summation-order noise on another (an AMD EPYC's
    kernels differ from the reference machine's by up to 2e-6 on actions of size ~2; a change to the
    computation, a view embedding added to one view, moves them by orders of magnitude more)."""
    reference = np.load(REFERENCE)
    model = load_checkpoint(BUNDLED / "checkpoint", adapters=False).eval()
    names = [load_adapter(model, d) for d in sorted((BUNDLED / "adapters").iterdir())]
    assert model.backbone_fingerprint() == str(reference["fingerprint"])
    assert "fusion.view_embed" not in model.backbone_state_dict()
    cfg = model.config
    rng = np.random.default_rng(2024)  # the inputs the reference was computed on
    image = rng.uniform(-1, 1, (2, 3, cfg.image_size, cfg.image_size)).astype(np.float32)
    emb = rng.normal(size=(2, cfg.lang_dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    prop = rng.normal(size=(2, cfg.proprio_dim)).astype(np.float32)
    x = [torch.from_numpy(a) for a in (image, emb, prop)]
    with torch.no_grad():
        for name in [None, *names]:
            set_adapter(model, name)
            got = model.predict(*x).numpy()
            np.testing.assert_allclose(got, reference[f"actions.{name or 'backbone'}"], rtol=0, atol=1e-5,
                                       err_msg=str(name))
            # the (B, V, 3, H, W) layout with V = 1 is the same model
            assert np.array_equal(model.predict(x[0][:, None], *x[1:]).numpy(), got), name


def test_adapters_start_as_identity_and_act_on_every_view(two_view_policy):
    x = example_inputs(two_view_policy.config, batch_size=2, seed=3)
    with torch.no_grad():
        base = two_view_policy.predict(*x)
        add_adapter(two_view_policy, "task", AdapterConfig(rank=4))
        set_adapter(two_view_policy, "task")
        assert torch.equal(two_view_policy.predict(*x), base)  # zero-initialised up-projection: exact identity
        # one vision adapter for both views, like the encoder: as many adapter weights as a one-view model
        one = VLAPolicy(tiny_config())
        add_adapter(one, "task", AdapterConfig(rank=4))
        assert sum(p.numel() for p in tuner_parameters(two_view_policy, "task")) == \
            sum(p.numel() for p in tuner_parameters(one, "task"))
        for p in tuner_parameters(two_view_policy, "task"):
            p.normal_(0.0, 0.05)
        adapted = two_view_policy.predict(*x)
        assert (adapted - base).abs().max() > 1e-3
        # the vision adapter sees each view: changing only the wrist frame changes the adapted tokens
        wrist_changed = x[0].clone()
        wrist_changed[:, 1] = -wrist_changed[:, 1]
        t_adapted = two_view_policy.encode_views(wrist_changed)
        set_adapter(two_view_policy, None)
        t_base = two_view_policy.encode_views(wrist_changed)
        assert (t_adapted[:, 1] - t_base[:, 1]).abs().max() > 1e-3 and (t_adapted[:, 0] - t_base[:, 0]).abs().max() > 1e-3


class TwoViewEpisodes(Dataset):
    """``n`` frames of two random views whose actions depend on both views, proprio and instruction."""

    def __init__(self, config, n: int = 16, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        S, K, A = config.image_size, config.chunk_length, config.action_dim
        self.images = torch.rand(n, 2, 3, S, S, generator=g) * 2 - 1  # (n, V, 3, H, W)
        self.proprio = torch.randn(n, config.proprio_dim, generator=g)
        self.task = torch.arange(n) % len(INSTRUCTIONS)
        front, wrist = self.images[:, 0].mean(dim=(1, 2, 3)), self.images[:, 1].mean(dim=(1, 2, 3))  # (n,)
        base = self.proprio[:, :A] * 0.5 + (front - 2 * wrist)[:, None] + self.task[:, None].float() - 1.0  # (n, A)
        self.actions = base[:, None, :] + torch.arange(K, dtype=torch.float32)[None, :, None] * 0.1  # (n, K, A)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {P.IMAGE: self.images[i], P.INSTRUCTION: INSTRUCTIONS[int(self.task[i])], P.PROPRIO: self.proprio[i],
                P.ACTIONS: self.actions[i], P.ACTIONS_MASK: torch.ones(self.actions.shape[1], dtype=torch.bool)}


def test_the_trainer_pretrains_and_adapts_a_two_view_model(tmp_path, language):
    """A few real steps through the Trainer on (B, 2, 3, H, W) batches: pre-training moves the view
    embeddings; an adapter on that backbone trains only itself and changes the actions."""
    common = dict(steps=4, batch_size=4, warmup_steps=1, log_every=1, save_every=0, progress=False, plot=False, seed=3)
    cfg = TrainConfig(model=two_view_config(), out_dir=str(tmp_path / "pre"), **common)
    res = train(cfg, TwoViewEpisodes(cfg.model, n=16), stats=STATS, language=language)
    assert res.step == 4 and np.isfinite(res.loss)
    backbone = load_checkpoint(res.artifact)
    assert backbone.config.cameras == CAMERAS
    torch.manual_seed(cfg.seed)  # the trainer seeds, then builds the policy: this is its initial state
    moved = (backbone.fusion.view_embed - VLAPolicy(cfg.model).fusion.view_embed).abs().max()
    assert 0 < moved < 1e-2  # the view embeddings learned, a few Adam steps away from their initial values

    tune = TrainConfig(model=two_view_config(), regime="adapter", init_checkpoint=str(res.artifact),
                       adapter_name="two_cam", adapter=AdapterConfig(rank=4), out_dir=str(tmp_path / "adapter"), **common)
    adapted = train(tune, TwoViewEpisodes(tune.model, n=16, seed=1), language=language)
    assert np.isfinite(adapted.loss) and adapted.trainable_params > 0
    model = load_checkpoint(res.artifact).eval()
    x = example_inputs(model.config, batch_size=2)
    with torch.no_grad():
        base = model.predict(*x)
        load_adapter(model, adapted.artifact, activate=True)
        assert tensors_equal(model.backbone_state_dict(), backbone.backbone_state_dict())
        assert (model.predict(*x) - base).abs().max() > 0


@pytest.fixture(scope="module")
def two_view_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("two_view_src")
    return make_random_checkpoint(root, two_view_config(), {"reach": AdapterConfig(rank=4)}, seed=5)


def contract(cameras, **changes) -> RobotContract:
    base = default_contract(("ee_x", "ee_y", "ee_z", "gripper"), ("dx", "dy", "dz", "gripper"))
    cams = tuple(dataclasses.replace(base.cameras[0], name=c, topic=f"/{c}/image_raw") for c in cameras)
    return dataclasses.replace(base, cameras=cams, reference_camera=cameras[0], **changes)


@pytest.mark.parametrize(
    ("cameras", "message"),
    [
        (("front",), r"cameras: the contract has \['front'\] \(1\), the model \['front', 'wrist'\] \(2\)"),
        (("wrist", "front"), r"cameras: the contract has \['wrist', 'front'\] \(2\), the model \['front', 'wrist'\]"),
    ],
)
def test_export_refuses_a_contract_that_does_not_describe_the_model(two_view_checkpoint, tmp_path, cameras, message):
    checkpoint, adapters = two_view_checkpoint
    (checkpoint / CONTRACT_NAME).write_text(contract(cameras).to_yaml())
    try:
        with pytest.raises(ExportError, match=f"contract.yaml does not describe the model.*{message}"):
            export_model(checkpoint, adapters, tmp_path / "m", log=lambda _m: None)
    finally:
        (checkpoint / CONTRACT_NAME).unlink()
    assert not (tmp_path / "m").exists()


def test_export_refuses_an_unreadable_contract(two_view_checkpoint, tmp_path):
    checkpoint, adapters = two_view_checkpoint
    (checkpoint / CONTRACT_NAME).write_text("robot: arm\ncameras: {front: {topic: /f}}\nactoins: []\n")
    try:
        with pytest.raises(ExportError, match="unusable contract.yaml.*unknown key 'actoins'; did you mean 'actions'"):
            export_model(checkpoint, adapters, tmp_path / "m", log=lambda _m: None)
    finally:
        (checkpoint / CONTRACT_NAME).unlink()


def test_save_checkpoint_keeps_a_two_view_model(tmp_path, two_view_policy):
    directory = save_checkpoint(two_view_policy, tmp_path / "ck")
    back = load_checkpoint(directory)
    assert back.config.cameras == CAMERAS
    assert tensors_equal(back.backbone_state_dict(), two_view_policy.backbone_state_dict())
