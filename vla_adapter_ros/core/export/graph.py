"""Torch -> ONNX for the policy: the shared-backbone graph, merged (baked) models, fp16, adapter files.

The shared graph is exported once from a *template*: a copy of the backbone carrying one
adapter whose slots and rank cover every selected adapter. Its tensors are passed to
``predict`` through ``torch.func.functional_call``, so they become graph inputs that
nothing can constant-fold; identity defaults are then attached as initializers with the
same names (overridable per run). Each real adapter is written in that layout, zero-padded
to the template rank (zero rows/columns contribute exactly nothing) with its scaling folded
into the up-projection; a merged model is the shared graph with those tensors baked in.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from onnxruntime.transformers.float16 import convert_float_to_float16

from vla_adapter_ros import processing
from vla_adapter_ros.core.adapters import Bottleneck, adapter_state_dict, add_adapter, set_adapter
from vla_adapter_ros.core.adapters.config import method_of
from vla_adapter_ros.core.config import AdapterConfig, LoraConfig
from vla_adapter_ros.core.lora import LoraUnit, add_lora
from vla_adapter_ros.core.model import VLAPolicy, example_inputs, graph_inputs
from vla_adapter_ros.core.tuners import iter_tuner_layers, tuner_state_dict
from vla_adapter_ros.runtime import manifest as mf

from .errors import ExportError

DEFAULT_OPSET = 18
ADAPTER_INPUT_PREFIX = "adapter."
TEMPLATE = "shared_slot"  # name of the union adapter in the export-only template model


# ----------------------------------------------------------------------------- shared layout


@dataclass
class SharedLayout:
    """The union adapter the shared graph is built for, and how its tensors map to graph inputs."""

    method: str
    config: Any  # AdapterConfig | LoraConfig of the template
    keys: list[str]  # clean tensor keys, graph input name = ADAPTER_INPUT_PREFIX + key
    fqns: list[str]  # the same tensors' names inside the template predictor (functional_call)
    defaults: dict[str, np.ndarray]  # identity adapter


def build_template(model: Any, names: list[str]) -> tuple[Any, SharedLayout]:
    """A copy of the backbone carrying one adapter whose slots and rank cover every selected adapter."""
    configs = {n: model.tuner_configs[n] for n in names}
    methods = {n: method_of(c) for n, c in configs.items()}
    if len(set(methods.values())) != 1:
        raise ExportError(f"adapters of different methods cannot share one backbone graph: {methods}; export them separately")
    method = next(iter(methods.values()))
    union = {
        "rank": max(c.rank for c in configs.values()),
        "components": tuple(sorted({x for c in configs.values() for x in c.components})),
        "train_head": any(c.train_head for c in configs.values()),
        "train_modules": tuple(sorted({m for c in configs.values() for m in c.train_modules})),
    }
    if method == "bottleneck":
        acts = {n: c.activation for n, c in configs.items()}
        if len(set(acts.values())) != 1:
            raise ExportError(f"bottleneck adapters with different activations cannot share one graph: {acts}")
        tcfg = AdapterConfig(
            rank=union["rank"], components=union["components"], train_head=union["train_head"],
            train_modules=union["train_modules"], positions=tuple(sorted({p for c in configs.values() for p in c.positions})),
            activation=next(iter(acts.values())), scaling=1.0, init="zeros",
        )
    else:
        tcfg = LoraConfig(
            rank=union["rank"], alpha=float(union["rank"]), components=union["components"], train_head=union["train_head"],
            train_modules=union["train_modules"],
            targets=tuple(sorted({t for c in configs.values() for t in c.targets})),
        )
    template = VLAPolicy(model.config)
    template.load_backbone_state_dict(model.backbone_state_dict())
    (add_adapter if method == "bottleneck" else add_lora)(template, TEMPLATE, tcfg)
    set_adapter(template, TEMPLATE)
    template.eval()
    predictor = template.predictor().eval()
    fqn_of = {id(p): n for n, p in predictor.named_parameters()}
    keys, fqns = [], []
    with torch.no_grad():
        for path, layer in iter_tuner_layers(template):
            for unit in layer.tuner_modules(TEMPLATE):
                is_projection = isinstance(unit, Bottleneck | LoraUnit)
                for k, p in unit.named_parameters():
                    if is_projection:
                        p.zero_()  # identity default: zero adapter (module copies keep the backbone's values)
                    keys.append(f"{path}.{k}")
                    fqns.append(fqn_of[id(p)])
    state = tuner_state_dict(template, TEMPLATE)
    if sorted(state) != sorted(keys):
        raise ExportError(f"internal: template tensors {sorted(state)[:4]} != walked {sorted(keys)[:4]}")
    defaults = {k: state[k].detach().cpu().numpy().astype(np.float32).copy() for k in keys}
    return template, SharedLayout(method, tcfg, keys, fqns, defaults)


def shared_tensors(model: Any, name: str, template: Any, layout: SharedLayout) -> dict[str, np.ndarray]:
    """Adapter ``name`` in the template's layout: zero-padded to its rank, scaling folded into W_up / B."""
    scale: dict[str, float] = {}
    for path, layer in iter_tuner_layers(model):
        for unit in layer.tuner_modules(name):
            if isinstance(unit, Bottleneck):
                scale.update({f"{path}.up.weight": unit.scaling, f"{path}.up.bias": unit.scaling})
            elif isinstance(unit, LoraUnit):
                scale[f"{path}.lora_B.weight"] = unit.scaling
    out = {k: v.copy() for k, v in layout.defaults.items()}
    for key, t in adapter_state_dict(model, name).items():
        if key not in out:
            raise ExportError(f"internal: adapter {name!r} tensor {key!r} has no slot in the shared layout")
        arr = t.float().numpy() * np.float32(scale.get(key, 1.0))
        if arr.ndim != out[key].ndim or any(a > b for a, b in zip(arr.shape, out[key].shape, strict=True)):
            raise ExportError(f"internal: adapter {name!r} tensor {key!r} {arr.shape} exceeds its slot {out[key].shape}")
        # Defaults are zeros for projections (so the padding rows/columns stay zero) and the
        # backbone module for a module copy (same shape: fully overwritten).
        out[key][tuple(slice(0, s) for s in arr.shape)] = arr
    return out


# ----------------------------------------------------------------------------- ONNX


@contextlib.contextmanager
def quiet() -> Iterator[io.StringIO]:
    """Silence the exporter's progress prints, warnings and logger chatter (kept for error messages)."""
    buf = io.StringIO()
    names = ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", None)  # None: root (onnxruntime.quantization)
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(buf), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield buf
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def torch_export(module: Any, args: tuple, input_names: list[str], dynamic_shapes: Any, opset: int, what: str) -> Any:
    with quiet() as buf:
        try:
            program = torch.onnx.export(
                module, args, input_names=input_names, output_names=["__output__"], opset_version=opset,
                dynamo=True, dynamic_shapes=dynamic_shapes, optimize=True, verbose=False,
            )
            return program.model_proto
        except Exception as exc:  # noqa: BLE001 - the exporter raises many types; re-raised with context
            tail = buf.getvalue().strip().splitlines()[-3:]
            raise ExportError(f"torch.onnx.export of the {what} failed: {str(exc).splitlines()[0]} {tail}") from exc


def export_shared(template: Any, layout: SharedLayout, opset: int) -> Any:
    class SharedPredictor(torch.nn.Module):
        """predict() with the adapter tensors as arguments (so they become graph inputs)."""

        def __init__(self, predictor: torch.nn.Module, fqns: list[str]) -> None:
            super().__init__()
            self.predictor, self.fqns = predictor, fqns

        def forward(self, *inputs):  # noqa: ANN002 - traced: one image per camera, embedding, proprio, adapter list
            *policy_inputs, adapter = inputs
            params = dict(zip(self.fqns, adapter, strict=True))
            return torch.func.functional_call(self.predictor, params, tuple(policy_inputs), strict=False)

    wrapper = SharedPredictor(template.predictor().eval(), layout.fqns).eval()
    args = graph_inputs(template.config, *example_inputs(template.config, batch_size=2))
    adapter_args = [torch.from_numpy(layout.defaults[k].copy()) for k in layout.keys]
    names = mf.policy_inputs(template.config.cameras)
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    # forward(*inputs): torch.export matches dynamic_shapes to the signature, one entry for the varargs tuple.
    dyn = ((*({0: batch} for _ in args), [None] * len(adapter_args)),)
    input_names = [*names, *(ADAPTER_INPUT_PREFIX + k for k in layout.keys)]
    proto = torch_export(wrapper, (*args, adapter_args), input_names, dyn, opset, "policy")
    finish_io(proto, {"__output__": processing.ACTIONS}, {n: ("batch",) for n in (*names, processing.ACTIONS)})
    for k in layout.keys:  # graph inputs that ALSO have initializers: overridable per run
        proto.graph.initializer.append(numpy_helper.from_array(layout.defaults[k], ADAPTER_INPUT_PREFIX + k))
    return proto


def export_predictor(model: Any, path: str | Path, opset: int = DEFAULT_OPSET) -> Path:
    """Export ``model.predict`` with whatever adapter is active baked in (None = backbone alone).

    A plain single-graph export with the contract's names and a dynamic batch; the model
    directory's merged files are derived from the shared graph instead. Used by the
    benchmarks for the backbone-alone baseline.
    """
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    args = graph_inputs(model.config, *example_inputs(model.config, batch_size=2))
    names = mf.policy_inputs(model.config.cameras)
    dyn = (tuple({0: batch} for _ in args),)  # PolicyPredictor.forward(*inputs): one entry for the varargs tuple
    proto = torch_export(model.predictor().eval(), args, list(names), dyn, opset, "policy")
    finish_io(proto, {"__output__": processing.ACTIONS}, {n: ("batch",) for n in (*names, processing.ACTIONS)})
    save_proto(proto, Path(path))
    return Path(path)


def finish_io(proto: Any, renames: dict[str, str], dims: dict[str, tuple[str, ...]]) -> None:
    """Give outputs their contract names (moving any internal value of that name aside) and name dynamic axes."""
    g = proto.graph
    for old, new in renames.items():
        if any(new in n.output for n in g.node):
            _rename_value(g, new, f"{new}__internal")
        _rename_value(g, old, new)
    for value in (*g.input, *g.output):
        for dim, label in zip(value.type.tensor_type.shape.dim, dims.get(value.name, ()), strict=False):
            if not dim.HasField("dim_value"):
                dim.dim_param = label


def _rename_value(g: Any, old: str, new: str) -> None:
    for n in g.node:
        n.input[:] = [new if x == old else x for x in n.input]
        n.output[:] = [new if x == old else x for x in n.output]
    for coll in (g.input, g.output, g.value_info, g.initializer):
        for v in coll:
            if v.name == old:
                v.name = new


def bake(shared: Any, tensors: dict[str, np.ndarray]) -> Any:
    """The shared graph with one adapter's tensors as constants (self-contained).

    The only new folding opportunity is the Transpose the exporter puts in front of each
    projection weight; those are folded here (onnxscript's full optimizer gives the same
    graph but takes seconds per adapter).
    """
    proto = onnx.ModelProto()
    proto.CopyFrom(shared)
    g = proto.graph
    values = {ADAPTER_INPUT_PREFIX + k: np.asarray(v, np.float32) for k, v in tensors.items()}
    keep = [i for i in g.input if i.name not in values]
    del g.input[:]
    g.input.extend(keep)
    inits = [i for i in g.initializer if i.name not in values]
    consumers: dict[str, int] = {}
    for n in g.node:
        for x in n.input:
            consumers[x] = consumers.get(x, 0) + 1
    nodes = []
    for n in g.node:
        src = n.input[0] if n.op_type == "Transpose" and n.input else None
        if src in values and consumers[src] == 1:
            perm = next((list(a.ints) for a in n.attribute if a.name == "perm"), None)
            values[n.output[0]] = np.ascontiguousarray(np.transpose(values.pop(src), perm))
            continue
        nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(inits)
    g.initializer.extend(numpy_helper.from_array(v, k) for k, v in values.items())
    return proto


def to_fp16(proto: Any) -> Any:
    with quiet():
        proto = convert_float_to_float16(proto, keep_io_types=True)  # float32 in/out, float16 inside
    _toposort(proto.graph)  # the converter appends its input casts at the end
    return proto


def _toposort(g: Any) -> None:
    """Reorder nodes so every input is produced before use (ONNX requires it; some converters do not)."""
    ready = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    pending, ordered = list(g.node), []
    while pending:
        rest = [n for n in pending if not all(x in ready for x in n.input)]
        done = [n for n in pending if all(x in ready for x in n.input)]
        if not done:
            raise ExportError(f"internal: graph has a cycle or a dangling input near node {rest[0].name!r}")
        for n in done:
            ordered.append(n)
            ready.update(n.output)
        pending = rest
    copies = [type(n)() for n in ordered]
    for c, n in zip(copies, ordered, strict=True):
        c.CopyFrom(n)
    del g.node[:]
    g.node.extend(copies)


def save_proto(proto: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"internal: {path.name} is not a valid ONNX model: {str(exc).splitlines()[0]}") from exc
    onnx.save(proto, str(path))


def write_adapter_file(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """onnxruntime adapter file; read back and compared (OrtValue.ortvalue_from_numpy does not copy)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {ADAPTER_INPUT_PREFIX + k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()}
    values = {k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in arrays.items()}  # views of `arrays`
    fmt = ort.AdapterFormat()
    fmt.set_adapter_version(1)
    fmt.set_model_version(mf.FORMAT_VERSION)
    fmt.set_parameters(values)
    fmt.export_adapter(str(path))
    back = ort.AdapterFormat.read_adapter(str(path)).get_parameters()
    if set(back) != set(arrays) or any(not np.array_equal(back[k].numpy(), arrays[k]) for k in arrays):
        raise ExportError(f"internal: adapter file {path.name} does not read back identically")
    del values, fmt  # only now may the arrays go
