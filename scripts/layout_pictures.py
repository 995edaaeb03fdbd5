"""The pictures of docs/layout.md: one shared product photo laid out with every marketplace preset and
every shadow, each shown as a small JPEG, plus the bare cutout for comparison.

    .venv/bin/python scripts/layout_pictures.py [--photo PATH] [--out docs/img/layout] [--side 360]

The layouts run at full size through the same pipeline as the API (`clearcut.pipeline.process`, default
model preset); only the saved preview is shrunk. Deterministic: the same photo gives the same files.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT.parent / "shared" / "eval" / "product" / "images" / "dis_te1_eyeglasses_47958244331.jpg"
SHADOW_CANVAS = {"canvas": "1600x1600", "scale": "80", "bg_color": "white"}


def cases() -> dict[str, dict]:
    from clearcut.layouts import PRESETS

    return {
        "cutout": {"bg_color": "#e8e8e8"},  # the photo's own frame, on light grey so the cutout shows
        **{f"preset-{name}": {"layout": name} for name in PRESETS},
        **{f"shadow-{shadow}": {**SHADOW_CANVAS, "shadow": shadow} for shadow in ("drop", "contact", "floating")},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", type=Path, default=PHOTO)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "layout")
    parser.add_argument("--side", type=int, default=360, help="longer side of each saved preview, px")
    args = parser.parse_args()
    if not args.photo.is_file():
        print(f"no photo at {args.photo} (pass --photo PATH)", file=sys.stderr)
        return 2
    from clearcut.options import parse
    from clearcut.pipeline import process

    data = args.photo.read_bytes()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, fields in cases().items():
        result = process(data, parse({"format": "png", **fields}))
        image = Image.open(io.BytesIO(result.data)).convert("RGB")
        image.thumbnail((args.side, args.side), Image.Resampling.LANCZOS)
        path = args.out / f"{name}.jpg"
        image.save(path, "JPEG", quality=85, optimize=True)
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: "
              f"{result.metadata['width']}x{result.metadata['height']} laid out, preview {image.width}x{image.height}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
