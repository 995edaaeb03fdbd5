"""Encode output pixels. Settings favour speed where the format is lossless.

PNG is written here rather than by Pillow or libpng: the rows get one fixed filter (Sub, a numpy
subtraction) and the stream is deflated by ISA-L (``isal``) at level 1. Pillow tries all five filters
on every row ("adaptive"), which costs more than the compression itself; libpng with Sub and zlib's
run-length strategy was half of Pillow's time, and ISA-L's deflate is 4-5x faster than zlib level 1
with a smaller file (4 MP cutout: 24 ms against 120 ms; benchmarks/QUALITY.md, section 14). Scanlines
longer than one segment (4 MiB: a 1 MP RGBA cutout) are filtered and deflated segment by segment on the
CPU's cores, the way pigz does it (``_zlib_stream``): 4 MP 24 -> 13-17 ms, 24 MP 140 -> 57-76 ms on two cores.
Cutouts are long runs of transparent zeros plus photographic rows, where Sub already removes most of
the redundancy.
"""
from __future__ import annotations

import io
import os
import struct
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


def _chunk(kind: bytes, *body: bytes) -> tuple[bytes, ...]:
    """A PNG chunk as its parts (length, type, body parts, CRC), joined once with the others: the IDAT
    body is megabytes in segments and is copied only into the file."""
    crc = isal_zlib.crc32(kind)
    for part in body:
        crc = isal_zlib.crc32(part, crc)
    return struct.pack(">I", sum(map(len, body))), kind, *body, struct.pack(">I", crc)


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


_SEGMENT = 4 << 20  # about this many bytes of filtered scanlines (whole rows) per deflate segment
_WINDOW = 32 << 10  # deflate's window: the bytes before a segment that prime its dictionary
_ZLIB_HEADER = b"\x78\x5e"  # deflate, 32 KiB window, "fast" level: what isal_zlib.compress(..., 1) writes
_ADLER_MOD = 65521


def _adler32_combine(first: int, second: int, second_length: int) -> int:
    """Adler-32 of two byte strings end to end, from their own checksums and the second's length: the
    first's running sum grows by its byte sum once per byte of the second (zlib's adler32_combine)."""
    low = ((first & 0xFFFF) + (second & 0xFFFF) - 1) % _ADLER_MOD
    high = ((first >> 16) + (second >> 16) + (second_length % _ADLER_MOD) * ((first & 0xFFFF) - 1)) % _ADLER_MOD
    return low | high << 16


def _deflate_rows(pixels: np.ndarray, top: int, bottom: int) -> tuple[bytes, int, int]:
    """Rows ``top:bottom`` Sub-filtered and raw-deflated, primed with the filtered bytes just above them;
    a segment that does not end the image ends on a byte boundary (a sync flush), so segments concatenate
    into one stream. Returns (deflated bytes, Adler-32 of the filtered bytes, their length)."""
    stride = pixels[0].size + 1
    above = min(top, -(-_WINDOW // stride))  # whole rows covering the window
    filtered = _sub_filtered(pixels[top - above:bottom]).reshape(-1)
    own, before = filtered[above * stride:], filtered[:above * stride][-_WINDOW:]
    compressor = isal_zlib.compressobj(1, isal_zlib.DEFLATED, -15, **({"zdict": before.tobytes()} if top else {}))
    flush = isal_zlib.Z_FINISH if bottom == pixels.shape[0] else isal_zlib.Z_SYNC_FLUSH
    return compressor.compress(own) + compressor.flush(flush), isal_zlib.adler32(own), own.size


def _zlib_stream(pixels: np.ndarray) -> list[bytes]:
    """The IDAT body's parts: one zlib stream of the Sub-filtered rows at ISA-L level 1. Larger images are
    filtered and deflated in segments of whole rows (~_SEGMENT bytes) on up to one thread per core (ISA-L
    and numpy release the GIL), so no full-size filtered copy is made; the bytes do not depend on the
    number of cores."""
    height = pixels.shape[0]
    rows = max(1, _SEGMENT // (pixels[0].size + 1))
    if height <= rows:
        return [isal_zlib.compress(_sub_filtered(pixels), 1)]
    tops = range(0, height, rows)
    with ThreadPoolExecutor(min(len(tops), os.cpu_count() or 1)) as pool:
        segments = list(pool.map(lambda top: _deflate_rows(pixels, top, min(height, top + rows)), tops))
    checksum = 1  # Adler-32 of nothing
    for _, adler, length in segments:
        checksum = _adler32_combine(checksum, adler, length)
    return [_ZLIB_HEADER, *(deflated for deflated, _, _ in segments), struct.pack(">I", checksum)]


def _png(pixels: np.ndarray, dpi: int | None = None) -> bytes:
    """8-bit L, RGB or RGBA pixels as PNG; ``dpi`` as a pHYs chunk (pixels per metre, both axes)."""
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    header = struct.pack(">IIBBBBB", width, height, 8, _PNG_COLOUR_TYPES[channels], 0, 0, 0)
    parts = [_PNG_SIGNATURE, *_chunk(b"IHDR", header)]
    if dpi is not None:
        ppm = round(dpi / 0.0254)
        parts += _chunk(b"pHYs", struct.pack(">IIB", ppm, ppm, 1))
    parts += [*_chunk(b"IDAT", *_zlib_stream(np.ascontiguousarray(pixels))), *_chunk(b"IEND")]
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
