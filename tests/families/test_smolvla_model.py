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


def test_adapters_start_as_identity_and_training_changes_the_output(smolvla_dir: Path,
                                                                    smolvla_adapters: dict[str, dict],
                                                                    tmp_path: Path) -> None:
    # 2 vision + 2 language + 2 expert layers, attn + ffn each; the second adapter sits at 2 of 6 site kinds.
    every = run_worker("adapter", str(smolvla_dir), "--name", "a", "--out", str(tmp_path / "a"), "--rank", "4")
    two = run_worker("adapter", str(smolvla_dir), "--name", "b", "--out", str(tmp_path / "b"), "--rank", "2",
                     "--sites", "vision.ffn", "expert.attn")
    assert every["sites"] == 12 and two["sites"] == 4
    for attached, trained in ((every, smolvla_adapters["grip"]), (two, smolvla_adapters["push"])):
        assert attached["identity_max_abs"] == 0.0  # zero-initialised up-projection: exactly the backbone
        assert attached["trainable"] == trained["trainable"] < attached["frozen"] / 20
        assert trained["trained_max_abs"] > 1e-2  # a few steps of adapter-only training move the actions
        saved = json.loads((Path(trained["adapter"]) / "adapter_config.json").read_text())
        assert saved["family"] == "smolvla" and saved["method"] == "bottleneck"
        assert saved["num_parameters"] == trained["trainable"]


def test_an_adapter_of_another_backbone_is_refused(smolvla_dir: Path, smolvla_adapters: dict[str, dict],
                                                   tmp_path: Path) -> None:
    other = run_worker("make-tiny", str(tmp_path / "other"), "--seed", "1")["checkpoint"]
    try:
        run_worker("export", other, "--out", str(tmp_path / "x"), "--adapter", smolvla_adapters["grip"]["adapter"])
    except RuntimeError as exc:
        assert "was trained on backbone" in str(exc)
    else:
        raise AssertionError("an adapter of another backbone was accepted")
