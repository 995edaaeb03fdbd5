"""remove.bg outputs that Clearcut's options do not carry, built from one RGBA pipeline result: a zip of
``color.jpg`` + ``alpha.png``, and compositing onto a semi-transparent colour or a background image.
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
              image: bytes | None = None) -> bytes:
    """The cutout over a background colour (alpha allowed) or an image scaled to cover and centred."""
    front = _rgba(cutout)
    if image is not None:
        back = ImageOps.fit(Image.open(io.BytesIO(image)).convert("RGBA"), front.size, Image.Resampling.LANCZOS)
    else:
        back = Image.new("RGBA", front.size, color)
    out = np.asarray(Image.alpha_composite(back, front))
    if fmt == "jpg":  # remove.bg's formats are png, jpg and webp; only jpg has no alpha
        out = out[:, :, :3]
    return encode(np.ascontiguousarray(out), fmt)


def is_opaque(data: bytes) -> bool:
    image = Image.open(io.BytesIO(data))
    return "A" not in image.getbands() or image.getchannel("A").getextrema()[0] == 255
