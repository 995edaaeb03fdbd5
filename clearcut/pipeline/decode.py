"""Decode untrusted image bytes into an upright RGB array plus the input's own alpha, if any.

Dimensions are read from the header and checked against CLEARCUT_MAX_MEGAPIXELS before any pixel
buffer is allocated, so decompression bombs are refused cheaply.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from clearcut.errors import CorruptImage, ImageTooLarge, InvalidImage, UnsupportedFormat

SUPPORTED = {"JPEG": "jpeg", "PNG": "png", "WEBP": "webp", "TIFF": "tiff", "BMP": "bmp", "GIF": "gif",
             "MPO": "jpeg"}  # MPO: multi-picture JPEGs from phones; the first frame is a plain JPEG


@dataclass
class Decoded:
    rgb: np.ndarray            # H x W x 3 uint8, orientation applied
    alpha: np.ndarray | None   # H x W uint8 when the input had transparency
    source_format: str
    # The decoded Pillow image when its pixels are exactly ``rgb`` (an RGB input): the networks' squares
    # are resampled from it instead of copying ``rgb`` back into Pillow's layout (24 MP: 27 ms). The
    # pipeline drops it once the squares are made.
    picture: Image.Image | None = field(default=None, repr=False)

    @property
    def width(self) -> int:
        return self.rgb.shape[1]

    @property
    def height(self) -> int:
        return self.rgb.shape[0]


def _open(data: bytes) -> Image.Image:
    if not data:
        raise InvalidImage("the image is empty (0 bytes)", code="empty_image", status=400)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise InvalidImage("the data is not an image in a supported format (JPEG, PNG, WebP, TIFF, BMP, GIF)",
                           code="invalid_image")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge("the image's dimensions are too large to decode", code="image_too_large")
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImage(f"the image header is truncated or corrupt ({exc}); re-export or re-upload the file")


def oriented_size(data: bytes) -> tuple[int, int]:
    """(width, height) as decoded, EXIF orientation applied, from the header alone (no pixels)."""
    image = _open(data)
    width, height = image.size
    if image.getexif().get(0x0112) in (5, 6, 7, 8):  # the orientations that turn the image a quarter
        return height, width
    return width, height


def decode(data: bytes, *, max_megapixels: float) -> Decoded:
    image = _open(data)
    if image.format not in SUPPORTED:
        raise UnsupportedFormat(
            f"{image.format} images are not supported; send JPEG, PNG, WebP, TIFF, BMP or GIF",
            format=image.format)
    source_format = SUPPORTED[image.format]
    width, height = image.size
    if width < 1 or height < 1:
        raise CorruptImage("the image has no pixels")
    megapixels = width * height / 1e6
    if megapixels > max_megapixels:
        raise ImageTooLarge(
            f"the image is {width}x{height} ({megapixels:.1f} MP); the limit is {max_megapixels:g} MP — "
            "downscale it before sending", width=width, height=height, max_megapixels=max_megapixels)
    try:
        image.seek(0)  # first frame of animations
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # without orientation the default copies 4 MP for nothing
        rgb, alpha = _to_rgb_alpha(image)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImage(f"the {source_format} data is truncated or corrupt ({exc}); "
                           "re-export or re-upload the file")
    return Decoded(rgb, alpha, source_format, image if image.mode == "RGB" else None)


def _to_rgb_alpha(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Normalise every mode (CMYK, 16-bit, palette, LA, RGBA, 1-bit…) to 8-bit RGB and alpha."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit greyscale: scale to 8 bits rather than clip (Pillow's convert("L") clips).
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or array.max() > 255 else 255.0
        grey = np.clip(array * (255.0 / peak) + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2), None
    if mode == "F":
        grey = np.clip(np.asarray(image) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2), None
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info) \
        or (mode in ("RGB", "L") and "transparency" in image.info)
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"))
        alpha = rgba[:, :, 3]
        if alpha.min() == 255:
            return np.ascontiguousarray(rgba[:, :, :3]), None
        return np.ascontiguousarray(rgba[:, :, :3]), np.ascontiguousarray(alpha)
    return np.asarray(image if mode == "RGB" else image.convert("RGB")), None
