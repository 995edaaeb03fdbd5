"""Pixels of the steps around the networks: their normalised input, flattening onto a colour, the PNG writer."""
import io
import sys
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

import clearcut.pipeline  # noqa: F401 (loads the step modules)
from clearcut.models.registry import NORMALISATIONS, spec
from clearcut.models.session import preprocess
from clearcut.pipeline import compose, refine

encode = sys.modules["clearcut.pipeline.encode"].encode  # the package re-exports the function under the module's name


def noise(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("shape", [(37, 53), (37, 53, 3), (37, 53, 4), (1, 1, 4), (5, 1, 3), (1, 9)])
def test_png_round_trips_exactly_through_pillow_and_opencv(shape):
    pixels = noise(shape)
    pixels.reshape(-1)[: pixels.size // 3] = 0  # a transparent run, as cutouts have
    data = encode(pixels, "png")
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    decoded = np.asarray(Image.open(io.BytesIO(data)))
    assert decoded.shape == pixels.shape and np.array_equal(decoded, pixels)
    opencv = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels.ndim == 3:
        opencv = cv2.cvtColor(opencv, cv2.COLOR_BGR2RGB if shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
    assert np.array_equal(opencv.reshape(pixels.shape), pixels)


@pytest.mark.parametrize("shape", [(2200, 1100, 4), (2001, 1499, 3), (4, 1_500_000, 3)])
def test_png_deflated_in_segments_is_one_valid_stream_whatever_the_core_count(monkeypatch, shape):
    """Several 4 MiB segments of whole rows (the last one short; or rows longer than a segment)."""
    module = sys.modules["clearcut.pipeline.encode"]
    cutout = np.zeros(shape, np.uint8)
    h, w = shape[:2]
    cutout[h // 8:h - h // 8, w // 10:w - w // 10] = noise((h - 2 * (h // 8), w - 2 * (w // 10), shape[2]), 3) // 8 + 100
    assert module._sub_filtered(cutout).nbytes > 2 * module._SEGMENT
    data = encode(cutout, "png")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), cutout)
    stream = b"".join(module._zlib_stream(cutout))
    assert len(module._zlib_stream(cutout)) > 4  # header, segments, checksum
    assert zlib.decompress(stream) == module._sub_filtered(cutout).tobytes()  # checks the Adler-32 too
    monkeypatch.setattr(module.os, "cpu_count", lambda: 1)
    assert encode(cutout, "png") == data


def test_png_records_the_dpi_and_compresses_a_cutout():
    cutout = np.zeros((600, 800, 4), np.uint8)
    cutout[100:500, 200:600] = noise((400, 400, 4), seed=1) // 4 + 128
    data = encode(cutout, "png", dpi=300)
    image = Image.open(io.BytesIO(data))
    assert image.info["dpi"] == pytest.approx((300, 300), abs=0.01)
    assert np.array_equal(np.asarray(image), cutout)
    assert len(data) < cutout.nbytes / 3


def test_flattening_blends_only_the_soft_pixels_and_keeps_the_rest_exact():
    h, w = 64, 96
    fg = noise((h, w, 3), seed=2)
    alpha = np.zeros((h, w), np.float32)
    alpha[10:50, 20:70] = 1.0
    alpha[30:40, :] = np.linspace(0, 1, w, dtype=np.float32)  # a ramp through every level
    colour = (12, 200, 40)
    out = compose.flatten(fg, alpha, colour)
    expected = fg * alpha[..., None] + np.asarray(colour, np.float32) * (1 - alpha[..., None])
    assert np.abs(out.astype(np.float32) - expected).max() <= 0.5 + 1e-3
    assert (out[alpha == 0] == colour).all()
    assert np.array_equal(out[alpha == 1], fg[alpha == 1])


def test_solid_and_soft_pixels():
    assert (compose.solid(3, 5, (1, 2, 3)) == (1, 2, 3)).all()
    alpha = np.array([[0, 1e-7, 0.5], [0.9999999, 1, 2]], np.float32)
    assert refine.soft_pixels(alpha).tolist() == [1, 2, 3]
    assert refine.soft_pixels(np.ones((4, 4), np.float32)).size == 0


@pytest.mark.parametrize("name", ["isnet-general", "u2net"])
def test_network_input_normalisation_matches_the_interleaved_formula(name):
    """The plane-by-plane preprocessing gives the same float32 values, bit for bit, as normalising the
    H x W x 3 array and transposing it."""
    model = spec(name)
    square = noise((64, 64, 3), seed=3) // 2  # max < 255: the "max" scaling differs from /255
    norm = NORMALISATIONS[model.normalisation]
    x = square.astype(np.float32)
    x /= max(float(x.max()), 1.0) if norm["scale"] == "max" else 255.0
    x -= np.asarray(norm["mean"], np.float32)
    x /= np.asarray(norm["std"], np.float32)
    assert np.array_equal(preprocess(model, square), x.transpose(2, 0, 1)[None])


def test_the_networks_square_from_the_decoded_picture_is_the_square_from_the_array():
    from clearcut.models.session import make_square
    from clearcut.pipeline.decode import decode

    photo = cv2.GaussianBlur(noise((613, 947, 3), seed=4), (0, 0), 3)
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "JPEG", quality=90)
    decoded = decode(buffer.getvalue(), max_megapixels=50)
    assert decoded.picture is not None and decoded.picture.size == (947, 613)
    for size in (320, 1024):
        assert np.array_equal(make_square(decoded.rgb, size, decoded.picture), make_square(decoded.rgb.copy(), size))
    rgba = io.BytesIO()
    Image.fromarray(noise((20, 30, 4), seed=5)).save(rgba, "PNG")
    assert decode(rgba.getvalue(), max_megapixels=50).picture is None  # its rgb is a conversion, not the image
    assert np.array_equal(make_square(decoded.rgb[:500], 320, decoded.picture),  # a picture of other pixels is ignored
                          make_square(decoded.rgb[:500].copy(), 320))


def test_foreground_colours_do_not_depend_on_how_the_band_is_split(monkeypatch):
    monkeypatch.setattr(refine, "_CHUNK", 30_000)
    h, w = 900, 1200
    rgb = cv2.GaussianBlur(noise((h, w, 3), seed=6), (0, 0), 2)
    yy, xx = np.mgrid[0:h, 0:w]
    distance = np.hypot(yy - h / 2, xx - w / 2) - 300
    alpha = np.clip(0.5 - distance / 160, 0, 1).astype(np.float32)  # a 160-px ramp around a disc
    soft = refine.soft_pixels(alpha)
    assert soft.size > 4 * refine._CHUNK
    monkeypatch.setattr(refine.os, "cpu_count", lambda: 1)
    assert len(refine._split(soft.size, refine._CHUNK)) == 1
    whole = refine.estimate_foreground(rgb, alpha, soft)
    monkeypatch.setattr(refine.os, "cpu_count", lambda: 4)
    assert len(refine._split(soft.size, refine._CHUNK)) == 4
    assert np.array_equal(refine.estimate_foreground(rgb, alpha, soft), whole)
    assert not np.array_equal(whole, rgb)  # the band's colours were re-estimated


def test_guided_upsampling_in_row_bands_is_the_fast_guided_filter(monkeypatch):
    monkeypatch.setattr(refine, "_DENSE_CHUNK", 200_000)
    rng = np.random.default_rng(7)
    photo = cv2.GaussianBlur(noise((1201, 1603, 3), seed=7), (0, 0), 1.5)
    guide = cv2.resize(photo, (534, 400), interpolation=cv2.INTER_AREA)
    matte = cv2.GaussianBlur((rng.random((400, 534)) > 0.5).astype(np.float32), (0, 0), 4)
    a, b = refine._coefficients_grey(matte, guide, 1, 1e-4)
    expected = cv2.resize(a[:, :, 0], (1603, 1201)) * refine._grey(photo) + cv2.resize(b, (1603, 1201))
    expected = np.clip(expected, 0, 1)
    for cores in (1, 3):
        monkeypatch.setattr(refine.os, "cpu_count", lambda: cores)
        assert len(refine._split(1201, refine._DENSE_CHUNK // 1603)) == cores
        assert np.array_equal(refine.guided_upsample(matte, guide, photo), expected)


def test_guided_upsampling_keeps_a_structure_the_photo_shows_no_brightness_contrast_for():
    """A 1-grid-pixel structure of the matte (0.8) on a 4x larger photo (8 MP) whose brightness does not
    change across it (red on green of the same grey level): the photo cannot say where its edges are, so
    the matte keeps the network's value there instead of being box-filtered away (the fast guided
    filter's own offset left 0.8 / 9 x 3 ~ 0.27 of it: below 0.5, the structure lost)."""
    h, w = 600, 800
    photo = np.zeros((4 * h, 4 * w, 3), np.uint8)
    photo[:] = (0, 128, 0)
    grey = cv2.cvtColor(photo[:1, :1], cv2.COLOR_RGB2GRAY)[0, 0]
    red = next(r for r in range(256) if cv2.cvtColor(np.uint8([[[r, 0, 0]]]), cv2.COLOR_RGB2GRAY)[0, 0] >= grey)
    photo[:, 4 * 400:4 * 401] = (red, 0, 0)  # the structure, one grid column wide
    guide = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA)
    matte = np.zeros((h, w), np.float32)
    matte[:, 400] = 0.8
    alpha = refine.guided_upsample(matte, guide, photo)
    bilinear = cv2.resize(matte, (4 * w, 4 * h), interpolation=cv2.INTER_LINEAR)
    assert np.abs(alpha - bilinear).max() < 0.02  # at most the 1-level difference of the two greys
    assert alpha[:, 4 * 400 + 1:4 * 400 + 3].min() > 0.65  # bilinear's own 0.7 at the grid pixel's centre
    # With brightness contrast the photo's edge is followed: a bright 2-px line inside one dark grid pixel.
    photo[:] = 40
    photo[:, 4 * 400 + 1:4 * 400 + 3] = 240
    guide = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA)
    matte[:, 400] = cv2.cvtColor(guide, cv2.COLOR_RGB2GRAY)[0, 400] / 255.0 * 0.5  # the diluted structure
    alpha = refine.guided_upsample(matte, guide, photo)
    assert alpha[:, 4 * 400 + 1:4 * 400 + 3].min() > 0.5 > alpha[:, 4 * 400 + 5:].max()
