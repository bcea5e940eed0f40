"""Instruction text -> sentence embedding with the exported all-MiniLM-L6-v2 and ``tokenizers``.

The ONNX graph does mean pooling and L2 normalisation itself, so this module only
tokenises. Embeddings are cached by the canonical instruction text
(``processing.normalize_instruction``) in a bounded ``functools.lru_cache`` (thread-safe):
a robot repeats the same few instructions, and every adapter shares one embedding (the
default keeps the language encoder adapter-free). The encoder runs on the CPU provider
(``providers.language_chain``): its int8 dynamic quantisation has no CUDA kernels.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from vla_adapter_ros import processing
from vla_adapter_ros.runtime.errors import InputError, ManifestError, NonFiniteOutputError

MAX_INSTRUCTION_CHARS = 4096  # longer text is refused, not silently truncated by characters


@dataclass(frozen=True)
class CacheInfo:
    hits: int
    misses: int
    size: int
    maxsize: int


class EmbeddingCache:
    """``functools.lru_cache`` over ``compute(key)``: read-only float32 copies, hit/miss statistics.

    Whether one lookup was a hit is told per call (a thread-local flag set by the computing
    function), so concurrent callers never read each other's answer. A failed computation
    (an exception) is not cached.
    """

    def __init__(self, compute: Callable[[str], np.ndarray], maxsize: int = 256) -> None:
        if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 0:
            raise ValueError(f"cache size must be an int >= 0, got {maxsize!r}")
        self.maxsize = maxsize
        self._compute = compute
        self._local = threading.local()
        self._lookup = functools.lru_cache(maxsize=maxsize)(self._miss)

    def _miss(self, key: str) -> np.ndarray:
        self._local.computed = True
        value = np.array(self._compute(key), dtype=np.float32, copy=True)
        value.setflags(write=False)  # callers share the cached array; nobody may change it
        return value

    def get(self, key: str) -> tuple[np.ndarray, bool]:
        """The value for ``key`` and whether it came from the cache."""
        self._local.computed = False
        value = self._lookup(key)
        return value, not self._local.computed

    def info(self) -> CacheInfo:
        i = self._lookup.cache_info()
        return CacheInfo(i.hits, i.misses, i.currsize, self.maxsize)

    def clear(self) -> None:
        self._lookup.cache_clear()


class LanguageEncoder:
    """Tokenizer + ONNX sentence encoder + LRU cache."""

    def __init__(
        self,
        session: ort.InferenceSession,
        tokenizer: Tokenizer,
        embedding_dim: int,
        max_length: int,
        cache_size: int = 256,
    ) -> None:
        names_in = [i.name for i in session.get_inputs()]
        names_out = [o.name for o in session.get_outputs()]
        if names_in != ["input_ids", "attention_mask"] or names_out != ["embedding"]:
            raise ManifestError(
                f"language encoder graph is {names_in} -> {names_out}; expected "
                "['input_ids', 'attention_mask'] -> ['embedding']"
            )
        self.session = session
        self.tokenizer = tokenizer
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)
        self.embedding_dim = embedding_dim
        self.max_length = max_length
        self.cache = EmbeddingCache(lambda key: self._run([key])[0], cache_size)

    @classmethod
    def from_bytes(
        cls,
        session: ort.InferenceSession,
        tokenizer_json: bytes,
        embedding_dim: int,
        max_length: int,
        cache_size: int = 256,
    ) -> LanguageEncoder:
        try:
            tokenizer = Tokenizer.from_str(tokenizer_json.decode("utf-8"))
        except Exception as exc:  # noqa: BLE001 - tokenizers raises a bare Exception
            raise ManifestError(f"cannot parse the tokenizer: {exc}") from exc
        return cls(session, tokenizer, embedding_dim, max_length, cache_size)

    @staticmethod
    def canonical(text: str) -> str:
        if not isinstance(text, str):
            raise InputError(f"instruction must be a str, got {type(text).__name__}")
        if len(text) > MAX_INSTRUCTION_CHARS:
            raise InputError(f"instruction has {len(text)} characters; the limit is {MAX_INSTRUCTION_CHARS}")
        canon = processing.normalize_instruction(text)
        if not canon:
            raise InputError(f"instruction {text!r} is empty")
        return canon

    def encode(self, text: str) -> tuple[np.ndarray, bool]:
        """(E,) read-only float32 embedding of one instruction, and whether it came from the cache."""
        return self.cache.get(self.canonical(text))

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        """(N, E) embeddings, uncached (used by the exporter's parity check and benchmarks)."""
        return self._run([self.canonical(t) for t in texts])

    def _run(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        length = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(texts), length), np.int64)  # [PAD] = 0, masked out by the pooling
        mask = np.zeros((len(texts), length), np.int64)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = enc.attention_mask
        (out,) = self.session.run(None, {"input_ids": ids, "attention_mask": mask})
        if out.shape != (len(texts), self.embedding_dim):
            raise ManifestError(f"language encoder returned shape {out.shape}, expected ({len(texts)}, {self.embedding_dim})")
        if not np.all(np.isfinite(out)):
            raise NonFiniteOutputError(f"language encoder produced non-finite values for {texts!r}")
        return out.astype(np.float32, copy=False)
