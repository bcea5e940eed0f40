"""The model directory's ``manifest.json``: what the exporter promises and the runtime checks.

The manifest is the only thing the runtime trusts without a checksum; everything else in
the directory is listed in its ``files`` table with a sha256 and a size, verified right
before the file is used. A file in the directory that the table does not list is refused,
and so is a manifest whose parts disagree (a shape that does not match the action names,
an adapter file that is not in the table, ...). Messages name both sides.

Layout written by ``vla-adapter export`` (paths are relative to the model directory)::

    manifest.json
    shared/backbone.onnx              adapter weights are graph inputs with identity defaults
    adapters/<name>.onnx_adapter      onnxruntime adapter file (AdapterFormat), one per task
    merged/<name>.onnx                backbone + that adapter baked in (self-contained)
    merged_fp16/<name>.onnx           optional, --fp16 (fp32 inputs/outputs, fp16 inside)
    language/encoder.onnx             all-MiniLM-L6-v2, mean pooling + L2 norm inside
    language/tokenizer.json (+ tokenizer_config.json, vocab.txt, special_tokens_map.json)
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from vla_adapter_ros import processing
from vla_adapter_ros.names import AdapterNameError, validate_adapter_name
from vla_adapter_ros.runtime.errors import ChecksumError, ManifestError

MANIFEST_NAME = "manifest.json"
FORMAT = "vla_adapter_ros/model"
FORMAT_VERSION = 1
# Graph names: the contract between export and runtime (docs/DESIGN.md, "Exported graph").
POLICY_INPUTS = (processing.IMAGE, processing.INSTRUCTION_EMBEDDING, processing.PROPRIO)
POLICY_OUTPUTS = (processing.ACTIONS,)
LANGUAGE_INPUTS = ("input_ids", "attention_mask")
LANGUAGE_OUTPUTS = ("embedding",)
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class TensorSpec:
    """One graph input/output: a name, a shape (ints, or a string for a dynamic axis) and a dtype."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str

    @classmethod
    def from_dict(cls, d: Any, where: str) -> TensorSpec:
        d = _mapping(d, where)
        shape = _get(d, "shape", list, where)
        for dim in shape:
            if not (isinstance(dim, str) or (isinstance(dim, int) and dim >= 0)):
                raise ManifestError(f"{where}.shape has a bad dimension {dim!r} (int >= 0 or axis name)")
        return cls(_get(d, "name", str, where), tuple(shape), _get(d, "dtype", str, where))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class AdapterSpec:
    """One task adapter as listed in the manifest (mirrors vla_adapter_interfaces/AdapterInfo)."""

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

    @classmethod
    def from_dict(cls, d: Any, where: str) -> AdapterSpec:
        d = _mapping(d, where)
        try:
            name = validate_adapter_name(_get(d, "name", str, where), f"{where}.name")
        except AdapterNameError as exc:
            raise ManifestError(str(exc)) from exc
        examples = _get(d, "instruction_examples", list, where)
        if not all(isinstance(e, str) for e in examples):
            raise ManifestError(f"{where}.instruction_examples must be strings, got {examples!r}")
        fp16 = d.get("fp16_file")
        if fp16 is not None and not isinstance(fp16, str):
            raise ManifestError(f"{where}.fp16_file must be a path or null, got {fp16!r}")
        return cls(
            name=name,
            task=_get(d, "task", str, where),
            description=_get(d, "description", str, where),
            instruction_examples=tuple(examples),
            rank=_get(d, "rank", int, where),
            num_parameters=_get(d, "num_parameters", int, where),
            file=_get(d, "file", str, where),
            sha256=_get(d, "sha256", str, where),
            merged_file=_get(d, "merged_file", str, where),
            merged_sha256=_get(d, "merged_sha256", str, where),
            fp16_file=fp16,
        )


@dataclass(frozen=True)
class ActionSpec:
    names: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    chunk_length: int
    dt: float
    normalizer: processing.Normalizer = field(compare=False)


@dataclass(frozen=True)
class LanguageSpec:
    file: str
    tokenizer: str
    extra_files: tuple[str, ...]
    embedding_dim: int
    max_length: int
    quantized: bool


@dataclass(frozen=True)
class Manifest:
    """A validated manifest bound to its model directory."""

    root: Path
    raw: Mapping[str, Any] = field(repr=False)
    name: str
    image_size: tuple[int, int]  # (height, width)
    proprio_names: tuple[str, ...]
    proprio_normalizer: processing.Normalizer = field(repr=False)
    actions: ActionSpec = field(repr=False)
    language: LanguageSpec = field(repr=False)
    inputs: tuple[TensorSpec, ...] = field(repr=False)
    outputs: tuple[TensorSpec, ...] = field(repr=False)
    shared_file: str = ""
    adapter_inputs: tuple[TensorSpec, ...] = field(default=(), repr=False)
    adapters: tuple[AdapterSpec, ...] = ()
    default_adapter: str = ""
    files: Mapping[str, tuple[str, int]] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, model_dir: str | Path) -> Manifest:
        root = Path(model_dir)
        path = root / MANIFEST_NAME
        if not root.is_dir():
            raise ManifestError(f"model directory {str(root)!r} does not exist or is not a directory")
        if not path.is_file():
            raise ManifestError(f"{str(root)!r} has no {MANIFEST_NAME}; is it an exported model directory?")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"cannot read {str(path)!r}: {exc}") from exc
        manifest = cls.from_dict(raw, root)
        manifest.check_directory()
        return manifest

    @classmethod
    def from_dict(cls, raw: Any, root: str | Path) -> Manifest:
        """Validate a manifest dict (the exporter runs this before it publishes a directory)."""
        d = _mapping(raw, "manifest")
        if d.get("format") != FORMAT or d.get("format_version") != FORMAT_VERSION:
            raise ManifestError(
                f"manifest format is {d.get('format')!r} v{d.get('format_version')!r}; "
                f"this runtime reads {FORMAT!r} v{FORMAT_VERSION}"
            )
        files = _files_table(_get(d, "files", dict, "manifest"))

        image = _get(d, "image", dict, "manifest")
        height, width = _get(image, "height", int, "image"), _get(image, "width", int, "image")
        if height <= 0 or width <= 0:
            raise ManifestError(f"image size must be positive, got {height}x{width}")
        if image.get("color_order") != "RGB" or image.get("layout") != "CHW":
            raise ManifestError(
                f"image colour order/layout {image.get('color_order')!r}/{image.get('layout')!r}; "
                "the runtime feeds RGB CHW (processing.preprocess_image)"
            )
        mean, scale = image.get("pixel_mean"), image.get("pixel_scale")
        if not (_close(mean, processing.PIXEL_MEAN) and _close(scale, processing.PIXEL_SCALE)):
            raise ManifestError(
                f"image pixel_mean/pixel_scale {mean!r}/{scale!r} differ from processing's "
                f"{processing.PIXEL_MEAN}/{processing.PIXEL_SCALE}; the model was trained with other pixels"
            )

        proprio = _get(d, "proprio", dict, "manifest")
        proprio_names = tuple(_get(proprio, "names", list, "proprio"))
        proprio_norm = _normalizer(proprio, "proprio")
        if proprio_norm.dim != len(proprio_names):
            raise ManifestError(
                f"proprio has {len(proprio_names)} names {list(proprio_names)} but "
                f"{proprio_norm.dim}-dim normalisation statistics"
            )
        actions = _action_spec(_get(d, "actions", dict, "manifest"))
        language = _language_spec(_get(d, "language", dict, "manifest"), files)

        inputs = tuple(TensorSpec.from_dict(x, f"inputs[{i}]") for i, x in enumerate(_get(d, "inputs", list, "manifest")))
        outputs = tuple(
            TensorSpec.from_dict(x, f"outputs[{i}]") for i, x in enumerate(_get(d, "outputs", list, "manifest"))
        )
        _check_io(inputs, outputs, (height, width), language.embedding_dim, len(proprio_names), actions)

        shared = _get(d, "shared", dict, "manifest")
        shared_file = _get(shared, "file", str, "shared")
        _require_listed(files, shared_file, "shared.file")
        adapter_inputs = tuple(
            TensorSpec.from_dict(x, f"shared.adapter_inputs[{i}]")
            for i, x in enumerate(_get(shared, "adapter_inputs", list, "shared"))
        )
        clash = {t.name for t in adapter_inputs} & set(POLICY_INPUTS)
        if clash:
            raise ManifestError(f"shared.adapter_inputs reuse policy input names {sorted(clash)}")

        adapters = tuple(AdapterSpec.from_dict(a, f"adapters[{i}]") for i, a in enumerate(_get(d, "adapters", list, "manifest")))
        if not adapters:
            raise ManifestError("manifest lists no adapters")
        names = [a.name for a in adapters]
        if len(set(names)) != len(names):
            raise ManifestError(f"adapter names are not unique: {names}")
        for a in adapters:
            for rel, sha, what in ((a.file, a.sha256, "file"), (a.merged_file, a.merged_sha256, "merged_file")):
                _require_listed(files, rel, f"adapter {a.name!r} {what}")
                if files[rel][0] != sha:
                    raise ManifestError(
                        f"adapter {a.name!r} {what} sha256 {sha} differs from the files table's {files[rel][0]}"
                    )
            if a.fp16_file is not None:
                _require_listed(files, a.fp16_file, f"adapter {a.name!r} fp16_file")
        default = d.get("default_adapter", names[0])
        if default not in names:
            raise ManifestError(f"default_adapter {default!r} is not one of the adapters {names}")

        return cls(
            root=Path(root),
            raw=d,
            name=_get(d, "name", str, "manifest"),
            image_size=(height, width),
            proprio_names=proprio_names,
            proprio_normalizer=proprio_norm,
            actions=actions,
            language=language,
            inputs=inputs,
            outputs=outputs,
            shared_file=shared_file,
            adapter_inputs=adapter_inputs,
            adapters=adapters,
            default_adapter=default,
            files=files,
        )

    # ------------------------------------------------------------------ files
    def check_directory(self) -> None:
        """Refuse a directory holding files the manifest does not list (or missing listed ones)."""
        present = {
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob("*")
            if p.is_file() or p.is_symlink()
        }
        present.discard(MANIFEST_NAME)
        unlisted = sorted(present - set(self.files))
        if unlisted:
            raise ManifestError(
                f"{str(self.root)!r} holds files the manifest does not list: {unlisted}; "
                "the runtime only uses files whose sha256 the manifest records"
            )
        missing = sorted(set(self.files) - present)
        if missing:
            raise ManifestError(f"{str(self.root)!r} is missing files listed in the manifest: {missing}")

    def path(self, rel: str) -> Path:
        """The path of a listed file; refused when it or a folder on the way is a symbolic link.

        A link could point out of the model directory (or be re-pointed after the check), so the
        directory must hold real files: the sha256 is then a statement about what is inside it.
        """
        _require_listed(self.files, rel, "file")
        path = self.root / rel
        part = path
        while part != self.root:
            if part.is_symlink():
                raise ManifestError(f"{part.relative_to(self.root).as_posix()!r} in {str(self.root)!r} is a "
                                    f"symbolic link (to {str(part.readlink())!r}); the model directory must "
                                    "hold real files")
            part = part.parent
        return path

    def verify(self, rel: str) -> Path:
        """Check size and sha256 of a listed file; return its path."""
        path = self.path(rel)
        sha, size = self.files[rel]
        try:
            actual_size = path.stat().st_size
        except OSError as exc:
            raise ChecksumError(f"cannot read {rel!r} in {str(self.root)!r}: {exc}") from exc
        if path.is_symlink():
            raise ManifestError(f"{rel!r} is a symbolic link; the model directory must hold real files")
        if actual_size != size:
            raise ChecksumError(f"{rel!r} is {actual_size} bytes, the manifest says {size}")
        actual = sha256_file(path)
        if actual != sha:
            raise ChecksumError(f"{rel!r} has sha256 {actual}, the manifest says {sha}")
        return path

    def read_verified(self, rel: str) -> bytes:
        """The bytes of a listed file, checked against its sha256 (no re-read after the check)."""
        path = self.path(rel)
        sha, size = self.files[rel]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ChecksumError(f"cannot read {rel!r} in {str(self.root)!r}: {exc}") from exc
        if len(data) != size:
            raise ChecksumError(f"{rel!r} is {len(data)} bytes, the manifest says {size}")
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha:
            raise ChecksumError(f"{rel!r} has sha256 {actual}, the manifest says {sha}")
        return data

    # ------------------------------------------------------------------ lookups
    @property
    def adapter_names(self) -> list[str]:
        return [a.name for a in self.adapters]

    def adapter(self, name: str) -> AdapterSpec | None:
        return next((a for a in self.adapters if a.name == name), None)

    @property
    def backbone_files(self) -> dict[str, str]:
        """sha256 of everything every adapter depends on (used to accept a re-read manifest)."""
        keep = [self.shared_file, self.language.file, self.language.tokenizer]
        return {rel: self.files[rel][0] for rel in keep}


# ---------------------------------------------------------------------- helpers
def _mapping(d: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(d, Mapping):
        raise ManifestError(f"{where} must be an object, got {type(d).__name__}")
    return d


def _get(d: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in d:
        raise ManifestError(f"{where} lacks {key!r} (has {sorted(d)})")
    value = d[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok:
        raise ManifestError(f"{where}.{key} must be {kind.__name__}, got {value!r}")
    return value


def _close(a: Any, b: float) -> bool:
    return isinstance(a, int | float) and math.isclose(float(a), b, rel_tol=1e-6)


def _safe_rel(rel: str, where: str) -> str:
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or ".." in p.parts or "\\" in rel or str(p) != rel or rel == MANIFEST_NAME:
        raise ManifestError(f"{where} {rel!r} is not a plain relative path inside the model directory")
    return rel


def _files_table(files: Mapping[str, Any]) -> dict[str, tuple[str, int]]:
    out = {}
    for rel, entry in files.items():
        _safe_rel(rel, "files entry")
        entry = _mapping(entry, f"files[{rel!r}]")
        sha = _get(entry, "sha256", str, f"files[{rel!r}]")
        size = _get(entry, "size", int, f"files[{rel!r}]")
        if not SHA256_RE.match(sha):
            raise ManifestError(f"files[{rel!r}].sha256 {sha!r} is not a lowercase hex sha256")
        out[rel] = (sha, size)
    return out


def _require_listed(files: Mapping[str, Any], rel: str, where: str) -> None:
    _safe_rel(rel, where)
    if rel not in files:
        raise ManifestError(f"{where} {rel!r} is not listed in the manifest's files table; refusing to use it")


def _normalizer(d: Mapping[str, Any], where: str) -> processing.Normalizer:
    stats = _get(d, "normalization", dict, where)
    try:
        return processing.Normalizer.from_dict(stats)
    except (TypeError, ValueError) as exc:
        raise ManifestError(f"{where}.normalization is invalid: {exc}") from exc


def _float_list(d: Mapping[str, Any], key: str, where: str, n: int) -> tuple[float, ...]:
    values = _get(d, key, list, where)
    if len(values) != n or not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
        raise ManifestError(f"{where}.{key} must be {n} finite numbers, got {values!r}")
    return tuple(float(v) for v in values)


def _action_spec(d: Mapping[str, Any]) -> ActionSpec:
    names = tuple(_get(d, "names", list, "actions"))
    n = len(names)
    if n == 0:
        raise ManifestError("actions.names is empty")
    low, high = _float_list(d, "low", "actions", n), _float_list(d, "high", "actions", n)
    bad = [names[i] for i in range(n) if low[i] > high[i]]
    if bad:
        raise ManifestError(f"actions.low > actions.high for {bad}: low={list(low)} high={list(high)}")
    norm = _normalizer(d, "actions")
    if norm.dim != n:
        raise ManifestError(f"actions has {n} names {list(names)} but {norm.dim}-dim normalisation statistics")
    chunk = _get(d, "chunk_length", int, "actions")
    dt = float(_get(d, "dt", float, "actions"))
    if chunk <= 0 or not (dt > 0 and math.isfinite(dt)):
        raise ManifestError(f"actions.chunk_length {chunk!r} and dt {dt!r} must be positive")
    return ActionSpec(names, low, high, chunk, dt, norm)


def _language_spec(d: Mapping[str, Any], files: Mapping[str, Any]) -> LanguageSpec:
    spec = LanguageSpec(
        file=_get(d, "file", str, "language"),
        tokenizer=_get(d, "tokenizer", str, "language"),
        extra_files=tuple(d.get("extra_files", ())),
        embedding_dim=_get(d, "embedding_dim", int, "language"),
        max_length=_get(d, "max_length", int, "language"),
        quantized=bool(d.get("quantized", False)),
    )
    for rel in (spec.file, spec.tokenizer, *spec.extra_files):
        _require_listed(files, rel, "language file")
    if spec.embedding_dim <= 0 or spec.max_length <= 2:
        raise ManifestError(f"language embedding_dim {spec.embedding_dim} / max_length {spec.max_length} invalid")
    ins = [TensorSpec.from_dict(x, "language.inputs").name for x in _get(d, "inputs", list, "language")]
    outs = [TensorSpec.from_dict(x, "language.outputs").name for x in _get(d, "outputs", list, "language")]
    if tuple(ins) != LANGUAGE_INPUTS or tuple(outs) != LANGUAGE_OUTPUTS:
        raise ManifestError(
            f"language graph is {ins} -> {outs}; the runtime expects {list(LANGUAGE_INPUTS)} -> {list(LANGUAGE_OUTPUTS)}"
        )
    return spec


def _check_io(
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    image_hw: tuple[int, int],
    embed_dim: int,
    proprio_dim: int,
    actions: ActionSpec,
) -> None:
    if tuple(t.name for t in inputs) != POLICY_INPUTS or tuple(t.name for t in outputs) != POLICY_OUTPUTS:
        raise ManifestError(
            f"policy graph is {[t.name for t in inputs]} -> {[t.name for t in outputs]}; "
            f"the runtime expects {list(POLICY_INPUTS)} -> {list(POLICY_OUTPUTS)}"
        )
    expected = {
        processing.IMAGE: (3, *image_hw),
        processing.INSTRUCTION_EMBEDDING: (embed_dim,),
        processing.PROPRIO: (proprio_dim,),
        processing.ACTIONS: (actions.chunk_length, len(actions.names)),
    }
    for t in (*inputs, *outputs):
        if t.dtype != "float32":
            raise ManifestError(f"{t.name} dtype is {t.dtype!r}; the graph contract is float32")
        if len(t.shape) != 1 + len(expected[t.name]) or tuple(t.shape[1:]) != expected[t.name]:
            raise ManifestError(
                f"{t.name} shape {list(t.shape)} does not match the manifest's other fields: "
                f"expected [batch, {', '.join(map(str, expected[t.name]))}]"
            )
