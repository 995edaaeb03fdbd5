"""Decoding: every supported format, orientation, colour modes, and each refusal's own code."""
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from clearcut.errors import CorruptImage, ImageTooLarge, InvalidImage, UnsupportedFormat
from clearcut.pipeline.decode import decode
from tests.conftest import encode_image

MAX_MP = 50


def _rgb(w=40, h=30):
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("fmt,name", [("JPEG", "jpeg"), ("PNG", "png"), ("WEBP", "webp"), ("TIFF", "tiff"),
                                      ("BMP", "bmp"), ("GIF", "gif")])
def test_supported_formats_decode_to_rgb(fmt, name):
    decoded = decode(encode_image(_rgb(), fmt), max_megapixels=MAX_MP)
    assert decoded.rgb.shape == (30, 40, 3) and decoded.rgb.dtype == np.uint8
    assert decoded.source_format == name


def test_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (20, 10), c) for c in [(255, 0, 0), (0, 0, 255)]]
    data = encode_image(frames[0], "GIF", save_all=True, append_images=frames[1:])
    rgb = decode(data, max_megapixels=MAX_MP).rgb
    assert tuple(rgb[5, 10]) == (255, 0, 0)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (60, 20), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 10, 20))  # white strip at the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    decoded = decode(encode_image(image, "JPEG", exif=exif, quality=95), max_megapixels=MAX_MP)
    assert decoded.rgb.shape[:2] == (60, 20)
    assert decoded.rgb[2, 10].mean() > 200 and decoded.rgb[-3, 10].mean() < 50  # strip now on top


def test_cmyk_jpeg_is_converted_to_rgb():
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    rgb = decode(encode_image(cmyk, "JPEG", quality=95), max_megapixels=MAX_MP).rgb
    r, g, b = rgb[8, 8].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_16_bit_greyscale_is_scaled_not_clipped():
    ramp = (np.linspace(0, 65535, 64).astype(np.uint16)[None, :].repeat(4, 0))
    data = encode_image(Image.fromarray(ramp), "PNG")
    rgb = decode(data, max_megapixels=MAX_MP).rgb
    assert rgb[0, 0, 0] == 0 and rgb[0, -1, 0] == 255 and 120 < rgb[0, 32, 0] < 135


def test_16_bit_tiff():
    ramp = (np.linspace(0, 65535, 32).astype(np.uint16)[None, :].repeat(4, 0))
    rgb = decode(encode_image(Image.fromarray(ramp), "TIFF"), max_megapixels=MAX_MP).rgb
    assert rgb[0, -1, 0] == 255 and rgb[0, 0, 0] == 0


def test_palette_with_transparency_and_la_keep_alpha():
    p = Image.new("P", (10, 10), 0)
    p.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    p.paste(1, (0, 0, 5, 10))
    decoded = decode(encode_image(p, "PNG", transparency=1), max_megapixels=MAX_MP)
    assert decoded.alpha is not None and decoded.alpha[0, 0] == 0 and decoded.alpha[0, 9] == 255
    la = Image.merge("LA", [Image.new("L", (8, 8), 100), Image.new("L", (8, 8), 7)])
    decoded = decode(encode_image(la, "PNG"), max_megapixels=MAX_MP)
    assert decoded.alpha[0, 0] == 7 and tuple(decoded.rgb[0, 0]) == (100, 100, 100)


def test_opaque_rgba_reports_no_alpha():
    rgba = Image.new("RGBA", (8, 8), (1, 2, 3, 255))
    assert decode(encode_image(rgba, "PNG"), max_megapixels=MAX_MP).alpha is None


def test_not_an_image():
    with pytest.raises(InvalidImage) as err:
        decode(b"hello, this is text with a .jpg name", max_megapixels=MAX_MP)
    assert err.value.code == "invalid_image" and err.value.status == 422


def test_empty():
    with pytest.raises(InvalidImage) as err:
        decode(b"", max_megapixels=MAX_MP)
    assert err.value.code == "empty_image" and err.value.status == 400


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_files_are_corrupt(fmt):
    data = encode_image(_rgb(200, 200), fmt)
    with pytest.raises(CorruptImage) as err:
        decode(data[: len(data) // 2], max_megapixels=MAX_MP)
    assert err.value.code == "corrupt_image" and err.value.status == 422


def test_unsupported_format():
    with pytest.raises(UnsupportedFormat) as err:
        decode(encode_image(_rgb(16, 16), "ICO"), max_megapixels=MAX_MP)
    assert err.value.code == "unsupported_image_format" and err.value.status == 415


def _png_with_dimensions(width, height) -> bytes:
    data = bytearray(encode_image(Image.new("L", (1, 1)), "PNG"))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


@pytest.mark.parametrize("width,height", [(60000, 60000), (10000, 6000)])
def test_png_bomb_is_refused_before_decoding(width, height):
    bomb = _png_with_dimensions(width, height)
    assert len(bomb) < 100
    with pytest.raises(ImageTooLarge) as err:
        decode(bomb, max_megapixels=MAX_MP)
    assert err.value.status == 413 and err.value.code == "image_too_large"


def test_gif_bomb_is_refused():
    data = bytearray(encode_image(Image.new("P", (1, 1)), "GIF"))
    data[6:10] = struct.pack("<HH", 65535, 65535)  # logical screen size
    data[0x1a + 5: 0x1a + 9] = struct.pack("<HH", 65535, 65535) if data[0x1a] == 0x2C else data[0x1a + 5: 0x1a + 9]
    with pytest.raises((ImageTooLarge, CorruptImage)):
        decode(bytes(data), max_megapixels=MAX_MP)


def test_megapixel_limit_is_configurable():
    data = encode_image(_rgb(1000, 1000), "PNG")
    with pytest.raises(ImageTooLarge) as err:
        decode(data, max_megapixels=0.5)
    assert "1.0 MP" in err.value.message and err.value.details["max_megapixels"] == 0.5
