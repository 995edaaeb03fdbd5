"""Placement options (margin, fit, reference, canvas=subject, max_width/max_height, snap_edges,
remove_background), measured on the pixels of real cutouts (u2netp) of synthetic products: a red box on
a plain grey backdrop, whole or cut off by the bottom of the photo."""
import numpy as np
import pytest
from PIL import Image, ImageDraw

from clearcut.errors import InvalidOption
from clearcut.jobs.results import options_from_row, result_key
from clearcut.options import Margin, parse
from clearcut.pipeline.layout import cut_sides
from tests.conftest import encode_image
from tests.test_layout import box, centre, run


def _photo(rectangle):
    image = Image.new("RGB", (640, 480), (220, 220, 220))
    ImageDraw.Draw(image).rectangle(rectangle, fill=(200, 30, 40))
    return encode_image(image, "PNG")


@pytest.fixture(scope="module")
def product():
    return _photo((100, 120, 259, 399))  # 160 x 280, whole


@pytest.fixture(scope="module")
def cut_product():
    return _photo((200, 200, 439, 479))  # 240 x 280, cut off by the bottom edge


def alpha_box(out):
    return box(np.asarray(out)[:, :, 3])


# --- options -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,value,code", [
    ("margin", "50%", "invalid_margin"), ("margin", "3em", "invalid_margin"), ("fit", "stretch", "invalid_fit"),
    ("snap_edges", "left", "invalid_snap_edges"), ("reference", "frame", "invalid_reference"),
    ("max_width", "0", "invalid_max_width"), ("max_height", "12.5", "invalid_max_height"),
    ("remove_background", "maybe", "invalid_boolean"), ("canvas", "subjects", "invalid_canvas"),
])
def test_invalid_placement_options_have_stable_codes(name, value, code):
    with pytest.raises(InvalidOption) as err:
        parse({name: value})
    assert err.value.code == code and err.value.status == 400 and name in err.value.message


def test_placement_options_round_trip_and_key_results_only_when_set():
    options = parse({"canvas": "subject", "margin": "4%", "padding": "49%", "fit": "COVER", "snap_edges": "vertical",
                     "reference": "image", "max_width": "900", "max_height": "700", "remove_background": "false"})
    assert (options.margin, options.fit, options.snap_edges, options.reference, options.max_width,
            options.max_height, options.remove_background) == (
        Margin(.04, .04, .04, .04, True), "cover", "vertical", "image", 900, 700, False)
    assert options_from_row(options.normalised()) == options
    plain = parse({}).cutout_key()
    assert not {"margin", "fit", "snap_edges", "reference", "max_width", "remove_background"} & set(plain)
    keys = {result_key("0" * 64, parse(v)) for v in ({}, {"margin": "5%"}, {"fit": "cover"}, {"reference": "image"},
                                                     {"snap_edges": "all"}, {"max_width": "100"},
                                                     {"remove_background": "false"})}
    assert len(keys) == 7


def test_cut_sides_are_the_frame_sides_the_subject_reaches():
    assert cut_sides((0, 10, 50, 90), 100, 100) == {"left", "bottom"}
    assert cut_sides((5, 5, 90, 90), 100, 100) == set()
    assert cut_sides(None, 100, 100) == set()


# --- margin, fit, reference --------------------------------------------------------------------------

def test_margin_is_outside_the_padding_and_padding_percent_is_of_what_is_inside(product):
    _, out = run(product, canvas="1000x1000", margin="10%", padding="10%")  # 100 px, then 10 % of 800 px
    b = alpha_box(out)
    assert out.size == (1000, 1000) and abs(b[3] - 640) <= 6 and abs(b[1] - 180) <= 1
    assert all(abs(c - 500) <= 1 for c in centre(b))
    _, out = run(product, canvas="1000x1000", margin="50px", padding="10%")  # 50 px, then 10 % of 900 px
    b = alpha_box(out)
    assert abs(b[3] - 720) <= 7 and abs(b[1] - 140) <= 1


def test_fit_cover_fills_the_padded_area(product):
    _, out = run(product, canvas="1000x1000", fit="cover")
    alpha = np.asarray(out)[:, :, 3]
    left, top, w, h = box(alpha)
    # the subject's box is widened to the canvas (edge to edge, down to its faint outer columns), its height clipped
    assert (top, h) == (0, 1000) and (alpha[:, 0] > 0).all() and (alpha[:, -1] > 0).all()
    assert alpha[:, 100:900].min() >= 200
    _, fitted = run(product, canvas="1000x1000")
    assert np.asarray(fitted)[:, :100, 3].max() == 0  # fit=contain (the default) leaves the sides empty


def test_reference_image_keeps_the_subject_where_it_was_in_the_frame(product):
    _, bare = run(product)
    left, top, w, h = alpha_box(bare)
    _, out = run(product, canvas="1280x960", reference="image")  # the frame fits exactly: twice the size
    b = alpha_box(out)
    assert abs(b[0] - 2 * left) <= 2 and abs(b[1] - 2 * top) <= 2 and abs(b[2] - 2 * w) <= 3
    _, out = run(product, margin="10%", reference="image")  # 640 x 480 canvas, the frame at 80 % in the middle
    b = alpha_box(out)
    assert abs(b[0] - (64 + 0.8 * left)) <= 2 and abs(b[1] - (48 + 0.8 * top)) <= 2 and abs(b[3] - 0.8 * h) <= 3


# --- canvas=subject and max sizes --------------------------------------------------------------------

def test_canvas_subject_is_the_subject_plus_padding_and_margin(product):
    _, bare = run(product)
    _, _, w, h = alpha_box(bare)
    _, out = run(product, canvas="subject")
    assert out.size == (w, h) and alpha_box(out) == (0, 0, w, h)
    _, out = run(product, canvas="subject", padding="20px", margin="10px")
    assert out.size == (w + 60, h + 60) and alpha_box(out)[:2] == (30, 30)
    _, out = run(product, canvas="subject", padding="10%", margin="10%")  # each: 80 % of the width stays
    assert abs(out.size[0] - w / 0.64) <= 1 and abs(out.size[1] - h / 0.64) <= 1
    with pytest.raises(InvalidOption) as err:
        run(product, canvas="subject", padding="49%", margin="49%")
    assert err.value.code == "invalid_canvas" and "max_width" in err.value.message


def test_max_width_and_height_shrink_the_canvas_with_its_content(product):
    _, bare = run(product)
    left, top, w, h = alpha_box(bare)
    _, out = run(product, max_width="320")  # the picture as it is, at half size
    b = alpha_box(out)
    assert out.size == (320, 240) and abs(b[0] - left / 2) <= 1 and abs(b[3] - h / 2) <= 2
    _, out = run(product, canvas="1000x800", max_height="400")
    b = alpha_box(out)
    assert out.size == (500, 400) and abs(b[3] - 400) <= 4 and all(abs(c - m) <= 1 for c, m in zip(centre(b),
                                                                                                  (250, 200)))
    _, out = run(product, canvas="300x300", max_width="1000")  # never enlarges
    assert out.size == (300, 300)


# --- snapping ----------------------------------------------------------------------------------------

def test_snap_drops_the_padding_where_the_photo_cut_the_subject(cut_product):
    _, free = run(cut_product, canvas="800x800", padding="10%")
    b = alpha_box(free)
    assert abs(b[1] - 80) <= 1 and abs(b[1] + b[3] - 720) <= 1  # padded on both sides
    _, snapped = run(cut_product, canvas="800x800", padding="10%", snap_edges="all")
    b = alpha_box(snapped)
    assert abs(b[1] - 80) <= 1 and b[1] + b[3] == 800 and abs(b[3] - 720) <= 7  # held against the bottom
    assert abs(centre(b)[0] - 400) <= 1  # left and right were not cut: still padded and centred
    _, margined = run(cut_product, canvas="800x800", padding="10%", margin="5%", snap_edges="all")
    b = alpha_box(margined)
    assert b[1] + b[3] == 760  # the margin stays
    _, horizontal = run(cut_product, canvas="800x800", padding="10%", snap_edges="horizontal")
    assert alpha_box(horizontal) == alpha_box(free)  # the cut side is the bottom: not snapped horizontally


def test_cut_sides_are_measured_before_the_crop(cut_product):
    _, plain = run(cut_product, canvas="800x800", padding="10%", snap_edges="all")
    _, cropped = run(cut_product, canvas="800x800", padding="10%", snap_edges="all", crop="true")
    assert abs(alpha_box(cropped)[1] - alpha_box(plain)[1]) <= 1  # only the bottom snaps, as without the crop


# --- remove_background=false -------------------------------------------------------------------------

def test_keeping_the_background_lays_out_the_whole_photo(product):
    result, out = run(product, remove_background="false")
    rgba = np.asarray(out)
    assert out.size == (640, 480) and rgba[:, :, 3].min() == 255
    assert tuple(rgba[5, 5, :3]) == (220, 220, 220) and tuple(rgba[200, 150, :3]) == (200, 30, 40)
    assert result.metadata["models"] == [] and result.metadata["confidence"] is None
    _, placed = run(product, remove_background="false", canvas="800x600", padding="50px", bg_color="#0000ff")
    rgb = np.asarray(placed).astype(int)
    # 640 x 480 fitted into 700 x 500: 667 x 500, centred
    assert placed.mode == "RGB" and tuple(rgb[20, 400]) == (0, 0, 255) and tuple(rgb[300, 40]) == (0, 0, 255)
    assert np.abs(rgb[300, 80] - (220, 220, 220)).max() <= 2 and np.abs(rgb[60, 400] - (220, 220, 220)).max() <= 2
    assert tuple(rgb[49, 400]) == (0, 0, 255) and tuple(rgb[300, 65]) == (0, 0, 255)
