"""On-disk format of a saved adapter (PEFT-like): one directory per adapter.

``adapter_config.json``: the tuner config fields (rank, positions, components,
activation, init, task, instruction examples, ...) flat at the top level, plus
``method`` ("bottleneck" | "lora" | "prefix"), ``name``, ``backbone_fingerprint``,
``num_parameters``, ``model_config`` and ``format_version``.
``adapter_model.safetensors``: the weights, keyed by clean slot path
(e.g. ``vision.blocks.0.attn.proj.down.weight``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ... import __version__
from ...names import validate_adapter_name
from ..config import AdapterConfig, LoraConfig, PrefixConfig

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
FORMAT_VERSION = 1
METHODS: dict[str, type] = {"bottleneck": AdapterConfig, "lora": LoraConfig, "prefix": PrefixConfig}


def method_of(config: AdapterConfig | LoraConfig | PrefixConfig) -> str:
    for method, cls in METHODS.items():
        if isinstance(config, cls):
            return method
    raise TypeError(f"not an adapter config: {config!r}")


@dataclass
class SavedAdapter:
    """Everything in adapter_config.json."""

    name: str
    config: AdapterConfig | LoraConfig | PrefixConfig
    backbone_fingerprint: str
    num_parameters: int
    model_config: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    package_version: str = __version__

    @property
    def method(self) -> str:
        return method_of(self.config)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "method": self.method,
            "name": self.name,
            **self.config.to_dict(),
            "backbone_fingerprint": self.backbone_fingerprint,
            "num_parameters": self.num_parameters,
            "model_config": self.model_config,
            "package_version": self.package_version,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "adapter_config.json") -> SavedAdapter:
        d = dict(d)
        try:
            version = d.pop("format_version")
            method = d.pop("method")
            name = validate_adapter_name(d.pop("name"))
            fingerprint = d.pop("backbone_fingerprint")
            num_parameters = int(d.pop("num_parameters"))
        except KeyError as exc:
            raise ValueError(f"{source}: missing field {exc.args[0]!r}") from exc
        if version != FORMAT_VERSION:
            raise ValueError(f"{source}: format_version {version!r} is not supported (expected {FORMAT_VERSION})")
        if method not in METHODS:
            raise ValueError(f"{source}: unknown method {method!r}; known: {sorted(METHODS)}")
        model_config = d.pop("model_config", {})
        package_version = d.pop("package_version", "")
        try:
            config = METHODS[method].from_dict(d)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: {exc}") from exc
        return cls(name, config, fingerprint, num_parameters, model_config, version, package_version)

    def save(self, directory: Path) -> Path:
        path = Path(directory) / CONFIG_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> SavedAdapter:
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"no {CONFIG_NAME} in {Path(directory)}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
        return cls.from_dict(data, str(path))
