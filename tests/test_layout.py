"""Layout: canvas, padding, scale, position, shadows, marketplace presets and dpi, measured on the pixels
of real cutouts (u2netp) of a synthetic product: a red box on a plain grey backdrop."""
import io

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from clearcut.errors import InvalidOption
from clearcut.jobs.results import options_from_row, result_key
from clearcut.layouts import PRESETS
from clearcut.options import Margin, parse
from clearcut.pipeline import process
from tests.conftest import encode_image

SUBJECT = 26  # the subject's box: pixels at least 10 % opaque (compose.SUBJECT_ALPHA) in 8-bit alpha


@pytest.fixture(scope="module")
def product():
    image = Image.new("RGB", (640, 480), (220, 220, 220))
    ImageDraw.Draw(image).rectangle((100, 120, 259, 399), fill=(200, 30, 40))  # 160 x 280, off-centre
    return encode_image(image, "PNG")


def run(data, **options):
    options.setdefault("model", "u2netp")
    result = process(data, parse(options))
    return result, Image.open(io.BytesIO(result.data))


def box(alpha):
    ys, xs = np.nonzero(alpha >= SUBJECT)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def centre(b):
    left, top, w, h = b
    return left + w / 2, top + h / 2


# --- options -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,value,code", [
    ("canvas", "2000", "invalid_canvas"), ("canvas", "0x10", "invalid_canvas"), ("canvas", "20000x20", "invalid_canvas"),
    ("padding", "10em", "invalid_padding"), ("padding", "50%", "invalid_padding"), ("position", "top", "invalid_position"),
    ("position", "120% 0%", "invalid_position"), ("scale", "0", "invalid_scale"), ("scale", "150%", "invalid_scale"),
    ("shadow", "hard", "invalid_shadow"), ("shadow_opacity", "101", "invalid_shadow_opacity"),
    ("shadow_softness", "soft", "invalid_shadow_softness"), ("dpi", "72.5", "invalid_dpi"), ("dpi", "0", "invalid_dpi"),
    ("layout", "walmart", "invalid_layout"), ("layout", "quality", "invalid_layout"),
])
def test_invalid_layout_options_have_stable_codes(name, value, code):
    with pytest.raises(InvalidOption) as err:
        parse({name: value})
    assert err.value.code == code and err.value.status == 400 and name in err.value.message


def test_layout_options_parse_to_canonical_values():
    o = parse({"canvas": "2000X1500", "padding": "10px 20px", "position": "Centre", "scale": "85%", "shadow": "DROP",
               "shadow_opacity": "40", "dpi": "300"})
    assert (o.canvas, o.padding, o.position, o.scale, o.shadow, o.shadow_opacity, o.dpi) == (
        "2000x1500", Margin(10, 20, 10, 20), "center", 85.0, "drop", 40.0, 300)
    assert parse({"position": "25%"}).position == "25% 25%" and parse({"canvas": "square"}).canvas == "square"
    assert parse({"padding": "5%"}).padding == Margin(.05, .05, .05, .05, True)


def test_presets_fill_in_and_explicit_options_win():
    amazon = parse({"layout": "amazon"})
    assert (amazon.canvas, amazon.scale, amazon.bg_color, amazon.shadow) == ("2000x2000", 90.0, (255, 255, 255), "none")
    mine = parse({"layout": "amazon", "canvas": "1200x1200", "bg_color": "#fafafa"})
    assert (mine.canvas, mine.bg_color, mine.scale) == ("1200x1200", (250, 250, 250), 90.0)
    for preset in PRESETS.values():
        assert preset.rule and preset.source
        parsed = parse({"layout": preset.name})
        assert max(int(v) for v in parsed.canvas.split("x")) >= 1000


def test_layout_round_trips_through_a_job_row_and_keys_the_result():
    options = parse({"canvas": "800x600", "padding": "5%", "position": "10% 90%", "scale": "70", "shadow": "contact",
                     "shadow_opacity": "30", "dpi": "150", "layout": "etsy"})
    assert options_from_row(options.normalised()) == options
    plain = parse({})
    assert "canvas" not in plain.cutout_key() and "dpi" not in plain.cutout_key()  # unchanged keys without layout
    keys = {result_key("0" * 64, parse(v)) for v in ({}, {"canvas": "800x600"}, {"canvas": "800x600", "shadow": "drop"},
                                                     {"dpi": "300"}, {"scale": "50"}, {"layout": "amazon"})}
    assert len(keys) == 6


# --- geometry ----------------------------------------------------------------------------------------

def test_default_output_is_untouched(product):
    _, plain = run(product)
    _, same = run(product, shadow="none", canvas="original")
    assert np.array_equal(np.asarray(plain), np.asarray(same))


@pytest.mark.parametrize("canvas,size", [("1000x800", (1000, 800)), ("square", (640, 640)), ("300x500", (300, 500))])
def test_canvas_is_exact_and_the_subject_is_centred_and_fitted(product, canvas, size):
    result, out = run(product, canvas=canvas)
    assert out.size == size
    alpha = np.asarray(out)[:, :, 3]
    b = box(alpha)
    cx, cy = centre(b)
    assert abs(cx - size[0] / 2) <= 1 and abs(cy - size[1] / 2) <= 1
    fill = max(b[2] / size[0], b[3] / size[1])
    assert abs(fill - 1.0) <= 0.01
    meta = result.metadata["foreground_output"]
    assert (meta["left"], meta["top"], meta["width"], meta["height"]) == b


@pytest.mark.parametrize("scale", [50, 85])
def test_scale_sets_the_fill(product, scale):
    _, out = run(product, canvas="1000x1000", scale=str(scale))
    b = box(np.asarray(out)[:, :, 3])
    assert abs(max(b[2], b[3]) / 1000 - scale / 100) <= 0.01
    assert all(abs(c - 500) <= 1 for c in centre(b))


def test_padding_px_and_percent(product):
    _, out = run(product, canvas="800x800", padding="100px")
    b = box(np.asarray(out)[:, :, 3])
    assert abs(b[3] - 600) <= 6 and b[1] in (100, 101) and all(abs(c - 400) <= 1 for c in centre(b))
    _, out = run(product, canvas="800x800", padding="10% 0% 30% 0%")  # top 80, bottom 240: 480 px of height
    b = box(np.asarray(out)[:, :, 3])
    assert abs(b[3] - 480) <= 5 and abs(b[1] - 80) <= 1


def test_position_percent_and_original(product):
    _, out = run(product, canvas="1000x1000", scale="50", position="0% 100%")
    left, top, w, h = box(np.asarray(out)[:, :, 3])
    assert left <= 1 and abs(top + h - 1000) <= 1
    _, out = run(product, canvas="1280x960", position="original", scale="50")
    # the red box's centre was at (180, 260) of 640 x 480: the same place relative to the frame
    cx, cy = centre(box(np.asarray(out)[:, :, 3]))
    assert abs(cx - 360) <= 4 and abs(cy - 520) <= 4


# --- presets -----------------------------------------------------------------------------------------

def test_amazon_is_pure_white_outside_the_subject_and_fills_85_percent(product):
    result, out = run(product, layout="amazon", format="jpg")
    assert out.size == (2000, 2000) and out.mode == "RGB"
    _, rgba = run(product, layout="amazon", format="png")
    rgb = np.asarray(rgba)
    assert rgba.mode == "RGB"  # flattened on white
    mask = result.metadata["foreground_output"]
    left, top, w, h = mask["left"], mask["top"], mask["width"], mask["height"]
    assert max(w, h) / 2000 >= 0.85 and abs(max(w, h) / 2000 - 0.9) <= 0.01
    outside = np.ones(rgb.shape[:2], bool)
    outside[top:top + h, left:left + w] = False
    assert (rgb[outside] == 255).all()


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_gives_its_canvas_and_fill(product, name):
    preset = PRESETS[name].options
    result, out = run(product, layout=name, dpi="72")
    assert out.size == tuple(int(v) for v in preset["canvas"].split("x"))
    fg = result.metadata["foreground_output"]
    assert abs(max(fg["width"] / out.size[0], fg["height"] / out.size[1]) - preset["scale"] / 100) <= 0.01
    corner = np.asarray(out.convert("RGB"))[0, 0]
    assert tuple(corner) == preset["bg_color"]


# --- shadows -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["drop", "contact", "floating"])
def test_shadows_on_transparent_canvases_are_semi_transparent_and_where_they_belong(product, kind):
    result, out = run(product, canvas="800x800", scale="60", shadow=kind)
    rgba = np.asarray(out)
    _, bare = run(product, canvas="800x800", scale="60")
    bare_alpha = np.asarray(bare)[:, :, 3]
    left, top, w, h = box(bare_alpha)
    added = (rgba[:, :, 3].astype(int) - bare_alpha) > 0
    assert added.any()
    assert rgba[:, :, 3][added & (bare_alpha == 0)].max() < 255  # semi-transparent
    # black, away from the subject's own pixels: one pixel from them, resampling may leave the subject a
    # coverage below half a level that the bare cutout rounds to alpha 0 but the composite still shows
    near_subject = cv2.dilate((bare_alpha > 0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    shadow_only = added & ~near_subject
    assert shadow_only.sum() > 0.9 * (added & (bare_alpha == 0)).sum()
    assert (rgba[:, :, :3][shadow_only] == 0).all()  # black
    ys, xs = np.nonzero(added & (bare_alpha == 0))
    assert ys.mean() > top + h / 2  # below the subject's middle
    if kind != "drop":
        assert ys.min() >= top + h - 40 and abs(xs.mean() - (left + w / 2)) <= 2
        assert rgba[:top + h // 2, :, 3][bare_alpha[:top + h // 2] == 0].max() == 0  # nothing above the base
    else:
        assert xs.mean() > left + w / 2 - 1  # offset to the right
    assert result.metadata["foreground_output"] == dict(zip(("left", "top", "width", "height"), box(bare_alpha)))
    _, again = run(product, canvas="800x800", scale="60", shadow=kind)
    assert np.array_equal(np.asarray(again), rgba)  # deterministic


def test_shadow_darkens_a_flat_background_and_follows_opacity(product):
    def darkest(opacity):
        result, out = run(product, canvas="800x800", scale="60", shadow="contact", bg_color="white",
                          shadow_opacity=str(opacity))
        rgb = np.asarray(out).astype(int)
        fg = result.metadata["foreground_output"]
        left, bottom, w = fg["left"], fg["top"] + fg["height"], fg["width"]
        below = rgb[bottom + 2:bottom + 20, left + w // 4:left + 3 * w // 4]
        return below.min(), tuple(rgb[5, 5])
    faint, corner = darkest(20)
    strong, _ = darkest(80)
    assert corner == (255, 255, 255) and strong < faint < 255


# --- dpi ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["png", "jpg", "webp"])
def test_dpi_is_written_into_the_file(product, fmt):
    _, out = run(product, format=fmt, dpi="300", size="preview")
    if fmt == "webp":
        assert out.getexif()[282] == 300
    else:
        assert round(out.info["dpi"][0]) == 300


@pytest.mark.parametrize("kind", ["drop", "contact", "floating"])
def test_crop_grows_to_hold_the_shadow(product, kind):
    """crop=true without a canvas: the crop box is the canvas, and it keeps the shadow whole (only its
    faint tail reaches the border where the shadow extends the box) instead of clipping it at the subject."""
    _, bare = run(product, crop="true")
    result, shaded = run(product, crop="true", shadow=kind)
    alpha = np.asarray(shaded)[:, :, 3]
    assert shaded.size[1] > bare.size[1]  # room below the subject
    assert alpha[-1].max() <= 2 and (kind != "drop" or alpha[:, -1].max() <= 2)  # not cut below / on the right
    fg = result.metadata["foreground_output"]
    below = alpha[fg["top"] + fg["height"]:, fg["left"]:fg["left"] + fg["width"]]
    assert below.max() > 20  # the shadow is there, under the subject
    keys = {result_key("0" * 64, parse(v)) for v in ({"crop": "true"}, {"crop": "true", "shadow": kind})}
    assert len(keys) == 2 and "crop_holds_shadow" not in parse({"crop": "true"}).cutout_key()
