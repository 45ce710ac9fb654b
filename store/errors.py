"""The exceptions of ingest, in one small hierarchy::

    IngestError
     ├── DecodeError          a message or reading could not be decoded/validated
     ├── StoreError
     │    ├── StoreUnavailable    the store cannot take a write now (retry/spool)
     │    └── StoreRejected       the store refuses the data itself (never retry)
     └── SpoolError           the local spool cannot be written or read

Other libraries' errors are translated at the boundary with ``raise … from``.
"""

from __future__ import annotations

__all__ = [
    "DecodeError",
    "IngestError",
    "SpoolError",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
]


class IngestError(Exception):
    """Base class of every error ingest raises on purpose."""


class DecodeError(IngestError):
    """A message could not be decoded; ``reason`` is a short, stable code."""

    def __init__(self, reason: str, detail: str, topic: str = "") -> None:
        self.reason = reason
        self.detail = detail
        self.topic = topic
        super().__init__(f"{reason}: {detail}" + (f" (topic {topic})" if topic else ""))


class StoreError(IngestError):
    def __init__(self, message: str, store: str = "", status: int | None = None) -> None:
        self.store = store
        self.status = status
        super().__init__(message)


class StoreUnavailable(StoreError):
    """The store cannot take the write now; retrying later may succeed."""


class StoreRejected(StoreError):
    """The store refuses the data itself; retrying the same data never helps."""


class SpoolError(IngestError):
    """The local spool file cannot be written or read."""
