"""The items of ``clearcut import``: what each source holds, under which name it is reported, and where
its result goes in OUT.

* a folder: its images, recursively; results keep the tree under ``OUT/<folder name>/``;
* an image file: ``OUT/<name>``;
* a CSV of ``image_url[,external_id]`` rows (or a header naming ``image_url``, ``external_id`` and
  per-item options): ``OUT/<csv name>/<external_id or row-N>.<ext>``;
* ``s3:PREFIX``: the images the server lists under ``PREFIX`` in its bucket (``GET /v2/imports``; within
  ``imports/<account id>/``, ``{account}`` standing for it); results keep the tree under the prefix in
  ``OUT/<last folder of the prefix>/``, and each is reported as ``s3:<object key>``.
"""
from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from clearcut.cli.remove import IMAGE_SUFFIXES
from clearcut.options import parse

EXTENSIONS = {"jpeg": "jpg", "tif": "tiff"}
S3 = "s3:"

Lister = Callable[[str], Iterable[dict]]  # an s3 prefix -> the listing's objects (key, etag, ...)


@dataclass
class Item:
    key: str                     # the item's name in report.csv
    kind: str                    # "file", "url" or "s3"
    source: str                  # a local path, an image_url or an object key
    result: str                  # the result's path relative to OUT
    external_id: str | None = None
    options: dict = field(default_factory=dict)  # this item's options (the run's, then the CSV's)
    etag: str | None = None      # an object's ETag (s3 items)


def extension(fmt: str | None) -> str:
    fmt = (fmt or "png").strip().lower()
    return EXTENSIONS.get(fmt, fmt)


def safe_name(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in text).strip("._")
    return cleaned[:150] or hashlib.sha256(text.encode()).hexdigest()[:16]


def s3_prefix(raw: str) -> str | None:
    """The key prefix of an ``s3:PREFIX`` source (always ending in ``/``); None for a local path."""
    if raw.startswith("s3://"):
        raise ValueError(f"{raw}: write s3:PREFIX, a key prefix in the server's own bucket, such as "
                         "s3:imports/{account}/catalog/ (there is no bucket to name)")
    if not raw.startswith(S3):
        return None
    prefix = raw[len(S3):].lstrip("/")
    if not prefix:
        raise ValueError(f"{raw}: name a prefix, such as s3:imports/{{account}}/catalog/")
    return prefix if prefix.endswith("/") else prefix + "/"


def _csv_items(path: Path, options: dict) -> list[Item]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    header = ["image_url", "external_id"]
    if rows and rows[0][0].strip().lower() == "image_url":
        header, rows = [cell.strip().lower() for cell in rows[0]], rows[1:]
    items = []
    for number, row in enumerate(rows, start=1):
        values = {name: cell.strip() for name, cell in zip(header, row) if cell.strip()}
        url = values.pop("image_url", "")
        if not url:
            raise ValueError(f"{path}: row {number} has no image_url")
        external = values.pop("external_id", None)
        merged = {**options, **values}
        parse(merged)  # per-item options are validated before anything is sent
        name = safe_name(external) if external else f"row-{number:05d}"
        items.append(Item(key=external or url, kind="url", source=url, external_id=external, options=merged,
                          result=f"{path.stem}/{name}.{extension(merged.get('format'))}"))
    return items


def _s3_items(prefix: str, objects: Iterable[dict], options: dict) -> list[Item]:
    folder = prefix.rstrip("/").rpartition("/")[2]
    ext = extension(options.get("format"))
    items = []
    for obj in objects:
        relative = PurePosixPath(obj["key"][len(prefix):].lstrip("/"))
        if relative.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if ".." in relative.parts or not relative.name or any(ord(c) < 32 for c in obj["key"]):
            raise ValueError(f"object {obj['key']!r} has a '..' part or a control character; rename it in the bucket")
        items.append(Item(key=S3 + obj["key"], kind="s3", source=obj["key"], etag=obj.get("etag"), options=options,
                          result=f"{folder}/{relative.with_suffix('.' + ext).as_posix()}"))
    return items


def collect(sources: list[str], options: dict, lister: Lister | None = None) -> list[Item]:
    """The items of every source, in a stable order; raises ValueError on a missing source or a clash.
    ``lister`` lists an s3 prefix (only called for ``s3:`` sources)."""
    ext = extension(options.get("format"))
    items: list[Item] = []
    for raw in sources:
        prefix = s3_prefix(raw)
        path = Path(raw)
        if prefix is not None:
            if lister is None:
                raise ValueError(f"{raw}: s3 sources need a server to list them")
            items.extend(_s3_items(prefix, lister(prefix), options))
        elif path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
                relative = file.relative_to(path).as_posix()
                items.append(Item(key=f"{path.name}/{relative}", kind="file", source=str(file), options=options,
                                  result=f"{path.name}/{Path(relative).with_suffix('.' + ext).as_posix()}"))
        elif path.is_file() and path.suffix.lower() == ".csv":
            items.extend(_csv_items(path, options))
        elif path.is_file():
            items.append(Item(key=path.name, kind="file", source=str(path), options=options,
                              result=path.with_suffix("." + ext).name))
        else:
            raise ValueError(f"{raw}: no such file or folder")
    seen: dict[str, str] = {}
    unique = []
    for item in items:
        if seen.get(item.key) == item.source:
            continue  # the same item again (a file named twice, overlapping s3: prefixes): the first one counts
        for name in (item.key, item.result):
            if name in seen and seen[name] != item.source:
                raise ValueError(f"two items share the name {name!r} ({seen[name]} and {item.source}); "
                                 "rename one or import them separately")
            seen[name] = item.source
        unique.append(item)
    return unique
