"""A directory-backed store for single-machine use (CLI batches, tests); no server needed."""
from __future__ import annotations

import hashlib
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from clearcut.storage.base import Storage, StoredObject
from clearcut.storage.errors import ObjectNotFound, StorageError


class LocalStorage(Storage):
    """Objects are files under ``root``; writes go through a temporary file and a rename, so a
    reader never sees half an object. ``presigned_url`` returns a ``file://`` URL (no expiry:
    anyone who can read the directory can read the file)."""

    def __init__(self, root: Path | str):
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not key or path == self.root or self.root not in path.parents:
            raise StorageError(f"invalid storage key {key!r}", code="invalid_storage_key", status=400,
                               key=key)
        return path

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".put-")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            raise StorageError(f"cannot write {key!r} under {self.root}: {exc.strerror}", key=key) from exc

    def get(self, key: str, max_bytes: int | None = None) -> bytes:
        try:
            if max_bytes is None:
                return self._path(key).read_bytes()
            with open(self._path(key), "rb") as f:
                return f.read(max_bytes)
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key!r}", key=key) from None
        except OSError as exc:
            raise StorageError(f"cannot read {key!r} under {self.root}: {exc.strerror}", key=key) from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete {key!r} under {self.root}: {exc.strerror}", key=key) from exc

    def list(self, prefix: str, *, start_after: str | None = None, limit: int = 1000) -> tuple[list[StoredObject], bool]:
        """Walks the folder of ``prefix``; the ETag is the file's md5 (as S3's is for a one-part upload)."""
        folder = (self.root / prefix.rpartition("/")[0]).resolve()
        if folder != self.root and self.root not in folder.parents:
            raise StorageError(f"invalid storage prefix {prefix!r}", code="invalid_storage_key", status=400)
        keys = sorted(key for key in (p.relative_to(self.root).as_posix() for p in folder.rglob("*")
                                      if p.is_file() and not p.name.startswith(".put-"))
                      if key.startswith(prefix) and (start_after is None or key > start_after)) \
            if folder.is_dir() else []
        found = []
        for key in keys[:limit]:
            path = self.root / key
            stat = path.stat()
            found.append(StoredObject(key, stat.st_size, hashlib.md5(path.read_bytes()).hexdigest(),
                                      datetime.fromtimestamp(stat.st_mtime, timezone.utc)))
        return found, len(keys) > limit

    def presigned_url(self, key: str, expires_s: int = 3600) -> str:
        return self._path(key).as_uri()

    def check(self) -> dict:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"storage directory {self.root} is unusable: {exc.strerror}") from exc
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"storage directory {self.root} is not writable")
        return {"backend": "local", "path": str(self.root)}
