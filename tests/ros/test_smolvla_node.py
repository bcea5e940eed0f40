"""vla_adapter_node serving a SmolVLA (exported from a tiny LeRobot checkpoint) and switching its adapters."""

from __future__ import annotations

import numpy as np
import pytest

from vla_adapter_interfaces.srv import ListAdapters, SwitchAdapter
from vla_adapter_ros.ros.conversions import action_chunk_to_array

# The LeRobot venv's fixtures (a SmolVLA built, adapters trained, an export) take ~1 min on an idle machine.
pytestmark = [pytest.mark.ros, pytest.mark.timeout(900)]


def test_the_node_serves_smolvla_and_switches_two_adapters(start_policy, make_driver, smolvla_model):
    proc = start_policy(smolvla_model["dir"], providers="cpu", camera_reliability="reliable", camera_depth=10)
    d = make_driver(proc)
    try:
        d.wait_until_serving()
        d.prime("push the cube")
        listed = d.call(ListAdapters, "list_adapters", ListAdapters.Request())
        assert listed.active_adapter == "grip" and sorted(a.name for a in listed.adapters) == ["grip", "push"]
        rgb = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        chunks = {}
        for name in ("grip", "push", "grip"):
            reply = d.call(SwitchAdapter, "switch_adapter", SwitchAdapter.Request(adapter=name))
            assert reply.success, reply.message
            start = d.action_count()
            stamp = d.send_frame(rgb)
            d.wait_for(lambda s=stamp: d.answered(s), 20, f"the answer with {name}")
            action = [a for a in d.wait_actions(start + 1) if a.adapter == name][-1]
            assert (action.chunk_length, action.action_dim) == (8, 4)
            assert list(action.action_names) == ["dx", "dy", "dz", "gripper"]
            chunk = action_chunk_to_array(action)
            assert np.all(np.isfinite(chunk))
            chunks.setdefault(name, chunk)
        assert np.abs(chunks["grip"] - chunks["push"]).max() > 1e-3  # the adapters act differently
    except BaseException:
        print(proc.log())
        raise
