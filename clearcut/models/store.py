"""The on-disk model cache: fetch once, verify by sha256, hand out verified paths."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from clearcut import config
from clearcut.errors import ChecksumMismatch, ModelError
from clearcut.models import sources
from clearcut.models.cpu import check_applies
from clearcut.models.registry import ModelSpec, all_specs, int8_name, spec


def sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


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
        if model.source.startswith("quantize:"):  # built locally, never downloaded
            return self.path(name)
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
        if model.source.startswith("quantize:"):
            return self._int8_path(model, path)
        if not path.exists():
            raise ModelError(f"model {name!r} is not in {self.directory}; run `clearcut models fetch {name}`")
        self._verify(model, path)
        return path

    def recipe(self, name: str) -> dict | None:
        """The recorded recipe of an int8 variant (None when it has not been built)."""
        return read_recipe(self, name)

    def has_int8(self, name: str, *, checked: bool = True) -> bool:
        """Whether ``NAME-int8`` is built here (and, with ``checked``, its recorded quality check passed on
        a CPU with this one's int8 kernels: ``check_applies``)."""
        recipe = self.recipe(int8_name(name))
        if recipe is None or not (self.directory / recipe["file"]).exists():
            return False
        return check_applies(recipe.get("quality_check", {})) if checked else True

    def _int8_path(self, model: ModelSpec, path: Path) -> Path:
        base = model.source.split(":", 1)[1]
        recipe = self.recipe(model.name)
        if recipe is None or not path.exists():
            raise ModelError(f"model {model.name!r} is not built in {self.directory}; run "
                             f"`clearcut models quantize {base}`")
        self._verify(model, path, expected=recipe["sha256"],
                     fix=f"run `clearcut models quantize {base}` to rebuild it")
        return path

    def _verify(self, model: ModelSpec, path: Path, *, expected: str | None = None, fix: str | None = None) -> None:
        expected = expected or model.sha256
        if (str(path), expected) in _verified:
            return
        actual = sha256_of(path)
        if actual != expected:
            raise ChecksumMismatch(
                f"model {model.name!r} at {path} has sha256 {actual}, expected {expected}; "
                f"{fix or f'delete it and run `clearcut models fetch {model.name}`'}",
                expected=expected, actual=actual)
        _verified.add((str(path), expected))

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
            recipe = self.recipe(model.name + "-int8") if model.sha256 else None
            if recipe is not None:
                int8 = spec(recipe["name"])
                file = self.path_for(int8)
                check = recipe.get("quality_check", {})
                rows.append({
                    "name": int8.name, "file": str(file), "cached": file.exists(),
                    "size_bytes": file.stat().st_size if file.exists() else None, "sha256": recipe["sha256"],
                    "source": int8.source, "licence": int8.licence, "input_size": int8.input_size,
                    "normalisation": int8.normalisation,
                    "quality_check_passed": bool(check.get("passed")),
                    "quality_check_int8_kernels": check.get("int8_kernels"),
                    "used_by_auto_here": check_applies(check),
                })
        return rows


_verified: set[tuple[str, str]] = set()


# ---------------------------------------------------------------- int8 recipes (``quantize.build``)

def recipe_path(store, name: str) -> Path:
    return store.directory / f"{int8_name(name)}.json"


def write_recipe(store, recipe: dict) -> Path:
    path = recipe_path(store, recipe["name"])
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(recipe, indent=1, sort_keys=True))
    os.replace(tmp, path)
    return path


def read_recipe(store, name: str) -> dict | None:
    path = recipe_path(store, name)
    if not path.exists():
        return None
    return json.loads(path.read_text())
