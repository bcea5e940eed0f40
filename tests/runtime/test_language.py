"""The runtime's tokenizer + ONNX sentence encoder and its bounded LRU cache."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from vla_adapter_ros.runtime.errors import InputError
from vla_adapter_ros.runtime.language import EmbeddingCache


def _counting_cache(maxsize):
    calls: list[str] = []

    def compute(key: str) -> np.ndarray:
        calls.append(key)
        return np.full(3, ord(key[0]), np.float32)

    return EmbeddingCache(compute, maxsize=maxsize), calls


def test_lru_cache_is_bounded_and_counts():
    cache, calls = _counting_cache(2)
    assert [cache.get(k)[1] for k in ("a", "b", "a")] == [False, False, True]  # a is now most recent
    assert cache.get("c")[1] is False  # evicts b, the least recently used
    assert cache.get("b")[1] is False and cache.get("c")[1] is True
    assert calls == ["a", "b", "c", "b"]
    info = cache.info()
    assert (info.hits, info.misses, info.size, info.maxsize) == (2, 4, 2, 2)


def test_cached_embeddings_are_read_only_copies():
    src = np.ones(3, np.float32)
    cache = EmbeddingCache(lambda _key: src, maxsize=4)
    stored, _ = cache.get("k")
    src[:] = 5
    assert np.all(stored == 1) and cache.get("k")[0] is stored
    with pytest.raises(ValueError):
        stored[0] = 2


def test_zero_size_cache_stores_nothing():
    cache, calls = _counting_cache(0)
    assert cache.get("k")[1] is False and cache.get("k")[1] is False and calls == ["k", "k"]
    assert cache.info().size == 0 and cache.info().misses == 2
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="cache size must be an int >= 0"):
            EmbeddingCache(lambda k: np.zeros(1), maxsize=bad)


def test_hit_flags_are_per_thread():
    """Each caller learns whether ITS lookup hit, even when others compute at the same time."""
    gate = threading.Barrier(4)

    def compute(key: str) -> np.ndarray:
        gate.wait(timeout=10)  # all four misses are inside compute at once
        return np.zeros(2, np.float32)

    cache = EmbeddingCache(compute, maxsize=8)
    flags: dict[str, bool] = {}

    def worker(key: str) -> None:
        flags[key] = cache.get(key)[1]

    threads = [threading.Thread(target=worker, args=(k,)) for k in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert flags == dict.fromkeys("abcd", False)
    assert all(cache.get(k)[1] for k in "abcd")


def test_failed_computations_are_not_cached():
    attempts = []

    def compute(key: str) -> np.ndarray:
        attempts.append(key)
        if len(attempts) == 1:
            raise InputError("first try fails")
        return np.zeros(2, np.float32)

    cache = EmbeddingCache(compute, maxsize=4)
    with pytest.raises(InputError):
        cache.get("k")
    assert cache.get("k")[1] is False and cache.get("k")[1] is True and attempts == ["k", "k"]


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


def test_encoder_runs_on_the_cpu_whatever_the_chain(model_dir):
    """The int8 encoder (dynamic quantisation: no CUDA kernels) belongs on the CPU provider."""
    from vla_adapter_ros.runtime.policy import OnnxPolicy
    from vla_adapter_ros.runtime.providers import CPU, language_chain

    assert language_chain() == [(CPU, {})]
    with OnnxPolicy.from_dir(model_dir, providers=["tensorrt", "cuda", "cpu"], warmup=False) as policy:
        assert policy.language_provider == CPU and policy.language.session.get_providers() == [CPU]
