"""The VLA policy: ViT image tokens of every camera view + language token + proprio token -> fusion -> action chunk.

LeRobot-style interface: ``forward(batch) -> (loss, info)`` for training,
``select_action(batch)`` under ``no_grad`` for control, ``reset()`` between episodes,
and ``predict(image, instruction_embedding, proprio)``, the pure tensor function that is
exported to ONNX (see docs/DESIGN.md, "Exported graph"). Normalisation statistics live
in buffers, so they travel with every checkpoint and into the fingerprint.

Views: ``image`` is (B, V, 3, H, W) in ``ModelConfig.cameras`` order, or (B, 3, H, W) for a
single-camera model. Every view goes through the same vision encoder (one batch of B * V
images); the fusion transformer adds a learned per-view embedding and attends over all views.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import processing as P
from .blocks import init_weights
from .config import ModelConfig
from .fusion import FusionTransformer
from .tuners import backbone_tensors, iter_backbone_modules
from .vision import VisionEncoder


class ActionHead(nn.Module):
    """(B, K, C) layer-normed readout tokens -> (B, K, A) normalised actions: one linear map
    (docs/DESIGN.md), shared by the K readouts; each readout token already knows its step."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.out = nn.Linear(config.d_model, config.action_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(x)


class VLAPolicy(nn.Module):
    """Vision-language-action policy with a frozen-able backbone and attachable tuners."""

    def __init__(
        self,
        config: ModelConfig,
        stats: Mapping[str, P.Normalizer] | None = None,
        language: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.vision = VisionEncoder(config)
        self.fusion = FusionTransformer(config)
        self.head = ActionHead(config)
        for m in (self.vision, self.fusion, self.head):
            m.apply(init_weights)
        # Normalisation statistics (persistent buffers: saved, fingerprinted, broadcast by DDP).
        self.register_buffer("proprio_mean", torch.zeros(config.proprio_dim))
        self.register_buffer("proprio_std", torch.ones(config.proprio_dim))
        self.register_buffer("action_mean", torch.zeros(config.action_dim))
        self.register_buffer("action_std", torch.ones(config.action_dim))
        if stats is not None:
            self.set_stats(stats)
        # Optional frozen language encoder (only needed for language adapters or raw text).
        self.language: nn.Module | None = None
        if language is not None:
            self.attach_language(language)
        # Tuner registry (adapters and LoRA share one namespace), see core/tuners.py.
        self.tuner_configs: dict[str, Any] = {}
        self.active_adapter: str | None = None
        self._action_queue: deque[torch.Tensor] = deque()

    # ------------------------------------------------------------------ structure

    def component_modules(self) -> dict[str, nn.Module | None]:
        """Top-level components by name (the names used in adapter configs and reports)."""
        return {"vision": self.vision, "fusion": self.fusion, "head": self.head, "language": self.language}

    def attach_language(self, encoder: nn.Module) -> None:
        """Register the language encoder as a submodule (needed for component 'language')."""
        dim = getattr(encoder, "dim", self.config.lang_dim)
        if dim != self.config.lang_dim:
            raise ValueError(f"language encoder gives {dim}-d embeddings, ModelConfig.lang_dim is {self.config.lang_dim}")
        self.language = encoder

    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        """Backbone tensors (no tuner weights, no language encoder), named as in a bare policy."""
        skip = (self.language,) if self.language is not None else ()
        return {k: v.detach() for k, v in backbone_tensors(self, "", skip).items()}

    @torch.no_grad()
    def load_backbone_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Copy backbone tensors in place (works with tuners attached); exact key and shape match."""
        skip = (self.language,) if self.language is not None else ()
        own = backbone_tensors(self, "", skip)
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(f"backbone state mismatch: missing {missing[:8]}, unexpected {unexpected[:8]}")
        for k, t in own.items():
            if tuple(t.shape) != tuple(state[k].shape):
                raise ValueError(f"backbone tensor {k!r}: checkpoint shape {tuple(state[k].shape)}, model {tuple(t.shape)}")
            t.copy_(state[k])

    def backbone_fingerprint(self) -> str:
        """sha256 over the config, backbone tensor names, shapes, dtypes and values.

        Adapters record it and refuse to load onto any other backbone. Tuner weights and
        the (shipped, frozen) language encoder are excluded; statistics are included.
        """
        h = hashlib.sha256()
        config = self.config.to_dict()
        # Fields added later: leaving their defaults out keeps older fingerprints (and adapters) valid.
        if not config.get("stem_channels"):
            config.pop("stem_channels", None)
        if config.get("cameras") == ["camera"]:
            config.pop("cameras", None)
        h.update(json.dumps(config, sort_keys=True).encode())
        for name, t in sorted(self.backbone_state_dict().items()):
            t = t.detach().to("cpu").contiguous()
            h.update(f"{name}|{tuple(t.shape)}|{t.dtype}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()

    def num_backbone_parameters(self) -> int:
        skip = (self.language,) if self.language is not None else ()
        modules = iter_backbone_modules(self, "", skip)
        return sum(p.numel() for _, m in modules for p in m._parameters.values() if p is not None)

    # ------------------------------------------------------------------ statistics

    @torch.no_grad()
    def set_stats(self, stats: Mapping[str, P.Normalizer]) -> None:
        """Install the proprio / action normalisers (from the training data)."""
        for key, (mean, std) in (
            ("proprio", (self.proprio_mean, self.proprio_std)),
            ("actions", (self.action_mean, self.action_std)),
        ):
            if key not in stats:
                raise ValueError(f"stats need 'proprio' and 'actions', got {sorted(stats)}")
            n = stats[key]
            if n.dim != mean.numel():
                raise ValueError(f"{key} statistics have dim {n.dim}, model expects {mean.numel()}")
            mean.copy_(torch.as_tensor(n.mean))
            std.copy_(torch.as_tensor(n.std))

    @property
    def stats(self) -> dict[str, P.Normalizer]:
        return {
            "proprio": P.Normalizer(self.proprio_mean.cpu().numpy(), self.proprio_std.cpu().numpy()),
            "actions": P.Normalizer(self.action_mean.cpu().numpy(), self.action_std.cpu().numpy()),
        }

    def normalize_proprio(self, proprio: torch.Tensor) -> torch.Tensor:
        return (proprio - self.proprio_mean) / self.proprio_std

    def denormalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return actions * self.action_std + self.action_mean

    # ------------------------------------------------------------------ inference

    def predict(
        self, image: torch.Tensor, instruction_embedding: torch.Tensor, proprio: torch.Tensor
    ) -> torch.Tensor:
        """(B, V, 3, H, W) or, for one camera, (B, 3, H, W); (B, E), (B, P) normalised -> (B, K, A) normalised actions.

        The exported function: tensors in, tensor out, no data-dependent control flow.
        """
        image_tokens = self.encode_views(image)  # (B, V, N, C)
        readout = self.fusion(image_tokens, instruction_embedding, proprio)  # (B, K, C)
        return self.head(readout)  # (B, K, A)

    def encode_views(self, image: torch.Tensor) -> torch.Tensor:
        """(B, V, 3, H, W) views in ``config.cameras`` order (or (B, 3, H, W) for one camera) -> (B, V, N, C) tokens."""
        cameras = self.config.cameras
        if image.dim() == 4 and len(cameras) == 1:
            return self.vision(image).unsqueeze(1)  # (B, 1, N, C)
        if image.dim() != 5 or image.shape[1] != len(cameras):
            one = " or (B, 3, H, W)" if len(cameras) == 1 else ""
            raise ValueError(f"image has shape {tuple(image.shape)}; this model takes (B, {len(cameras)}, 3, H, W)"
                             f"{one}: cameras {list(cameras)} in that order")
        B, V = image.shape[:2]
        tokens = self.vision(image.flatten(0, 1))  # (B * V, N, C): every view through the same encoder, one batch
        return tokens.reshape(B, V, *tokens.shape[1:])  # (B, V, N, C)

    def instruction_embedding(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """The batch's (B, E) embedding: given, or computed from INSTRUCTION by the language encoder."""
        if P.INSTRUCTION_EMBEDDING in batch:
            return batch[P.INSTRUCTION_EMBEDDING]
        if P.INSTRUCTION not in batch:
            raise KeyError(f"batch needs {P.INSTRUCTION_EMBEDDING!r} or {P.INSTRUCTION!r}, has {sorted(batch)}")
        if self.language is None:
            raise ValueError(
                f"batch has raw {P.INSTRUCTION!r} texts but no language encoder is attached; "
                "attach one (policy.attach_language) or pass instruction embeddings"
            )
        texts = batch[P.INSTRUCTION]
        texts = [texts] if isinstance(texts, str) else list(texts)
        return self.language.encode(texts).to(batch[P.IMAGE].device)

    def forward(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Masked L1 (or MSE) between predicted and target normalised action chunks."""
        pred = self.predict(batch[P.IMAGE], self.instruction_embedding(batch), batch[P.PROPRIO])  # (B, K, A)
        target = batch[P.ACTIONS]  # (B, K, A)
        if P.ACTIONS_MASK in batch:
            mask = batch[P.ACTIONS_MASK].to(pred.dtype).unsqueeze(-1)  # (B, K, 1)
        else:
            mask = torch.ones_like(pred[..., :1])
        denom = (mask.sum() * pred.shape[-1]).clamp_min(1.0)
        l1 = ((pred - target).abs() * mask).sum() / denom
        mse = ((pred - target).square() * mask).sum() / denom
        loss = l1 if self.config.loss == "l1" else mse
        return loss, {"l1": float(l1.detach()), "mse": float(mse.detach())}

    @torch.no_grad()
    def predict_chunk(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """(B, K, A) de-normalised action chunk for a batch with normalised PROPRIO."""
        pred = self.predict(batch[P.IMAGE], self.instruction_embedding(batch), batch[P.PROPRIO])
        return self.denormalize_actions(pred)

    @torch.no_grad()
    def select_action(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """(B, A) de-normalised action; re-plans a chunk every ``n_action_steps`` calls."""
        if not self._action_queue:
            n = self.config.n_action_steps or self.config.chunk_length
            chunk = self.predict_chunk(batch)  # (B, K, A)
            self._action_queue.extend(chunk[:, :n].transpose(0, 1))  # n x (B, A)
        return self._action_queue.popleft()

    def reset(self) -> None:
        """Forget queued actions (call at every episode start)."""
        self._action_queue.clear()

    def predictor(self) -> PolicyPredictor:
        """An nn.Module whose forward is :meth:`predict` (what torch.onnx.export needs)."""
        return PolicyPredictor(self)


class PolicyPredictor(nn.Module):
    """forward(*images, instruction_embedding, proprio) -> actions, as the exported graph takes them: one
    (B, 3, H, W) image per camera in ``config.cameras`` order (:func:`graph_inputs`); shares the policy's weights."""

    def __init__(self, policy: VLAPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        *images, instruction_embedding, proprio = inputs
        image = images[0] if len(images) == 1 else torch.stack(images, dim=1)  # (B, V, 3, H, W)
        return self.policy.predict(image, instruction_embedding, proprio)


def count_parameters(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def example_inputs(config: ModelConfig, batch_size: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Deterministic (image, instruction_embedding, proprio) of the right shapes (export, benchmarks).

    ``image`` is (B, V, 3, H, W), or (B, 3, H, W) for a single-camera model (the same values it always had).
    """
    g = torch.Generator().manual_seed(seed)
    V, S = len(config.cameras), config.image_size
    image = torch.rand(batch_size, V, 3, S, S, generator=g) * 2 - 1  # (B, V, 3, H, W)
    image = image[:, 0] if V == 1 else image
    emb = F.normalize(torch.randn(batch_size, config.lang_dim, generator=g), dim=-1)
    proprio = torch.randn(batch_size, config.proprio_dim, generator=g)
    return image, emb, proprio


def graph_inputs(config: ModelConfig, image: torch.Tensor, *rest: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``predict``'s arguments as the exported graph (and :class:`PolicyPredictor`) takes them: the
    (B, V, 3, H, W) image split into one (B, 3, H, W) tensor per camera, then ``rest`` unchanged."""
    if len(config.cameras) == 1:
        return (image if image.dim() == 4 else image[:, 0], *rest)
    return (*image.unbind(1), *rest)


def stats_to_json(stats: Mapping[str, P.Normalizer]) -> dict[str, Any]:
    return {k: v.to_dict() for k, v in stats.items()}


def stats_from_json(d: Mapping[str, Any]) -> dict[str, P.Normalizer]:
    return {k: P.Normalizer.from_dict(v) for k, v in d.items()}


__all__ = [
    "ActionHead",
    "PolicyPredictor",
    "VLAPolicy",
    "count_parameters",
    "example_inputs",
    "graph_inputs",
    "stats_from_json",
    "stats_to_json",
]
