"""A SmolVLA built offline with random weights: tiny (tests) or at SmolVLA's real layer sizes (benchmarks).

SmolVLA reads only a config, a processor and a tokenizer from ``vlm_model_name`` when
``load_vlm_weights=False``. :func:`make_vlm_dir` writes them into a local directory: a
``SmolVLMConfig`` of the requested sizes, a ``SmolVLMProcessor`` and a word-level tokenizer trained
with the ``tokenizers`` library holding SmolVLM's image special tokens. :func:`make_checkpoint`
builds a ``SmolVLAPolicy`` on it and saves it with LeRobot's own ``save_pretrained`` together with
LeRobot's own pre/post-processor pipelines (normalisation statistics, tokenizer step), i.e. exactly
the checkpoint directory a LeRobot training run writes. Runs in the LeRobot venv only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

IMAGE_TOKENS = ("<fake_token_around_image>", "<global-img>", "<image>")
WORDS = (
    "pick place open close push pull the a red green blue cube drawer door button faucet handle up down left right "
    "and to of on in"
).split()


@dataclass(frozen=True)
class VLMSizes:
    """The layer sizes of the SmolVLM inside SmolVLA (``REAL`` = SmolVLM2-500M, SmolVLA's backbone)."""

    vision_hidden: int = 32
    vision_intermediate: int = 64
    vision_layers: int = 2
    vision_heads: int = 2
    image_size: int = 32
    patch_size: int = 8
    text_hidden: int = 64
    text_intermediate: int = 128
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 2
    scale_factor: int = 2
    vocab_size: int = 64  # the word-level tokenizer's size (the real one has 49280)


TINY = VLMSizes()
# SmolVLM2-500M-Video-Instruct (SmolVLA's backbone; SmolVLA keeps its first 16 text layers).
REAL = VLMSizes(vision_hidden=768, vision_intermediate=3072, vision_layers=12, vision_heads=12, image_size=512,
                patch_size=16, text_hidden=960, text_intermediate=2560, text_layers=32, text_heads=15,
                text_kv_heads=5, scale_factor=4, vocab_size=49280)


def make_tokenizer(vocab_size: int) -> Any:
    """A word-level fast tokenizer (trained here, offline) with SmolVLM's special tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["<pad>", "<unk>", "<|im_start|>", "<end_of_utterance>", *IMAGE_TOKENS]
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=specials)
    corpus = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))]
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        extra_special_tokens={"fake_image_token": IMAGE_TOKENS[0], "global_image_token": IMAGE_TOKENS[1],
                              "image_token": IMAGE_TOKENS[2]},
    )


def make_vlm_dir(path: str | Path, sizes: VLMSizes = TINY) -> Path:
    """Write a SmolVLM config + processor + tokenizer (no weights) that SmolVLA can be built from."""
    from transformers import SmolVLMConfig, SmolVLMImageProcessor, SmolVLMProcessor, SmolVLMVideoProcessor

    path = Path(path)
    tokenizer = make_tokenizer(sizes.vocab_size)
    vocab = max(len(tokenizer), sizes.vocab_size)
    config = SmolVLMConfig(
        vision_config=dict(hidden_size=sizes.vision_hidden, intermediate_size=sizes.vision_intermediate,
                           num_hidden_layers=sizes.vision_layers, num_attention_heads=sizes.vision_heads,
                           image_size=sizes.image_size, patch_size=sizes.patch_size),
        text_config=dict(model_type="llama", hidden_size=sizes.text_hidden, intermediate_size=sizes.text_intermediate,
                         num_hidden_layers=sizes.text_layers, num_attention_heads=sizes.text_heads,
                         num_key_value_heads=sizes.text_kv_heads, head_dim=sizes.text_hidden // sizes.text_heads,
                         vocab_size=vocab, max_position_embeddings=8192, rms_norm_eps=1e-5),
        scale_factor=sizes.scale_factor,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKENS[2]),
        vocab_size=vocab,
    )
    image_processor = SmolVLMImageProcessor(size={"longest_edge": sizes.image_size},
                                            max_image_size={"longest_edge": sizes.image_size})
    processor = SmolVLMProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                 video_processor=SmolVLMVideoProcessor(),
                                 image_seq_len=(sizes.image_size // sizes.patch_size // sizes.scale_factor) ** 2)
    path.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def make_config(vlm_dir: str | Path, *, state_dim: int = 4, action_dim: int = 4, cameras: tuple[str, ...] = ("camera",),
                image_size: int | None = None, chunk_size: int = 8, num_steps: int = 4,
                tokenizer_max_length: int = 12, **overrides: Any) -> Any:
    """A ``SmolVLAConfig`` on ``vlm_dir`` with LeRobot features for these cameras, state and actions."""
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

    vlm = json.loads((Path(vlm_dir) / "config.json").read_text())
    side = image_size or vlm["vision_config"]["image_size"]
    inputs = {f"observation.images.{c}": PolicyFeature(type=FeatureType.VISUAL, shape=(3, side, side)) for c in cameras}
    inputs["observation.state"] = PolicyFeature(type=FeatureType.STATE, shape=(state_dim,))
    fields: dict[str, Any] = dict(
        vlm_model_name=str(vlm_dir), load_vlm_weights=False, device="cpu", chunk_size=chunk_size,
        n_action_steps=chunk_size, num_steps=num_steps, tokenizer_max_length=tokenizer_max_length,
        pad_language_to="max_length", max_state_dim=max(8, state_dim), max_action_dim=max(8, action_dim),
        resize_imgs_with_padding=(side, side), num_vlm_layers=vlm["text_config"]["num_hidden_layers"],
        input_features=inputs,
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(action_dim,))},
        push_to_hub=False,
    )
    fields.update(overrides)
    return SmolVLAConfig(**fields)


def random_stats(config: Any, seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """Normalisation statistics (mean/std) for state and action, random but fixed by ``seed``."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, feature in {**config.input_features, **config.output_features}.items():
        if key.startswith("observation.images"):
            continue
        (dim,) = feature.shape
        out[key] = {"mean": torch.randn(dim, generator=g), "std": torch.rand(dim, generator=g) + 0.5,
                    "min": -torch.ones(dim), "max": torch.ones(dim)}
    return out


def make_checkpoint(out: str | Path, vlm_dir: str | Path, *, seed: int = 0, **config_fields: Any) -> Path:
    """Build a randomly initialised SmolVLA and save it as LeRobot does (model + pre/post-processors)."""
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
    from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors

    torch.manual_seed(seed)
    config = make_config(vlm_dir, **config_fields)
    policy = SmolVLAPolicy(config)
    pre, post = make_smolvla_pre_post_processors(config, random_stats(config, seed))
    out = Path(out)
    policy.save_pretrained(out)
    pre.save_pretrained(out)
    post.save_pretrained(out)
    return out
