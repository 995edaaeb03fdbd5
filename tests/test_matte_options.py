"""The matte options ``roi`` and ``semitransparency``: parsing and errors, the result cache key, the
pixels of real cutouts (u2netp), and the core ``/v2`` route over the real services."""
import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from clearcut.errors import InvalidOption
from clearcut.jobs.results import options_from_row, result_key
from clearcut.options import parse
from clearcut.pipeline import process, region
from tests.conftest import encode_image, synthetic_scene
from tests.test_compat_common import compat_app, job_count, monkeypatch_module, new_key  # noqa: F401

SCENE, MASK = synthetic_scene(320, 240, radius=60)  # a red disc of radius 60 at (160, 120)
PNG = encode_image(SCENE, "PNG")


def run(data, **options):
    options.setdefault("model", "u2netp")
    result = process(data, parse(options))
    return result, np.asarray(Image.open(io.BytesIO(result.data)))


def alpha_of(pixels: np.ndarray) -> np.ndarray:
    return pixels if pixels.ndim == 2 else pixels[:, :, 3]


# --- parsing -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,canonical", [
    ("10px 20px 300px 400px", "10px 20px 300px 400px"), ("10%,10%,90%,90%", "10% 10% 90% 90%"),
    ("  5 6 70.5PX 80% ", "5px 6px 70.5px 80%"), ("0% 0% 100% 100%", None), ("0%, 0%, 100%, 100%", None),
    ("0px 0px 320px 240px", "0px 0px 320px 240px"),  # the whole of some image only: known once it is read
])
def test_roi_parses_to_canonical_text(raw, canonical):
    assert parse({"roi": raw}).roi == canonical


@pytest.mark.parametrize("raw", ["10% 10% 90%", "10em 0 5 5", "-5px 0px 10px 10px", "10% 10% 5% 90%",
                                 "0px 50px 10px 50px", "0% 0% 120% 100%", "0px 0px 200000px 10px", "a b c d",
                                 "1 2 3 4 5", True, ["0%", "0%", "50%", "50%"]])
def test_invalid_roi_is_a_400_that_says_what_is_accepted(raw):
    with pytest.raises(InvalidOption) as err:
        parse({"roi": raw})
    assert err.value.code == "invalid_roi" and err.value.status == 400 and "roi" in err.value.message


@pytest.mark.parametrize("raw,value", [("false", False), ("0", False), ("no", False), (False, False),
                                       ("TRUE", True), ("1", True), (True, True)])
def test_semitransparency_values(raw, value):
    assert parse({"semitransparency": raw}).semitransparency is value


@pytest.mark.parametrize("raw", ["maybe", "2", "hard", [True]])
def test_invalid_semitransparency_has_its_own_code(raw):
    with pytest.raises(InvalidOption) as err:
        parse({"semitransparency": raw})
    assert err.value.code == "invalid_semitransparency" and err.value.status == 400
    assert "true" in err.value.message and "false" in err.value.message or "single value" in err.value.message


def test_defaults_leave_the_cache_key_as_it_was_and_other_values_change_it():
    before = {"format", "channels", "size", "crop", "crop_margin", "bg_color", "despill", "model"}
    assert set(parse({}).cutout_key()) == before  # results stored before these options keep their keys
    same = parse({"roi": "0% 0% 100% 100%", "semitransparency": "true"})
    assert same.cutout_key() == parse({}).cutout_key()
    keys = {result_key("0" * 64, parse(v)) for v in ({}, {"roi": "0% 0% 50% 100%"}, {"roi": "0px 0px 160px 240px"},
                                                     {"semitransparency": "false"},
                                                     {"roi": "0% 0% 50% 100%", "semitransparency": "false"})}
    assert len(keys) == 5
    options = parse({"roi": "1px 2% 300px 99%", "semitransparency": "no", "scale": "80"})
    assert options_from_row(options.normalised()) == options


@pytest.mark.parametrize("roi,size,box", [
    ("10% 10% 90% 90%", (320, 240), (32, 24, 288, 216)), ("0px 0px 160px 240px", (320, 240), (0, 0, 160, 240)),
    ("50% 0px 100000px 240px", (320, 240), (160, 0, 320, 240)),  # clipped to the image
    ("0px 0px 320px 240px", (320, 240), None), ("10px 10px 11px 11px", (320, 240), (10, 10, 11, 11)),
])
def test_regions_resolve_in_image_pixels(roi, size, box):
    assert region.resolve(parse({"roi": roi}).roi, *size) == box


@pytest.mark.parametrize("roi", ["400px 0px 500px 100px", "50% 0% 100px 100%", "0px 0px 0.4px 10px"])
def test_a_region_without_pixels_of_the_image_is_invalid_roi(roi):
    with pytest.raises(InvalidOption) as err:
        region.resolve(parse({"roi": roi}).roi, 320, 240)
    assert err.value.code == "invalid_roi" and "320x240" in err.value.message


def test_the_region_is_checked_against_the_upright_image():
    """An EXIF-rotated photo's px coordinates are those of the picture as shown (240 x 320 here)."""
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90° clockwise when shown
    SCENE.save(buffer, "JPEG", exif=exif)
    region.check(parse({"roi": "0px 250px 240px 320px"}).roi, buffer.getvalue())  # below 240: only upright
    with pytest.raises(InvalidOption):
        region.check(parse({"roi": "250px 0px 320px 240px"}).roi, buffer.getvalue())


# --- pixels --------------------------------------------------------------------------------------------

def test_roi_alpha_is_exactly_zero_outside_and_the_subject_inside():
    _, whole = run(PNG)
    _, left = run(PNG, roi="0px 0px 160px 240px")
    alpha, whole_alpha = alpha_of(left), alpha_of(whole)
    assert alpha[:, 160:].max() == 0 and whole_alpha[:, 160:].max() == 255  # the right half of the disc is gone
    inside = alpha[:, :160] > 127
    truth = MASK[:, :160]
    assert (inside & truth).sum() / (inside | truth).sum() > 0.9
    _, empty = run(PNG, roi="0% 0% 20% 20%")  # no subject in that corner
    assert alpha_of(empty).max() == 0


def test_the_networks_see_the_region_itself():
    """The region's matte is the matte of the region's crop run on its own (same network input, same
    refinement), pasted back: the networks sample the region, not the downscaled photo."""
    box = (40, 30, 250, 200)
    crop = encode_image(SCENE.crop(box), "PNG")
    _, alone = run(crop, format="png")
    _, inside = run(PNG, roi="40px 30px 250px 200px")
    alpha = alpha_of(inside)
    assert np.array_equal(alpha[30:200, 40:250], alpha_of(alone))
    outside = np.ones(alpha.shape, bool)
    outside[30:200, 40:250] = False
    assert alpha[outside].max() == 0


def test_a_small_subject_in_a_large_photo_is_found_in_its_region():
    """A 60 x 80 px product with a thin handle in a 1600 x 1200 photo: u2netp's 320 px view of the whole
    photo gives it a few pixels; the region's crop gives it the network's full input."""
    photo = Image.new("RGB", (1600, 1200), (225, 228, 232))
    draw = ImageDraw.Draw(photo)
    draw.rectangle((1200, 300, 1259, 379), fill=(200, 30, 40))
    draw.rectangle((1225, 250, 1232, 299), fill=(30, 30, 160))
    truth = np.zeros((1200, 1600), bool)
    truth[300:380, 1200:1260] = truth[250:300, 1225:1233] = True
    data = encode_image(photo, "PNG")

    def iou(**options):
        mask = alpha_of(run(data, **options)[1]) > 127
        return (mask & truth).sum() / (mask | truth).sum()
    in_region = iou(roi="1100px 200px 1360px 460px")
    assert in_region > 0.95 and in_region > iou()


def test_semitransparency_false_leaves_only_0_and_255():
    _, soft = run(PNG)
    assert len(np.unique(alpha_of(soft))) > 2  # the default matte has soft edges
    for options in ({}, {"channels": "alpha"}, {"format": "webp"}, {"canvas": "500x500", "scale": "37"},
                    {"crop": "true", "crop_margin": "7px"}, {"roi": "0px 0px 170px 240px"}):
        _, hard = run(PNG, semitransparency="false", **options)
        assert set(np.unique(alpha_of(hard))) == {0, 255}, options
    big = encode_image(synthetic_scene(800, 600, radius=150)[0], "PNG")  # crop, then shrunk to the preview size
    result, hard = run(big, semitransparency="false", crop="true", size="preview")
    assert set(np.unique(alpha_of(hard))) == {0, 255} and hard.shape[0] * hard.shape[1] <= 250_000


def test_semitransparency_false_is_the_soft_matte_cut_at_one_half():
    _, soft = run(PNG)
    _, hard = run(PNG, semitransparency="false")
    assert np.array_equal(alpha_of(hard) == 255, alpha_of(soft) >= 128)


def test_a_hard_matte_keeps_a_soft_shadow():
    _, bare = run(PNG, semitransparency="false", canvas="400x400", scale="60")
    _, shaded = run(PNG, semitransparency="false", canvas="400x400", scale="60", shadow="contact")
    alpha, bare_alpha = alpha_of(shaded), alpha_of(bare)
    soft = (alpha > 0) & (alpha < 255)
    assert soft.any() and (bare_alpha[soft] == 0).all()  # partial alpha only where the shadow is
    assert (alpha[bare_alpha == 255] == 255).all()


# --- the /v2 route -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(compat_app):
    return compat_app.test_client()


@pytest.fixture(scope="module")
def key(compat_app):
    return new_key(compat_app, "matte-tests")


def post(client, key, **fields):
    return client.post("/v2", headers={"x-api-key": key},
                       data={"image_file": (io.BytesIO(PNG), "in.png"), "model": "u2netp", **fields})


def test_v2_roi_and_semitransparency(client, key):
    r = post(client, key, roi="50% 0% 100% 100%", semitransparency="false")
    assert r.status_code == 200, r.get_data(as_text=True)
    alpha = alpha_of(np.asarray(Image.open(io.BytesIO(r.data))))
    assert alpha[:, :160].max() == 0 and alpha[:, 160:].max() == 255 and set(np.unique(alpha)) == {0, 255}
    assert int(r.headers["X-Foreground-Left"]) == 160


@pytest.mark.parametrize("fields,code", [({"roi": "400px 0px 500px 100px"}, "invalid_roi"),
                                         ({"roi": "10% 10%"}, "invalid_roi"),
                                         ({"semitransparency": "sometimes"}, "invalid_semitransparency")])
def test_v2_refuses_bad_values_before_any_job(client, key, compat_app, fields, code):
    before = job_count(compat_app)
    for route in ("/v2", "/v2/jobs"):
        r = client.post(route, headers={"x-api-key": key},
                        data={"image_file": (io.BytesIO(PNG), "in.png"), **fields})
        assert r.status_code == 400, r.get_data(as_text=True)
        error = r.get_json()["error"]
        assert error["code"] == code and error["details"]["option"] in fields and error["message"]
    assert job_count(compat_app) == before
