"""EpisodeDataset over rosbag2 episodes: exact items, chunk padding, statistics, augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from vla_adapter_ros.bags.episodes import EpisodeWriter
from vla_adapter_ros.bags.typestore import make_typestore
from vla_adapter_ros.core.data import EpisodeDataset, random_shift
from vla_adapter_ros.processing import (
    ACTIONS,
    ACTIONS_MASK,
    IMAGE,
    INSTRUCTION,
    PROPRIO,
    Normalizer,
    preprocess_image,
)

LENGTHS = (5, 3)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Two episodes per storage; returns {storage: dir} and the raw arrays per episode."""
    store = make_typestore()
    rng = np.random.default_rng(1)
    raw = []
    for n in LENGTHS:
        raw.append((rng.integers(0, 256, (n, 12, 12, 3), dtype=np.uint8),
                    rng.normal(size=(n, 4)).astype(np.float32), rng.uniform(-1, 1, (n, 4)).astype(np.float32)))
    dirs = {}
    for storage in ("mcap", "sqlite3"):
        root = tmp_path_factory.mktemp(storage)
        for e, (images, proprio, actions) in enumerate(raw):
            with EpisodeWriter(root / f"ep{e}", task="reach-v3", seed=e, storage=storage, typestore=store) as w:
                for t in range(len(images)):
                    w.write_step(10**9 + t * 10**7, images[t], proprio[t], actions[t], instruction=f"task {e}")
        dirs[storage] = root
    return dirs, raw


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_items_are_exact(recorded, storage):
    dirs, raw = recorded
    ds = EpisodeDataset(dirs[storage], image_size=12, chunk_length=3)
    assert len(ds) == sum(LENGTHS) and ds.proprio_dim == 4 and ds.action_dim == 4
    all_p = np.concatenate([r[1] for r in raw])
    all_a = np.concatenate([r[2] for r in raw])
    fitted = Normalizer.fit(all_p), Normalizer.fit(all_a)
    assert np.array_equal(ds.stats["proprio"].mean, fitted[0].mean)
    assert np.array_equal(ds.stats["actions"].std, fitted[1].std)
    i = 0
    for e, (images, proprio, actions) in enumerate(raw):
        norm_a = fitted[1].normalize(actions)
        for t in range(len(images)):
            item = ds[i]
            i += 1
            assert item[IMAGE].dtype == torch.float32 and item[IMAGE].shape == (1, 3, 12, 12)  # (V = 1, 3, H, W)
            assert np.array_equal(item[IMAGE].numpy()[0], preprocess_image(images[t], (12, 12)))
            assert item[INSTRUCTION] == f"task {e}"
            assert np.array_equal(item[PROPRIO].numpy(), fitted[0].normalize(proprio[t]))
            valid = min(3, len(images) - t)
            assert item[ACTIONS_MASK].tolist() == [True] * valid + [False] * (3 - valid)
            assert np.array_equal(item[ACTIONS].numpy()[:valid], norm_a[t:t + valid])
            assert np.array_equal(item[ACTIONS].numpy()[valid:], np.repeat(norm_a[-1:], 3 - valid, axis=0))


def test_mcap_and_sqlite3_give_the_same_dataset(recorded):
    dirs, _ = recorded
    a, b = EpisodeDataset(dirs["mcap"], 12, 2), EpisodeDataset(dirs["sqlite3"], 12, 2)
    for i in range(len(a)):
        for key in (IMAGE, PROPRIO, ACTIONS, ACTIONS_MASK):
            assert torch.equal(a[i][key], b[i][key])


def test_given_stats_are_used_and_checked(recorded):
    dirs, raw = recorded
    stats = {"proprio": Normalizer(np.zeros(4), np.full(4, 2.0)), "actions": Normalizer(np.ones(4), np.ones(4))}
    ds = EpisodeDataset(dirs["mcap"], 12, 1, stats=stats)
    assert ds.stats["proprio"] is stats["proprio"]
    assert np.allclose(ds[0][PROPRIO].numpy(), raw[0][1][0] / 2.0)
    assert np.allclose(ds[0][ACTIONS].numpy()[0], raw[0][2][0] - 1.0)
    with pytest.raises(ValueError, match=r"stats\['actions'\] has dimension 3"):
        EpisodeDataset(dirs["mcap"], 12, 1, stats={**stats, "actions": Normalizer(np.zeros(3), np.ones(3))})


def test_resize_batches_and_augmentation(recorded):
    dirs, _ = recorded
    ds = EpisodeDataset(dirs["mcap"], image_size=(8, 6), chunk_length=4, augment=True, max_shift=2)
    batch = next(iter(DataLoader(ds, batch_size=4, shuffle=False)))
    assert batch[IMAGE].shape == (4, 1, 3, 8, 6) and batch[ACTIONS].shape == (4, 4, 4)
    assert batch[ACTIONS_MASK].dtype == torch.bool and batch[INSTRUCTION] == ["task 0"] * 4
    assert ds.instructions == ["task 0", "task 1"]


def test_random_shift_moves_content_and_keeps_shape():
    image = np.arange(5 * 5 * 3, dtype=np.uint8).reshape(5, 5, 3)
    g = torch.Generator().manual_seed(0)
    shifted = [random_shift(image, 2, g) for _ in range(20)]
    assert all(s.shape == image.shape and s.dtype == np.uint8 for s in shifted)
    assert any(not np.array_equal(s, image) for s in shifted)
    assert random_shift(image, 0) is image


def test_empty_or_wrong_inputs(tmp_path):
    from vla_adapter_ros.bags.errors import BagNotFoundError

    with pytest.raises(BagNotFoundError):
        EpisodeDataset(tmp_path, 12, 1)
    with pytest.raises(ValueError, match="chunk_length"):
        EpisodeDataset(tmp_path, 12, 0)
