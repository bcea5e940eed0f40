"""Symbolic links in the model directory are refused: the runtime only reads real files inside it.

A link can point out of the model directory (a copy of the right bytes today, something else
tomorrow), so a link is refused even when the file it points to has the listed sha256.
"""

from __future__ import annotations

import os
import shutil

import pytest

from vla_adapter_ros.runtime.errors import ManifestError
from vla_adapter_ros.runtime.manifest import Manifest
from vla_adapter_ros.runtime.policy import OnnxPolicy


@pytest.mark.parametrize("target", ["shared/backbone.onnx", "language/tokenizer.json", "adapters/button.onnx_adapter"])
def test_listed_file_that_links_out_of_the_directory_is_refused(clone, tmp_path, target):
    outside = tmp_path / "outside" / target.replace("/", "_")
    outside.parent.mkdir()
    shutil.copyfile(clone / target, outside)  # the very same bytes: the checksum alone would pass
    (clone / target).unlink()
    os.symlink(outside, clone / target)
    with pytest.raises(ManifestError, match=f"{target}.*symbolic link"):
        OnnxPolicy.from_dir(clone, providers=["cpu"], warmup=False)


def test_linked_folder_out_of_the_directory_is_refused(clone, tmp_path):
    shutil.copytree(clone / "language", tmp_path / "language_elsewhere")
    shutil.rmtree(clone / "language")
    os.symlink(tmp_path / "language_elsewhere", clone / "language")
    with pytest.raises(ManifestError, match="language"):
        Manifest.load(clone)


def test_unlisted_link_is_refused(clone):
    os.symlink("/etc/passwd", clone / "adapters" / "passwd.onnx_adapter")
    with pytest.raises(ManifestError, match="does not list.*passwd.onnx_adapter"):
        Manifest.load(clone)


def test_adapter_replaced_by_a_link_is_refused_on_load_adapter_and_nothing_changes(clone, tmp_path):
    with OnnxPolicy.from_dir(clone, providers=["cpu"], load_adapters=["drawer"], warmup=False) as policy:
        outside = tmp_path / "button.onnx_adapter"
        shutil.copyfile(clone / "adapters/button.onnx_adapter", outside)
        (clone / "adapters/button.onnx_adapter").unlink()
        os.symlink(outside, clone / "adapters/button.onnx_adapter")
        with pytest.raises(ManifestError, match="symbolic link"):
            policy.load_adapter("button", activate=True)
        assert policy.active_adapter == "drawer" and [a.name for a in policy.adapters] == ["drawer"]
