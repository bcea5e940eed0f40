"""onnxruntime policy runtime. Imports neither torch nor rclpy.

A robot needs numpy, OpenCV, tokenizers and onnxruntime only::

    from vla_adapter_ros.runtime import OnnxPolicy

    with OnnxPolicy.from_dir("models/default", adapter="faucet_open") as policy:
        result = policy.infer(rgb, "open the faucet", proprio)
"""

from vla_adapter_ros.runtime.errors import (
    ChecksumError,
    InputError,
    ManifestError,
    NonFiniteOutputError,
    PolicyRuntimeError,
    ProviderError,
    UnknownAdapterError,
)
from vla_adapter_ros.runtime.policy import InferenceResult, OnnxPolicy

__all__ = [
    "ChecksumError", "InferenceResult", "InputError", "ManifestError", "NonFiniteOutputError", "OnnxPolicy",
    "PolicyRuntimeError", "ProviderError", "UnknownAdapterError",
]
