"""The model directory's ``manifest.json``: what the exporter promises and the runtime checks.

The manifest is the only thing the runtime trusts without a checksum; everything else in
the directory is listed in its ``files`` table with a sha256 and a size, verified right
before the file is used. A file in the directory that the table does not list is refused,
and so is a manifest whose parts disagree (a shape that does not match the action names,
an adapter file that is not in the table, ...). Messages name both sides.

:class:`Manifest` (and its sections in :mod:`.manifest_sections`) is the one schema: the
exporter builds one and writes ``to_dict()``, the runtime reads ``from_dict()``. The layout
of the directory is defined here too (paths are relative to the model directory)::

    manifest.json
    shared/backbone.onnx              SHARED_FILE: adapter weights are graph inputs with identity defaults
    adapters/<name>.onnx_adapter      adapter_file(name): onnxruntime adapter file (AdapterFormat), one per task
    merged/<name>.onnx                merged_file(name): backbone + that adapter baked in (self-contained)
    merged_fp16/<name>.onnx           merged_fp16_file(name): optional, --fp16 (fp32 inputs/outputs, fp16 inside)
    language/encoder.onnx             LANGUAGE_FILE: all-MiniLM-L6-v2, mean pooling + L2 norm inside
    language/tokenizer.json           TOKENIZER_FILE (+ tokenizer_config.json, vocab.txt, special_tokens_map.json)

``manifest.cameras`` lists the graph's image inputs in order (one per camera view) and
``manifest.contract`` is the robot contract the model was trained for; both are derived for a
format version 1 manifest, which has neither section.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from vla_adapter_ros import processing
from vla_adapter_ros.contract import RobotContract
from vla_adapter_ros.runtime.errors import ChecksumError, ManifestError
from vla_adapter_ros.runtime.manifest_sections import (
    LANGUAGE_INPUTS,
    LANGUAGE_OUTPUTS,
    POLICY_INPUTS,
    POLICY_OUTPUTS,
    ActionSpec,
    AdapterSpec,
    CameraInput,
    ImageSpec,
    LanguageSpec,
    ProprioSpec,
    SharedSpec,
    TensorSpec,
    contract_from_dict,
    contract_mismatches,
    derived_contract,
    get,
    mapping,
    policy_inputs,
)

__all__ = [
    "FORMAT", "FORMAT_VERSION", "LANGUAGE_DIR", "LANGUAGE_FILE", "LANGUAGE_INPUTS", "LANGUAGE_OUTPUTS",
    "MANIFEST_NAME", "POLICY_INPUTS", "POLICY_OUTPUTS", "READABLE_VERSIONS", "SHARED_FILE", "TOKENIZER_FILE",
    "ActionSpec", "AdapterSpec", "CameraInput", "ChecksumError", "ImageSpec", "LanguageSpec", "Manifest", "ManifestError",
    "ProprioSpec", "SharedSpec", "TensorSpec", "adapter_file", "hash_directory", "merged_file", "merged_fp16_file",
    "contract_mismatches", "derived_contract", "policy_inputs", "sha256_file",
    "FAMILIES", "NATIVE_FAMILY", "FamilyManifest", "ModelFiles", "family_of", "load_manifest",
]

MANIFEST_NAME = "manifest.json"
FORMAT = "vla_adapter_ros/model"
# Version 2 added the ``cameras`` and ``contract`` sections (multi-camera models); a version 1 manifest
# describes one camera named "camera" (graph input "image") and the contract contract.default_contract
# gives its proprio and action names.
FORMAT_VERSION = 2  # what the exporter writes for the package's own VLA
READABLE_VERSIONS = (1, 2, 3)  # what this runtime reads (3: a ``family`` other than the package's own)
# Policy families: which manifest class reads a model directory (``family`` field; absent = the package's own VLA).
# A family other than the native one is written as format version 3, so a runtime without families refuses it.
NATIVE_FAMILY = "vla_adapter_ros"
FAMILIES = (NATIVE_FAMILY, "smolvla")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20

# ----------------------------------------------------------------------------- directory layout
SHARED_FILE = "shared/backbone.onnx"
LANGUAGE_DIR = "language"
LANGUAGE_FILE = f"{LANGUAGE_DIR}/encoder.onnx"
TOKENIZER_FILE = f"{LANGUAGE_DIR}/tokenizer.json"


def adapter_file(name: str) -> str:
    return f"adapters/{name}.onnx_adapter"


def merged_file(name: str) -> str:
    return f"merged/{name}.onnx"


def merged_fp16_file(name: str) -> str:
    return f"merged_fp16/{name}.onnx"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def hash_directory(root: Path) -> dict[str, tuple[str, int]]:
    """The files table of a model directory: every file but the manifest -> (sha256, size)."""
    paths = sorted(p for p in Path(root).rglob("*") if p.is_file() and p.name != MANIFEST_NAME)
    return {p.relative_to(root).as_posix(): (sha256_file(p), p.stat().st_size) for p in paths}


def read_manifest_json(model_dir: str | Path) -> tuple[Path, Any]:
    """(the model directory, its parsed manifest.json): every family's ``load`` starts here."""
    root = Path(model_dir)
    path = root / MANIFEST_NAME
    if not root.is_dir():
        raise ManifestError(f"model directory {str(root)!r} does not exist or is not a directory")
    if not path.is_file():
        raise ManifestError(f"{str(root)!r} has no {MANIFEST_NAME}; is it an exported model directory?")
    try:
        return root, json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"cannot read {str(path)!r}: {exc}") from exc


class PolicyLookups:
    """The lookups every family's manifest answers the same way (image, cameras, proprio, adapters):
    one definition for :class:`Manifest` and the other families' manifests."""

    image: ImageSpec
    cameras: tuple[CameraInput, ...]
    proprio: ProprioSpec
    adapters: tuple[AdapterSpec, ...]

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the graph's image input."""
        return (self.image.height, self.image.width)

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cameras)

    @property
    def proprio_names(self) -> tuple[str, ...]:
        return self.proprio.names

    @property
    def adapter_names(self) -> list[str]:
        return [a.name for a in self.adapters]

    def adapter(self, name: str) -> AdapterSpec | None:
        return next((a for a in self.adapters if a.name == name), None)


_M = TypeVar("_M", bound="ModelFiles")


class ModelFiles:
    """The checks of a model directory against its files table (``root``, ``files``); every family's manifest has them."""

    root: Path
    files: Mapping[str, tuple[str, int]]

    @classmethod
    def load(cls: type[_M], model_dir: str | Path) -> _M:
        """The manifest of ``model_dir`` read by this family's ``from_dict``, its directory checked against the files table."""
        root, raw = read_manifest_json(model_dir)
        manifest = cls.from_dict(raw, root)
        manifest.check_directory()
        return manifest

    @classmethod
    def from_dict(cls: type[_M], raw: Any, root: str | Path) -> _M:
        """Validate a manifest dict of this family (the exporter runs this on what it writes, before it publishes)."""
        raise NotImplementedError

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
        try:
            actual_size = path.stat().st_size
        except OSError as exc:
            raise ChecksumError(f"cannot read {rel!r} in {str(self.root)!r}: {exc}") from exc
        if path.is_symlink():
            raise ManifestError(f"{rel!r} is a symbolic link; the model directory must hold real files")
        self._check_file(rel, actual_size, lambda: sha256_file(path))
        return path

    def read_verified(self, rel: str) -> bytes:
        """The bytes of a listed file, checked against its sha256 (no re-read after the check)."""
        path = self.path(rel)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ChecksumError(f"cannot read {rel!r} in {str(self.root)!r}: {exc}") from exc
        self._check_file(rel, len(data), lambda: hashlib.sha256(data).hexdigest())
        return data

    def _check_file(self, rel: str, size: int, sha256: Any) -> None:
        want_sha, want_size = self.files[rel]
        if size != want_size:
            raise ChecksumError(f"{rel!r} is {size} bytes, the manifest says {want_size}")
        actual = sha256()
        if actual != want_sha:
            raise ChecksumError(f"{rel!r} has sha256 {actual}, the manifest says {want_sha}")


class FamilyManifest(PolicyLookups, ModelFiles):
    """What every family's manifest holds besides its own sections, read and written once here: the
    name, the provenance the exporter writes (carried as is), the adapters, the files table and the
    parity proof. A family's ``from_dict`` passes ``common_fields(d)`` to its constructor; its ``to_dict``
    is ``head_dict()`` + its own sections + ``tail_dict()``."""

    name: str
    adapters: tuple[AdapterSpec, ...]
    default_adapter: str
    created_utc: str
    versions: Mapping[str, Any]
    model_config: Mapping[str, Any]
    backbone: Mapping[str, Any]
    parity: Mapping[str, Any] | None
    format_version: int
    family: str

    @staticmethod
    def common_fields(d: Mapping[str, Any]) -> dict[str, Any]:
        """The constructor's keyword arguments for the shared fields of manifest dict ``d``."""
        adapters = tuple(AdapterSpec.from_dict(a, f"adapters[{i}]") for i, a in enumerate(get(d, "adapters", list, "manifest")))
        return {
            "name": get(d, "name", str, "manifest"),
            "adapters": adapters,
            "default_adapter": d.get("default_adapter", adapters[0].name if adapters else ""),
            "files": _files_table(get(d, "files", dict, "manifest")),
            "created_utc": str(d.get("created_utc", "")),
            "versions": mapping(d.get("versions", {}), "versions"),
            "model_config": mapping(d.get("model_config", {}), "model_config"),
            "backbone": mapping(d.get("backbone", {}), "backbone"),
            "parity": None if d.get("parity") is None else mapping(d["parity"], "parity"),
            "raw": d,
        }

    def head_dict(self) -> dict[str, Any]:
        """The JSON form's first keys: format, version, family (not written for the package's own VLA), provenance."""
        family = {} if self.family == NATIVE_FAMILY else {"family": self.family}
        return {"format": FORMAT, "format_version": self.format_version, **family, "name": self.name,
                "created_utc": self.created_utc, "versions": dict(self.versions),
                "model_config": dict(self.model_config), "backbone": dict(self.backbone)}

    def tail_dict(self) -> dict[str, Any]:
        """The JSON form's last keys: adapters, the files table, the parity proof when there is one."""
        out: dict[str, Any] = {
            "adapters": [a.to_dict() for a in self.adapters], "default_adapter": self.default_adapter,
            "files": {rel: {"sha256": sha, "size": size} for rel, (sha, size) in self.files.items()},
        }
        if self.parity is not None:
            out["parity"] = dict(self.parity)
        return out


@dataclass(frozen=True, kw_only=True)
class Manifest(FamilyManifest):
    """A validated manifest bound to its model directory (``root``)."""

    root: Path
    name: str
    image: ImageSpec
    cameras: tuple[CameraInput, ...] = field(repr=False)  # the graph's image inputs, one per camera, in order
    contract: RobotContract = field(repr=False)  # the robot contract the model was trained for
    proprio: ProprioSpec = field(repr=False)
    actions: ActionSpec = field(repr=False)
    language: LanguageSpec = field(repr=False)
    inputs: tuple[TensorSpec, ...] = field(repr=False)
    outputs: tuple[TensorSpec, ...] = field(repr=False)
    shared: SharedSpec = field(repr=False)
    adapters: tuple[AdapterSpec, ...] = ()
    default_adapter: str = ""
    files: Mapping[str, tuple[str, int]] = field(default_factory=dict, repr=False, compare=False)  # path -> (sha256, size)
    # Provenance, written by the exporter and carried as is (the runtime does not interpret it).
    created_utc: str = ""
    versions: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    model_config: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    backbone: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    parity: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)  # the dict it was read from
    format_version: int = FORMAT_VERSION  # the layout to_dict writes: a version 1 manifest is written back as read
    family: str = NATIVE_FAMILY  # not written: a manifest without ``family`` is the package's own VLA

    # ------------------------------------------------------------------ reading
    @classmethod
    def from_dict(cls, raw: Any, root: str | Path) -> Manifest:
        """Validate a manifest dict (the exporter runs this on what it writes, before it publishes)."""
        d = mapping(raw, "manifest")
        version = _check_format(d)
        family = family_of(d)
        if family != NATIVE_FAMILY:
            raise ManifestError(f"manifest family is {family!r}; Manifest reads {NATIVE_FAMILY!r} models "
                                "(use runtime.manifest.load_manifest, which reads every family)")
        if version > FORMAT_VERSION:
            raise ManifestError(f"manifest format_version {version} is for families other than {NATIVE_FAMILY!r}")
        image = ImageSpec.from_dict(get(d, "image", dict, "manifest"))
        proprio = ProprioSpec.from_dict(get(d, "proprio", dict, "manifest"))
        actions = ActionSpec.from_dict(get(d, "actions", dict, "manifest"))
        if version == 1:  # one camera "camera" (input "image"); the contract of a model exported before contracts
            cameras: tuple[CameraInput, ...] = (CameraInput("camera", processing.IMAGE, image.height, image.width),)
            contract = derived_contract(("camera",), proprio.names, actions.names, actions.low, actions.high)
        else:
            cameras = CameraInput.list_from(get(d, "cameras", list, "manifest"))
            contract = contract_from_dict(get(d, "contract", dict, "manifest"))
        manifest = cls(
            root=Path(root),
            image=image,
            cameras=cameras,
            contract=contract,
            proprio=proprio,
            actions=actions,
            language=LanguageSpec.from_dict(get(d, "language", dict, "manifest")),
            inputs=TensorSpec.list_from(d, "inputs", "manifest"),
            outputs=TensorSpec.list_from(d, "outputs", "manifest"),
            shared=SharedSpec.from_dict(get(d, "shared", dict, "manifest")),
            format_version=version,
            **cls.common_fields(d),
        )
        manifest._check_cameras()
        manifest._check_io()
        manifest._check_references(d["adapters"])
        return manifest

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what ``vla-adapter export`` writes; ``from_dict`` reads it back)."""
        out = self.head_dict() | {
            "inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs],
            "image": self.image.to_dict(),
        }
        if self.format_version >= 2:  # version 1 has neither section (both are derived when it is read)
            out.update(cameras=[c.to_dict() for c in self.cameras], contract=self.contract.to_dict())
        out |= {"proprio": self.proprio.to_dict(), "actions": self.actions.to_dict(),
                "language": self.language.to_dict(), "shared": self.shared.to_dict()}
        return out | self.tail_dict()

    def with_files(self, files: Mapping[str, tuple[str, int]]) -> Manifest:
        """This manifest with ``files`` as its table and each adapter's sha256 copies taken from it."""
        adapters = tuple(
            replace(a, sha256=files[a.file][0], merged_sha256=files[a.merged_file][0]) for a in self.adapters
        )
        return replace(self, files=dict(files), adapters=adapters)

    # ------------------------------------------------------------------ consistency between sections
    def _check_cameras(self) -> None:
        """Cameras: the image section's size (one shared encoder), and the contract's cameras, state and actions."""
        for c in self.cameras:
            if c.size != self.image_size:
                raise ManifestError(f"camera {c.name!r} is {c.height}x{c.width}; the image section (one vision encoder "
                                    f"for every view) says {self.image.height}x{self.image.width}")
        problems = contract_mismatches(self.contract, self.camera_names, self.proprio.names, self.actions.names)
        if problems:
            raise ManifestError("the manifest's contract does not describe its model (cameras, proprio.names, "
                                "actions.names): " + "; ".join(problems))

    def _check_io(self) -> None:
        """The policy graph's inputs/outputs must be the contract's names with the shapes the other sections imply."""
        inputs, outputs = self.inputs, self.outputs
        names = policy_inputs(self.camera_names)
        if tuple(t.name for t in inputs) != names or tuple(t.name for t in outputs) != POLICY_OUTPUTS:
            missing = [n for n in names if n not in {t.name for t in inputs}]
            raise ManifestError(
                f"policy graph is {[t.name for t in inputs]} -> {[t.name for t in outputs]}; "
                f"for cameras {list(self.camera_names)} the runtime expects {list(names)} -> {list(POLICY_OUTPUTS)}"
                + (f" (missing {missing})" if missing else "")
            )
        clash = {t.name for t in self.shared.adapter_inputs} & {*names, *POLICY_OUTPUTS}
        if clash:
            raise ManifestError(f"shared.adapter_inputs reuse policy input/output names {sorted(clash)}")
        expected = {
            **{c.input: (3, c.height, c.width) for c in self.cameras},
            processing.INSTRUCTION_EMBEDDING: (self.language.embedding_dim,),
            processing.PROPRIO: (len(self.proprio.names),),
            processing.ACTIONS: (self.actions.chunk_length, len(self.actions.names)),
        }
        for t in (*inputs, *outputs):
            if t.dtype != "float32":
                raise ManifestError(f"{t.name} dtype is {t.dtype!r}; the graph contract is float32")
            if len(t.shape) != 1 + len(expected[t.name]) or tuple(t.shape[1:]) != expected[t.name]:
                raise ManifestError(
                    f"{t.name} shape {list(t.shape)} does not match the manifest's other fields: "
                    f"expected [batch, {', '.join(map(str, expected[t.name]))}]"
                )

    def _check_references(self, adapter_entries: Sequence[Any]) -> None:
        """Every file a section names is in the files table, and every checksum copy agrees with it."""
        _require_listed(self.files, self.shared.file, "shared.file")
        for rel in self.language.files:
            _require_listed(self.files, rel, "language file")
        if not self.adapters:
            raise ManifestError("manifest lists no adapters")
        names = self.adapter_names
        if len(set(names)) != len(names):
            raise ManifestError(f"adapter names are not unique: {names}")
        for a, entry in zip(self.adapters, adapter_entries, strict=True):
            checksums = dict(a.checksums)
            if a.fp16_file is not None:
                _require_listed(self.files, a.fp16_file, f"adapter {a.name!r} fp16_file")
                if "fp16_sha256" in entry:  # written by exports before the files table became the only source
                    checksums["fp16_file"] = (a.fp16_file, entry["fp16_sha256"])
            for what, (rel, sha) in checksums.items():
                _require_listed(self.files, rel, f"adapter {a.name!r} {what}")
                if self.files[rel][0] != sha:
                    raise ManifestError(
                        f"adapter {a.name!r} {what} sha256 {sha} differs from the files table's {self.files[rel][0]}"
                    )
        if self.default_adapter not in names:
            raise ManifestError(f"default_adapter {self.default_adapter!r} is not one of the adapters {names}")

    # ------------------------------------------------------------------ lookups
    @property
    def proprio_normalizer(self) -> processing.Normalizer:
        return self.proprio.normalizer

    @property
    def shared_file(self) -> str:
        return self.shared.file

    @property
    def adapter_inputs(self) -> tuple[TensorSpec, ...]:
        return self.shared.adapter_inputs

    @property
    def backbone_files(self) -> dict[str, str]:
        """sha256 of everything every adapter depends on (used to accept a re-read manifest)."""
        keep = [self.shared_file, self.language.file, self.language.tokenizer]
        return {rel: self.files[rel][0] for rel in keep}


# ---------------------------------------------------------------------- families
def family_of(d: Mapping[str, Any]) -> str:
    """The manifest's ``family`` (absent: the package's own VLA); an unknown one is refused."""
    family = d.get("family", NATIVE_FAMILY)
    if family not in FAMILIES:
        raise ManifestError(f"manifest family is {family!r}; this runtime serves {list(FAMILIES)}")
    return str(family)


def load_manifest(model_dir: str | Path) -> Any:
    """The manifest of ``model_dir``, read by its family's class (``Manifest`` or ``SmolVLAManifest``)."""
    root = Path(model_dir)
    path = root / MANIFEST_NAME
    if root.is_dir() and path.is_file():
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"cannot read {str(path)!r}: {exc}") from exc
        if isinstance(raw, Mapping) and family_of(raw) == "smolvla":
            from vla_adapter_ros.runtime.manifest_smolvla import (
                SmolVLAManifest,  # why: the families import this module
            )

            return SmolVLAManifest.load(root)
    return Manifest.load(root)


# ---------------------------------------------------------------------- helpers
def check_format(d: Mapping[str, Any]) -> int:
    return _check_format(d)


def require_listed(files: Mapping[str, Any], rel: str, where: str) -> None:
    _require_listed(files, rel, where)


def _check_format(d: Mapping[str, Any]) -> int:
    """The format name and a version this runtime reads (returned); otherwise say which it reads and what to do."""
    fmt, version = d.get("format"), d.get("format_version")
    if fmt != FORMAT:
        raise ManifestError(f"manifest format is {fmt!r}; this runtime reads {FORMAT!r} (an exported model directory)")
    readable = ", ".join(map(str, READABLE_VERSIONS))
    if isinstance(version, bool) or not isinstance(version, int):
        raise ManifestError(f"manifest format_version is {version!r}, not a whole number; this runtime reads "
                            f"version {readable}")
    if version > max(READABLE_VERSIONS):
        raise ManifestError(f"manifest format_version {version} is newer than this runtime reads (version {readable}); "
                            "upgrade vla_adapter_ros, or export the model with this version")
    if version not in READABLE_VERSIONS:
        raise ManifestError(f"manifest format_version {version} is older than this runtime reads (version {readable}); "
                            "export the model again with `vla-adapter export`")
    return version


def _safe_rel(rel: str, where: str) -> str:
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or ".." in p.parts or "\\" in rel or str(p) != rel or rel == MANIFEST_NAME:
        raise ManifestError(f"{where} {rel!r} is not a plain relative path inside the model directory")
    return rel


def _files_table(files: Mapping[str, Any]) -> dict[str, tuple[str, int]]:
    out = {}
    for rel, entry in files.items():
        _safe_rel(rel, "files entry")
        entry = mapping(entry, f"files[{rel!r}]")
        sha = get(entry, "sha256", str, f"files[{rel!r}]")
        size = get(entry, "size", int, f"files[{rel!r}]")
        if not SHA256_RE.match(sha):
            raise ManifestError(f"files[{rel!r}].sha256 {sha!r} is not a lowercase hex sha256")
        out[rel] = (sha, size)
    return out


def _require_listed(files: Mapping[str, Any], rel: str, where: str) -> None:
    _safe_rel(rel, where)
    if rel not in files:
        raise ManifestError(f"{where} {rel!r} is not listed in the manifest's files table; refusing to use it")
