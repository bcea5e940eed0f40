"""The runtime's tokenizer + ONNX sentence encoder and its bounded LRU cache."""

from __future__ import annotations

import numpy as np
import pytest

from vla_adapter_ros.runtime.errors import InputError
from vla_adapter_ros.runtime.language import EmbeddingCache


def test_lru_cache_is_bounded_and_counts():
    cache = EmbeddingCache(maxsize=2)
    for key in ("a", "b"):
        cache.put(key, np.full(3, ord(key), np.float32))
    assert cache.get("a") is not None  # a is now most recent
    cache.put("c", np.zeros(3, np.float32))  # evicts b, the least recently used
    assert cache.get("b") is None and cache.get("c") is not None
    info = cache.info()
    assert (info.hits, info.misses, info.size, info.maxsize) == (2, 1, 2, 2)


def test_cached_embeddings_are_read_only_copies():
    cache = EmbeddingCache(maxsize=4)
    src = np.ones(3, np.float32)
    stored = cache.put("k", src)
    src[:] = 5
    assert np.all(stored == 1)
    with pytest.raises(ValueError):
        stored[0] = 2


def test_zero_size_cache_stores_nothing():
    cache = EmbeddingCache(maxsize=0)
    cache.put("k", np.ones(2, np.float32))
    assert cache.get("k") is None and cache.info().size == 0
    with pytest.raises(ValueError):
        EmbeddingCache(maxsize=-1)


def test_embeddings_match_the_training_encoder(shared_policy, torch_language):
    texts = ["open the drawer", "Press   the button\tfrom the top ", "a very long instruction " * 40]
    got = shared_policy.language.encode_batch(texts)
    ref = torch_language.encode(texts).numpy()
    assert np.abs(got - ref).max() < 1e-4
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_cache_hits_on_the_canonical_text(shared_policy):
    enc = shared_policy.language
    first, cached_first = enc.encode("slide the   drawer shut")
    second, cached_second = enc.encode(" slide the drawer shut ")
    assert second is first and cached_second and not cached_first


@pytest.mark.parametrize(("text", "message"), [("   ", "empty"), (None, "must be a str"), ("x" * 5000, "limit")])
def test_bad_instructions_raise_input_error(shared_policy, text, message):
    with pytest.raises(InputError, match=message):
        shared_policy.language.encode(text)
