"""Training data: rosbag2 episodes as a torch ``Dataset`` of (camera views, instruction, proprio, action chunk).

Episodes are read once (:func:`vla_adapter_ros.bags.episodes.read_episode`, through the robot
contract when one is given) and kept in memory, images as uint8 already resized to the model's
size, so an item costs one ``preprocess_image`` per view and a few copies. Cameras of any
resolution and encoding are allowed: every view is resized to the model's size. Items use the
batch keys of :mod:`vla_adapter_ros.processing`:

- ``IMAGE`` (V, 3, H, W) float32 in [-1, 1]: the V camera views in the contract's camera order
  (= ``ModelConfig.cameras``); a single-camera episode gives V = 1
- ``INSTRUCTION`` str, the instruction in force at the frame
- ``PROPRIO`` (P,) float32, normalised
- ``ACTIONS`` (K, A) float32, normalised: the actions of frames t .. t+K-1; past the
  episode end the last action is repeated and ``ACTIONS_MASK`` (K,) bool is False there.

``stats`` = {"proprio": Normalizer, "actions": Normalizer}, fitted on every frame of
these episodes unless given (evaluation and fine-tuning pass the training stats).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from vla_adapter_ros.bags.episodes import DEFAULT_TOPICS, Episode, EpisodeTopics, find_episodes, read_episode
from vla_adapter_ros.bags.typestore import make_typestore
from vla_adapter_ros.contract import RobotContract
from vla_adapter_ros.processing import (
    ACTIONS,
    ACTIONS_MASK,
    IMAGE,
    INSTRUCTION,
    PROPRIO,
    Normalizer,
    preprocess_image,
    resize_rgb,
)

STATS_KEYS = ("proprio", "actions")


def _size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if int(h) <= 0 or int(w) <= 0:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    return int(h), int(w)


def random_shift(image: np.ndarray, max_shift: int, generator: torch.Generator | None = None) -> np.ndarray:
    """Shift a (H, W, 3) uint8 image by up to ``max_shift`` pixels each way, edges replicated (DrQ)."""
    if max_shift <= 0:
        return image
    h, w = image.shape[:2]
    padded = np.pad(image, ((max_shift, max_shift), (max_shift, max_shift), (0, 0)), mode="edge")
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2,), generator=generator).tolist()
    return padded[dy:dy + h, dx:dx + w]


class EpisodeDataset(Dataset):
    """Frames of rosbag2 episodes with K-step action chunks (see the module docstring).

    ``bag_paths``: a bag, a directory, a glob, or an iterable of these and/or
    already-read :class:`Episode` objects. ``contract`` (a :class:`RobotContract` or its
    YAML file): read the bags through it (every camera, its state and recorded actions);
    without one, single-camera bags with ``topics``. ``cameras``: the views to yield, in
    order (the model's ``ModelConfig.cameras``); default the episodes' own. ``instruction``:
    the instruction of bags that record none. ``augment`` enables a random shift of up to
    ``max_shift`` pixels, drawn per view (off by default; uses torch's RNG so DataLoader
    workers get distinct streams).
    """

    def __init__(self, bag_paths: str | Path | Iterable[str | Path | Episode], image_size: int | tuple[int, int] = 96,
                 chunk_length: int = 4, stats: Mapping[str, Normalizer] | None = None, *,
                 topics: EpisodeTopics = DEFAULT_TOPICS, augment: bool = False, max_shift: int = 4,
                 proprio_names: Iterable[str] | None = None, typestore=None,
                 contract: RobotContract | str | Path | None = None, cameras: Sequence[str] | None = None,
                 instruction: str | None = None) -> None:
        if chunk_length < 1:
            raise ValueError(f"chunk_length must be >= 1, got {chunk_length}")
        self.image_size = _size(image_size)
        self.chunk_length = int(chunk_length)
        self.augment, self.max_shift = bool(augment), int(max_shift)
        if contract is not None and not isinstance(contract, RobotContract):
            contract = RobotContract.load(contract)
        self.contract = contract
        self.episodes = self._load(bag_paths, topics, proprio_names, typestore, contract, instruction)
        if not self.episodes:
            raise ValueError(f"no episodes in {bag_paths!r}")
        first = self.episodes[0]
        self.cameras = tuple(cameras) if cameras is not None else first.cameras
        for ep in self.episodes:  # one camera layout for the whole dataset, the one the model takes (any order)
            if sorted(ep.cameras) != sorted(self.cameras):
                whose = f"episode {first.path} has" if cameras is None else "the model takes"
                raise ValueError(f"episode {ep.path} has cameras {list(ep.cameras)} ({len(ep.cameras)}), "
                                 f"{whose} {list(self.cameras)} ({len(self.cameras)}); every episode of a dataset "
                                 "needs the same cameras (read them through one robot contract)")
        for ep in self.episodes[1:]:
            if ep.proprio.shape[1] != first.proprio.shape[1] or ep.actions.shape[1] != first.actions.shape[1]:
                raise ValueError(f"episode {ep.path} has proprio/action dims {ep.proprio.shape[1]}/"
                                 f"{ep.actions.shape[1]}, {first.path} has {first.proprio.shape[1]}/"
                                 f"{first.actions.shape[1]}")
        self.proprio_dim, self.action_dim = first.proprio.shape[1], first.actions.shape[1]
        self.proprio_names, self.action_names = first.proprio_names, first.action_names
        self.stats = self._check_stats(stats) if stats is not None else self.fit_stats(self.episodes)

        # Images resized once (uint8), (T, V, h, w, 3) per episode; vectors normalised once.
        self._images = [self._stack_views(ep) for ep in self.episodes]
        self._proprio = [self.stats["proprio"].normalize(ep.proprio) for ep in self.episodes]
        self._actions = [self.stats["actions"].normalize(ep.actions) for ep in self.episodes]
        self._index = np.concatenate([np.stack([np.full(len(ep), e), np.arange(len(ep))], axis=1)
                                      for e, ep in enumerate(self.episodes)]).astype(np.int64)  # (N, 2)

    @staticmethod
    def _load(spec, topics: EpisodeTopics, proprio_names, typestore, contract: RobotContract | None,
              instruction: str | None) -> list[Episode]:
        items = [spec] if isinstance(spec, (str, Path, Episode)) else list(spec)
        store = typestore
        episodes: list[Episode] = []
        for item in items:
            if isinstance(item, Episode):
                episodes.append(item)
                continue
            store = store if store is not None else make_typestore()
            names = tuple(proprio_names) if proprio_names is not None else None
            episodes += [read_episode(p, topics, typestore=store, proprio_names=names, contract=contract,
                                      instruction=instruction) for p in find_episodes(item)]
        return episodes

    def _stack_views(self, ep: Episode) -> np.ndarray:
        """(T, V, h, w, 3) uint8: ``ep``'s views resized, in ``self.cameras`` order.

        When no view needed resizing, the episode's own frames are re-pointed at this one array
        (the same values), so the frames are held once and not twice: 45 tasks x 30 episodes of two
        96x96 views are ~6.6 GB, a second copy would not fit beside other work on a 24 GiB machine.
        """
        stacked = np.stack([np.stack([resize_rgb(im, self.image_size) for im in ep.views[c]])
                            for c in self.cameras], axis=1)  # (T, V, h, w, 3)
        if all(ep.views[c].shape[1:3] == self.image_size for c in self.cameras):
            ep.views = {c: stacked[:, self.cameras.index(c)] for c in ep.views}  # (T, h, w, 3) views into it
            ep.images = next(iter(ep.views.values()))
        return stacked

    @staticmethod
    def fit_stats(episodes: Iterable[Episode]) -> dict[str, Normalizer]:
        """Normalisers over every frame of ``episodes``."""
        episodes = list(episodes)
        return {"proprio": Normalizer.fit(np.concatenate([ep.proprio for ep in episodes])),
                "actions": Normalizer.fit(np.concatenate([ep.actions for ep in episodes]))}

    def _check_stats(self, stats: Mapping[str, Normalizer]) -> dict[str, Normalizer]:
        missing = [k for k in STATS_KEYS if k not in stats]
        if missing:
            raise ValueError(f"stats need keys {STATS_KEYS}, missing {missing}")
        dims = {"proprio": self.proprio_dim, "actions": self.action_dim}
        for key in STATS_KEYS:
            if stats[key].dim != dims[key]:
                raise ValueError(f"stats[{key!r}] has dimension {stats[key].dim}, the episodes have {dims[key]}")
        return {k: stats[k] for k in STATS_KEYS}

    # -- Dataset ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._index)

    @property
    def instructions(self) -> list[str]:
        """Distinct instructions, in order of first appearance."""
        return list(dict.fromkeys(s for ep in self.episodes for s in ep.instructions))

    def __getitem__(self, i: int) -> dict[str, object]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} frames")
        e, t = (int(v) for v in self._index[i])
        views = self._images[e][t]  # (V, h, w, 3) uint8
        if self.augment:  # an independent shift per view (cameras move independently of each other)
            views = [random_shift(view, self.max_shift) for view in views]
        actions = self._actions[e]
        k = self.chunk_length
        end = min(t + k, len(actions))
        valid = end - t
        chunk = np.empty((k, self.action_dim), np.float32)  # (K, A)
        chunk[:valid] = actions[t:end]
        chunk[valid:] = actions[end - 1]  # padding repeats the last action; masked out of the loss
        mask = np.arange(k) < valid
        return {
            IMAGE: torch.from_numpy(np.stack([preprocess_image(view, self.image_size) for view in views])),
            INSTRUCTION: self.episodes[e].instructions[t],
            PROPRIO: torch.from_numpy(self._proprio[e][t].copy()),
            ACTIONS: torch.from_numpy(chunk),
            ACTIONS_MASK: torch.from_numpy(mask),
        }
