"""Frozen MiniLM wrapper: equals sentence-transformers, caches, and takes language adapters."""

from __future__ import annotations

import torch

from vla_adapter_ros import processing as P
from vla_adapter_ros.core.adapters import AdapterConfig, add_adapter, delete_adapter, set_adapter
from vla_adapter_ros.core.config import LoraConfig
from vla_adapter_ros.core.language import default_model_path
from vla_adapter_ros.core.lora import add_lora

TEXTS = ["pick up the red block", "  Open the   drawer ", "push the puck to the goal, then stop"]


def test_equals_sentence_transformers(language):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(default_model_path()), device="cpu")
    ref = torch.from_numpy(st.encode([P.normalize_instruction(t) for t in TEXTS]))
    got = language.encode(TEXTS)
    assert got.shape == (3, 384)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(3))


def test_cache_by_normalised_text_and_train_mode_is_deterministic(language):
    language.clear_cache()
    a = language.encode(["open the drawer"])
    b = language.encode(["open   the drawer "])  # same canonical text: served from the cache
    assert torch.equal(a, b) and len(language._cache) == 1
    assert not a.requires_grad
    language.train()
    try:
        fresh = language._embed(["open the drawer"])  # BERT dropout stays off in train mode
    finally:
        language.eval()
    assert torch.equal(fresh.detach(), a)


def test_language_adapters_wrap_bert_and_bypass_the_cache(policy, language, config):
    policy.attach_language(language)
    try:
        ref = language.encode(TEXTS)
        paths = add_adapter(policy, "lang", AdapterConfig(rank=4, components=("language",)))
        assert len(paths) == 12  # 6 BERT layers x (attention output, FFN output)
        assert paths[0] == "language.model.encoder.layer.0.attention.output.dense"
        assert paths[1] == "language.model.encoder.layer.0.output.dense"
        set_adapter(policy, "lang")
        assert language.adapters_active()
        out = language.encode(TEXTS)
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)  # zero-init = identity
        assert out.requires_grad  # computed through the adapter, not the cache
        lora_paths = add_lora(policy, "lora", LoraConfig(rank=2, components=("language",), targets=("qkv",)))
        assert len(lora_paths) == 18  # query, key, value in 6 layers
        # forward() embeds raw instructions through the attached encoder
        B = 3
        batch = {
            P.IMAGE: torch.zeros(B, 3, config.image_size, config.image_size),
            P.INSTRUCTION: TEXTS,
            P.PROPRIO: torch.zeros(B, config.proprio_dim),
            P.ACTIONS: torch.zeros(B, config.chunk_length, config.action_dim),
        }
        loss, _ = policy(batch)
        loss.backward()
        grads = [p.grad for p in policy.language.model.encoder.layer[0].output.dense.adapters["lang"].parameters()]
        assert all(g is not None for g in grads)
    finally:
        set_adapter(policy, None)
        for name in list(policy.tuner_configs):
            delete_adapter(policy, name)
        for p in language.parameters():
            p.grad = None
    assert not language.adapters_active()
    assert torch.equal(language.encode(TEXTS), ref)
    assert not any(p.requires_grad for p in language.parameters())
