"""Storage errors: a backend that cannot be reached is a retryable 503, never a 500.

Callers (API handlers, Celery tasks) can retry on ``StorageError.retryable`` without knowing
which backend or client library raised the underlying fault.
"""
from __future__ import annotations

from clearcut.errors import ClearcutError


class StorageError(ClearcutError):
    """The object store is down, refuses our credentials or is misconfigured (503, retryable)."""
    code = "storage_unavailable"
    status = 503
    retryable = True


class ObjectNotFound(StorageError):
    """No object under that key (404; retrying will not help)."""
    code = "object_not_found"
    status = 404
    retryable = False
