"""Instruction templates: coverage, disjoint held-out paraphrases, seeded sampling."""

from __future__ import annotations

from metaworld.env_dict import MT10_V3

from vla_adapter_ros.core.sim.instructions import (
    INSTRUCTIONS,
    heldout_instructions,
    instruction_tasks,
    sample_instruction,
    training_instructions,
)
from vla_adapter_ros.core.sim.metaworld_env import available_tasks
from vla_adapter_ros.processing import normalize_instruction


def _norm(texts):
    return {normalize_instruction(t).lower() for t in texts}


def test_mt10_and_twenty_more_tasks_are_covered():
    assert set(MT10_V3) <= set(INSTRUCTIONS)
    assert len(INSTRUCTIONS) >= 30
    assert set(instruction_tasks()) <= set(available_tasks())


def test_heldout_never_overlaps_training_anywhere():
    every_train = set().union(*(_norm(v.train) for v in INSTRUCTIONS.values()))
    for task, v in INSTRUCTIONS.items():
        assert len(_norm(v.train)) == len(v.train) >= 5, task
        assert len(_norm(v.heldout)) == len(v.heldout) >= 3, task
        assert not _norm(v.heldout) & every_train, task


def test_sampling_is_seeded_and_uses_the_right_split():
    a = [sample_instruction("drawer-open", s) for s in range(30)]
    assert a == [sample_instruction("drawer-open-v3", s) for s in range(30)]
    assert set(a) <= set(training_instructions("drawer-open")) and len(set(a)) > 1
    assert sample_instruction("reach", 3, "heldout") in heldout_instructions("reach-v3")
