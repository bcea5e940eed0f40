"""The exported language graph is traced once and then copied from the cache (core/export/language.py).

Every export checks the language graph against PyTorch (the parity table's ``language`` row), cached or
not; the whole suite exports through a cache of its own (tests/conftest.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from vla_adapter_ros.core.export import DEFAULT_OPSET
from vla_adapter_ros.core.export import language as lang
from vla_adapter_ros.runtime import manifest as mf


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_encoder_is_traced_once_then_copied_and_a_damaged_entry_is_not_used(tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(lang.CACHE_ENV, str(tmp_path / "cache"))
    traced: list[str] = []
    trace = lang.torch_export
    monkeypatch.setattr(lang, "torch_export", lambda *a, **k: traced.append(a[-1]) or trace(*a, **k))
    encoder = lang.load_encoder(None)
    first = lang.export_encoder(encoder, tmp_path / "a", DEFAULT_OPSET)
    (entry,) = (tmp_path / "cache").iterdir()
    assert traced == ["language encoder"] and entry.name == lang._cache_key(encoder, DEFAULT_OPSET)
    second = lang.export_encoder(encoder, tmp_path / "b", DEFAULT_OPSET)
    assert traced == ["language encoder"], "the second export copied the graph"
    assert second == first and sha(tmp_path / "b" / mf.LANGUAGE_FILE) == sha(tmp_path / "a" / mf.LANGUAGE_FILE)
    assert (tmp_path / "b" / mf.TOKENIZER_FILE).is_file()
    # another opset is another graph; a damaged entry (its bytes no longer match its sha256) is not used
    assert lang._cache_key(encoder, DEFAULT_OPSET + 1) != entry.name
    graph = entry / "encoder.onnx"
    graph.write_bytes(graph.read_bytes()[:1000])
    assert not lang._from_cache(entry, tmp_path / "copy.onnx") and not (tmp_path / "copy.onnx").exists()


def test_where_the_cache_is(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv(lang.CACHE_ENV, "off")
    assert lang.language_cache() is None
    monkeypatch.setenv(lang.CACHE_ENV, str(tmp_path))
    assert lang.language_cache() == tmp_path
    monkeypatch.delenv(lang.CACHE_ENV)
    assert lang.language_cache() == lang.CACHE_ROOT / "language"
