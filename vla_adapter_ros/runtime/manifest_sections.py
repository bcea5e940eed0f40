"""The sections of ``manifest.json``, each a typed object that owns its JSON form.

``from_dict`` validates one section and raises :class:`ManifestError` naming the field and
the bad value; checks that need two sections (shapes against action names, adapter files
against the files table, ...) live in :meth:`vla_adapter_ros.runtime.manifest.Manifest.from_dict`.
``to_dict`` is the only place that lays a section out as JSON: the exporter builds these
objects and serialises them, the runtime parses them back.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from vla_adapter_ros import processing
from vla_adapter_ros.contract import CameraSpec as ContractCamera
from vla_adapter_ros.contract import ContractError, RobotContract, default_contract
from vla_adapter_ros.names import AdapterNameError, validate_adapter_name
from vla_adapter_ros.runtime.errors import ManifestError

# Graph names: the contract between export and runtime (docs/DESIGN.md, "Exported graph").


def policy_inputs(cameras: Sequence[str]) -> tuple[str, ...]:
    """The policy graph's inputs: one image per camera (``processing.image_input_name``), embedding, proprio."""
    return (*(processing.image_input_name(c, len(cameras)) for c in cameras), processing.INSTRUCTION_EMBEDDING,
            processing.PROPRIO)


POLICY_INPUTS = policy_inputs(("camera",))  # a single-camera model's (every format 1 manifest's)
POLICY_OUTPUTS = (processing.ACTIONS,)
LANGUAGE_INPUTS = ("input_ids", "attention_mask")
LANGUAGE_OUTPUTS = ("embedding",)
# What processing.preprocess_image feeds the graph (the only image format the runtime makes).
COLOR_ORDER, LAYOUT = "RGB", "CHW"
PIXEL_RANGE = (-1.0, 1.0)
_CAMERA_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")  # ModelConfig.cameras and the contract's rule
RESIZE = "cv2 INTER_AREA when shrinking, INTER_LINEAR when growing (processing.preprocess_image)"


@dataclass(frozen=True)
class TensorSpec:
    """One graph input/output: a name, a shape (ints, or a string for a dynamic axis) and a dtype."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str

    @classmethod
    def from_dict(cls, d: Any, where: str) -> TensorSpec:
        d = mapping(d, where)
        shape = get(d, "shape", list, where)
        for dim in shape:
            if not (isinstance(dim, str) or (isinstance(dim, int) and dim >= 0)):
                raise ManifestError(f"{where}.shape has a bad dimension {dim!r} (int >= 0 or axis name)")
        return cls(get(d, "name", str, where), tuple(shape), get(d, "dtype", str, where))

    @classmethod
    def list_from(cls, d: Mapping[str, Any], key: str, where: str) -> tuple[TensorSpec, ...]:
        """``d[key]``: a list of tensor specs."""
        prefix = f"{where}.{key}" if where != "manifest" else key
        return tuple(cls.from_dict(x, f"{prefix}[{i}]") for i, x in enumerate(get(d, key, list, where)))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class ImageSpec:
    """The camera input of the graph: ``processing.preprocess_image``'s RGB CHW in [-1, 1]."""

    height: int
    width: int

    @classmethod
    def from_dict(cls, d: Any) -> ImageSpec:
        d = mapping(d, "image")
        height, width = get(d, "height", int, "image"), get(d, "width", int, "image")
        if height <= 0 or width <= 0:
            raise ManifestError(f"image size must be positive, got {height}x{width}")
        if d.get("color_order") != COLOR_ORDER or d.get("layout") != LAYOUT:
            raise ManifestError(
                f"image colour order/layout {d.get('color_order')!r}/{d.get('layout')!r}; "
                f"the runtime feeds {COLOR_ORDER} {LAYOUT} (processing.preprocess_image)"
            )
        mean, scale = d.get("pixel_mean"), d.get("pixel_scale")
        if not (_close(mean, processing.PIXEL_MEAN) and _close(scale, processing.PIXEL_SCALE)):
            raise ManifestError(
                f"image pixel_mean/pixel_scale {mean!r}/{scale!r} differ from processing's "
                f"{processing.PIXEL_MEAN}/{processing.PIXEL_SCALE}; the model was trained with other pixels"
            )
        return cls(height, width)

    def to_dict(self) -> dict[str, Any]:
        return {
            "height": self.height, "width": self.width, "color_order": COLOR_ORDER, "layout": LAYOUT,
            "pixel_mean": processing.PIXEL_MEAN, "pixel_scale": processing.PIXEL_SCALE, "range": list(PIXEL_RANGE),
            "resize": RESIZE,
        }


@dataclass(frozen=True)
class CameraInput:
    """One camera view the graph takes, in order: the camera's name (the robot contract's), its graph
    input (``processing.image_input_name``) and the (height, width) its frames are resized to."""

    name: str
    input: str
    height: int
    width: int

    @classmethod
    def list_from(cls, values: Any) -> tuple[CameraInput, ...]:
        """The ``cameras`` section: a list of 1 to 4 cameras with distinct names, inputs named by the rule."""
        if not isinstance(values, list) or not 1 <= len(values) <= 4:
            raise ManifestError(f"cameras must be a list of 1 to 4 cameras, got {values!r}")
        cameras = tuple(cls.from_dict(v, f"cameras[{i}]") for i, v in enumerate(values))
        names = [c.name for c in cameras]
        if len(set(names)) != len(names):
            raise ManifestError(f"cameras has a name twice: {names}")
        for c in cameras:
            expected = processing.image_input_name(c.name, len(cameras))
            if c.input != expected:
                raise ManifestError(f"camera {c.name!r} has graph input {c.input!r}; for {len(cameras)} camera(s) "
                                    f"its input is {expected!r} (processing.image_input_name)")
        return cameras

    @classmethod
    def from_dict(cls, d: Any, where: str) -> CameraInput:
        d = mapping(d, where)
        name = get(d, "name", str, where)
        if not _CAMERA_NAME_RE.match(name):
            raise ManifestError(f"{where}.name {name!r} is not a camera name (a letter, then letters, digits or _)")
        height, width = get(d, "height", int, where), get(d, "width", int, where)
        if height <= 0 or width <= 0:
            raise ManifestError(f"{where} ({name!r}) size must be positive, got {height}x{width}")
        return cls(name, get(d, "input", str, where), height, width)

    @property
    def size(self) -> tuple[int, int]:
        return (self.height, self.width)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "input": self.input, "height": self.height, "width": self.width}


def contract_from_dict(d: Any) -> RobotContract:
    """The ``contract`` section: the robot contract the model was trained for (``RobotContract.to_dict``)."""
    try:
        return RobotContract.from_dict(mapping(d, "contract"))
    except ContractError as exc:
        raise ManifestError(f"manifest {exc}") from exc


def contract_mismatches(contract: RobotContract, cameras: Sequence[str], state: Sequence[str],
                        actions: Sequence[str]) -> list[str]:
    """How a contract and a model's cameras, proprio names and action names differ (empty: they agree)."""
    return [f"{what}: the contract has {list(theirs)} ({len(theirs)}), the model {list(mine)} ({len(mine)})"
            for what, theirs, mine in (("cameras", contract.camera_names, cameras),
                                       ("state", contract.state_names, state),
                                       ("actions", contract.action_names, actions))
            if tuple(theirs) != tuple(mine)]


def derived_contract(cameras: Sequence[str], proprio_names: Sequence[str], action_names: Sequence[str],
                     low: Sequence[float], high: Sequence[float]) -> RobotContract:
    """The contract of a model that has none (exported without ``contract.yaml``, or format 1):
    ``contract.default_contract`` with the model's cameras (``/<name>/image_raw``; the single camera
    ``camera`` keeps ``/camera/image_raw``) and its action bounds (a pinned dimension, low == high, is
    left unbounded: a contract's low is below its high; the manifest's bounds are what the runtime clips to)."""
    base = default_contract(proprio_names, action_names)
    if tuple(cameras) != tuple(c.name for c in base.cameras):
        base = replace(base, cameras=tuple(ContractCamera(c, f"/{c}/image_raw") for c in cameras),
                       reference_camera=cameras[0])
    actions = tuple(replace(a, low=lo, high=hi) if lo < hi else replace(a, low=-math.inf, high=math.inf)
                    for a, lo, hi in zip(base.actions, low, high, strict=True))
    return replace(base, actions=actions)


@dataclass(frozen=True)
class ProprioSpec:
    """Proprioception the graph takes: joint names in order and their normalisation."""

    names: tuple[str, ...]
    normalizer: processing.Normalizer = field(compare=False)

    @classmethod
    def from_dict(cls, d: Any) -> ProprioSpec:
        d = mapping(d, "proprio")
        names = tuple(get(d, "names", list, "proprio"))
        norm = normalizer(d, "proprio")
        if norm.dim != len(names):
            raise ManifestError(f"proprio has {len(names)} names {list(names)} but {norm.dim}-dim normalisation statistics")
        return cls(names, norm)

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "normalization": self.normalizer.to_dict()}


@dataclass(frozen=True)
class ActionSpec:
    """The action chunk: names, bounds the runtime clips to, chunk length, period, normalisation.

    The graph's output is normalised; the runtime de-normalises it with ``normalizer``.
    """

    names: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    chunk_length: int
    dt: float
    normalizer: processing.Normalizer = field(compare=False)

    @classmethod
    def from_dict(cls, d: Any) -> ActionSpec:
        d = mapping(d, "actions")
        names = tuple(get(d, "names", list, "actions"))
        n = len(names)
        if n == 0:
            raise ManifestError("actions.names is empty")
        low, high = _float_list(d, "low", "actions", n), _float_list(d, "high", "actions", n)
        bad = [names[i] for i in range(n) if low[i] > high[i]]
        if bad:
            raise ManifestError(f"actions.low > actions.high for {bad}: low={list(low)} high={list(high)}")
        norm = normalizer(d, "actions")
        if norm.dim != n:
            raise ManifestError(f"actions has {n} names {list(names)} but {norm.dim}-dim normalisation statistics")
        chunk = get(d, "chunk_length", int, "actions")
        dt = float(get(d, "dt", float, "actions"))
        if chunk <= 0 or not (dt > 0 and math.isfinite(dt)):
            raise ManifestError(f"actions.chunk_length {chunk!r} and dt {dt!r} must be positive")
        if d.get("normalized_output", True) is not True:
            raise ManifestError(f"actions.normalized_output is {d.get('normalized_output')!r}; the runtime "
                                "de-normalises the graph's output with actions.normalization (true)")
        return cls(names, low, high, chunk, dt, norm)

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names), "low": list(self.low), "high": list(self.high),
            "chunk_length": self.chunk_length, "dt": self.dt, "normalization": self.normalizer.to_dict(),
            "normalized_output": True,
        }


@dataclass(frozen=True)
class LanguageSpec:
    """The instruction encoder: its ONNX file, tokenizer files, embedding size and provenance."""

    file: str
    tokenizer: str
    extra_files: tuple[str, ...]
    embedding_dim: int
    max_length: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    quantized: bool = False
    quantization: Mapping[str, Any] | None = field(default=None, compare=False)  # how, and its measured error
    source: str = "sentence-transformers/all-MiniLM-L6-v2"
    pooling: str = "mean"
    normalize: str = "l2"

    @classmethod
    def from_dict(cls, d: Any) -> LanguageSpec:
        d = mapping(d, "language")
        spec = cls(
            file=get(d, "file", str, "language"),
            tokenizer=get(d, "tokenizer", str, "language"),
            extra_files=tuple(d.get("extra_files", ())),
            embedding_dim=get(d, "embedding_dim", int, "language"),
            max_length=get(d, "max_length", int, "language"),
            inputs=TensorSpec.list_from(d, "inputs", "language"),
            outputs=TensorSpec.list_from(d, "outputs", "language"),
            quantized=bool(d.get("quantized", False)),
            quantization=None if d.get("quantization") is None else mapping(d["quantization"], "language.quantization"),
            **{k: str(d[k]) for k in ("source", "pooling", "normalize") if k in d},
        )
        if spec.embedding_dim <= 0 or spec.max_length <= 2:
            raise ManifestError(f"language embedding_dim {spec.embedding_dim} / max_length {spec.max_length} invalid")
        ins, outs = [t.name for t in spec.inputs], [t.name for t in spec.outputs]
        if tuple(ins) != LANGUAGE_INPUTS or tuple(outs) != LANGUAGE_OUTPUTS:
            raise ManifestError(
                f"language graph is {ins} -> {outs}; the runtime expects {list(LANGUAGE_INPUTS)} -> {list(LANGUAGE_OUTPUTS)}"
            )
        return spec

    @property
    def files(self) -> tuple[str, ...]:
        return (self.file, self.tokenizer, *self.extra_files)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "file": self.file, "tokenizer": self.tokenizer, "extra_files": list(self.extra_files),
            "source": self.source, "embedding_dim": self.embedding_dim, "max_length": self.max_length,
            "pooling": self.pooling, "normalize": self.normalize, "quantized": self.quantized,
            "inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs],
        }
        if self.quantization is not None:
            out["quantization"] = dict(self.quantization)
        return out


@dataclass(frozen=True)
class SharedSpec:
    """The shared-backbone graph: adapter tensors are graph inputs whose defaults are the identity."""

    file: str
    adapter_inputs: tuple[TensorSpec, ...]
    method: str = ""  # "bottleneck" | "lora": the adapters this graph serves
    layout: Mapping[str, Any] = field(default_factory=dict, compare=False)  # the union adapter's config

    @classmethod
    def from_dict(cls, d: Any) -> SharedSpec:
        d = mapping(d, "shared")
        # Adapter inputs that reuse a policy input's name are refused by Manifest._check_io (it knows the cameras).
        return cls(
            file=get(d, "file", str, "shared"),
            adapter_inputs=TensorSpec.list_from(d, "adapter_inputs", "shared"),
            method=str(d.get("method", "")),
            layout=mapping(d.get("layout", {}), "shared.layout"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file, "default": "identity", "method": self.method, "layout": dict(self.layout),
            "adapter_inputs": [t.to_dict() for t in self.adapter_inputs],
        }


@dataclass(frozen=True)
class AdapterSpec:
    """One task adapter as listed in the manifest (mirrors vla_adapter_interfaces/AdapterInfo).

    ``sha256`` / ``merged_sha256`` repeat the files table's checksums of ``file`` /
    ``merged_file`` (format version 1 readers need them); the table is the source, and a
    manifest whose copies disagree with it is refused.
    """

    name: str
    task: str
    description: str
    instruction_examples: tuple[str, ...]
    rank: int
    num_parameters: int
    file: str  # onnxruntime adapter file for the shared backbone
    sha256: str
    merged_file: str  # self-contained ONNX: backbone + this adapter
    merged_sha256: str
    fp16_file: str | None = None
    method: str = ""  # "bottleneck" | "lora"
    config: Mapping[str, Any] = field(default_factory=dict, compare=False)  # its AdapterConfig / LoraConfig

    @classmethod
    def from_dict(cls, d: Any, where: str) -> AdapterSpec:
        d = mapping(d, where)
        try:
            name = validate_adapter_name(get(d, "name", str, where), f"{where}.name")
        except AdapterNameError as exc:
            raise ManifestError(str(exc)) from exc
        examples = get(d, "instruction_examples", list, where)
        if not all(isinstance(e, str) for e in examples):
            raise ManifestError(f"{where}.instruction_examples must be strings, got {examples!r}")
        fp16 = d.get("fp16_file")
        if fp16 is not None and not isinstance(fp16, str):
            raise ManifestError(f"{where}.fp16_file must be a path or null, got {fp16!r}")
        return cls(
            name=name,
            task=get(d, "task", str, where),
            description=get(d, "description", str, where),
            instruction_examples=tuple(examples),
            rank=get(d, "rank", int, where),
            num_parameters=get(d, "num_parameters", int, where),
            file=get(d, "file", str, where),
            sha256=get(d, "sha256", str, where),
            merged_file=get(d, "merged_file", str, where),
            merged_sha256=get(d, "merged_sha256", str, where),
            fp16_file=fp16,
            method=str(d.get("method", "")),
            config=mapping(d.get("config", {}), f"{where}.config"),
        )

    @property
    def checksums(self) -> dict[str, tuple[str, str]]:
        """What this entry says about files: field -> (path, sha256)."""
        return {"file": (self.file, self.sha256), "merged_file": (self.merged_file, self.merged_sha256)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "task": self.task, "description": self.description,
            "instruction_examples": list(self.instruction_examples), "method": self.method, "rank": self.rank,
            "num_parameters": self.num_parameters, "file": self.file, "sha256": self.sha256,
            "merged_file": self.merged_file, "merged_sha256": self.merged_sha256, "fp16_file": self.fp16_file,
            "config": dict(self.config),
        }


# ---------------------------------------------------------------------- field readers
def mapping(d: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(d, Mapping):
        raise ManifestError(f"{where} must be an object, got {type(d).__name__}")
    return d


def get(d: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    """``d[key]``, which must be a ``kind`` (bool is not an int; an int is a float)."""
    if key not in d:
        raise ManifestError(f"{where} lacks {key!r} (has {sorted(d)})")
    value = d[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok:
        raise ManifestError(f"{where}.{key} must be {kind.__name__}, got {value!r}")
    return value


def normalizer(d: Mapping[str, Any], where: str) -> processing.Normalizer:
    stats = get(d, "normalization", dict, where)
    try:
        return processing.Normalizer.from_dict(stats)
    except (TypeError, ValueError) as exc:
        raise ManifestError(f"{where}.normalization is invalid: {exc}") from exc


def _close(a: Any, b: float) -> bool:
    return isinstance(a, int | float) and math.isclose(float(a), b, rel_tol=1e-6)


def _float_list(d: Mapping[str, Any], key: str, where: str, n: int) -> tuple[float, ...]:
    values = get(d, key, list, where)
    if len(values) != n or not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
        raise ManifestError(f"{where}.{key} must be {n} finite numbers, got {values!r}")
    return tuple(float(v) for v in values)
