"""The on-disk model cache: fetch once, verify by sha256, hand out verified paths."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from clearcut import config
from clearcut.errors import ChecksumMismatch, ModelError
from clearcut.models import sources
from clearcut.models.registry import ModelSpec, all_specs, spec


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ModelStore:
    def __init__(self, directory: Path | str | None = None):
        self.directory = Path(directory or config.get("CLEARCUT_MODEL_DIR"))

    def path_for(self, model: ModelSpec) -> Path:
        return self.directory / model.filename

    def is_cached(self, name: str) -> bool:
        return self.path_for(spec(name)).exists()

    def fetch(self, name: str, *, force: bool = False) -> Path:
        """Return the verified path of ``name``, fetching it first if it is missing.

        A cached file is trusted only after its checksum matches (checked once per process). A fresh
        download lands in a temporary file and is renamed into place only after verification, so an
        interrupted or tampered fetch never leaves a file that later looks valid.
        """
        model = spec(name)
        path = self.path_for(model)
        if path.exists() and not force:
            self._verify(model, path)
            return path
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".partial-{os.getpid()}")
        try:
            sources.fetch(model.source, partial)
            self._verify(model, partial)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        _verified.add((str(path), model.sha256))
        return path

    def path(self, name: str) -> Path:
        """The verified path of a cached model; never downloads (workers run offline)."""
        model = spec(name)
        path = self.path_for(model)
        if not path.exists():
            raise ModelError(f"model {name!r} is not in {self.directory}; run `clearcut models fetch {name}`")
        self._verify(model, path)
        return path

    def _verify(self, model: ModelSpec, path: Path) -> None:
        if (str(path), model.sha256) in _verified:
            return
        actual = sha256_of(path)
        if actual != model.sha256:
            raise ChecksumMismatch(
                f"model {model.name!r} at {path} has sha256 {actual}, expected {model.sha256}; "
                f"delete it and run `clearcut models fetch {model.name}`",
                expected=model.sha256, actual=actual)
        _verified.add((str(path), model.sha256))

    def describe(self) -> list[dict]:
        rows = []
        for model in all_specs().values():
            path = self.path_for(model)
            rows.append({
                "name": model.name, "file": str(path), "cached": path.exists(),
                "size_bytes": path.stat().st_size if path.exists() else None, "sha256": model.sha256,
                "source": model.source, "licence": model.licence, "input_size": model.input_size,
                "normalisation": model.normalisation,
            })
        return rows


_verified: set[tuple[str, str]] = set()
