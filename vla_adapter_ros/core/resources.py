"""Resident memory of this process, for the training-cost measurements (Linux ``/proc``; None elsewhere).

``peak_rss_bytes`` is the kernel's high-water mark (VmHWM); :func:`reset_peak_rss` sets it back to the
current resident size (``echo 5 > /proc/self/clear_refs``), so a peak can be measured over one phase of a
run (training steps after the data and the model are loaded) rather than over the process's lifetime,
which is all ``resource.getrusage`` gives.
"""

from __future__ import annotations

from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(key: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])  # "VmRSS:    123456 kB"
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_bytes() -> int | None:
    """Resident set size now."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def peak_rss_bytes() -> int | None:
    """Highest resident set size since the process started or :func:`reset_peak_rss`."""
    kib = _status_kib("VmHWM")
    return None if kib is None else kib * 1024


def reset_peak_rss() -> bool:
    """Reset the high-water mark to the current resident size; False where the kernel does not allow it."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


class PeakRss:
    """``with PeakRss() as m: ...`` -> ``m.delta_bytes``: the peak resident size inside the block minus the
    resident size at its start (None where it cannot be measured)."""

    def __enter__(self) -> PeakRss:
        self.start = rss_bytes()
        self.resettable = reset_peak_rss()
        self.delta_bytes: int | None = None
        return self

    def __exit__(self, *exc: object) -> None:
        peak = peak_rss_bytes()
        if self.start is not None and peak is not None and self.resettable:
            self.delta_bytes = max(0, peak - self.start)
