"""The generated vla_adapter_interfaces types import and carry the documented fields."""

from __future__ import annotations


def test_action_chunk_fields():
    from vla_adapter_interfaces.msg import ActionChunk

    msg = ActionChunk()
    for field in ("header", "adapter", "instruction", "action_names", "chunk_length", "action_dim", "dt",
                  "actions", "sequence", "inference_time", "execution_provider"):
        assert hasattr(msg, field), field
    msg.actions = [0.5, -1.0]
    assert list(msg.actions) == [0.5, -1.0]


def test_services_fields():
    from vla_adapter_interfaces.msg import AdapterInfo
    from vla_adapter_interfaces.srv import ListAdapters, LoadAdapter, SwitchAdapter

    assert SwitchAdapter.Request(adapter="x").adapter == "x"
    rsp = SwitchAdapter.Response()
    for field in ("success", "message", "active_adapter", "previous_adapter"):
        assert hasattr(rsp, field)
    lst = ListAdapters.Response(active_adapter="a", adapters=[AdapterInfo(name="a", instruction_examples=["go"])])
    assert lst.adapters[0].instruction_examples == ["go"]
    assert hasattr(LoadAdapter.Request(), "activate")
