"""EpisodeDataset over several cameras: (V, 3, H, W) views in the contract/model order, each resized and
shifted on its own; one camera layout per dataset; the one-camera case unchanged."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bags"))

import robot_bags as rb  # noqa: E402

from vla_adapter_ros.bags.episodes import EpisodeWriter, read_episode  # noqa: E402
from vla_adapter_ros.bags.typestore import make_typestore  # noqa: E402
from vla_adapter_ros.contract import RobotContract  # noqa: E402
from vla_adapter_ros.core.data import EpisodeDataset, random_shift  # noqa: E402
from vla_adapter_ros.processing import IMAGE, preprocess_image, resize_rgb  # noqa: E402

TWO = RobotContract.from_dict({
    "robot": "two_cams",
    "cameras": {"top": {"topic": "/top/image_raw"}, "hand": {"topic": "/hand/image_raw"}},
    "state": {"topic": "/joint_states", "fields": ["position.a", "position.b"]},
    "actions": [{"name": "a", "kind": "joint_position"}, {"name": "b", "kind": "joint_position"}],
})
ONE = RobotContract.from_dict({**TWO.to_dict(), "robot": "one_cam", "cameras": {"top": {"topic": "/top/image_raw"}}})


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    """Two episodes of the two-camera robot: top 20x24 rgb8, hand 10x12 bgr8 (other size, other encoding)."""
    store = make_typestore()
    root = tmp_path_factory.mktemp("views")
    rng = np.random.default_rng(3)
    raw = []
    for e, n in enumerate((4, 3)):
        top = rng.integers(0, 256, (n, 20, 24, 3), dtype=np.uint8)
        hand = rng.integers(0, 256, (n, 10, 12, 3), dtype=np.uint8)
        msgs = [("/vla/instruction", rb.STRING, rb.T0 - 1, rb.string(store, f"task {e}"))]
        for t in range(n):
            ns = rb.T0 + t * 50_000_000
            msgs += [("/top/image_raw", rb.IMAGE, ns, rb.image(store, ns, top[t])),
                     ("/hand/image_raw", rb.IMAGE, ns, rb.image(store, ns, hand[t], "bgr8")),
                     ("/joint_states", rb.JOINT_STATE, ns, rb.joint_state(store, ns, ["b", "a"], [t, -t])),
                     ("/vla/action", "vla_adapter_interfaces/msg/ActionChunk", ns, _chunk(store, ns, [t, t]))]
        rb.write_bag(root / f"ep{e}", store, msgs)
        raw.append((top, hand))
    return root, raw


def _chunk(store, ns, action):
    return store.types["vla_adapter_interfaces/msg/ActionChunk"](
        header=rb.header(store, ns), adapter="teleop", instruction="", action_names=["a", "b"], chunk_length=1,
        action_dim=2, dt=0.05, actions=np.asarray(action, np.float32), sequence=0, inference_time=0.0,
        execution_provider="")


def test_views_come_in_the_contract_order_each_resized_to_the_model_size(bags):
    root, raw = bags
    ds = EpisodeDataset(root, image_size=16, chunk_length=2, contract=TWO)
    assert ds.cameras == ("top", "hand") and len(ds) == 7 and ds.proprio_names == ("a", "b")
    item = ds[1]
    top, hand = raw[0][0][1], raw[0][1][1]
    assert item[IMAGE].shape == (2, 3, 16, 16) and item[IMAGE].dtype == torch.float32
    assert np.array_equal(item[IMAGE][0].numpy(), preprocess_image(top, (16, 16)))
    assert np.array_equal(item[IMAGE][1].numpy(), preprocess_image(hand, (16, 16)))
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch[IMAGE].shape == (3, 2, 3, 16, 16)  # (B, V, 3, H, W): processing.IMAGE
    swapped = EpisodeDataset(root, image_size=16, chunk_length=2, contract=TWO, cameras=("hand", "top"))
    assert torch.equal(swapped[1][IMAGE], item[IMAGE].flip(0))  # the model's order wins


def test_each_view_gets_its_own_random_shift(bags):
    root, raw = bags
    ds = EpisodeDataset(root, image_size=16, chunk_length=1, contract=TWO, augment=True, max_shift=3)
    torch.manual_seed(7)
    item = ds[0]
    torch.manual_seed(7)  # the same draws, view by view, in camera order
    expect = [random_shift(resize_rgb(v[0], (16, 16)), 3) for v in raw[0]]
    for v in range(2):
        assert np.array_equal(item[IMAGE][v].numpy(), preprocess_image(expect[v], (16, 16)))
    torch.manual_seed(7)
    shifts = [torch.randint(0, 7, (2,)).tolist() for _ in range(2)]
    assert shifts[0] != shifts[1]  # (with this seed) the two views moved differently


def test_unequal_camera_counts_in_one_dataset_are_refused(bags):
    root, _ = bags
    two = read_episode(root / "ep0", contract=TWO)
    one = read_episode(root / "ep1", contract=ONE)
    with pytest.raises(ValueError) as err:
        EpisodeDataset([two, one], image_size=16, chunk_length=1)
    msg = str(err.value)
    assert "ep1 has cameras ['top'] (1)" in msg and "ep0 has ['top', 'hand'] (2)" in msg
    with pytest.raises(ValueError, match=r"the model takes \['top', 'wrist'\]"):
        EpisodeDataset([two], image_size=16, chunk_length=1, cameras=("top", "wrist"))


def test_one_camera_items_are_the_single_camera_items_with_v_1(tmp_path):
    """The single-camera path, augmentation included, draws and computes exactly what it did before views."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 12, 12, 3), dtype=np.uint8)
    with EpisodeWriter(tmp_path / "ep", task="t", seed=0) as w:
        for t in range(5):
            w.write_step(rb.T0 + t * 10**7, images[t], np.zeros(4), np.zeros(4), instruction="go")
    ds = EpisodeDataset(tmp_path / "ep", image_size=10, chunk_length=1, augment=True, max_shift=2)
    assert ds.cameras == ("camera",)
    for i in range(5):
        torch.manual_seed(i)
        got = ds[i][IMAGE]
        torch.manual_seed(i)
        before = preprocess_image(random_shift(resize_rgb(images[i], (10, 10)), 2), (10, 10))
        assert got.shape == (1, 3, 10, 10) and np.array_equal(got[0].numpy(), before)


def test_frames_are_held_once_when_no_view_needs_resizing(bags):
    """At the model's size the episodes' frames become views into the dataset's one array (same values), so a
    45-task two-camera dataset costs its frames once in memory; a resized view keeps the episode's own frames."""
    root, raw = bags
    eps = [read_episode(root / f"ep{e}", contract=TWO) for e in range(2)]
    for ep in eps:  # make both views 10x12 so nothing needs resizing
        ep.views = {"top": ep.views["top"][:, :10, :12].copy(), "hand": ep.views["hand"]}
        ep.images = ep.views["top"]
    before = {e: {c: v.copy() for c, v in ep.views.items()} for e, ep in enumerate(eps)}
    ds = EpisodeDataset(eps, image_size=(10, 12), chunk_length=1, cameras=("hand", "top"))
    for e, ep in enumerate(eps):
        assert ep.cameras == ("top", "hand") and ep.images is ep.views["top"]
        for v, c in enumerate(ds.cameras):
            assert np.shares_memory(ep.views[c], ds._images[e]) and np.array_equal(ep.views[c], before[e][c])
            assert np.array_equal(ds._images[e][:, v], before[e][c])
    resized = EpisodeDataset(root, image_size=16, chunk_length=1, contract=TWO)
    assert not np.shares_memory(resized.episodes[0].views["top"], resized._images[0])
    assert np.array_equal(resized.episodes[0].views["hand"], raw[0][1])
