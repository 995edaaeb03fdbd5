"""Object storage for originals and results: one small interface, an S3 and a local backend."""
from __future__ import annotations

from typing import Mapping

from clearcut.storage.base import Storage, StoredObject
from clearcut.storage.errors import ObjectNotFound, StorageError
from clearcut.storage.local import LocalStorage
from clearcut.storage.s3 import S3Storage, make_client

__all__ = ["Storage", "StoredObject", "StorageError", "ObjectNotFound", "LocalStorage", "S3Storage", "make_client",
           "from_settings"]


def from_settings(environ: Mapping[str, str] | None = None, **client_options) -> Storage:
    """The configured store: S3 at CLEARCUT_S3_ENDPOINT (empty: the one ``clearcut dev`` runs)."""
    return S3Storage.from_settings(environ, **client_options)
