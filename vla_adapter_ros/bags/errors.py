"""Exceptions of the bags subpackage.

Every error names the bag (``path``) and the problem; the message is built
before raising so a log line alone is enough to find the file (rosbags style).
"""

from __future__ import annotations

from pathlib import Path


class BagError(Exception):
    """Base class: a rosbag2 episode cannot be read or written.

    ``path`` is the bag directory or storage file, ``problem`` the reason; the
    message is ``"<path>: <problem>"``.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self) -> tuple[type, tuple[Path, str]]:  # keep pickling (multiprocessing workers) working with two arguments
        return (type(self), (self.path, self.problem))


class BagNotFoundError(BagError, FileNotFoundError):
    """The path does not exist or holds no rosbag2 episode."""


class CorruptBagError(BagError):
    """The bag exists but its metadata, storage file or a message cannot be decoded (e.g. truncated)."""


class MissingTopicError(BagError):
    """A required topic is absent from the bag or has no messages."""


class TopicTypeError(BagError):
    """A topic carries a message type the reader does not accept for it."""


class BadMessageError(BagError):
    """A message decodes but its content is unusable (unsupported encoding, wrong sizes, ...)."""


class AlignmentError(BagError):
    """Messages cannot be aligned into frames (no frame has an instruction, proprio and action)."""


class BagWriteError(BagError):
    """An episode cannot be written (target exists, writer not open, ...)."""
