"""SmolVLA family, LeRobot side: loading checkpoints, refusing bad ones, adapters (identity, trained)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vla_adapter_ros.families.smolvla.bridge import run_worker

# The LeRobot venv's fixtures (a SmolVLA built, adapters trained, an export) take ~1 min on an idle machine.
pytestmark = pytest.mark.timeout(900)


def test_checkpoints_are_loaded_or_refused_with_a_clear_error(smolvla_dir: Path, tmp_path: Path) -> None:
    missing = shutil.copytree(smolvla_dir, tmp_path / "missing")
    (missing / "model.safetensors").unlink()
    other = shutil.copytree(smolvla_dir, tmp_path / "other")
    cfg = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "type": "act"}))
    shapes = shutil.copytree(smolvla_dir, tmp_path / "shapes")
    (shapes / "config.json").write_text(json.dumps({**cfg, "max_state_dim": cfg["max_state_dim"] + 2}))
    results = run_worker("check", str(smolvla_dir), str(missing), str(other), str(shapes), str(tmp_path / "nothing"))
    good, no_weights, wrong_family, wrong_shape, absent = results
    assert good["ok"] and good["cameras"] == ["camera"] and len(good["fingerprint"]) == 64
    assert not no_weights["ok"] and "missing ['model.safetensors']" in no_weights["error"]
    assert not wrong_family["ok"] and "'act' policy" in wrong_family["error"] and "'smolvla'" in wrong_family["error"]
    assert not wrong_shape["ok"] and "shape mismatch" in wrong_shape["error"] and "state_proj.weight" in wrong_shape["error"]
    assert not absent["ok"] and "does not exist" in absent["error"]


def test_adapters_start_as_identity_and_training_changes_the_output(smolvla_adapters: dict[str, dict]) -> None:
    grip, push = smolvla_adapters["grip"], smolvla_adapters["push"]
    # 2 vision + 2 language + 2 expert layers, attn + ffn each; the second adapter sits at 2 of 6 site kinds.
    assert grip["sites"] == 12 and push["sites"] == 4
    for result in (grip, push):
        assert result["identity_max_abs"] == 0.0  # zero-initialised up-projection: exactly the backbone
        assert result["trained_max_abs"] > 1e-2  # a few steps of adapter-only training move the actions
        saved = json.loads((Path(result["adapter"]) / "adapter_config.json").read_text())
        assert saved["family"] == "smolvla" and saved["method"] == "bottleneck"
        assert saved["num_parameters"] == result["trainable"] < result["frozen"] / 20


def test_an_adapter_of_another_backbone_is_refused(smolvla_dir: Path, smolvla_adapters: dict[str, dict],
                                                   tmp_path: Path) -> None:
    other = run_worker("make-tiny", str(tmp_path / "other"), "--seed", "1")["checkpoint"]
    try:
        run_worker("export", other, "--out", str(tmp_path / "x"), "--adapter", smolvla_adapters["grip"]["adapter"])
    except RuntimeError as exc:
        assert "was trained on backbone" in str(exc)
    else:
        raise AssertionError("an adapter of another backbone was accepted")
