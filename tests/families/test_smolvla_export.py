"""SmolVLA export and runtime: the model directory, parity with LeRobot, the torch-free policy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from vla_adapter_ros.core.export.errors import ExportError
from vla_adapter_ros.core.export.smolvla import export_smolvla
from vla_adapter_ros.runtime.errors import ChecksumError, UnknownAdapterError
from vla_adapter_ros.runtime.manifest import Manifest, ManifestError, load_manifest
from vla_adapter_ros.runtime.policy import OnnxPolicy
from vla_adapter_ros.runtime.smolvla import SmolVLAPolicy

STATE = [0.1, -0.3, 0.7, 0.2]


# The LeRobot venv's fixtures (a SmolVLA built, adapters trained, an export) take ~1 min on an idle machine.
pytestmark = pytest.mark.timeout(900)


def test_export_writes_a_manifest_of_its_family_with_a_parity_proof(smolvla_model: dict) -> None:
    manifest = load_manifest(smolvla_model["dir"])
    assert manifest.family == "smolvla" and manifest.format_version == 3
    assert manifest.adapter_names == ["grip", "push"] and manifest.default_adapter == "grip"
    assert sorted(manifest.files) == ["adapters/grip.onnx_adapter", "adapters/push.onnx_adapter", "graphs/denoise.onnx",
                                      "graphs/prefix.onnx", "language/tokenizer.json"]
    raw = json.loads((smolvla_model["dir"] / "manifest.json").read_text())
    assert manifest.to_dict() == raw  # one schema: what is written is what is read
    with pytest.raises(ManifestError, match="family is 'smolvla'; Manifest reads 'vla_adapter_ros'"):
        Manifest.load(smolvla_model["dir"])  # the native reader never misreads another family
    parity = manifest.parity
    assert parity["passed"] and parity["tolerance"] == 1e-4
    # graphs (model-side inputs) and pipeline (raw frame, state, instruction through the runtime's own
    # tokenizer and normalisation) for the backbone and both adapters, all against predict_action_chunk
    assert {(r["check"], r["adapter"]) for r in parity["rows"]} == {
        (c, a) for c in ("graphs", "pipeline") for a in (None, "grip", "push")}
    assert max(r["max_abs"] for r in parity["rows"]) <= 1e-4
    assert all(r["tokens_equal"] for r in parity["rows"] if r["check"] == "pipeline")


def test_runtime_is_seeded_switches_and_hot_adds_like_the_native_family(smolvla_model: dict) -> None:
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)  # resized with padding to 32x32
    with OnnxPolicy.from_dir(smolvla_model["dir"], providers=["cpu"], load_adapters=["grip"], seed=5) as policy:
        assert isinstance(policy, SmolVLAPolicy) and policy.active_adapter == "grip"
        first = policy.infer(frame, "push the cube", STATE)
        second = policy.infer(frame, "push the cube", STATE)
        assert first.actions.shape == (8, 4) and not np.array_equal(first.actions, second.actions)  # new noise
        policy.reset(5)
        assert np.array_equal(policy.infer(frame, "push the cube", STATE).actions, first.actions)  # replayed
        with pytest.raises(UnknownAdapterError, match="push"):
            policy.switch("push")  # listed but not loaded yet
        policy.load_adapter("push", activate=True)  # hot-add by name
        policy.reset(5)
        pushed = policy.infer(frame, "push the cube", STATE)
        assert pushed.adapter == "push" and np.abs(pushed.actions - first.actions).max() > 1e-3
        assert policy.switch(None) == "push"  # the backbone alone
        policy.reset(5)
        alone = policy.infer(frame, "push the cube", STATE).actions
        assert np.abs(alone - first.actions).max() > 1e-3
        # fall_back (the native family's rule): on the chain's last provider the sessions are rebuilt on it,
        # the loaded adapters and the active one kept
        assert policy.fall_back("test").active == "CPUExecutionProvider"
        assert policy.fallbacks == [("CPUExecutionProvider", "test")] and policy.active_adapter is None
        assert [a.name for a in policy.adapters] == ["grip", "push"]
        policy.reset(5)
        assert np.array_equal(policy.infer(frame, "push the cube", STATE).actions, alone)


def test_a_tampered_model_or_a_bad_export_is_refused(smolvla_model: dict, smolvla_dir: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(smolvla_model["dir"], tmp_path / "copy")
    data = bytearray((copy / "adapters/push.onnx_adapter").read_bytes())
    data[-1] ^= 0xFF
    (copy / "adapters/push.onnx_adapter").write_bytes(bytes(data))
    with OnnxPolicy.from_dir(copy, providers=["cpu"], load_adapters=["grip"], warmup=False) as policy:
        with pytest.raises(ChecksumError, match="sha256"):
            policy.load_adapter("push")
        assert policy.active_adapter == "grip"  # unchanged
    with pytest.raises(ExportError, match="already exists"):
        export_smolvla(smolvla_dir, ["x"], smolvla_model["dir"], log=lambda _: None)


def test_the_unrolled_graph_matches_lerobot(smolvla_dir: Path, smolvla_adapters: dict[str, dict], tmp_path: Path) -> None:
    """The one-graph form (prefix + every denoising step; measured against the two graphs by
    benchmarks/bench_smolvla.py, not served) reproduces predict_action_chunk with the same noise."""
    from vla_adapter_ros.core.export.smolvla import measure_unrolled_parity
    from vla_adapter_ros.families.smolvla.bridge import run_worker

    out = run_worker("export-unrolled", str(smolvla_dir), "--out", str(tmp_path),
                     *(x for a in smolvla_adapters.values() for x in ("--adapter", a["adapter"])))
    assert out["graph"]["inputs"][-1] == "noise" and out["graph"]["outputs"] == ["actions"]
    rows = measure_unrolled_parity(tmp_path)
    assert [r["adapter"] for r in rows] == [None, "grip", "push"]
    assert max(r["max_abs"] for r in rows) <= 1e-4, rows


def test_the_unrolled_export_leaves_out_only_the_multi_output_rewrites_and_restores_them() -> None:
    """onnxscript's multi-output matcher is O(nodes^2) (graphs._single_output_rewrites_only): the unrolled export
    runs without those rules (SlicesSplit), every other rule stays, and the default set is back afterwards."""
    from onnxscript import rewriter

    from vla_adapter_ros.families.smolvla.graphs import _single_output_rewrites_only

    rules = rewriter._DEFAULT_REWRITE_RULES
    multi = [r.name for r in rules if not r._target_pattern.has_single_output_node]
    assert multi == ["SlicesSplit"]
    with pytest.raises(RuntimeError, match="inside"), _single_output_rewrites_only():
        assert [r for r in rewriter._DEFAULT_REWRITE_RULES if r.name in multi] == []
        assert len(rewriter._DEFAULT_REWRITE_RULES) == len(rules) - 1
        raise RuntimeError("inside")
    assert rewriter._DEFAULT_REWRITE_RULES is rules
