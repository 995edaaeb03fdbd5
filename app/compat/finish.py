"""Vendor outputs that Clearcut's options do not carry, built from one RGBA pipeline result: remove.bg's zip
of ``color.jpg`` + ``alpha.png``, and compositing onto a semi-transparent colour or a background image
(remove.bg, Photoroom /v2/edit).
Sizes never change here, so the job's X-Width/X-Height/foreground metadata stays true."""
from __future__ import annotations

import io
import zipfile

import numpy as np
from PIL import Image, ImageOps

from clearcut.pipeline.encode import encode


def _rgba(cutout: bytes) -> Image.Image:
    return Image.open(io.BytesIO(cutout)).convert("RGBA")


def zip_color_alpha(cutout: bytes) -> bytes:
    """remove.bg's zip format: the foreground colours as JPEG and the matte as a grayscale PNG."""
    pixels = np.asarray(_rgba(cutout))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("color.jpg", encode(np.ascontiguousarray(pixels[:, :, :3]), "jpg"))
        archive.writestr("alpha.png", encode(np.ascontiguousarray(pixels[:, :, 3]), "png"))
    return buffer.getvalue()


def composite(cutout: bytes, fmt: str, *, color: tuple[int, int, int, int] | None = None,
              image: bytes | None = None, image_fit: str = "cover", dpi: int | None = None) -> bytes:
    """The cutout over an image (scaled to ``cover`` the canvas, or to ``contain`` it, centred) over a
    background colour (alpha allowed); either may be left out."""
    front = _rgba(cutout)
    back = Image.new("RGBA", front.size, color or (0, 0, 0, 0))
    if image is not None:
        picture = Image.open(io.BytesIO(image)).convert("RGBA")
        if image_fit == "cover":
            layer = ImageOps.fit(picture, front.size, Image.Resampling.LANCZOS)
        else:
            fitted = ImageOps.contain(picture, front.size, Image.Resampling.LANCZOS)
            layer = Image.new("RGBA", front.size, (0, 0, 0, 0))
            layer.paste(fitted, ((front.width - fitted.width) // 2, (front.height - fitted.height) // 2))
        back = Image.alpha_composite(back, layer)
    out = np.asarray(Image.alpha_composite(back, front))
    if fmt == "jpg":  # of the vendors' formats (png, jpg, webp) only jpg has no alpha
        out = out[:, :, :3]
    return encode(np.ascontiguousarray(out), fmt, dpi=dpi)


def is_opaque(data: bytes) -> bool:
    image = Image.open(io.BytesIO(data))
    return "A" not in image.getbands() or image.getchannel("A").getextrema()[0] == 255
