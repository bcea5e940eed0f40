"""The device-resident serving paths (IOBinding, CUDA graph) against the plain one, and the policy's provider walk.

On the CPU provider both paths run the same kernels on the same values: their outputs must be
equal, for every adapter, after switches and after a hot-add. What the bound path does
differently (adapter tensors bound once per adapter, preallocated input buffers) is what a GPU
needs; here it is checked for correctness, on a GPU by benchmarks/gpu_check.py for speed. The
CUDA-graph path (one graph session, fixed buffers shared by every adapter, adapter tensors copied
in when the adapter changes) runs on the CPU provider without the graph: the same buffers and
switching logic, checked the same way.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from runtime_helpers import frame, raw_proprio

from vla_adapter_ros.runtime.errors import ProviderError, ProviderRunError
from vla_adapter_ros.runtime.policy import OnnxPolicy
from vla_adapter_ros.runtime.providers import CPU, ProviderConfig
from vla_adapter_ros.runtime.serving import BoundRunner, GraphRunner, PlainRunner

AZURE = "AzureExecutionProvider"
INSTRUCTIONS = ("open the drawer", "press the button from the top")


def cpu(serving: str, *extra: str) -> ProviderConfig:
    return ProviderConfig(providers=(*extra, "cpu"), serving=serving, intra_op_threads=1)


def outputs(policy: OnnxPolicy, names, seed: int = 0) -> dict:
    """infer() for each adapter in ``names`` (switching between them) and run_network at batch 3."""
    rng = np.random.default_rng(seed)
    m = policy.manifest
    h, w = m.image_size
    batch = (rng.uniform(-1, 1, (3, 3, h, w)).astype(np.float32), rng.normal(size=(3, 384)).astype(np.float32),
             rng.normal(size=(3, len(m.proprio_names))).astype(np.float32))
    out = {}
    for i, name in enumerate(names):
        policy.switch(name)
        res = policy.infer(frame(seed + i), INSTRUCTIONS[i % 2], raw_proprio(m, seed + i))
        out[name] = (res.actions, policy.run_network(*batch))
    return out


@pytest.mark.parametrize("serving", ["iobinding", "cuda_graph"])
@pytest.mark.parametrize("mode", ["shared", "merged"])
def test_bound_paths_equal_plain_for_every_adapter_and_switch(model_dir, mode, serving):
    with OnnxPolicy.from_dir(model_dir, providers=cpu("plain"), mode=mode) as plain, \
            OnnxPolicy.from_dir(model_dir, providers=cpu(serving), mode=mode) as bound:
        assert plain.serving == "plain" and bound.serving == serving
        names = ([None] if mode == "shared" else []) + ["drawer", "button", "drawer"]  # switch back and forth
        a, b = outputs(plain, names), outputs(bound, names)
        for name in names:
            assert np.array_equal(a[name][0], b[name][0]), name  # bit-exact on the CPU provider
            assert np.abs(a[name][1] - b[name][1]).max() <= 1e-6, name
        assert np.abs(b["drawer"][1] - b["button"][1]).max() > 1e-3  # the bound adapters really differ


def test_bound_slots_carry_their_own_adapter_tensors(model_dir):
    """run_with_iobinding ignores adapters on RunOptions: each bound slot binds every adapter tensor
    itself, uploaded once when the adapter is prepared."""
    with OnnxPolicy.from_dir(model_dir, providers=cpu("iobinding")) as policy:
        expected = sorted(t.name for t in policy.manifest.adapter_inputs)
        for name in ("drawer", "button"):
            runner = policy._slots[name].runner
            assert isinstance(runner, BoundRunner) and runner.adapter_tensor_names == expected
        assert policy._slots[None].runner.adapter_tensor_names == []  # the backbone's defaults
    with OnnxPolicy.from_dir(model_dir, providers=cpu("plain")) as policy:
        assert isinstance(policy._slots["drawer"].runner, PlainRunner)


def test_graph_slots_share_one_graph_session_and_copy_adapters_only_on_change(model_dir):
    """Shared mode: every adapter serves through the backbone's one graph session; its fixed adapter
    buffers hold the adapter of the last run, rewritten only when another runs. The identity slot
    (the graph's own default adapter values, unreadable without onnx) runs plain."""
    with OnnxPolicy.from_dir(model_dir, providers=cpu("cuda_graph")) as policy:
        runners = {name: policy._slots[name].runner for name in ("drawer", "button")}
        assert all(isinstance(r, GraphRunner) for r in runners.values())
        assert isinstance(policy._slots[None].runner, PlainRunner)
        graph = runners["drawer"].graph
        assert all(r.graph is graph for r in runners.values()) and len(policy._graphs) == 1
        expected = sorted(t.name for t in policy.manifest.adapter_inputs)
        assert runners["drawer"].adapter_tensor_names == expected
        with pytest.raises(ValueError, match="missing"):
            GraphRunner(graph, {})
        policy.switch("button")
        policy.infer(frame(1), INSTRUCTIONS[0], raw_proprio(policy.manifest, 1))
        assert graph.loaded is runners["button"]
        name = expected[-1]
        assert np.array_equal(graph.adapter[name].numpy(), runners["button"]._host[name])
        policy.switch("drawer")
        policy.infer(frame(2), INSTRUCTIONS[0], raw_proprio(policy.manifest, 2))
        assert graph.loaded is runners["drawer"]
        assert np.array_equal(graph.adapter[name].numpy(), runners["drawer"]._host[name])


@pytest.mark.parametrize("serving", ["iobinding", "cuda_graph"])
@pytest.mark.parametrize("mode", ["shared", "merged"])
def test_hot_added_adapter_serves_the_same_on_both_paths(model_dir, mode, serving):
    with OnnxPolicy.from_dir(model_dir, providers=cpu("plain"), mode=mode) as plain, \
            OnnxPolicy.from_dir(model_dir, providers=cpu(serving), mode=mode, load_adapters=["drawer"]) as bound:
        outputs(bound, ["drawer"])  # buffers in use before the hot-add
        bound.load_adapter("button", activate=True)
        a, b = outputs(plain, ["button", "drawer"], seed=7), outputs(bound, ["button", "drawer"], seed=7)
        for name in ("button", "drawer"):
            assert np.array_equal(a[name][0], b[name][0]) and np.abs(a[name][1] - b[name][1]).max() <= 1e-6


def test_auto_serving_is_plain_on_the_cpu(shared_policy):
    assert shared_policy.serving == "plain"


@pytest.mark.parametrize("serving", ["plain", "iobinding"])
def test_run_time_failure_names_the_provider_and_path(model_dir, serving):
    with OnnxPolicy.from_dir(model_dir, providers=cpu(serving), adapter="button") as policy:
        policy._state.run_options.terminate = True  # a real onnxruntime Fail from run()/run_with_iobinding()
        with pytest.raises(ProviderRunError, match=f"CPUExecutionProvider failed running adapter 'button' .{serving}.") as err:
            policy.infer(frame(), "press the button", raw_proprio(policy.manifest))
        assert err.value.provider == CPU
        assert policy.fall_back("test").active == CPU and policy.serving == serving


class _FirstRunFailsOn(OnnxPolicy):
    """Fault injection through the policy's own seam (the slot factory): every slot prepared on
    ``failing`` gets RunOptions whose terminate flag makes onnxruntime's run() really fail."""

    failing = AZURE

    def _slot(self, *args, **kwargs):
        slot = super()._slot(*args, **kwargs)
        slot.run_options.terminate = slot.provider == self.failing
        return slot


@pytest.mark.parametrize("mode", ["shared", "merged"])
def test_a_failed_first_run_moves_the_whole_policy_to_the_next_provider(model_dir, mode):
    if AZURE not in ort.get_available_providers():
        pytest.skip(f"this onnxruntime build has no second provider to walk to: {ort.get_available_providers()}")
    with _FirstRunFailsOn.from_dir(model_dir, providers=cpu("auto", AZURE), mode=mode) as policy:
        assert policy.provider == CPU and set(policy.providers_by_adapter.values()) == {CPU}
        report = policy.provider_report
        assert report.active == CPU == report.session_providers[0]
        assert [p for p, _ in report.skipped] == [AZURE]
        assert "failed in its first run" in report.skipped[0][1] and "terminate" in report.skipped[0][1]
        assert policy.infer(frame(), "open the drawer", raw_proprio(policy.manifest)).provider == CPU


def test_when_every_provider_fails_its_first_run_loading_fails_with_each_reason(model_dir):
    class AllFail(_FirstRunFailsOn):
        failing = CPU

    with pytest.raises(ProviderError, match="no execution provider could run 'tiny': CPUExecutionProvider: the backbone "
                                            "alone failed in its first run .plain.: Fail"):
        AllFail.from_dir(model_dir, providers=cpu("plain"), load_adapters=["drawer"])


def test_without_warm_up_the_report_still_comes_from_the_session(model_dir):
    with OnnxPolicy.from_dir(model_dir, providers=cpu("auto"), warmup=False) as policy:
        backbone = policy._slots[None].session
        assert policy.provider_report.session_providers == backbone.get_providers()
        assert backbone._enable_fallback is False
