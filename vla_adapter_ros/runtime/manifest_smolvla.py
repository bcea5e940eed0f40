"""The manifest of an exported SmolVLA (``family: "smolvla"``, format version 3).

Layout of the model directory (relative paths)::

    manifest.json
    graphs/prefix.onnx             images + tokens + state (+ vision/language adapter inputs) -> KV cache
    graphs/denoise.onnx            x_t + time + KV cache (+ expert adapter inputs) -> v_t
    adapters/<name>.onnx_adapter   onnxruntime adapter file: that adapter's tensors for both graphs
    language/tokenizer.json        the SmolVLM tokenizer (``tokenizers``; no language encoder graph)

Shared with the package's own manifest (``runtime/manifest.py``, the one owner of the format): the
format check, the files table and its checks (``ModelFiles``), and the sections ``image``, ``cameras``,
``contract``, ``proprio`` (the state's names and LeRobot's mean/std), ``actions`` (names, bounds,
chunk length, LeRobot's mean/std) and ``adapters``. Its own section ``smolvla`` says how to run the
graphs: the denoising steps, the padded state/action sizes, the tokenizer's fixed length and padding,
and each graph's adapter inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vla_adapter_ros import processing
from vla_adapter_ros.contract import RobotContract
from vla_adapter_ros.runtime import manifest as mf
from vla_adapter_ros.runtime.errors import ManifestError
from vla_adapter_ros.runtime.manifest_sections import (
    ActionSpec,
    AdapterSpec,
    CameraInput,
    ImageSpec,
    ProprioSpec,
    TensorSpec,
    contract_from_dict,
    contract_mismatches,
    get,
    mapping,
)

FAMILY = "smolvla"
FORMAT_VERSION = 3
PREFIX_FILE = "graphs/prefix.onnx"
DENOISE_FILE = "graphs/denoise.onnx"
TOKENIZER_FILE = f"{mf.LANGUAGE_DIR}/tokenizer.json"


def image_input(camera: str, n_cameras: int) -> str:
    return processing.image_input_name(camera, n_cameras)


@dataclass(frozen=True)
class SmolVLASpec:
    """How to run the two graphs (the ``smolvla`` section)."""

    prefix: str
    denoise: str
    tokenizer: str
    max_length: int  # instructions are padded (right) / truncated to this many tokens
    pad_token_id: int
    num_steps: int  # Euler steps of the flow-matching loop
    chunk_size: int
    max_state_dim: int  # the state is zero-padded to this size
    max_action_dim: int  # the graphs' action size; the first len(actions.names) are the robot's
    prefix_adapter_inputs: tuple[TensorSpec, ...] = ()
    denoise_adapter_inputs: tuple[TensorSpec, ...] = ()
    layout: Mapping[str, Any] = field(default_factory=dict, compare=False)  # the template adapter's config

    @classmethod
    def from_dict(cls, d: Any) -> SmolVLASpec:
        d = mapping(d, "smolvla")
        ints = {k: get(d, k, int, "smolvla") for k in ("max_length", "pad_token_id", "num_steps", "chunk_size",
                                                          "max_state_dim", "max_action_dim")}
        for k, v in ints.items():
            if v < (0 if k == "pad_token_id" else 1):
                raise ManifestError(f"smolvla.{k} must be positive, got {v}")
        return cls(prefix=get(d, "prefix", str, "smolvla"), denoise=get(d, "denoise", str, "smolvla"),
                   tokenizer=get(d, "tokenizer", str, "smolvla"), **ints,
                   prefix_adapter_inputs=TensorSpec.list_from(d, "prefix_adapter_inputs", "smolvla"),
                   denoise_adapter_inputs=TensorSpec.list_from(d, "denoise_adapter_inputs", "smolvla"),
                   layout=mapping(d.get("layout", {}), "smolvla.layout"))

    def to_dict(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "denoise": self.denoise, "tokenizer": self.tokenizer,
                "max_length": self.max_length, "pad_token_id": self.pad_token_id, "num_steps": self.num_steps,
                "chunk_size": self.chunk_size, "max_state_dim": self.max_state_dim,
                "max_action_dim": self.max_action_dim,
                "prefix_adapter_inputs": [t.to_dict() for t in self.prefix_adapter_inputs],
                "denoise_adapter_inputs": [t.to_dict() for t in self.denoise_adapter_inputs],
                "layout": dict(self.layout)}

    @property
    def adapter_inputs(self) -> tuple[TensorSpec, ...]:
        return (*self.prefix_adapter_inputs, *self.denoise_adapter_inputs)


@dataclass(frozen=True, kw_only=True)
class SmolVLAManifest(mf.FamilyManifest):
    """A validated SmolVLA manifest bound to its model directory (``root``)."""

    root: Path
    name: str
    image: ImageSpec
    cameras: tuple[CameraInput, ...] = field(repr=False)
    contract: RobotContract = field(repr=False)
    proprio: ProprioSpec = field(repr=False)
    actions: ActionSpec = field(repr=False)
    smolvla: SmolVLASpec = field(repr=False)
    adapters: tuple[AdapterSpec, ...] = ()
    default_adapter: str = ""
    files: Mapping[str, tuple[str, int]] = field(default_factory=dict, repr=False, compare=False)
    created_utc: str = ""
    versions: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    model_config: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    backbone: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    parity: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    family: str = FAMILY
    format_version: int = FORMAT_VERSION

    @classmethod
    def from_dict(cls, raw: Any, root: str | Path) -> SmolVLAManifest:
        d = mapping(raw, "manifest")
        version = mf.check_format(d)
        if mf.family_of(d) != FAMILY or version != FORMAT_VERSION:
            raise ManifestError(f"not a {FAMILY} manifest (family {d.get('family')!r}, format_version {version}); "
                                f"a {FAMILY} manifest is format_version {FORMAT_VERSION}")
        m = cls(
            root=Path(root), image=ImageSpec.from_dict(get(d, "image", dict, "manifest")),
            cameras=CameraInput.list_from(get(d, "cameras", list, "manifest")),
            contract=contract_from_dict(get(d, "contract", dict, "manifest")),
            proprio=ProprioSpec.from_dict(get(d, "proprio", dict, "manifest")),
            actions=ActionSpec.from_dict(get(d, "actions", dict, "manifest")),
            smolvla=SmolVLASpec.from_dict(get(d, "smolvla", dict, "manifest")), **cls.common_fields(d),
        )
        m._check()
        return m

    def _check(self) -> None:
        for c in self.cameras:
            if c.input != image_input(c.name, len(self.cameras)) or c.size != (self.image.height, self.image.width):
                raise ManifestError(f"camera {c.name!r}: input {c.input!r} {c.height}x{c.width}; a {FAMILY} graph takes "
                                    f"{image_input(c.name, len(self.cameras))!r} at {self.image.height}x{self.image.width}")
        problems = contract_mismatches(self.contract, self.camera_names, self.proprio.names, self.actions.names)
        if problems:
            raise ManifestError("the manifest's contract does not describe its model: " + "; ".join(problems))
        s = self.smolvla
        if len(self.proprio.names) > s.max_state_dim or len(self.actions.names) > s.max_action_dim:
            raise ManifestError(f"{len(self.proprio.names)} state / {len(self.actions.names)} action names do not fit "
                                f"the graphs' sizes {s.max_state_dim} / {s.max_action_dim}")
        if self.actions.chunk_length != s.chunk_size:
            raise ManifestError(f"actions.chunk_length {self.actions.chunk_length} != smolvla.chunk_size {s.chunk_size}")
        for rel, where in ((s.prefix, "smolvla.prefix"), (s.denoise, "smolvla.denoise"), (s.tokenizer, "smolvla.tokenizer")):
            mf.require_listed(self.files, rel, where)
        if not self.adapters:
            raise ManifestError("manifest lists no adapters")
        names = self.adapter_names
        if len(set(names)) != len(names):
            raise ManifestError(f"adapter names are not unique: {names}")
        for a in self.adapters:
            mf.require_listed(self.files, a.file, f"adapter {a.name!r} file")
            if self.files[a.file][0] != a.sha256:
                raise ManifestError(f"adapter {a.name!r} sha256 {a.sha256} differs from the files table's "
                                    f"{self.files[a.file][0]}")
        if self.default_adapter not in names:
            raise ManifestError(f"default_adapter {self.default_adapter!r} is not one of the adapters {names}")

    def to_dict(self) -> dict[str, Any]:
        return self.head_dict() | {
            "image": self.image.to_dict(), "cameras": [c.to_dict() for c in self.cameras],
            "contract": self.contract.to_dict(), "proprio": self.proprio.to_dict(), "actions": self.actions.to_dict(),
            "smolvla": self.smolvla.to_dict(),
        } | self.tail_dict()

    def with_files(self, files: Mapping[str, tuple[str, int]]) -> SmolVLAManifest:
        from dataclasses import replace

        return replace(self, files=dict(files), adapters=tuple(replace(a, sha256=files[a.file][0]) for a in self.adapters))

    # ------------------------------------------------------------------ lookups (the rest: mf.PolicyLookups)
    @property
    def adapter_inputs(self) -> tuple[TensorSpec, ...]:
        return self.smolvla.adapter_inputs

    @property
    def backbone_files(self) -> dict[str, str]:
        return {rel: self.files[rel][0] for rel in (self.smolvla.prefix, self.smolvla.denoise, self.smolvla.tokenizer)}
