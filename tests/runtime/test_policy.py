"""OnnxPolicy: parity with PyTorch in both modes, the infer contract, errors, hot-adding adapters."""

from __future__ import annotations

import json

import numpy as np
import pytest
from runtime_helpers import ADAPTERS, frame, raw_proprio, replace_file

from vla_adapter_ros import processing
from vla_adapter_ros.runtime.errors import (
    ChecksumError,
    InputError,
    ManifestError,
    NonFiniteOutputError,
    PolicyRuntimeError,
    ProviderRunError,
    UnknownAdapterError,
)
from vla_adapter_ros.runtime.policy import OnnxPolicy


# torch and core are imported inside the tests that compare with PyTorch: the rest of this module
# also runs under the Python 3.10 / 3.12 serving-only venvs (scripts/test_pythons.sh), which lack them.
def torch_predict(model, adapter, *inputs):
    import torch

    from vla_adapter_ros.core.adapters import set_adapter

    with torch.no_grad():
        set_adapter(model, adapter)
        try:
            return model.predict(*(torch.as_tensor(x) for x in inputs)).numpy()
        finally:
            set_adapter(model, None)


@pytest.fixture(scope="module")
def merged_policy(model_dir):
    with OnnxPolicy.from_dir(model_dir, providers=["cpu"], mode="merged") as policy:
        yield policy


@pytest.mark.parametrize("mode", ["shared", "merged"])
@pytest.mark.parametrize("batch", [1, 4])
def test_network_parity_every_adapter(request, torch_policy, mode, batch):
    from vla_adapter_ros.core.model import example_inputs

    policy = request.getfixturevalue(f"{mode}_policy")
    inputs = [t.numpy() for t in example_inputs(torch_policy.config, batch_size=batch, seed=batch)]
    outputs = {}
    for name in ADAPTERS:
        got = policy.run_network(*inputs, adapter=name)
        assert got.shape == (batch, 3, 4)
        assert np.abs(got - torch_predict(torch_policy, name, *inputs)).max() <= 1e-4
        outputs[name] = got
    assert np.abs(outputs["drawer"] - outputs["button"]).max() > 1e-3  # the adapters really differ


def test_shared_backbone_alone_is_the_identity_adapter(shared_policy, torch_policy):
    from vla_adapter_ros.core.model import example_inputs

    inputs = [t.numpy() for t in example_inputs(torch_policy.config, batch_size=2, seed=5)]
    got = shared_policy.run_network(*inputs, adapter=None)
    assert np.abs(got - torch_predict(torch_policy, None, *inputs)).max() <= 1e-4


@pytest.mark.parametrize("size", [(32, 32), (120, 160), (480, 640)])
def test_preprocessing_parity_with_the_training_path(shared_policy, torch_policy, torch_language, size):
    """The same camera frame through core (processing + torch) and through runtime.infer."""
    m = shared_policy.manifest
    rgb, text, proprio = frame(size=size), "open the drawer", raw_proprio(m)
    for name in ADAPTERS:
        shared_policy.switch(name)
        result = shared_policy.infer(rgb, text, proprio)
        image = processing.preprocess_image(rgb, (32, 32))[None]  # training path: same function
        norm_proprio = torch_policy.stats["proprio"].normalize(proprio)[None]
        emb = torch_language.encode([text])
        raw = torch_predict(torch_policy, name, image, emb, norm_proprio)[0]
        expected = np.clip(m.actions.normalizer.denormalize(raw), m.actions.low, m.actions.high)
        assert result.adapter == name and result.actions.shape == (3, 4)
        assert np.abs(result.actions - expected).max() <= 1e-4
    shared_policy.switch("drawer")


def test_infer_result_contract(shared_policy):
    m = shared_policy.manifest
    shared_policy.switch("button")
    result = shared_policy.infer(frame(), "press the button from the top", raw_proprio(m))
    assert result.adapter == "button" and result.instruction == "press the button from the top"
    assert result.provider == shared_policy.provider == "CPUExecutionProvider"
    assert set(result.timing) >= {"preprocess_ms", "language_ms", "network_ms", "total_ms"}
    assert all(v >= 0 for v in result.timing.values())
    assert result.timing["total_ms"] >= result.timing["network_ms"]
    assert result.actions.dtype == np.float32
    assert np.all(result.actions >= -1) and np.all(result.actions <= 1)
    again = shared_policy.infer(frame(), "press the button from the top", raw_proprio(m))
    assert again.instruction_cached and np.array_equal(again.actions, result.actions)
    shared_policy.switch("drawer")


def test_merged_and_shared_agree_end_to_end(shared_policy, merged_policy):
    m = shared_policy.manifest
    for name in ADAPTERS:
        shared_policy.switch(name)
        merged_policy.switch(name)
        a = shared_policy.infer(frame(), "open the drawer", raw_proprio(m)).actions
        b = merged_policy.infer(frame(), "open the drawer", raw_proprio(m)).actions
        assert np.abs(a - b).max() <= 1e-5
    shared_policy.switch("drawer")


@pytest.mark.parametrize(
    ("rgb", "proprio", "message"),
    [
        (np.zeros((32, 32), np.uint8), [0.0] * 4, "expected a \\(H, W, 3\\) uint8"),
        (np.zeros((32, 32, 3), np.float32), [0.0] * 4, "uint8"),
        (np.zeros((32, 32, 3), np.uint8), [0.0] * 3, "shape \\(3,\\)"),
        (np.zeros((32, 32, 3), np.uint8), [0.0, np.nan, 0.0, 0.0], "non-finite"),
        (np.zeros((32, 32, 3), np.uint8), None, "needs proprio"),
        (np.zeros((32, 32, 3), np.uint8), ["a", "b", "c", "d"], "must be 4 numbers"),
    ],
)
def test_bad_inputs_raise_input_error(shared_policy, rgb, proprio, message):
    with pytest.raises(InputError, match=message):
        shared_policy.infer(rgb, "open the drawer", proprio)


def test_overflowing_proprio_raises_non_finite_output(shared_policy):
    with pytest.raises(NonFiniteOutputError, match="non-finite"):
        shared_policy.infer(frame(), "open the drawer", [3e38, 3e38, 3e38, 3e38])


def test_manifest_with_bad_action_stats_raises_non_finite_output(clone):
    path = clone / "manifest.json"
    data = json.loads(path.read_text())
    data["actions"]["normalization"] = {"mean": [3.4e38] * 4, "std": [3.4e38] * 4}  # finite, but overflows
    replace_file(path, json.dumps(data).encode())
    with OnnxPolicy.from_dir(clone, providers=["cpu"], warmup=False) as policy:
        with pytest.raises(NonFiniteOutputError, match="action statistics"):
            for seed in range(8):  # some output is positive, and mean + x * std overflows
                policy.infer(frame(seed), "open the drawer", raw_proprio(policy.manifest))


def test_unknown_adapter_lists_the_known_ones(shared_policy):
    with pytest.raises(UnknownAdapterError) as err:
        shared_policy.switch("door")
    assert "'door'" in str(err.value) and "drawer" in str(err.value) and "button" in str(err.value)
    assert isinstance(err.value, PolicyRuntimeError) and shared_policy.active_adapter == "drawer"
    with pytest.raises(UnknownAdapterError, match="listed in the manifest"):
        OnnxPolicy.from_dir(shared_policy.manifest.root, providers=["cpu"], adapter="door", warmup=False)


def test_switch_returns_previous_and_keeps_one_session(model_dir):
    with OnnxPolicy.from_dir(model_dir, providers=["cpu"], warmup=False) as policy:
        sessions = {id(s.session) for s in policy._slots.values()}
        assert policy.active_adapter == "drawer"
        assert policy.switch("button") == "drawer"
        assert policy.switch(None) == "button"  # backbone alone (identity adapter)
        assert policy.switch("drawer") is None
        assert len(sessions) == 1 and {id(s.session) for s in policy._slots.values()} == sessions


def test_merged_mode_has_no_backbone_alone(merged_policy):
    with pytest.raises(UnknownAdapterError, match="Loaded: \\['drawer', 'button'\\]"):
        merged_policy.switch(None)


def snapshot(policy):
    m = policy.manifest
    return (
        [a.name for a in policy.adapters],
        policy.active_adapter,
        m.adapter_names,
        policy.infer(frame(), "open the drawer", raw_proprio(m)).actions.copy(),
    )


def test_load_adapter_hot_adds_without_new_session(model_dir):
    with OnnxPolicy.from_dir(model_dir, providers=["cpu"], load_adapters=["drawer"]) as policy:
        assert [a.name for a in policy.adapters] == ["drawer"]
        with pytest.raises(UnknownAdapterError, match="call load_adapter\\('button'\\) first"):
            policy.switch("button")
        spec = policy.load_adapter("button", activate=True)
        assert spec.name == "button" and policy.active_adapter == "button"
        assert len({id(s.session) for s in policy._slots.values()}) == 1
        assert policy.load_adapter("button").name == "button"  # idempotent


@pytest.mark.parametrize("mode", ["shared", "merged"])
def test_load_adapter_failure_leaves_the_runtime_unchanged(clone, mode):
    target = clone / ("adapters/button.onnx_adapter" if mode == "shared" else "merged/button.onnx")
    data = bytearray(target.read_bytes())
    data[-10] ^= 0xFF
    replace_file(target, bytes(data))
    with OnnxPolicy.from_dir(clone, providers=["cpu"], mode=mode, load_adapters=["drawer"]) as policy:
        before = snapshot(policy)
        with pytest.raises(ChecksumError):
            policy.load_adapter("button")
        with pytest.raises(UnknownAdapterError, match="'door'"):
            policy.load_adapter("door")
        after = snapshot(policy)
        assert before[:3] == after[:3] and np.array_equal(before[3], after[3])


def test_load_adapter_with_wrong_shapes_is_refused(clone):
    """An adapter file whose tensors do not fit the shared graph, listed with a correct checksum."""
    import hashlib

    import onnxruntime as ort

    source = ort.AdapterFormat.read_adapter(str(clone / "adapters/drawer.onnx_adapter"))  # alive while read
    arrays = {k: v.numpy().copy() for k, v in source.get_parameters().items()}
    first = next(iter(arrays))
    arrays[first] = np.zeros((arrays[first].shape[0] + 1, *arrays[first].shape[1:]), np.float32)
    with OnnxPolicy.from_dir(clone, providers=["cpu"], load_adapters=["drawer"]) as policy:
        before = snapshot(policy)
        # The directory gains an adapter (file + manifest entry with the right sha256) while serving.
        fmt = ort.AdapterFormat()
        values = {k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in arrays.items()}
        fmt.set_parameters(values)
        fmt.export_adapter(str(clone / "adapters/wide.onnx_adapter"))
        blob = (clone / "adapters/wide.onnx_adapter").read_bytes()
        sha = hashlib.sha256(blob).hexdigest()
        path = clone / "manifest.json"
        data = json.loads(path.read_text())
        data["files"]["adapters/wide.onnx_adapter"] = {"sha256": sha, "size": len(blob)}
        data["adapters"].append({**data["adapters"][0], "name": "wide", "file": "adapters/wide.onnx_adapter", "sha256": sha})
        replace_file(path, json.dumps(data).encode())
        with pytest.raises(ManifestError, match=f"tensor '{first}' is"):
            policy.load_adapter("wide")
        after = snapshot(policy)
        assert before[:3] == after[:3] and np.array_equal(before[3], after[3])
        assert policy.load_adapter("button").name == "button"  # the re-read manifest still serves


def test_closed_policy_refuses_work(model_dir):
    policy = OnnxPolicy.from_dir(model_dir, providers=["cpu"], warmup=False)
    policy.close()
    with pytest.raises(PolicyRuntimeError, match="closed"):
        policy.infer(frame(), "open the drawer", [0.0] * 4)


def test_load_and_warmup_are_timed(model_dir):
    with OnnxPolicy.from_dir(model_dir, providers=["cpu"]) as policy:
        assert policy.load_seconds > 0 and policy.warmup_seconds > 0
        assert "drawer" in repr(policy)


def test_run_time_provider_failure_and_fall_back(model_dir):
    """A real onnxruntime run failure (the RunOptions terminate flag makes run() raise Fail) surfaces as
    ProviderRunError naming the provider; fall_back() rebuilds every session (on CPU, the chain's last
    provider, a fresh CPU session) keeping the loaded adapters, the active one and the outputs."""
    with OnnxPolicy.from_dir(model_dir, providers=["cpu"], adapter="button") as policy:
        before = snapshot(policy)
        old_sessions = {id(s.session) for s in policy._slots.values()}
        policy._state.run_options.terminate = True
        with pytest.raises(ProviderRunError, match="CPUExecutionProvider failed running adapter 'button'") as err:
            policy.infer(frame(), "open the drawer", raw_proprio(policy.manifest))
        assert err.value.provider == "CPUExecutionProvider" and isinstance(err.value, PolicyRuntimeError)
        report = policy.fall_back("test")
        assert report.active == "CPUExecutionProvider" and policy.fallbacks == [("CPUExecutionProvider", "test")]
        assert not old_sessions & {id(s.session) for s in policy._slots.values()}
        after = snapshot(policy)
        assert before[:3] == after[:3] and np.array_equal(before[3], after[3])


@pytest.mark.parametrize("mode", ["shared", "merged"])
def test_fall_back_that_cannot_rebuild_leaves_the_policy_unchanged(clone, mode):
    with OnnxPolicy.from_dir(clone, providers=["cpu"], mode=mode) as policy:
        before = snapshot(policy)
        slots = dict(policy._slots)
        m = policy.manifest
        target = clone / (m.shared_file if mode == "shared" else m.adapter("drawer").merged_file)
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        replace_file(target, bytes(data))
        with pytest.raises(ChecksumError):
            policy.fall_back("test")
        assert policy._slots == slots and policy.fallbacks == []
        after = snapshot(policy)
        assert before[:3] == after[:3] and np.array_equal(before[3], after[3])
