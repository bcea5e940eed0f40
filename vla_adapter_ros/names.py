"""The adapter-name rule, for every layer (lowest layer: standard library only).

An adapter name becomes a directory name (``adapters/<name>/``), an ``nn.ModuleDict``
key, part of a file name in an exported model (``adapters/<name>.onnx_adapter``) and
the payload of the policy node's services, so one rule serves all of them:
an ASCII letter or digit, then up to 63 letters, digits, ``_`` or ``-``
(``ADAPTER_NAME_PATTERN``). No dots, slashes or spaces: a name can never be a path.

    validate_adapter_name("faucet_open")   # -> "faucet_open"
    validate_adapter_name("../x")          # AdapterNameError: ... looks like a path ...
"""

from __future__ import annotations

import re

ADAPTER_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
MAX_ADAPTER_NAME_CHARS = 64
_NAME_RE = re.compile(ADAPTER_NAME_PATTERN)
_QUOTE_CHARS = 40


class AdapterNameError(ValueError):
    """A name breaks the adapter-name rule; the message quotes it (shortened when long)."""


def quote_name(name: str) -> str:
    """repr() of a name, shortened so a 10 kB request never ends up in a reply or a log whole."""
    if len(name) <= _QUOTE_CHARS:
        return repr(name)
    return f"{name[:_QUOTE_CHARS]!r}... ({len(name)} characters)"


def validate_adapter_name(name: object, what: str = "adapter name") -> str:
    """``name`` if it follows the rule, else :class:`AdapterNameError` saying why.

    ``what`` names the thing in the message (e.g. ``"model name"``, ``"TrainConfig.adapter_name"``).
    """
    if not isinstance(name, str):
        raise AdapterNameError(f"{what} must be a string, got {type(name).__name__} {name!r}")
    if not name:
        raise AdapterNameError(f"{what} is empty")
    if len(name) > MAX_ADAPTER_NAME_CHARS:
        raise AdapterNameError(
            f"{what} {quote_name(name)} is {len(name)} characters long (at most {MAX_ADAPTER_NAME_CHARS})"
        )
    if any(c in name for c in "/\\\x00") or ".." in name or name.startswith(("~", ".")):
        raise AdapterNameError(
            f"{what} {quote_name(name)} looks like a path; adapters are named in the model manifest, "
            "never given as paths"
        )
    if not _NAME_RE.fullmatch(name):
        raise AdapterNameError(
            f"{what} {quote_name(name)} must be a letter or digit followed by letters, digits, '_' or '-' "
            f"({ADAPTER_NAME_PATTERN})"
        )
    return name
