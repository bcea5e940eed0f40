"""The exporter's one exception type."""

from __future__ import annotations


class ExportError(RuntimeError):
    """The export cannot be done or failed a check; the message is one line that says why."""
