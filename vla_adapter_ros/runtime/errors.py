"""Exceptions of the onnxruntime policy runtime.

Every error the runtime raises on purpose subclasses :class:`PolicyRuntimeError`,
so a caller (the ROS node, a service handler) can catch the family and report the
message; each message quotes the offending value and, where it helps, the valid ones.
"""

from __future__ import annotations


class PolicyRuntimeError(RuntimeError):
    """Base class of every runtime error."""


class ManifestError(PolicyRuntimeError):
    """The model directory or its manifest is malformed, inconsistent or incomplete."""


class ChecksumError(ManifestError):
    """A file's sha256 (or size) differs from the one the manifest lists."""


class UnknownAdapterError(PolicyRuntimeError, KeyError):
    """An adapter name that is not loaded (or not listed); the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the whole message; keep it readable
        return str(self.args[0]) if self.args else ""


class InputError(PolicyRuntimeError, ValueError):
    """An image, instruction or proprio vector the policy cannot use."""


class NonFiniteOutputError(PolicyRuntimeError):
    """The network (or de-normalisation) produced NaN or Inf; nothing is returned."""


class ProviderError(PolicyRuntimeError):
    """No requested execution provider could be initialised, or a provider name is unknown."""


class ProviderConfigError(ProviderError, ValueError):
    """A provider setting (name, device id, engine cache folder, serving mode...) is invalid."""


class ProviderRunError(ProviderError):
    """The execution provider failed while running the network (a CUDA fault, a lost device...).

    ``provider`` names it. Nothing was returned; :meth:`OnnxPolicy.fall_back` rebuilds the
    sessions on the next provider of the chain.
    """

    def __init__(self, message: str, provider: str) -> None:
        super().__init__(message)
        self.provider = provider
