"""Encode output pixels. Settings favour speed where the format is lossless.

PNG is written here rather than by Pillow or libpng: the rows get one fixed filter (Sub, a numpy
subtraction) and the stream is deflated by ISA-L (``isal``) at level 1. Pillow tries all five filters
on every row ("adaptive"), which costs more than the compression itself; libpng with Sub and zlib's
run-length strategy was half of Pillow's time, and ISA-L's deflate is 4-5x faster than zlib level 1
with a smaller file (4 MP cutout: 24 ms against 120 ms; benchmarks/QUALITY.md, section 14). Scanlines
longer than one segment (4 MiB: a 1 MP RGBA cutout) are deflated segment by segment on the CPU's cores,
the way pigz does it (``_deflate``): 4 MP 24 -> 14 ms on two cores.
Cutouts are long runs of transparent zeros plus photographic rows, where Sub already removes most of
the redundancy.
"""
from __future__ import annotations

import io
import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from isal import isal_zlib
from PIL import Image

CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp", "bmp": "image/bmp",
                 "tiff": "image/tiff", "gif": "image/gif"}
_PIL_FORMAT = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "bmp": "BMP", "tiff": "TIFF", "gif": "GIF"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type: greyscale, truecolour, with alpha
_PNG_SUB = 1
_SAVE_OPTIONS = {
    "jpg": {"quality": 92, "optimize": False},
    "webp": {"quality": 90, "method": 3, "alpha_quality": 100},
    "tiff": {"compression": "tiff_adobe_deflate"},
    "bmp": {},
    "gif": {},
}


def _chunk(kind: bytes, body: bytes) -> tuple[bytes, ...]:
    """A PNG chunk as its parts (length, type, body, CRC), joined once with the others: the IDAT body
    is megabytes and is copied only into the file."""
    return struct.pack(">I", len(body)), kind, body, struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)))


def _sub_filtered(pixels: np.ndarray) -> np.ndarray:
    """The PNG scanlines with filter type Sub: each byte minus the byte one pixel to its left (mod 256),
    behind the filter-type byte of its row."""
    height = pixels.shape[0]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    rows = pixels.reshape(height, -1)
    out = np.empty((height, rows.shape[1] + 1), np.uint8)
    out[:, 0] = _PNG_SUB
    out[:, 1:channels + 1] = rows[:, :channels]
    np.subtract(rows[:, channels:], rows[:, :-channels], out=out[:, channels + 1:])
    return out


_SEGMENT = 4 << 20  # bytes of filtered scanlines per deflate segment
_WINDOW = 32 << 10  # deflate's window: the bytes before a segment that prime its dictionary
_ZLIB_HEADER = b"\x78\x5e"  # deflate, 32 KiB window, "fast" level: what isal_zlib.compress(..., 1) writes


def _deflate_segment(data: memoryview, start: int) -> bytes:
    """Raw deflate of one segment, primed with the window before it; all but the last end on a byte
    boundary (a sync flush), so the segments concatenate into one stream."""
    end = min(len(data), start + _SEGMENT)
    primed = {"zdict": bytes(data[max(0, start - _WINDOW):start])} if start else {}
    compressor = isal_zlib.compressobj(1, isal_zlib.DEFLATED, -15, **primed)
    last = end == len(data)
    return compressor.compress(data[start:end]) + compressor.flush(
        isal_zlib.Z_FINISH if last else isal_zlib.Z_SYNC_FLUSH)


def _deflate(data: np.ndarray) -> bytes:
    """A zlib stream of ``data`` at ISA-L level 1, in segments of _SEGMENT bytes on up to one thread per
    core (ISA-L releases the GIL). The bytes do not depend on the number of cores."""
    view = memoryview(data).cast("B")
    if len(view) <= _SEGMENT:
        return isal_zlib.compress(view, 1)
    starts = range(0, len(view), _SEGMENT)
    with ThreadPoolExecutor(min(len(starts), os.cpu_count() or 1)) as pool:
        body = b"".join(pool.map(lambda start: _deflate_segment(view, start), starts))
    return b"".join((_ZLIB_HEADER, body, struct.pack(">I", isal_zlib.adler32(view))))


def _png(pixels: np.ndarray, dpi: int | None = None) -> bytes:
    """8-bit L, RGB or RGBA pixels as PNG; ``dpi`` as a pHYs chunk (pixels per metre, both axes)."""
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    header = struct.pack(">IIBBBBB", width, height, 8, _PNG_COLOUR_TYPES[channels], 0, 0, 0)
    parts = [_PNG_SIGNATURE, *_chunk(b"IHDR", header)]
    if dpi is not None:
        ppm = round(dpi / 0.0254)
        parts += _chunk(b"pHYs", struct.pack(">IIB", ppm, ppm, 1))
    parts += [*_chunk(b"IDAT", _deflate(_sub_filtered(np.ascontiguousarray(pixels)))),
              *_chunk(b"IEND", b"")]
    return b"".join(parts)


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
        return _png(pixels, dpi)
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
