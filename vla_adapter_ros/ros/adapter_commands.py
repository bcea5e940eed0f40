"""What the switch/list/load adapter services do, over an OnnxPolicy. ROS-free.

Replies are honest: a refused or failed request says why, names the adapters that can be
used, and leaves the adapter that was serving in place. Names are manifest names, never
paths: empty names, path-like names (``../x``, ``/etc/passwd``, ``a/b``) and absurdly long
names are refused before the runtime sees them, and long names are never echoed whole.
"""

from __future__ import annotations

from dataclasses import dataclass

# quote_name is re-exported: ros/policy_node.py quotes refused instructions with it.
from vla_adapter_ros.names import AdapterNameError, quote_name, validate_adapter_name
from vla_adapter_ros.runtime.errors import PolicyRuntimeError, UnknownAdapterError
from vla_adapter_ros.runtime.manifest import AdapterSpec
from vla_adapter_ros.runtime.policy import OnnxPolicy

__all__ = ["AdapterCommands", "AdapterReply", "adapter_name_problem", "quote_name"]


@dataclass(frozen=True)
class AdapterReply:
    success: bool
    message: str
    active_adapter: str
    previous_adapter: str = ""


def adapter_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an adapter name (None when it can): the rule of :mod:`vla_adapter_ros.names`."""
    try:
        validate_adapter_name(name)
    except AdapterNameError as exc:
        return str(exc)
    return None


class AdapterCommands:
    """switch / list / load on one policy; safe to call from a service thread while inference runs."""

    def __init__(self, policy: OnnxPolicy) -> None:
        self.policy = policy

    @property
    def active(self) -> str:
        return self.policy.active_adapter or ""

    def known(self) -> list[str]:
        return [spec.name for spec in self.policy.adapters]

    def _known_text(self) -> str:
        return ", ".join(self.known()) or "(none loaded)"

    def listing(self) -> tuple[str, list[AdapterSpec]]:
        return self.active, list(self.policy.adapters)

    def switch(self, name: str) -> AdapterReply:
        previous = self.active
        problem = adapter_name_problem(name)
        if problem is not None:
            return AdapterReply(False, f"refused: {problem}; known adapters: {self._known_text()}", previous, previous)
        if name == previous:
            return AdapterReply(True, f"{name!r} is already active", previous, previous)
        try:
            self.policy.switch(name)  # one reference swap: the frame in flight keeps its adapter
        except UnknownAdapterError:
            hint = ""
            if name in self.policy.manifest.adapter_names:
                hint = " (listed in the manifest but not loaded: call load_adapter first)"
            return AdapterReply(
                False, f"unknown adapter {name!r}{hint}; known adapters: {self._known_text()}; "
                f"{previous or 'the backbone'} keeps serving", previous, previous,
            )
        except PolicyRuntimeError as exc:
            return AdapterReply(False, f"switch to {name!r} failed: {exc}", self.active, previous)
        return AdapterReply(True, f"switched to {name!r} (was {previous or 'the backbone'!r})", self.active, previous)

    def load(self, name: str, activate: bool) -> AdapterReply:
        previous = self.active
        problem = adapter_name_problem(name)
        if problem is not None:
            return AdapterReply(False, f"refused: {problem}", previous, previous)
        already = name in self.known()
        try:
            spec = self.policy.load_adapter(name, activate=activate)
        except UnknownAdapterError:
            listed = ", ".join(self.policy.manifest.adapter_names) or "(none)"
            return AdapterReply(
                False, f"adapter {name!r} is not listed in the manifest of {self.policy.manifest.root}; "
                f"listed: {listed}", self.active, previous,
            )
        except PolicyRuntimeError as exc:  # ManifestError, ChecksumError (file differs from the manifest), ...
            return AdapterReply(False, f"adapter {name!r} was not loaded: {exc}", self.active, previous)
        what = "was already loaded" if already else f"loaded ({spec.task or 'no task'}, rank {spec.rank})"
        if activate:
            what += "; now active"
        return AdapterReply(True, f"adapter {name!r} {what}", self.active, previous)
