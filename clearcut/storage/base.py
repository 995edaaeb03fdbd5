"""The storage interface every backend implements: a few operations on opaque keys."""
from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class StoredObject:
    """One entry of a listing: its key, size in bytes, ETag (without quotes) and last change."""
    key: str
    size: int
    etag: str
    last_modified: datetime | None


class Storage(abc.ABC):
    """Bytes under string keys (``originals/<id>.png``); backends raise ``StorageError`` subclasses only."""

    @abc.abstractmethod
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None: ...

    @abc.abstractmethod
    def get(self, key: str, max_bytes: int | None = None) -> bytes:
        """The object's bytes (at most ``max_bytes`` of them: a longer object comes back cut to that length,
        so a caller that asks for limit + 1 knows it is over); ``ObjectNotFound`` if there is none."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""

    @abc.abstractmethod
    def list(self, prefix: str, *, start_after: str | None = None, limit: int = 1000) -> tuple[list[StoredObject], bool]:
        """At most ``limit`` objects whose key starts with ``prefix`` (nested keys included), in key order,
        after ``start_after``; and whether more follow."""

    @abc.abstractmethod
    def presigned_url(self, key: str, expires_s: int = 3600) -> str:
        """A URL that fetches the object without our credentials until ``expires_s`` seconds pass."""

    @abc.abstractmethod
    def check(self) -> dict:
        """Cheap readiness probe for health checks: returns details, raises ``StorageError`` if down."""
