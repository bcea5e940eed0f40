"""SmolVLA -> two ONNX graphs (``torch.onnx.export(dynamo=True)``), adapter tensors as graph inputs.

``prefix.onnx``: images (B,3,S,S) in [0, 1] (one per camera, named ``processing.image_input_name``; already resized with padding to S),
``lang_tokens`` (B,L) int64, ``lang_mask`` (B,L) bool, ``state`` (B,max_state_dim) normalised and
zero-padded, + the vision / language adapter tensors -> ``past_keys``, ``past_values``
(layers,B,P,kv_heads,head_dim) and ``prefix_mask`` (B,P) bool: run once per frame.

``denoise.onnx``: ``x_t`` (B,chunk,max_action_dim), ``time`` (B,), the KV cache and the prefix mask,
+ the expert adapter tensors -> ``v_t``: one Euler step of flow matching, run ``num_steps`` times by
the runtime (``x += dt * v_t``, ``t = 1 + step * dt``, ``dt = -1 / num_steps``), exactly LeRobot's
``sample_actions`` loop.

``unrolled.onnx`` (``export_unrolled``, measured against the two graphs by ``benchmarks/bench_smolvla.py``;
not served): the prefix inputs + ``noise`` (B,chunk,max_action_dim) + every adapter tensor -> ``actions``
(B,chunk,max_action_dim): the prefix and all ``num_steps`` Euler steps in one graph.

Adapters: a template adapter (``TEMPLATE``) whose rank and sites cover every exported adapter is
attached; its tensors are passed through ``torch.func.functional_call`` so they stay graph inputs,
then identity defaults (zeros) are attached as initializers of the same names. Each real adapter is
written in that layout: zero-padded to the template rank (zero rows/columns add exactly nothing) and
its scaling folded into the up-projection. Runs in the LeRobot venv.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ... import processing
from ...core.tuners import iter_tuner_layers, tuner_state_dict
from . import model as sv

TEMPLATE = "shared_slot"
ADAPTER_INPUT_PREFIX = "adapter."
PREFIX_FILE = "graphs/prefix.onnx"
DENOISE_FILE = "graphs/denoise.onnx"
UNROLLED_FILE = "graphs/unrolled.onnx"
OPSET = 18


def _batch_position_ids(self: Any, pixel_values: torch.Tensor, patch_attention_mask: torch.Tensor) -> torch.Tensor:
    """SmolVLMVisionEmbeddings.forward for full images, without its per-sample loop (so the batch stays dynamic).

    SmolVLA never masks patches (``patch_attention_mask`` is all ones), so every sample has the same
    position ids; they are computed once with the upstream bucketize rule and broadcast.
    """
    _, _, h, w = pixel_values.shape
    embeddings = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)  # (B, N, C)
    nh, nw = h // self.patch_size, w // self.patch_size
    side = self.num_patches_per_side
    boundaries = torch.arange(1 / side, 1.0, 1 / side, device=pixel_values.device)
    fh = torch.arange(nh, device=pixel_values.device, dtype=pixel_values.dtype) / nh * (1 - 1e-6)
    fw = torch.arange(nw, device=pixel_values.device, dtype=pixel_values.dtype) / nw * (1 - 1e-6)
    bh = torch.bucketize(fh, boundaries, right=True)
    bw = torch.bucketize(fw, boundaries, right=True)
    position_ids = (bh[:, None] * side + bw).flatten()  # (N,)
    return embeddings + self.position_embedding(position_ids)[None]  # (B, N, C)


@contextlib.contextmanager
def batch_free_vision() -> Iterator[None]:
    from transformers.models.smolvlm import modeling_smolvlm as m

    old = m.SmolVLMVisionEmbeddings.forward
    m.SmolVLMVisionEmbeddings.forward = _batch_position_ids  # type: ignore[method-assign]
    try:
        yield
    finally:
        m.SmolVLMVisionEmbeddings.forward = old  # type: ignore[method-assign]


def prefix_forward(policy: Any, images: list[torch.Tensor], tokens: torch.Tensor, mask: torch.Tensor,
                   state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """LeRobot's ``sample_actions`` up to the KV cache (images already at the padded size, in [0, 1])."""
    from lerobot.policies.smolvla.modeling_smolvla import make_att_2d_masks

    model = policy.model
    imgs = [img * 2.0 - 1.0 for img in images]  # SigLIP range, as prepare_images
    img_masks = [torch.ones(img.shape[0], dtype=torch.bool, device=img.device) for img in imgs]
    embs, pad, att = model.embed_prefix(imgs, img_masks, tokens, mask, state=state)
    att_2d = make_att_2d_masks(pad, att)
    position_ids = torch.cumsum(pad, dim=1) - 1
    _, kv = model.vlm_with_expert.forward(attention_mask=att_2d, position_ids=position_ids, past_key_values=None,
                                          inputs_embeds=[embs, None], use_cache=True, fill_kv_cache=True)
    keys = torch.stack([kv[i]["key_states"] for i in sorted(kv)])  # (layers, B, P, kv_heads, head_dim)
    values = torch.stack([kv[i]["value_states"] for i in sorted(kv)])
    return keys, values, pad


def denoise_forward(policy: Any, x_t: torch.Tensor, time: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                    pad: torch.Tensor) -> torch.Tensor:
    kv = {i: {"key_states": keys[i], "value_states": values[i]} for i in range(keys.shape[0])}
    return policy.model.denoise_step(prefix_pad_masks=pad, past_key_values=kv, x_t=x_t, timestep=time)


def unrolled_forward(policy: Any, images: list[torch.Tensor], tokens: torch.Tensor, mask: torch.Tensor,
                     state: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """LeRobot's ``sample_actions`` with the loop unrolled: the prefix, then ``num_steps`` Euler steps from ``noise``."""
    keys, values, pad = prefix_forward(policy, images, tokens, mask, state)
    steps = policy.config.num_steps
    dt = -1.0 / steps
    x_t = noise
    for step in range(steps):  # (B, chunk, max_action_dim); time as LeRobot makes it: float32(1 + step * dt)
        time = x_t.new_full((x_t.shape[0],), 1.0 + step * dt)
        x_t = x_t + dt * denoise_forward(policy, x_t, time, keys, values, pad)
    return x_t


class _Call(nn.Module):
    """``fn(policy, *inputs)``; the first ``n_cameras`` inputs are the camera images (a list for ``fn``)."""

    def __init__(self, policy: Any, fn: Any, n_cameras: int) -> None:
        super().__init__()
        self.policy, self.fn, self.n_cameras = policy, fn, n_cameras

    def forward(self, *xs: torch.Tensor) -> Any:
        if self.n_cameras:
            return self.fn(self.policy, list(xs[: self.n_cameras]), *xs[self.n_cameras:])
        return self.fn(self.policy, *xs)


class _Graph(nn.Module):
    """``_Call`` with the template adapter's parameters ``fqns`` taken from the extra (trailing) inputs."""

    def __init__(self, policy: Any, fn: Any, n_inputs: int, fqns: list[str], n_cameras: int = 0) -> None:
        super().__init__()
        self.inner = _Call(policy, fn, n_cameras)
        self.n_inputs, self.fqns = n_inputs, fqns

    def forward(self, *args: torch.Tensor) -> Any:
        from torch.func import functional_call

        inputs, tensors = args[: self.n_inputs], args[self.n_inputs:]
        params = {f"policy.{k}": v for k, v in zip(self.fqns, tensors, strict=True)}
        return functional_call(self.inner, params, inputs)


def template_config(configs: list[sv.SmolVLAAdapterConfig]) -> sv.SmolVLAAdapterConfig:
    sites = tuple(s for s in sv.SITES if any(s in c.sites for c in configs))
    return sv.SmolVLAAdapterConfig(rank=max(c.rank for c in configs), sites=sites)


def attach_template(policy: Any, names: list[str]) -> tuple[list[str], list[str], dict[str, str]]:
    """Attach the template; (prefix keys, denoise keys, key -> fqn of its parameter in the policy)."""
    config = template_config([policy.tuner_configs[n] for n in names])
    sv.add_adapter(policy, TEMPLATE, config)
    fqn_of = {}
    for path, layer in iter_tuner_layers(policy):
        if TEMPLATE in layer.tuner_dicts()[0]:
            full = [n for n, m in policy.named_modules() if m is layer][0]
            for k in layer.tuner_dicts()[0][TEMPLATE].state_dict():
                fqn_of[f"{path}.{k}"] = f"{full}.adapters.{TEMPLATE}.{k}"
    expert = {id(layer) for _, layer in iter_tuner_layers(policy.model.vlm_with_expert.lm_expert)}
    denoise_keys, prefix_keys = [], []
    for path, layer in iter_tuner_layers(policy):
        if TEMPLATE not in layer.tuner_dicts()[0]:
            continue
        keys = [f"{path}.{k}" for k in layer.tuner_dicts()[0][TEMPLATE].state_dict()]
        (denoise_keys if id(layer) in expert else prefix_keys).extend(keys)
    sv.activate(policy, TEMPLATE)
    with torch.no_grad():  # the identity: all zeros (ReLU(0) = 0, then zero up-projection)
        for t in tuner_state_dict(policy, TEMPLATE).values():
            t.zero_()
    return prefix_keys, denoise_keys, fqn_of


def padded_tensors(policy: Any, name: str, keys: list[str]) -> dict[str, np.ndarray]:
    """Adapter ``name`` in the template layout: zero-padded to the template rank, scaling folded into W_up."""
    own = {k: v.detach().float().numpy() for k, v in tuner_state_dict(policy, name).items()}
    template = {k: v.detach().float().numpy() for k, v in tuner_state_dict(policy, TEMPLATE).items()}
    scaling = float(policy.tuner_configs[name].scaling)
    out = {}
    for key in keys:
        z = np.zeros_like(template[key])
        if key in own:
            v = own[key] * (scaling if key.rsplit(".", 2)[-2] == "up" else 1.0)
            z[tuple(slice(0, s) for s in v.shape)] = v
        out[key] = z
    return out


def export_graphs(policy: Any, out: Path, names: list[str], batch: dict[str, torch.Tensor],
                  cameras: list[str]) -> dict[str, Any]:
    """Write prefix.onnx and denoise.onnx for ``policy`` with a template for ``names``; return their I/O."""
    prefix_keys, denoise_keys, fqn_of = attach_template(policy, names)
    images = [batch[f"observation.images.{c}"] for c in cameras]
    tokens, mask, state = batch["tokens"], batch["mask"], batch["state"]
    io_info: dict[str, Any] = {}
    with torch.no_grad(), batch_free_vision():
        keys, values, pad = prefix_forward(policy, images, tokens, mask, state)
        x_t = torch.randn(state.shape[0], policy.config.chunk_size, policy.config.max_action_dim)
        time = torch.ones(state.shape[0])
        io_info[PREFIX_FILE] = _export(
            policy, out / PREFIX_FILE, prefix_forward, [*_image_names(cameras), "lang_tokens", "lang_mask", "state"],
            (*images, tokens, mask, state), ["past_keys", "past_values", "prefix_mask"], prefix_keys, fqn_of, len(cameras))
        io_info[DENOISE_FILE] = _export(
            policy, out / DENOISE_FILE, denoise_forward, ["x_t", "time", "past_keys", "past_values", "prefix_mask"],
            (x_t, time, keys, values, pad), ["v_t"], denoise_keys, fqn_of, 0)
    return io_info


def export_unrolled(policy: Any, out: Path, names: list[str], batch: dict[str, torch.Tensor], cameras: list[str],
                    noise: torch.Tensor) -> dict[str, Any]:
    """Write unrolled.onnx (prefix + every denoising step, ``unrolled_forward``) with a template for ``names``."""
    prefix_keys, denoise_keys, fqn_of = attach_template(policy, names)
    images = [batch[f"observation.images.{c}"] for c in cameras]
    with torch.no_grad(), batch_free_vision(), _single_output_rewrites_only():
        return {UNROLLED_FILE: _export(
            policy, out / UNROLLED_FILE, unrolled_forward, [*_image_names(cameras), "lang_tokens", "lang_mask", "state",
                                                             "noise"],
            (*images, batch["tokens"], batch["mask"], batch["state"], noise), ["actions"], prefix_keys + denoise_keys,
            fqn_of, len(cameras))}


@contextlib.contextmanager
def _single_output_rewrites_only() -> Iterator[None]:
    """``torch.onnx.export(optimize=True)`` without onnxscript's multi-output rewrite rules (``SlicesSplit``).

    onnxscript's matcher tries such a rule at every node by indexing the whole graph again
    (``SimplePatternMatcher.match``, onnxscript 0.7.2 and upstream main): O(nodes^2). The unrolled export at
    SmolVLA's real sizes (ten expert passes) did not finish in 30 minutes (py-spy: inside that pass); without
    the rule its whole ``torch.onnx.export`` takes about 5 minutes (docs/BENCHMARKS.md). The two graphs, each a
    fraction of its size, keep every rule. Constant folding, the single-output rules
    and the clean-up passes still run. onnxscript offers no argument for the rule set, so its module-level
    default (read by ``optimize_ir`` on each call) is swapped for the duration; the version is pinned.
    """
    from onnxscript import rewriter

    rules = rewriter._DEFAULT_REWRITE_RULES
    rewriter._DEFAULT_REWRITE_RULES = tuple(r for r in rules if r._target_pattern.has_single_output_node)
    try:
        yield
    finally:
        rewriter._DEFAULT_REWRITE_RULES = rules


def _image_names(cameras: list[str]) -> list[str]:
    return [processing.image_input_name(c, len(cameras)) for c in cameras]


def _export(policy: Any, path: Path, fn: Any, in_names: list[str], args: tuple[torch.Tensor, ...], out_names: list[str],
            akeys: list[str], fqn_of: dict[str, str], n_cameras: int) -> dict[str, Any]:
    """``fn(policy, *args)`` + the template adapter tensors ``akeys`` as inputs -> ``path`` (dynamic batch); its I/O."""
    import onnx
    from onnx import numpy_helper

    defaults = {k: v.detach().float().numpy() for k, v in tuner_state_dict(policy, TEMPLATE).items()}
    b = torch.export.Dim("batch", min=1, max=64)
    module = _Graph(policy, fn, len(in_names), [fqn_of[k] for k in akeys], n_cameras)
    tensors = tuple(torch.from_numpy(defaults[k]) for k in akeys)
    batch_axis = {n: ({1: b} if n in ("past_keys", "past_values") else {0: b}) for n in in_names}
    dyn = tuple(batch_axis[n] for n in in_names) + tuple(None for _ in akeys)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (*args, *tensors), dynamo=True, opset_version=OPSET,
                                    input_names=[*in_names, *(ADAPTER_INPUT_PREFIX + k for k in akeys)],
                                    output_names=out_names, dynamic_shapes=(dyn,), optimize=True)
    proto = program.model_proto
    graph_inputs = {i.name for i in proto.graph.input}
    existing = {i.name for i in proto.graph.initializer}
    for k in akeys:  # identity defaults: the graph runs as the backbone alone when no adapter is fed
        name = ADAPTER_INPUT_PREFIX + k
        if name in graph_inputs and name not in existing:
            proto.graph.initializer.append(numpy_helper.from_array(defaults[k], name))
    onnx.save(proto, str(path))
    return {"inputs": in_names, "outputs": out_names,
            "adapter_inputs": {ADAPTER_INPUT_PREFIX + k: list(defaults[k].shape) for k in akeys}}
