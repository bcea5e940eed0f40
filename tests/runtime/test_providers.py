"""Execution-provider chains: options per provider and model, engine cache keys, the fallback walk."""

from __future__ import annotations

import functools

import onnxruntime as ort
import pytest
from runtime_helpers import BUNDLED, zero_feeds

from vla_adapter_ros.runtime.errors import ManifestError, ProviderConfigError, ProviderError
from vla_adapter_ros.runtime.manifest import Manifest
from vla_adapter_ros.runtime.providers import (
    CPU,
    CUDA,
    DEFAULT_ENGINE_CACHE,
    TENSORRT,
    ModelKey,
    ProviderConfig,
    create_session,
)

AZURE = "AzureExecutionProvider"  # in onnxruntime's CPU builds: a real second provider to walk past
INPUTS = [("image", ("batch", 3, 32, 32)), ("instruction_embedding", ("batch", 384)), ("proprio", ("batch", 4))]


BUNDLED_MANIFEST = Manifest.load(BUNDLED)
# The bundled merged models: one graph (same names, shapes, size), three weight sets.
MERGED = {a.name: (BUNDLED / a.merged_file).read_bytes() for a in BUNDLED_MANIFEST.adapters}
MODEL = next(iter(MERGED.values()))


def run_zeros(session: ort.InferenceSession, options: ort.RunOptions | None = None) -> list:
    return session.run(None, zero_feeds(BUNDLED_MANIFEST), options)


@functools.cache
def works(provider: str) -> bool:
    """Whether ``provider`` really initialises and runs here (onnxruntime-gpu lists CUDA even without a GPU)."""
    if provider not in ort.get_available_providers():
        return False
    try:
        _, report = create_session(MODEL, [(provider, {})], label="probe", warmup=run_zeros)
    except ProviderError:
        return False
    return report.active == provider


def cuda_works() -> bool:
    return works(CUDA)


def tensorrt_works() -> bool:
    return works(TENSORRT)


# ------------------------------------------------------------------ options (pure)
def test_options_built_for_each_provider(tmp_path):
    config = ProviderConfig(device_id=1, fp16=True, engine_cache_dir=tmp_path, max_batch=4)
    key = ModelKey.of(b"model bytes", INPUTS)
    chain = dict(config.chain(key))
    assert list(chain) == [TENSORRT, CUDA, CPU]
    trt = chain[TENSORRT]
    assert trt["device_id"] == 1 and trt["trt_fp16_enable"] is True and trt["trt_engine_cache_enable"] is True
    assert trt["trt_engine_cache_prefix"] == f"vla_{key.digest[:16]}"
    assert trt["trt_engine_cache_path"] == str(config.engine_cache_folder(key))
    assert trt["trt_engine_cache_path"].startswith(str(tmp_path / key.digest[:16]))
    assert trt["trt_timing_cache_enable"] is True and trt["trt_timing_cache_path"] == str(tmp_path)
    assert trt["trt_profile_min_shapes"] == "image:1x3x32x32,instruction_embedding:1x384,proprio:1x4"
    assert trt["trt_profile_opt_shapes"] == trt["trt_profile_min_shapes"]
    assert trt["trt_profile_max_shapes"] == "image:4x3x32x32,instruction_embedding:4x384,proprio:4x4"
    assert chain[CUDA] == {"device_id": 1, "use_tf32": 0} and chain[CPU] == {}


def test_explicit_options_override_and_static_models_get_no_profile(tmp_path):
    config = ProviderConfig(providers=(("tensorrt", {"trt_fp16_enable": False, "trt_max_workspace_size": 1 << 30}),
                                       ("cuda", {"device_id": 2}), "CPUExecutionProvider"), fp16=True)
    chain = dict(config.chain(ModelKey.of(b"m", [("x", (1, 4))])))
    assert chain[TENSORRT]["trt_fp16_enable"] is False and chain[TENSORRT]["trt_max_workspace_size"] == 1 << 30
    assert not any(k.startswith("trt_profile") for k in chain[TENSORRT])
    assert chain[CUDA] == {"device_id": 2, "use_tf32": 0}
    with pytest.raises(ProviderConfigError, match="only the leading .batch. axis may be dynamic"):
        ProviderConfig().chain(ModelKey.of(b"m", [("input_ids", ("batch", "tokens"))]))


def test_engine_cache_folder_follows_the_weights(tmp_path):
    """The bundled merged models are one graph with three weight sets: TensorRT's own cache key
    (input and node names, shapes, versions) is the same for all three. Here each gets its own
    folder and prefix, and the same bytes find the same folder again (a warm start)."""
    assert len({len(b) for b in MERGED.values()}) == 1 and len(set(MERGED.values())) == 3
    config = ProviderConfig(engine_cache_dir=tmp_path)
    keys = {name: ModelKey.of(data, INPUTS) for name, data in MERGED.items()}
    folders = {config.engine_cache_folder(k) for k in keys.values()}
    prefixes = {dict(config.chain(k))[TENSORRT]["trt_engine_cache_prefix"] for k in keys.values()}
    assert len(folders) == 3 and len(prefixes) == 3
    key = next(iter(keys.values()))
    assert config.engine_cache_folder(ModelKey.of(MODEL, INPUTS)) == config.engine_cache_folder(key)
    # Build settings that change the engine get their own folder as well.
    assert len({config.engine_cache_folder(key), ProviderConfig(engine_cache_dir=tmp_path, fp16=True).engine_cache_folder(key),
                ProviderConfig(engine_cache_dir=tmp_path, max_batch=2).engine_cache_folder(key)}) == 3


def test_a_reexport_with_changed_weights_gets_a_new_engine_folder(model_dir, tmp_path):
    """A re-exported backbone with the same architecture: identical to TensorRT's key, new key here."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    original = (model_dir / "shared" / "backbone.onnx").read_bytes()
    model = onnx.load_from_string(original)
    for init in model.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.01, init.name))
    reexported = model.SerializeToString()

    def names(data: bytes) -> list[str]:  # what TensorRT's engine key hashes, besides versions
        graph = onnx.load_from_string(data).graph
        return [i.name for i in graph.input] + [o for n in graph.node for o in n.output]

    assert names(original) == names(reexported) and original != reexported
    config = ProviderConfig(engine_cache_dir=tmp_path)
    assert config.engine_cache_folder(ModelKey.of(original, INPUTS)) != config.engine_cache_folder(
        ModelKey.of(reexported, INPUTS))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"providers": "cuda,cpu"}, "sequence of names, got the string 'cuda,cpu'"),
    ({"providers": ["gpu"]}, "unknown execution provider 'gpu'"),
    ({"providers": ["cpu", "cpu"]}, "listed twice"),
    ({"providers": []}, "empty"),
    ({"device_id": -1}, "device_id must be >= 0, got -1"),
    ({"device_id": "0"}, "device_id must be an int, got '0'"),
    ({"device_id": True}, "device_id must be an int"),
    ({"fp16": "yes"}, "fp16 must be a bool, got 'yes'"),
    ({"serving": "zero-copy"}, "serving must be one of .'auto', 'plain', 'iobinding', 'cuda_graph'., got 'zero-copy'"),
    ({"engine_cache_dir": ""}, "engine_cache_dir must be a folder path, got ''"),
    ({"max_batch": 0}, r"max_batch must be in \[1, 1024\], got 0"),
    ({"intra_op_threads": -2}, "intra_op_threads must be >= 0, got -2"),
])
def test_config_errors_quote_the_bad_value(kwargs, message):
    with pytest.raises(ProviderConfigError, match=message) as err:
        ProviderConfig(**kwargs)
    assert isinstance(err.value, ValueError) and isinstance(err.value, ProviderError)


def test_engine_cache_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ProviderConfigError, match="exists and is not a folder"):
        ProviderConfig(engine_cache_dir=tmp_path / "file")


def test_from_params_and_coerce():
    default = ProviderConfig.from_params()
    assert default.names() == [TENSORRT, CUDA, CPU] and default.engine_cache_dir == DEFAULT_ENGINE_CACHE
    config = ProviderConfig.from_params(" cuda, cpu ", device_id=1, fp16=True, engine_cache_dir="/tmp/engines",
                                        serving="plain", max_batch=2, intra_op_threads=1)
    assert config.names() == [CUDA, CPU] and config.device_id == 1 and config.fp16
    assert str(config.engine_cache_dir) == "/tmp/engines" and config.serving == "plain" and config.max_batch == 2
    # fp32 means fp32: onnxruntime's CUDA default (TF32 matmuls) measured 2.5e-3 off the CPU on an H200
    assert ProviderConfig.coerce("cuda, cpu").chain() == [(CUDA, {"device_id": 0, "use_tf32": 0}), (CPU, {})]
    assert ProviderConfig.from_params("cuda", tf32=True).chain() == [(CUDA, {"device_id": 0, "use_tf32": 1})]
    with pytest.raises(ProviderConfigError, match="tf32 must be a bool"):
        ProviderConfig(tf32=1)  # type: ignore[arg-type]
    with pytest.raises(ProviderConfigError, match="serving must be one of"):
        ProviderConfig.from_params(serving="fast")


def test_serving_mode_per_provider():
    auto = ProviderConfig()
    assert [auto.serving_for(p) for p in (TENSORRT, CUDA, CPU)] == ["iobinding", "cuda_graph", "plain"]
    graph = ProviderConfig(serving="cuda_graph")  # TensorRT has no CUDA-graph session here: its auto
    assert [graph.serving_for(p) for p in (TENSORRT, CUDA, CPU)] == ["iobinding", "cuda_graph", "cuda_graph"]
    assert ProviderConfig(serving="plain").serving_for(CUDA) == "plain"
    assert ProviderConfig(serving="iobinding").serving_for(CPU) == "iobinding"


# ------------------------------------------------------------------ sessions
def test_fallback_disabled_and_report_read_from_the_session():
    runs = []
    session, report = create_session(MODEL, [(CPU, {})], label="merged", warmup=lambda s: runs.append(run_zeros(s)))
    assert runs, "the warm-up ran"
    # onnxruntime's InferenceSession.run re-creates a failing session on [CUDA, CPU] without our
    # options while this flag is set; disable_fallback() clears it.
    assert session._enable_fallback is False
    assert report.active == session.get_providers()[0] == CPU and report.session_providers == session.get_providers()


def test_a_provider_whose_first_run_fails_is_skipped_for_the_next():
    """A real onnxruntime failure in the warm-up (RunOptions.terminate makes run() raise Fail) on the
    first provider: the session is dropped and the next provider of the chain serves."""
    if AZURE not in ort.get_available_providers():
        pytest.skip(f"this onnxruntime build has no second provider to walk to: {ort.get_available_providers()}")
    tried: list[list[str]] = []

    def warmup(session: ort.InferenceSession) -> None:
        tried.append(session.get_providers())
        options = ort.RunOptions()
        options.terminate = len(tried) == 1  # the first session's first run fails
        run_zeros(session, options)

    session, report = create_session(MODEL, [(AZURE, {}), (CPU, {})], label="merged", warmup=warmup)
    assert [t[0] for t in tried] == [AZURE, CPU]
    assert report.active == CPU == session.get_providers()[0]
    (name, reason), = report.skipped
    assert name == AZURE and reason.startswith("failed in its first run (warm-up): Fail:") and "terminate" in reason


def test_every_provider_failing_is_one_error_naming_each():
    def warmup(session: ort.InferenceSession) -> None:
        options = ort.RunOptions()
        options.terminate = True
        run_zeros(session, options)

    with pytest.raises(ProviderError, match=r"no execution provider could run merged: tried \['CPUExecutionProvider'\]; "
                                            r"CPUExecutionProvider: failed in its first run \(warm-up\): Fail"):
        create_session(MODEL, [(CPU, {})], label="merged", warmup=warmup)


def test_the_runtimes_own_errors_in_the_warm_up_are_not_provider_failures():
    def warmup(session: ort.InferenceSession) -> None:
        raise ManifestError("the graph does not match the manifest")

    with pytest.raises(ManifestError, match="does not match"):
        create_session(MODEL, [(CPU, {})], warmup=warmup)


def test_fallback_walks_the_chain_and_reports(model_dir):
    data = (model_dir / "merged" / "drawer.onnx").read_bytes()
    session, report = create_session(data, ProviderConfig().chain(ModelKey.of(data, INPUTS)), label="drawer")
    assert report.active == session.get_providers()[0]
    if not cuda_works():
        assert report.active == CPU
        skipped = dict(report.skipped)
        assert set(skipped) == {TENSORRT, CUDA}
        assert all(("failed to initialise" in r) or ("not available" in r) for r in skipped.values())
        assert "skipped" in report.summary()


@pytest.mark.skipif(cuda_works(), reason="this machine has a working CUDA provider")
def test_no_usable_provider_is_an_error(model_dir):
    data = (model_dir / "merged" / "drawer.onnx").read_bytes()
    with pytest.raises(ProviderError, match="no execution provider could run"):
        create_session(data, ProviderConfig.coerce(["cuda"]).chain(), label="drawer")


# ------------------------------------------------------------------ GPU only
@pytest.mark.skipif(not cuda_works(), reason="needs a working CUDA provider (GPU machine)")
def test_fall_back_moves_from_cuda_to_cpu(model_dir):
    from vla_adapter_ros.runtime.policy import OnnxPolicy

    with OnnxPolicy.from_dir(model_dir, providers=["cuda", "cpu"]) as policy:
        assert policy.provider == CUDA and policy.serving == "iobinding"
        assert policy.fall_back("CUDA failed at run time").active == CPU and policy.provider == CPU


@pytest.mark.skipif(not tensorrt_works(), reason="needs a working TensorRT provider (GPU machine with TensorRT)")
def test_tensorrt_engines_are_cached_per_model_and_reused(model_dir, tmp_path):
    """Two merged adapters (same graph family, other weights) get two engine folders; a second session
    of the same model builds nothing new (warm start from the cache)."""
    from vla_adapter_ros.runtime.policy import OnnxPolicy

    config = ProviderConfig(providers=("tensorrt", "cuda", "cpu"), engine_cache_dir=tmp_path)
    with OnnxPolicy.from_dir(model_dir, providers=config, mode="merged") as policy:
        assert set(policy.providers_by_adapter.values()) == {TENSORRT}
        assert policy.provider_report.session_providers[0] == TENSORRT
    engines = sorted(tmp_path.rglob("*.engine"))
    assert len({p.parent for p in engines}) == 2, engines
    before = {p: p.stat().st_mtime_ns for p in engines}
    with OnnxPolicy.from_dir(model_dir, providers=config, mode="merged"):
        pass
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.engine")} == before
