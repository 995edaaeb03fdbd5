"""Build the hostile-input corpus: image files that are broken, tricky or dangerous on purpose.

Nothing is committed but this script: ``build(dest)`` writes every file into ``dest`` (the tests use
a temporary directory) and returns the cases with the answer Clearcut must give. Run it by hand to
look at the files: ``python tests/corpus/build.py /tmp/corpus``.

Each case says what ``POST /v2`` (multipart ``image_file``) must answer:

* ``status``/``code``: a refusal with that HTTP status and error code, or
* ``status`` 200 with ``size`` (width, height) of the cutout: a legal but unusual image that must be
  processed correctly (CMYK, 16-bit, animations, EXIF rotation, ICC profiles, 1×1, 1×60000).
"""
from __future__ import annotations

import io
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms


@dataclass(frozen=True)
class Case:
    name: str          # file name in the corpus (its extension is what a careless client would claim)
    status: int
    code: str | None = None           # expected error code (None for 200)
    size: tuple[int, int] | None = None   # expected output (width, height) for 200
    note: str = ""

    def path(self, root: Path) -> Path:
        return root / self.name


def _scene(width: int = 64, height: int = 48) -> Image.Image:
    """A red disc on a soft gradient: something the model can cut out."""
    yy, xx = np.mgrid[0:height, 0:width]
    bg = np.dstack([200 + 30 * xx / width, 210 + 20 * yy / height, 230 * np.ones_like(xx)]).astype(np.uint8)
    disc = (xx - width / 2) ** 2 + (yy - height / 2) ** 2 <= (min(width, height) / 3) ** 2
    bg[disc] = (200, 30, 40)
    return Image.fromarray(bg)


def _encode(image: Image.Image, fmt: str, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A few hundred bytes that claim ``width`` x ``height`` pixels: one zlib stream of zero rows, cut short."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)   # 8-bit greyscale
    rows = zlib.compressobj(9)
    data = rows.compress(b"\x00" * (width + 1) * 64) + rows.flush()
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def gif_bomb(width: int = 65_535, height: int = 65_535) -> bytes:
    """A valid 1x1 GIF whose logical screen and frame claim 65535 x 65535 (4.3 gigapixels)."""
    data = bytearray(_encode(Image.new("P", (1, 1), 0), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)                 # logical screen
    frame = data.index(b"\x2c")                                    # image descriptor
    data[frame + 5:frame + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def _exif_rotated() -> bytes:
    image = _scene(80, 40)
    exif = Image.Exif()
    exif[0x0112] = 6   # display rotated 90° clockwise: the cutout must be 40 x 80
    return _encode(image, "JPEG", exif=exif, quality=92)


def _icc_jpeg() -> bytes:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return _encode(_scene(), "JPEG", icc_profile=profile, quality=92)


def _cmyk_jpeg() -> bytes:
    return _encode(_scene().convert("CMYK"), "JPEG", quality=92)


def _cmyk_tiff() -> bytes:
    return _encode(_scene().convert("CMYK"), "TIFF")


def _tiff_16bit() -> bytes:
    ramp = (np.linspace(0, 65535, 64, dtype=np.float64)[None, :] * np.ones((48, 1))).astype(np.uint16)
    return _encode(Image.fromarray(ramp), "TIFF")


def _animated(fmt: str) -> bytes:
    frames = [_scene(), _scene().transpose(Image.Transpose.FLIP_LEFT_RIGHT).convert("RGB")]
    extra = {"lossless": True} if fmt == "WEBP" else {}
    return _encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **extra)


def _polyglot_zip_png() -> bytes:
    """A PNG with a ZIP archive appended: a valid image (processed; the tail is ignored, never unpacked)."""
    archive = io.BytesIO()
    import zipfile

    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("payload.sh", "#!/bin/sh\necho pwned\n")
    return _encode(_scene(), "PNG") + archive.getvalue()


def _polyglot_html_gif() -> bytes:
    """GIF magic followed by HTML/JS (the classic GIFAR/GIF-JS polyglot): not a decodable image."""
    return b"GIF89a/*\x00\x00*/=1;<script>alert(document.domain)</script>" + b"\x00" * 32


def _ico() -> bytes:
    return _encode(_scene(32, 32), "ICO")


def _psd_like() -> bytes:
    """Photoshop's header: a format Pillow recognises but Clearcut does not accept."""
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 16, 16, 8, 3)
    return header + struct.pack(">I", 0) * 3 + struct.pack(">H", 0) + b"\x00" * (16 * 16 * 3)


def _huge_dims_header_only_jpeg() -> bytes:
    """A JPEG whose SOF claims 60000 x 60000: refused from the header (3600 MP > the limit)."""
    data = bytearray(_encode(_scene(), "JPEG", quality=80))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)
    return bytes(data)


def _noisy(width: int = 192, height: int = 144) -> Image.Image:
    """Texture, so that half a file is still past its header (the pixels, not the header, are cut)."""
    rng = np.random.default_rng(7)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def cases() -> list[tuple[Case, bytes]]:
    scene, noisy = _scene(), _noisy()
    png, webp = (_encode(scene, fmt) for fmt in ("PNG", "WEBP"))
    big_jpeg, big_png, big_webp = (_encode(noisy, fmt, **q) for fmt, q in
                                   (("JPEG", {"quality": 90}), ("PNG", {}), ("WEBP", {"quality": 90})))
    return [
        # --- refused at the API, before any job exists
        (Case("zero-byte.png", 400, "missing_image", note="empty upload"), b""),
        (Case("text.jpg", 422, "invalid_image", note="text with an image extension"), b"hello, I am not a JPEG\n" * 4),
        (Case("html.png", 422, "invalid_image", note="HTML with an image extension"),
         b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>"),
        (Case("png-magic-only.png", 422, "invalid_image", note="PNG signature and nothing else"), png[:8]),
        (Case("truncated-header.png", 422, "corrupt_image", note="PNG cut inside IHDR"), png[:20]),
        (Case("truncated-header.webp", 422, "invalid_image", note="WebP cut inside its header"), webp[:14]),
        (Case("polyglot-gif-js.gif", 422, "invalid_image", note="GIF magic then JavaScript"), _polyglot_html_gif()),
        (Case("bomb.png", 413, "image_too_large", note="100000x100000 PNG in a few hundred bytes"), png_bomb()),
        (Case("bomb.gif", 413, "image_too_large", note="65535x65535 GIF in a few dozen bytes"), gif_bomb()),
        (Case("bomb-sof.jpg", 413, "image_too_large", note="JPEG header claiming 60000x60000"),
         _huge_dims_header_only_jpeg()),
        (Case("icon.ico", 415, "unsupported_image_format", note="ICO (recognised, not accepted)"), _ico()),
        (Case("layers.psd", 415, "unsupported_image_format", note="PSD header"), _psd_like()),
        # --- header fine, pixels broken: a failed job with corrupt_image (recorded, not charged)
        (Case("truncated.jpg", 422, "corrupt_image", note="JPEG cut in half"), big_jpeg[: len(big_jpeg) // 2]),
        (Case("truncated.png", 422, "corrupt_image", note="PNG cut in half"), big_png[: len(big_png) // 2]),
        (Case("truncated.webp", 422, "corrupt_image", note="WebP cut in half"), big_webp[: len(big_webp) // 2]),
        # --- legal but unusual: processed, with the right output size
        (Case("one-pixel.png", 200, size=(1, 1), note="1x1"), _encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG")),
        (Case("needle.png", 200, size=(1, 60000), note="1x60000"),
         _encode(Image.new("RGB", (1, 60000), (120, 30, 30)), "PNG")),
        (Case("cmyk.jpg", 200, size=(64, 48), note="CMYK JPEG"), _cmyk_jpeg()),
        (Case("cmyk.tiff", 200, size=(64, 48), note="CMYK TIFF"), _cmyk_tiff()),
        (Case("grey16.tiff", 200, size=(64, 48), note="16-bit greyscale TIFF"), _tiff_16bit()),
        (Case("animated.gif", 200, size=(64, 48), note="animated GIF (first frame)"), _animated("GIF")),
        (Case("animated.webp", 200, size=(64, 48), note="animated WebP (first frame)"), _animated("WEBP")),
        (Case("exif-rotated.jpg", 200, size=(40, 80), note="EXIF orientation 6"), _exif_rotated()),
        (Case("icc.jpg", 200, size=(64, 48), note="embedded ICC profile"), _icc_jpeg()),
        (Case("polyglot-png-zip.png", 200, size=(64, 48), note="PNG with a ZIP appended"), _polyglot_zip_png()),
    ]


def build(dest: Path | str) -> list[Case]:
    """Write every corpus file into ``dest``; return the cases."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for case, data in cases():
        case.path(dest).write_bytes(data)
        out.append(case)
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "corpus-out")
    for built in build(target):
        size = built.path(target).stat().st_size
        print(f"{built.name:24} {size:>8} B  -> {built.status} {built.code or built.size}  {built.note}")
