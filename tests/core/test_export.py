"""`vla-adapter export`: the full CLI path (fp16 + int8 language), parity gating and bad input.

The runtime-side behaviour of the exported directory is tested in tests/runtime (which
exports its own tiny model once per session).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from vla_adapter_ros.cli import main
from vla_adapter_ros.core.adapters import load_adapter
from vla_adapter_ros.core.checkpoint import load_checkpoint
from vla_adapter_ros.core.config import AdapterConfig, LoraConfig, ModelConfig
from vla_adapter_ros.core.export import (
    ExportError,
    ParityRow,
    check_parity,
    format_table,
    make_random_checkpoint,
    measure_parity,
)
from vla_adapter_ros.core.language import LanguageEncoder
from vla_adapter_ros.runtime.manifest import Manifest


def tiny() -> ModelConfig:
    return ModelConfig(image_size=32, patch_size=8, d_model=32, vision_layers=1, fusion_layers=1, n_heads=2,
                       mlp_ratio=2, chunk_length=2)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("export_src")
    adapters = {
        "pick": AdapterConfig(rank=4, activation="gelu", scaling=2.0, instruction_examples=("pick up the puck",)),
        "push": AdapterConfig(rank=8, activation="gelu", components=("fusion",)),
    }
    checkpoint, dirs = make_random_checkpoint(root / "a", tiny(), adapters, seed=2)
    other, other_dirs = make_random_checkpoint(root / "b", tiny(), {"alien": AdapterConfig()}, seed=3)
    return {"root": root, "checkpoint": checkpoint, "adapters": dirs, "other_checkpoint": other,
            "alien": other_dirs[0]}


def leftovers(parent):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_cli_export_fp16_and_int8_language(sources, tmp_path, capsys):
    out = tmp_path / "models" / "tiny"
    argv = ["export", "--checkpoint", str(sources["checkpoint"]), "--out", str(out), "--fp16", "--quantize-language"]
    for d in sources["adapters"]:
        argv += ["--adapter", str(d)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "max |diff|" in printed and "FAIL" not in printed and "exported" in printed

    m = Manifest.load(out)
    assert m.adapter_names == ["pick", "push"] and m.language.quantized
    rows = m.raw["parity"]["rows"]
    gated = {(r["artifact"], r["adapter"], r["inputs"]) for r in rows if r["check"] == "policy"}
    assert gated == {(k, a, i) for k in ("shared", "merged") for a in ("pick", "push") for i in ("random", "real")}
    assert all(r["passed"] and r["max_abs_diff"] <= 1e-4 for r in rows if r["check"] == "policy")
    assert {r["batch"] for r in rows if r["check"] == "policy"} == {2, 3}  # dynamic batch
    fp16 = [r for r in rows if r["check"] == "fp16"]
    assert len(fp16) == 4 and all(r["tolerance"] is None and 0 < r["max_abs_diff"] < 0.05 for r in fp16)
    q = m.raw["language"]["quantization"]
    assert q["min_cosine"] >= 0.98 and q["int8_bytes"] < q["fp32_bytes"] / 2
    assert all(m.adapter(a).fp16_file for a in m.adapter_names)
    assert not any("fp16_sha256" in a for a in m.raw["adapters"])  # the files table holds the fp16 checksums
    assert m.raw["shared"]["layout"]["rank"] == 8 and m.raw["shared"]["layout"]["components"] == ["vision", "fusion"]
    assert leftovers(out.parent) == []

    # without --force an existing model directory is never replaced
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err

    # the gate: the same measurement with an impossible tolerance fails with the worst row named
    model = load_checkpoint(sources["checkpoint"], adapters=False).eval()
    for d in sources["adapters"]:
        load_adapter(model, d)
    rows = measure_parity(out, model, LanguageEncoder(), ["pick", "push"], 1e-12, False, True)
    with pytest.raises(ExportError, match="parity failed for 8 check\\(s\\), worst: policy"):
        check_parity(rows)


def run_failing(argv, capsys):
    code = main(["export", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("vla-adapter export: error:")
    return err


def test_missing_adapter(sources, tmp_path, capsys):
    err = run_failing(["--checkpoint", str(sources["checkpoint"]), "--adapter", str(tmp_path / "nope"),
                       "--out", str(tmp_path / "m")], capsys)
    assert "does not exist" in err and not (tmp_path / "m").exists() and leftovers(tmp_path) == []


def test_adapter_from_another_backbone(sources, tmp_path, capsys):
    err = run_failing(["--checkpoint", str(sources["checkpoint"]), "--adapter", str(sources["alien"]),
                       "--out", str(tmp_path / "m")], capsys)
    assert "does not match checkpoint" in err and "trained on backbone" in err
    assert not (tmp_path / "m").exists() and leftovers(tmp_path) == []


def test_foreign_checkpoint(sources, tmp_path, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text(json.dumps({"hidden_size": 384, "model_type": "bert"}))
    err = run_failing(["--checkpoint", str(foreign), "--adapter", str(sources["adapters"][0]),
                       "--out", str(tmp_path / "m")], capsys)
    assert "is not a usable backbone" in err and not (tmp_path / "m").exists()


def test_unwritable_output(sources, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a directory")
    err = run_failing(["--checkpoint", str(sources["checkpoint"]), "--adapter", str(sources["adapters"][0]),
                       "--out", str(blocker / "models" / "m")], capsys)
    assert "cannot write the output" in err


def test_duplicate_adapter_and_bad_bounds(sources, tmp_path, capsys):
    a = str(sources["adapters"][0])
    err = run_failing(["--checkpoint", str(sources["checkpoint"]), "--adapter", a, "--adapter", a,
                       "--out", str(tmp_path / "m")], capsys)
    assert "two adapters are named 'pick'" in err
    err = run_failing(["--checkpoint", str(sources["checkpoint"]), "--adapter", a, "--action-low", "1,2",
                       "--out", str(tmp_path / "m")], capsys)
    assert "action bounds need 1 or 4 values" in err
    assert leftovers(tmp_path) == []


def test_mixed_methods_cannot_share_a_graph(tmp_path, capsys):
    checkpoint, dirs = make_random_checkpoint(
        tmp_path / "src", tiny(), {"bn": AdapterConfig(rank=4), "lo": LoraConfig(rank=4)}, seed=4
    )
    err = run_failing(["--checkpoint", str(checkpoint), "--adapter", str(dirs[0]), "--adapter", str(dirs[1]),
                       "--out", str(tmp_path / "m")], capsys)
    assert "different methods" in err and leftovers(tmp_path) == []


def test_parity_table_marks_failures():
    rows = [
        ParityRow("policy", "shared", "a", "random", 3, 2e-8, 1e-4),
        ParityRow("policy", "merged", "a", "real", 2, 3e-4, 1e-4),
        ParityRow("fp16", "merged_fp16", "a", "real", 2, 3e-4, None),
        ParityRow("policy", "merged", "b", "real", 2, float("nan"), 1e-4),
    ]
    table = format_table(rows)
    assert [r.passed for r in rows] == [True, False, True, False]
    assert table.count("FAIL") == 2 and "measured" in table and "info" in table
    assert np.isnan(rows[3].max_abs_diff)


def test_export_parity_with_a_convolutional_stem(tmp_path):
    from vla_adapter_ros.core.export import export_model

    config = ModelConfig.from_dict({**tiny().to_dict(), "stem_channels": 4})
    adapters = {"pick": AdapterConfig(rank=4),
                "push": AdapterConfig(rank=4, train_modules=("patch_embed", "norms"), components=("vision",))}
    checkpoint, dirs = make_random_checkpoint(tmp_path / "src", config, adapters, seed=5)
    result = export_model(checkpoint, dirs, tmp_path / "model", log=lambda _msg: None)
    manifest = Manifest.load(result.out)
    assert manifest.adapter_names == ["pick", "push"]
    # one shared graph: push's copies of the stem, patch projection and vision LayerNorms are
    # graph inputs whose defaults are the backbone's (pick runs with them)
    assert {r.adapter for r in result.rows if r.check == "policy"} >= {"pick", "push"}
    policy_rows = [r for r in result.rows if r.check in ("policy", "infer")]
    assert policy_rows and all(r.passed for r in result.rows) and max(r.max_abs_diff for r in policy_rows) < 1e-4
