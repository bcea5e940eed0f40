"""The adapter-name rule, in one place (the lowest layer: no dependencies).

Adapter names become ``nn.ModuleDict`` keys, directory and file names of exported models,
manifest entries and ROS service payloads, so one rule serves all of them: an ASCII letter or
digit, then up to 63 letters, digits, ``_`` or ``-``. Never a path.
"""

from __future__ import annotations

import re

ADAPTER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MAX_ADAPTER_NAME_CHARS = 64
_QUOTE_CHARS = 40


class AdapterNameError(ValueError):
    """A string that cannot be an adapter name; the message quotes it (shortened) and says why."""


def quote_name(name: str) -> str:
    """repr() of a name, shortened so a 10 kB request never ends up in a reply or a log whole."""
    if len(name) <= _QUOTE_CHARS:
        return repr(name)
    return f"{name[:_QUOTE_CHARS]!r}... ({len(name)} characters)"


def adapter_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be an adapter name, or None when it can."""
    if not isinstance(name, str):
        return f"an adapter name must be a string, got {type(name).__name__} {name!r}"
    if not name:
        return "the adapter name is empty"
    if len(name) > MAX_ADAPTER_NAME_CHARS:
        return f"the adapter name is {len(name)} characters long (at most {MAX_ADAPTER_NAME_CHARS})"
    if "/" in name or "\\" in name or ".." in name or name.startswith(("~", ".")) or "\x00" in name:
        return f"{quote_name(name)} looks like a path; adapters are named in the model manifest, never given as paths"
    if not ADAPTER_NAME_RE.match(name):
        return f"{quote_name(name)} is not a valid adapter name (a letter or digit, then letters, digits, _ or -)"
    return None


def validate_adapter_name(name: object) -> str:
    """``name`` when it is a valid adapter name, else AdapterNameError saying why."""
    problem = adapter_name_problem(name)
    if problem is not None:
        raise AdapterNameError(problem)
    return name  # type: ignore[return-value]
