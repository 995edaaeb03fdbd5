"""The storage interface every backend implements: five operations on opaque keys."""
from __future__ import annotations

import abc


class Storage(abc.ABC):
    """Bytes under string keys (``originals/<id>.png``); backends raise ``StorageError`` subclasses only."""

    @abc.abstractmethod
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None: ...

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes; ``ObjectNotFound`` if there is none."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""

    @abc.abstractmethod
    def presigned_url(self, key: str, expires_s: int = 3600) -> str:
        """A URL that fetches the object without our credentials until ``expires_s`` seconds pass."""

    @abc.abstractmethod
    def check(self) -> dict:
        """Cheap readiness probe for health checks: returns details, raises ``StorageError`` if down."""
