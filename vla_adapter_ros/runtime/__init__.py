"""onnxruntime policy runtime. Imports neither torch nor rclpy.

A robot needs numpy, OpenCV, tokenizers and onnxruntime only::

    from vla_adapter_ros.runtime import OnnxPolicy

    with OnnxPolicy.from_dir("models/default", adapter="faucet_open") as policy:
        result = policy.infer(rgb, "open the faucet", proprio)
        # a multi-camera model (names and order: policy.manifest.cameras):
        # result = policy.infer({"front": front_rgb, "wrist": wrist_rgb}, "open the faucet", proprio)

Names are resolved lazily so that importing a submodule (e.g. the manifest rules,
which the exporter uses) does not load onnxruntime.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "OnnxPolicy": "policy", "InferenceResult": "policy",
    "ChecksumError": "errors", "InputError": "errors", "ManifestError": "errors",
    "NonFiniteOutputError": "errors", "PolicyRuntimeError": "errors", "ProviderError": "errors", "ProviderRunError": "errors",
    "ProviderConfigError": "errors", "ProviderConfig": "providers",
    "UnknownAdapterError": "errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
