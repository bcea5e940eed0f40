"""Meta-World's difficulty groups, the grouping under which MT50 results of VLAs are published.

Seo et al. 2022 ("Masked World Models for Visual Control", CoRL 2022, appendix) sorted the 50 tasks into
easy (28), medium (11), hard (6) and very hard (5) by how hard they were for their agents; TinyVLA and
SmolVLA report MT50 success per group with it. Task lists as LeRobot's Meta-World environment carries them
(``src/lerobot/envs/metaworld_config.json``, ``DIFFICULTY_TO_TASKS``, huggingface/lerobot), v3 names.
Plain Python: no Meta-World import.
"""

from __future__ import annotations

GROUPS = ("easy", "medium", "hard", "very_hard")

DIFFICULTY: dict[str, tuple[str, ...]] = {
    "easy": (
        "button-press-v3", "button-press-topdown-v3", "button-press-topdown-wall-v3", "button-press-wall-v3",
        "coffee-button-v3", "dial-turn-v3", "door-close-v3", "door-lock-v3", "door-open-v3", "door-unlock-v3",
        "drawer-close-v3", "drawer-open-v3", "faucet-close-v3", "faucet-open-v3", "handle-press-v3",
        "handle-press-side-v3", "handle-pull-v3", "handle-pull-side-v3", "lever-pull-v3", "plate-slide-v3",
        "plate-slide-back-v3", "plate-slide-back-side-v3", "plate-slide-side-v3", "reach-v3", "reach-wall-v3",
        "window-close-v3", "window-open-v3", "peg-unplug-side-v3",
    ),
    "medium": (
        "basketball-v3", "bin-picking-v3", "box-close-v3", "coffee-pull-v3", "coffee-push-v3", "hammer-v3",
        "peg-insert-side-v3", "push-wall-v3", "soccer-v3", "sweep-v3", "sweep-into-v3",
    ),
    "hard": ("assembly-v3", "hand-insert-v3", "pick-out-of-hole-v3", "pick-place-v3", "push-v3", "push-back-v3"),
    "very_hard": ("shelf-place-v3", "disassemble-v3", "stick-pull-v3", "stick-push-v3", "pick-place-wall-v3"),
}


def difficulty(task: str) -> str:
    """The group of a Meta-World task (``drawer-open``, ``drawer-open-v3``, ``metaworld/drawer-open-v3``)."""
    name = str(task).removeprefix("metaworld/")
    name = name if name.endswith("-v3") else f"{name}-v3"
    for group, tasks in DIFFICULTY.items():
        if name in tasks:
            return group
    raise KeyError(f"{task!r} is not one of Meta-World's 50 tasks")
