"""Photoroom Image Editing drop-in (GET/POST /v2/edit). No maintained Photoroom client exists on PyPI or npm,
so these send the plain `requests` calls Photoroom's public documentation shows, against a live Clearcut
server (real SQLite, Redis, SeaweedFS and Celery worker with u2netp), and measure the returned pixels."""
from __future__ import annotations


import numpy as np
import pytest
import requests
from PIL import Image, ImageDraw

from tests.async_support import serve_images
from tests.conftest import encode_image
from tests.test_compat_common import (compat_app, job_count, job_row, monkeypatch_module, new_key,  # noqa: F401
                                      open_image, rate_limited, revoked_key, server)

SUBJECT = 26  # 8-bit alpha of the subject's box (compose.SUBJECT_ALPHA)
GREY, RED, GREEN = (220, 220, 220), (200, 30, 40), (0, 200, 0)


def _photo(rectangle) -> bytes:
    image = Image.new("RGB", (640, 480), GREY)
    ImageDraw.Draw(image).rectangle(rectangle, fill=RED)
    return encode_image(image, "PNG")


IMAGES = {
    "/product.png": _photo((100, 120, 259, 399)),  # 160 x 280, off-centre, whole
    "/cut.png": _photo((200, 200, 439, 479)),      # 240 x 280, cut off by the bottom of the photo
    "/green.png": encode_image(Image.new("RGB", (64, 48), GREEN), "PNG"),
}
PRODUCT = IMAGES["/product.png"]


@pytest.fixture(scope="module")
def images():
    yield from serve_images(IMAGES)


@pytest.fixture(scope="module")
def key(compat_app):
    return new_key(compat_app, "photoroom-edit-tests")


@pytest.fixture(scope="module")
def url(server):
    return server + "/v2/edit"


def get(url, key, params, **kwargs):
    return requests.get(url, headers={"x-api-key": key}, params=params, timeout=60, **kwargs)


def post(url, key, data=None, files=None):
    files = {"imageFile": ("product.png", PRODUCT, "image/png")} if files is None else files
    return requests.post(url, headers={"x-api-key": key}, data=data or {}, files=files, timeout=60)


def image_of(r, size=None, fmt="PNG"):
    assert r.status_code == 200, r.text
    image = open_image(r.content)
    assert image.format == fmt
    if size is not None:
        assert image.size == size
    return image


def subject_box(image):
    alpha = np.asarray(image.convert("RGBA"))[:, :, 3]
    ys, xs = np.nonzero(alpha >= SUBJECT)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def header_box(r):
    return tuple(int(r.headers[f"X-Foreground-{n}"]) for n in ("Left", "Top", "Width", "Height"))


def centre(box):
    return box[0] + box[2] / 2, box[1] + box[3] / 2


# --- the documented calls ------------------------------------------------------------------------------

def test_documented_get_request_centres_and_pads_on_an_exact_white_canvas(url, key, images, compat_app):
    r = get(url, key, {"imageUrl": f"{images}/product.png", "removeBackground": "true", "background.color": "FFFFFF",
                       "outputSize": "1000x1000", "padding": "0.1"})
    image = image_of(r, (1000, 1000))
    assert r.headers["Content-Type"] == "image/png"
    assert job_row(compat_app, r.headers["X-Job-ID"]).source == "photoroom"
    left, top, w, h = box = header_box(r)
    assert all(abs(c - 500) <= 1 for c in centre(box))
    assert abs(max(w, h) / 800 - 1) <= 0.01  # the taller side fills the 800 px inside 10 % padding
    rgb = np.asarray(image.convert("RGB"))
    outside = np.ones(rgb.shape[:2], bool)
    outside[top:top + h, left:left + w] = False
    assert (rgb[outside] == 255).all()
    assert 0 <= float(r.headers["x-uncertainty-score"]) <= 1


def test_post_multipart_aligns_to_the_asked_edges_inside_margin_and_padding(url, key):
    r = post(url, key, {"outputSize": "800x600", "horizontalAlignment": "left", "verticalAlignment": "bottom",
                        "padding": "50px", "margin": "5%"})
    left, top, w, h = subject_box(image_of(r, (800, 600)))
    assert abs(left - (40 + 50)) <= 1 and abs(top + h - (600 - 30 - 50)) <= 1  # margin 5 % of 800 x 600, then 50 px
    assert abs(h - (600 - 60 - 100)) <= 5


def test_post_json_with_nested_objects_and_right_top_alignment(url, key, images):
    body = {"imageUrl": f"{images}/product.png", "outputSize": "800x600", "horizontalAlignment": "right",
            "verticalAlignment": "top", "export": {"format": "webp"}, "background": {"color": "transparent"}}
    r = requests.post(url, headers={"x-api-key": key}, json=body, timeout=60)
    image = image_of(r, (800, 600), "WEBP")
    assert r.headers["Content-Type"] == "image/webp" and image.mode == "RGBA"
    left, top, w, h = subject_box(image)
    assert top <= 1 and left + w >= 799 and abs(h - 600) <= 6


def test_per_side_padding_overrides_the_general_padding_and_fills_within_one_percent(url, key):
    r = post(url, key, {"outputSize": "1000x1000", "padding": "0.2", "paddingTop": "30%"})
    left, top, w, h = subject_box(image_of(r, (1000, 1000)))
    assert abs(top - 300) <= 1 and abs(h / 500 - 1) <= 0.01  # 1000 - 300 - 200 px of height remain
    assert abs(centre((left, top, w, h))[0] - 500) <= 1


# --- output size ---------------------------------------------------------------------------------------

def test_output_sizes_original_cropped_subject_and_max_width(url, key):
    plain = post(url, key)  # outputSize auto: the photo's size, the subject fitted and centred in it
    box = subject_box(image_of(plain, (640, 480)))
    assert abs(box[3] - 480) <= 5 and all(abs(c - m) <= 1 for c, m in zip(centre(box), (320, 240)))
    assert subject_box(image_of(post(url, key, {"outputSize": "originalImage"}), (640, 480))) == box
    cropped = image_of(post(url, key, {"outputSize": "croppedSubject"}))
    assert subject_box(cropped) == (0, 0, *cropped.size) and abs(cropped.size[0] - 160) <= 8
    small = image_of(post(url, key, {"outputSize": "croppedSubject", "maxWidth": "80"}))
    assert small.size[0] == 80 and abs(small.size[1] / small.size[0] - cropped.size[1] / cropped.size[0]) <= 0.03
    image_of(post(url, key, {"outputSize": "originalImage", "maxWidth": "320", "maxHeight": "400"}), (320, 240))


def test_scaling_fill_covers_the_canvas(url, key):
    alpha = np.asarray(image_of(post(url, key, {"outputSize": "500x500", "scaling": "fill"}), (500, 500)))[:, :, 3]
    assert (alpha[:, 0] > 0).all() and (alpha[:, -1] > 0).all() and alpha[:, 50:450].min() >= 200
    fit = np.asarray(image_of(post(url, key, {"outputSize": "500x500", "scaling": "fit"})))[:, :, 3]
    assert fit[:, :100].max() == 0


def test_reference_box_original_image_keeps_the_subject_where_it_was(url, key):
    bare = subject_box(image_of(post(url, key, {"outputSize": "originalImage", "referenceBox": "originalImage"})))
    assert all(abs(a - b) <= 6 for a, b in zip(bare, (100, 120, 160, 280)))  # the red box, give or take its soft edge
    doubled = subject_box(image_of(post(url, key, {"outputSize": "1280x960", "referenceBox": "originalImage"})))
    assert all(abs(a - 2 * b) <= 3 for a, b in zip(doubled, bare))


def test_cropped_sides_snap_to_the_edge_unless_turned_off_or_aligned(url, key, images):
    def bottom(**extra):
        r = get(url, key, {"imageUrl": f"{images}/cut.png", "outputSize": "800x800", "padding": "0.1", **extra})
        left, top, w, h = subject_box(image_of(r, (800, 800)))
        return top, top + h
    top, end = bottom()
    assert end == 800 and abs(top - 80) <= 1  # cut at the bottom: no bottom padding, held there
    assert bottom(marginBottom="40px")[1] == 760  # the margin is never dropped
    assert abs(bottom(ignorePaddingAndSnapOnCroppedSides="false")[1] - 720) <= 1
    assert abs(bottom(verticalAlignment="center")[1] - 720) <= 1  # an explicit alignment turns snapping off
    assert bottom(horizontalAlignment="center")[1] == 800  # ... only on its own axis


# --- backgrounds ---------------------------------------------------------------------------------------

def test_remove_background_false_lays_out_the_whole_photo_on_the_colour(url, key):
    image = image_of(post(url, key, {"removeBackground": "false", "outputSize": "800x600", "padding": "50px",
                                     "background.color": "0000FF"}), (800, 600))
    rgb = np.asarray(image.convert("RGB")).astype(int)
    # 640 x 480 fitted into 700 x 500: 667 x 500 in the middle, blue around it
    assert tuple(rgb[20, 400]) == (0, 0, 255) and tuple(rgb[300, 40]) == (0, 0, 255)
    assert np.abs(rgb[300, 80] - GREY).max() <= 2 and np.abs(rgb[300, 300] - RED).max() <= 2


def test_background_image_url_fills_everything_outside_the_subject(url, key, images):
    r = post(url, key, {"outputSize": "600x600", "padding": "0.1", "background.imageUrl": f"{images}/green.png",
                        "export.format": "jpeg"})
    image = image_of(r, (600, 600), "JPEG")
    left, top, w, h = header_box(r)
    rgb = np.asarray(image).astype(int)
    outside = np.ones(rgb.shape[:2], bool)
    outside[max(0, top - 8):top + h + 8, max(0, left - 8):left + w + 8] = False  # JPEG rings at the red edge
    assert np.abs(rgb[outside] - GREEN).max() <= 6  # exact within JPEG's quantisation
    assert np.abs(rgb[top + h // 2, left + w // 2] - RED).max() <= 12


def test_background_image_file_fit_leaves_transparent_bands_and_colours_with_alpha(url, key):
    files = {"imageFile": ("p.png", PRODUCT, "image/png"), "background.imageFile": ("g.png", IMAGES["/green.png"])}
    r = post(url, key, {"outputSize": "800x400", "background.scaling": "fit"}, files=files)
    rgba = np.asarray(image_of(r, (800, 400)))
    left, top, w, h = header_box(r)
    assert left > 200 and left + w < 600  # the subject is in the middle; the 533 x 400 green band spans x 133-666
    assert (rgba[:, 140:200] == (*GREEN, 255)).all()
    assert rgba[:, :130, 3].max() == 0 and rgba[:, 670:, 3].max() == 0
    cover = np.asarray(image_of(post(url, key, {"outputSize": "800x400"}, files=files)))
    assert (cover[:, :130] == (*GREEN, 255)).all()  # background.scaling defaults to fill
    tinted = np.asarray(image_of(post(url, key, {"outputSize": "400x400", "background.color": "FF000080"})))
    assert tuple(tinted[2, 2]) == (255, 0, 0, 128)


# --- shadows -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["ai.soft", "ai.hard", "ai.floating"])
def test_shadow_modes_darken_only_below_and_beside_the_subject(url, key, mode):
    fields = {"outputSize": "800x800", "padding": "0.2", "background.color": "white"}
    bare = np.asarray(image_of(post(url, key, fields)).convert("RGB")).astype(int)
    shaded = np.asarray(image_of(post(url, key, {**fields, "shadow.mode": mode})).convert("RGB")).astype(int)
    left, top, w, h = subject_box(image_of(post(url, key, {**fields, "background.color": "transparent"})))
    outside = np.ones(bare.shape[:2], bool)
    outside[top:top + h, left:left + w] = False
    changed = outside & (np.abs(shaded - bare).max(axis=2) > 0)
    assert changed.sum() > 100 and (shaded[changed] <= bare[changed]).all()  # darker, never lighter
    ys, xs = np.nonzero(changed)
    if mode == "ai.hard":  # a drop shadow: the silhouette offset right and down
        assert xs.min() >= left - 3 and ys.min() >= top - 3 and xs.mean() > left + w / 2 and ys.mean() > top + h / 2
    else:  # a ground shadow centred under the base, nothing above the subject's middle
        assert ys.min() > top + h / 2 and abs(xs.mean() - (left + w / 2)) <= 2 and ys.min() >= top + h - 40
    assert (shaded[:top] == 255).all()  # exact background above


# --- export --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt,pil", [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
def test_export_dpi_is_in_the_file(url, key, images, fmt, pil):
    image = image_of(post(url, key, {"export.format": fmt, "export.dpi": "300"}), fmt=pil)
    assert (image.getexif()[282] == 300) if pil == "WEBP" else (round(image.info["dpi"][0]) == 300)
    composited = image_of(post(url, key, {"export.format": fmt, "export.dpi": "150",
                                          "background.imageUrl": f"{images}/green.png"}), fmt=pil)
    assert (composited.getexif()[282] == 150) if pil == "WEBP" else (round(composited.info["dpi"][0]) == 150)


# --- refusals ------------------------------------------------------------------------------------------

def error_of(r, status):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "code", "status", "request_id"}
    assert body["error"]["status"] == status and body["error"]["request_id"] == r.headers["X-Request-ID"]
    return body["error"]


@pytest.mark.parametrize("field,value", [
    ("background.prompt", "a beach"), ("background.negativePrompt", "people"), ("background.seed", "7"),
    ("background.guidance.imageUrl", "https://example.com/a.jpg"), ("background.guidance.scale", "0.5"),
    ("background.expandPrompt", "ai.auto"), ("background.expandPrompt.mode", "ai.auto"),
    ("background.blur.mode", "gaussian"), ("lighting.mode", "ai.auto"), ("textRemoval.mode", "ai.all"),
    ("upscale.mode", "ai.fast"), ("expand.mode", "ai.auto"), ("uncrop.mode", "ai.auto"),
    ("describeAnyChange.prompt", "remove the cup"), ("editWithAI.mode", "ai.auto"), ("beautify.mode", "ai.auto"),
    ("flatLay.mode", "ai.auto"), ("ghostMannequin.mode", "ai.auto"), ("virtualModel.mode", "ai.auto"),
    ("imageFromPrompt.prompt", "a mug"), ("segmentation.prompt", "the shoe"), ("outline.color", "red"),
    ("templateId", "592dd982-4a1b-4cd9-ab11-21481d5a0064"), ("keepExistingAlphaChannel", "auto"),
    ("shadow.intensityOverride", "0.5"), ("shadow.mode", "ai.auto-with-overrides"), ("preserveMetadata", "xmp"),
])
def test_generative_and_unimplemented_fields_are_refused_by_name(url, key, compat_app, field, value):
    before = job_count(compat_app)
    error = error_of(post(url, key, {field: value}), 400)
    assert error["code"] == "unsupported_option" and field in error["message"]
    assert job_count(compat_app) == before


@pytest.mark.parametrize("fields,code,says", [
    ({"outputSize": "big"}, "invalid_output_size", "croppedSubject"),
    ({"outputSize": "20000x10"}, "invalid_output_size", "10000"),
    ({"padding": "0.5"}, "invalid_padding", "0.49"),
    ({"padding": "60%"}, "invalid_padding", "49%"),
    ({"marginTop": "ten"}, "invalid_margin_top", "100px"),
    ({"padding": "0.1", "paddingLeft": "20px"}, "invalid_padding", "paddingLeft"),
    ({"scaling": "stretch"}, "invalid_scaling", "fit, fill"),
    ({"horizontalAlignment": "middle"}, "invalid_horizontal_alignment", "left, center, right"),
    ({"referenceBox": "frame"}, "invalid_reference_box", "subjectBox"),
    ({"shadow.mode": "ai.glow"}, "invalid_shadow_mode", "ai.soft"),
    ({"export.format": "gif"}, "invalid_export_format", "png"),
    ({"export.dpi": "50"}, "invalid_export_dpi", "72 to 1200"),
    ({"export.dpi": "300.5"}, "invalid_export_dpi", "whole number"),
    ({"background.color": "bluish"}, "invalid_background_color", "hex"),
    ({"background.color": "FF000080", "export.format": "jpg"}, "invalid_background_color", "png or webp"),
    ({"removeBackground": "maybe"}, "invalid_boolean", "removeBackground"),
    ({"removeBackground": "false", "referenceBox": "originalImage"}, "invalid_reference_box", "removeBackground"),
    ({"outputSize": "500x500", "maxWidth": "100"}, "invalid_max_width", "croppedSubject"),
    ({"maxHeight": "0"}, "invalid_max_height", "1 to 10000"),
    ({"background.scaling": "fit"}, "invalid_background_scaling", "background.imageUrl"),
    ({"paddingg": "0.1"}, "unknown_option", "'padding'"),
    ({"ignorePaddingAndSnapToEdges": "false"}, "unknown_option", "'ignorePaddingAndSnapOnCroppedSides'"),
    ({"image_file": "x"}, "mixed_vendor_fields", "imageFile"),
    ({"bg_color": "red"}, "mixed_vendor_fields", "background.color"),
])
def test_bad_values_are_400_with_a_helpful_message(url, key, compat_app, fields, code, says):
    before = job_count(compat_app)
    error = error_of(post(url, key, fields), 400)
    assert error["code"] == code and says in error["message"]
    assert job_count(compat_app) == before


def test_request_problems_in_photoroom_shape(url, key, images, compat_app, monkeypatch):
    assert error_of(post(url, ""), 403)["code"] == "missing_api_key"
    assert error_of(get(url, "cc_live_wrong", {"imageUrl": f"{images}/product.png"}), 403)["code"] == "invalid_api_key"
    revoked = revoked_key(compat_app, "photoroom-edit-revoked")
    assert error_of(post(url, revoked), 403)["code"] == "revoked_api_key"
    assert error_of(get(url, key, {"outputSize": "auto"}), 400)["code"] == "missing_image"
    both = post(url, key, {"imageUrl": f"{images}/product.png"})
    assert error_of(both, 400)["code"] == "multiple_images"
    assert error_of(get(url, key, {"imageUrl": "http://10.1.2.3/a.png"}), 400)["code"] == "url_not_allowed"
    assert error_of(get(url, key, {"imageUrl": f"{images}/missing.png"}), 400)["code"] == "image_url_unreachable"
    corrupt = post(url, key, files={"imageFile": ("a.png", b"\x89PNG\r\n\x1a\n broken")})
    assert error_of(corrupt, 400)["code"] in ("invalid_image", "corrupt_image")
    ppm = encode_image(Image.new("RGB", (8, 8)), "PPM")
    assert error_of(post(url, key, files={"imageFile": ("a.ppm", ppm)}), 400)["code"] == "unsupported_image_format"
    text_file = post(url, key, {"imageFile": "not a file"}, files={})
    assert error_of(text_file, 400)["code"] == "invalid_image_file"
    in_query = requests.post(url + "?padding=0.1", headers={"x-api-key": key},
                             files={"imageFile": ("p.png", PRODUCT)}, timeout=60)
    assert "query string" in error_of(in_query, 400)["message"]
    put = requests.put(url, headers={"x-api-key": key}, timeout=60)  # refused by routing, before the adapter
    assert put.status_code == 405 and put.json()["error"]["code"] == "method_not_allowed"
    monkeypatch.setenv("CLEARCUT_MAX_UPLOAD_MB", "0.01")
    assert error_of(post(url, key, files={"imageFile": ("p.png", PRODUCT + bytes(20000))}), 400)["code"] == \
        "image_too_large"


def test_rate_limit_is_429_with_retry_after(url, compat_app):
    limited = new_key(compat_app, "photoroom-edit-rate")
    with rate_limited(compat_app, 1):
        post(url, limited, {"padding": "2"})
        r = post(url, limited)
    assert error_of(r, 429)["code"] == "rate_limited" and 1 <= int(r.headers["Retry-After"]) <= 60


def test_the_result_is_a_normal_job_with_its_options(url, key, compat_app):
    r = post(url, key, {"outputSize": "300x200", "shadow.mode": "ai.soft", "export.format": "jpg"})
    image_of(r, (300, 200), "JPEG")
    job = job_row(compat_app, r.headers["X-Job-ID"])
    assert job.status == "succeeded" and job.options["canvas"] == "300x200" and job.options["shadow"] == "contact"
    assert job.options["snap_edges"] == "all" and job.options["format"] == "jpg"
    again = requests.get(f"{url.rsplit('/v2/', 1)[0]}/v2/jobs/{job.id}/result", headers={"x-api-key": key},
                         timeout=60)
    assert again.status_code == 200 and again.content == r.content  # the job's stored result is what was sent
