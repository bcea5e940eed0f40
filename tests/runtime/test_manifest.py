"""Manifest validation, checksums and the refusal of unlisted files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runtime_helpers import replace_file

from vla_adapter_ros.runtime import manifest as mf
from vla_adapter_ros.runtime.errors import ChecksumError, ManifestError, PolicyRuntimeError
from vla_adapter_ros.runtime.manifest import Manifest
from vla_adapter_ros.runtime.policy import OnnxPolicy


def edit_manifest(model_dir, change):
    path = model_dir / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    replace_file(path, json.dumps(data).encode())


def test_exported_manifest_describes_the_model(model_dir):
    m = Manifest.load(model_dir)
    assert m.adapter_names == ["drawer", "button"] and m.default_adapter == "drawer"
    assert [t.name for t in m.inputs] == ["image", "instruction_embedding", "proprio"]
    assert m.inputs[0].shape == ("batch", 3, 32, 32) and m.outputs[0].shape == ("batch", 3, 4)
    assert m.image_size == (32, 32) and m.raw["image"]["color_order"] == "RGB"
    assert m.actions.names == ("dx", "dy", "dz", "gripper") and m.actions.chunk_length == 3
    assert m.actions.low == (-1.0,) * 4 and m.actions.high == (1.0,) * 4 and m.actions.dt > 0
    assert m.proprio_names == ("ee_x", "ee_y", "ee_z", "gripper")
    drawer, button = m.adapters
    assert (drawer.rank, button.rank) == (4, 8) and drawer.task == "drawer-open-v3"
    assert drawer.instruction_examples == ("open the drawer",) and drawer.num_parameters > 0
    assert drawer.sha256 == m.files[drawer.file][0]
    for key in ("vla_adapter_ros", "torch", "onnx", "onnxruntime", "opset"):
        assert key in m.raw["versions"]
    parity = m.raw["parity"]
    assert parity["passed"] and parity["tolerance"] == 1e-4
    kinds = {(r["artifact"], r["adapter"]) for r in parity["rows"] if r["check"] == "policy"}
    assert kinds == {(k, a) for k in ("shared", "merged") for a in ("drawer", "button")}
    for f in m.files:  # every listed file is verifiable
        m.verify(f)


@pytest.mark.parametrize("target", ["shared/backbone.onnx", "language/encoder.onnx", "language/tokenizer.json"])
def test_tampered_file_is_refused_with_checksum_error(clone, target):
    data = bytearray((clone / target).read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different content
    replace_file(clone / target, bytes(data))
    with pytest.raises(ChecksumError, match="sha256"):
        OnnxPolicy.from_dir(clone, providers=["cpu"], warmup=False)


def test_tampered_merged_file_is_refused_in_merged_mode(clone):
    replace_file(clone / "merged/button.onnx", (clone / "merged/button.onnx").read_bytes() + b"\0")
    with pytest.raises(ChecksumError, match="merged/button.onnx"):
        OnnxPolicy.from_dir(clone, providers=["cpu"], mode="merged", warmup=False)


def test_unlisted_file_in_directory_is_refused(clone):
    (clone / "adapters" / "extra.onnx_adapter").write_bytes(b"not listed")
    with pytest.raises(ManifestError, match="does not list.*extra.onnx_adapter"):
        Manifest.load(clone)


def test_reference_to_unlisted_file_is_refused(clone):
    def point_elsewhere(d):
        d["adapters"][0]["file"] = "adapters/elsewhere.onnx_adapter"

    edit_manifest(clone, point_elsewhere)
    with pytest.raises(ManifestError, match="not listed in the manifest's files table"):
        Manifest.load(clone)


@pytest.mark.parametrize("bad", ["../outside.onnx", "/etc/passwd", "a/../../b"])
def test_paths_outside_the_directory_are_refused(clone, bad):
    edit_manifest(clone, lambda d: d.__setitem__("shared", {**d["shared"], "file": bad}))
    with pytest.raises(ManifestError, match="plain relative path"):
        Manifest.load(clone)


def test_missing_listed_file_is_refused(clone):
    (clone / "merged" / "drawer.onnx").unlink()
    with pytest.raises(ManifestError, match="missing files.*merged/drawer.onnx"):
        Manifest.load(clone)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.__setitem__("format_version", 99), "this runtime reads"),
        (lambda d: d["actions"].__setitem__("names", ["dx", "dy"]), "actions.low must be 2 finite numbers"),
        (lambda d: d["actions"].__setitem__("low", [2, 2, 2, 2]), "low > actions.high"),
        (lambda d: d["actions"]["normalization"].__setitem__("std", ["nan"] * 4), "normalization is invalid"),
        (lambda d: d["proprio"].__setitem__("names", ["x"]), "1 names"),
        (lambda d: d["image"].__setitem__("color_order", "BGR"), "colour order"),
        (lambda d: d["outputs"][0].__setitem__("shape", ["batch", 5, 4]), "does not match"),
        (lambda d: d.__setitem__("default_adapter", "nope"), "default_adapter 'nope'"),
        (lambda d: d["adapters"][1].__setitem__("name", "drawer"), "not unique"),
        (lambda d: d["adapters"][0].__setitem__("sha256", "0" * 64), "differs from the files table"),
    ],
)
def test_inconsistent_manifest_is_refused(clone, change, message):
    edit_manifest(clone, change)
    with pytest.raises(ManifestError, match=message):
        Manifest.load(clone)


def test_not_a_model_directory(tmp_path):
    with pytest.raises(ManifestError, match="no manifest.json"):
        Manifest.load(tmp_path)
    with pytest.raises(ManifestError, match="does not exist"):
        Manifest.load(tmp_path / "nope")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="cannot read"):
        Manifest.load(tmp_path)


def test_errors_share_one_base_class():
    assert issubclass(ChecksumError, ManifestError) and issubclass(ManifestError, PolicyRuntimeError)


BUNDLED = Path(__file__).resolve().parents[2] / "models" / "default"


@pytest.mark.parametrize("which", ["bundled", "exported"])
def test_manifest_round_trips_through_the_typed_schema(model_dir, which):
    """to_dict() writes back exactly what from_dict() read: one schema for the exporter and the runtime."""
    root = BUNDLED if which == "bundled" else model_dir
    on_disk = json.loads((root / "manifest.json").read_text())
    m = Manifest.load(root)
    assert m.to_dict() == on_disk
    assert Manifest.from_dict(json.loads(json.dumps(m.to_dict())), root) == m


def test_bundled_model_layout_matches_the_layout_functions():
    m = Manifest.load(BUNDLED)
    assert m.shared_file == mf.SHARED_FILE
    assert (m.language.file, m.language.tokenizer) == (mf.LANGUAGE_FILE, mf.TOKENIZER_FILE)
    for a in m.adapters:
        assert (a.file, a.merged_file) == (mf.adapter_file(a.name), mf.merged_file(a.name))


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (4, "format_version 4 is newer than this runtime reads \\(version 1, 2, 3\\); upgrade vla_adapter_ros"),
        (3, "format_version 3 is for families other than 'vla_adapter_ros'"),  # 3 = another family (SmolVLA)
        (0, "format_version 0 is older than this runtime reads \\(version 1, 2, 3\\); export the model again"),
        ("1", "format_version is '1', not a whole number; this runtime reads version 1, 2, 3"),
        (None, "format_version is None"),
    ],
)
def test_unreadable_format_version_says_which_versions_are_read_and_what_to_do(clone, version, message):
    edit_manifest(clone, lambda d: d.__setitem__("format_version", version))
    with pytest.raises(ManifestError, match=message):
        Manifest.load(clone)


def test_foreign_format_is_refused(clone):
    edit_manifest(clone, lambda d: d.__setitem__("format", "someone/else"))
    with pytest.raises(ManifestError, match="manifest format is 'someone/else'; this runtime reads"):
        Manifest.load(clone)


def test_legacy_fp16_sha256_is_checked_against_the_files_table(clone):
    """Exports before the files table became the only checksum source wrote fp16_sha256: it must agree."""
    def fp16_entry(sha):
        def change(d):
            d["adapters"][0]["fp16_file"] = "merged/drawer.onnx"  # any listed file will do for the reader
            d["adapters"][0]["fp16_sha256"] = sha
        return change

    listed = json.loads((clone / "manifest.json").read_text())["files"]["merged/drawer.onnx"]["sha256"]
    edit_manifest(clone, fp16_entry(listed))
    assert Manifest.load(clone).adapter("drawer").fp16_file == "merged/drawer.onnx"
    edit_manifest(clone, fp16_entry("0" * 64))
    with pytest.raises(ManifestError, match="fp16_file sha256 0{64} differs from the files table's"):
        Manifest.load(clone)


def test_output_that_is_not_normalised_is_refused(clone):
    edit_manifest(clone, lambda d: d["actions"].__setitem__("normalized_output", False))
    with pytest.raises(ManifestError, match="normalized_output is False"):
        Manifest.load(clone)
