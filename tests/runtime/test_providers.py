"""Execution-provider chains: names, order, fallback and reporting."""

from __future__ import annotations

import onnxruntime as ort
import pytest

from vla_adapter_ros.runtime.errors import ProviderError
from vla_adapter_ros.runtime.providers import CPU, CUDA, TENSORRT, ProviderConfig, create_session


def _cuda_works() -> bool:
    """Whether CUDA really initialises here (onnxruntime-gpu lists it even without a GPU)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    if CUDA not in ort.get_available_providers():
        return False
    so = ort.SessionOptions()
    so.log_severity_level = 4
    session = ort.InferenceSession(model.SerializeToString(), so, providers=[CUDA])
    return session.get_providers()[0] == CUDA


def test_default_chain_is_tensorrt_cuda_cpu_with_options(tmp_path):
    chain = ProviderConfig(trt_cache_dir=tmp_path, trt_fp16=True).chain()
    assert [n for n, _ in chain] == [TENSORRT, CUDA, CPU]
    trt = chain[0][1]
    assert trt["trt_engine_cache_enable"] and trt["trt_engine_cache_path"] == str(tmp_path) and trt["trt_fp16_enable"]


def test_names_aliases_and_overrides():
    assert ProviderConfig.coerce("cuda, cpu").chain() == [(CUDA, {"device_id": 0}), (CPU, {})]
    chain = ProviderConfig.coerce([("cuda", {"device_id": 1}), "CPUExecutionProvider"]).chain()
    assert chain == [(CUDA, {"device_id": 1}), (CPU, {})]
    with pytest.raises(ProviderError, match="unknown execution provider 'gpu'"):
        ProviderConfig.coerce(["gpu"]).chain()
    with pytest.raises(ProviderError, match="listed twice"):
        ProviderConfig.coerce(["cpu", "cpu"]).chain()
    with pytest.raises(ProviderError, match="empty"):
        ProviderConfig.coerce([]).chain()


def test_fallback_walks_the_chain_and_reports(model_dir):
    data = (model_dir / "merged" / "drawer.onnx").read_bytes()
    session, report = create_session(data, ProviderConfig().chain(), label="drawer")
    assert report.active == session.get_providers()[0]
    if not _cuda_works():
        assert report.active == CPU
        skipped = dict(report.skipped)
        assert set(skipped) == {TENSORRT, CUDA}
        assert all(("failed to initialise" in r) or ("not available" in r) for r in skipped.values())
        assert "skipped" in report.summary()


@pytest.mark.skipif(_cuda_works(), reason="this machine has a working CUDA provider")
def test_no_usable_provider_is_an_error(model_dir):
    data = (model_dir / "merged" / "drawer.onnx").read_bytes()
    with pytest.raises(ProviderError, match="no execution provider could run"):
        create_session(data, ProviderConfig.coerce(["cuda"]).chain(), label="drawer")


@pytest.mark.skipif(not _cuda_works(), reason="needs a working CUDA provider (GPU machine)")
def test_fall_back_moves_from_cuda_to_cpu(model_dir):
    from vla_adapter_ros.runtime.policy import OnnxPolicy

    with OnnxPolicy.from_dir(model_dir, providers=["cuda", "cpu"]) as policy:
        assert policy.provider == CUDA
        assert policy.fall_back("CUDA failed at run time").active == CPU and policy.provider == CPU
