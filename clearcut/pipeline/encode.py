"""Encode output pixels. Settings favour speed where the format is lossless.

PNG goes through libpng (OpenCV) rather than Pillow, because libpng lets us pick the row filter:
Pillow tries all five filters on every row and keeps the best ("adaptive"), which costs more than
the compression itself at zlib level 1. One fixed filter (Sub) with zlib's run-length strategy
encodes a 4 MP cutout in about half the time at about the same size: cutouts are long runs of
transparent zeros plus photographic rows, where Sub already removes most of the redundancy
(measurements in benchmarks/QUALITY.md, "PNG encoding").
"""
from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
from PIL import Image

CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp", "bmp": "image/bmp",
                 "tiff": "image/tiff", "gif": "image/gif"}
_PIL_FORMAT = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "bmp": "BMP", "tiff": "TIFF", "gif": "GIF"}
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB,
               cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
_TO_BGR = {3: cv2.COLOR_RGB2BGR, 4: cv2.COLOR_RGBA2BGRA}
_SAVE_OPTIONS = {
    "jpg": {"quality": 92, "optimize": False},
    "webp": {"quality": 90, "method": 3, "alpha_quality": 100},
    "tiff": {"compression": "tiff_adobe_deflate"},
    "bmp": {},
    "gif": {},
}


def _png(pixels: np.ndarray) -> bytes:
    """8-bit L, RGB or RGBA pixels as PNG (libpng's channel order is BGR)."""
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, _TO_BGR[pixels.shape[2]])
    ok, buffer = cv2.imencode(".png", pixels, _PNG_PARAMS)
    if not ok:  # pragma: no cover - libpng fails only on allocation errors
        raise RuntimeError("PNG encoding failed")
    return buffer.tobytes()


def _with_phys(png: bytes, dpi: int) -> bytes:
    """The PNG with a pHYs chunk (pixels per metre, both axes) right after IHDR, where the spec wants it."""
    ppm = round(dpi / 0.0254)
    body = b"pHYs" + struct.pack(">IIB", ppm, ppm, 1)
    chunk = struct.pack(">I", 9) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    end_of_ihdr = 8 + 4 + 4 + 13 + 4  # signature, length, type, data, crc
    return png[:end_of_ihdr] + chunk + png[end_of_ihdr:]


def _dpi_options(fmt: str, dpi: int | None) -> dict:
    """Pillow save arguments that record ``dpi``: JFIF/TIFF/BMP resolution; EXIF resolution for WebP."""
    if dpi is None or fmt == "gif":  # GIF has no resolution field
        return {}
    if fmt == "webp":
        exif = Image.Exif()
        exif[282] = exif[283] = float(dpi)  # XResolution, YResolution
        exif[296] = 2  # ResolutionUnit: inch
        return {"exif": exif.tobytes()}
    return {"dpi": (dpi, dpi)}


def encode(pixels: np.ndarray, fmt: str, dpi: int | None = None) -> bytes:
    if fmt == "png":
        return _png(pixels) if dpi is None else _with_phys(_png(pixels), dpi)
    image = Image.fromarray(pixels)
    if fmt == "gif" and image.mode == "RGBA":
        # GIF has one transparent palette entry: quantise the colours and reserve index 255 for it.
        alpha = pixels[:, :, 3]
        image = Image.fromarray(pixels[:, :, :3]).quantize(255)
        image.paste(255, mask=Image.fromarray(np.where(alpha < 128, 255, 0).astype(np.uint8)))
        buffer = io.BytesIO()
        image.save(buffer, "GIF", transparency=255)
        return buffer.getvalue()
    buffer = io.BytesIO()
    image.save(buffer, _PIL_FORMAT[fmt], **_SAVE_OPTIONS[fmt], **_dpi_options(fmt, dpi))
    return buffer.getvalue()
