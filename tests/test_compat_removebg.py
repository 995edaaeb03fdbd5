"""remove.bg drop-in, driven by three clients someone else wrote: the `remove.bg` npm package, and the
`removebg` and `remove-bg` PyPI packages. Each hard-codes remove.bg's endpoint in a constant; only that
constant is pointed at the live Clearcut server, the requests the libraries build are untouched."""
from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import requests

from PIL import Image, ImageDraw

from tests.conftest import ROOT, encode_image
from tests.test_compat_common import (JPEG, PNG, PPM, alpha_iou, compat_app, image_server,  # noqa: F401
                                      job_count, job_row, mask_iou, monkeypatch_module, new_key, open_image,
                                      rate_limited, revoked_key, server)

JS = ROOT / "tests" / "js"
# remove-bg 0.2.1 ships a module named `removebg` like the `removebg` package, pins requests==2.23.0 and
# predates Python 3.10, so it cannot share the project venv: it is installed into its own folder (with
# the pins it declares, minus requests) and run in a subprocess.
REMOVE_BG = ROOT / "var" / "test-clients" / "remove-bg-0.2.1"
REMOVE_BG_PINS = ["remove-bg==0.2.1", "python-anticaptcha==0.4.2", "tempmail-client==0.1.2",
                  "beautifulsoup4==4.8.2", "soupsieve==1.9.5", "random-username==1.0.2"]


@pytest.fixture(scope="module")
def key(compat_app):
    return new_key(compat_app, "removebg-tests")


@pytest.fixture(scope="module")
def endpoint(server):
    return server + "/v1.0/removebg"


SUBJECT = 26  # the subject's box counts pixels at least 10 % opaque, like X-Foreground-*


def scene_at(cx: int, cy: int, radius: int, size=(320, 240)) -> bytes:
    """A red disc centred at (cx, cy) on a grey-blue gradient: an off-centre subject, so moving it shows."""
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    backdrop = np.dstack([200 + 30 * xx / width, 210 + 20 * yy / height, 230 * np.ones_like(xx)]).astype(np.uint8)
    image = Image.fromarray(backdrop)
    ImageDraw.Draw(image).ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=(200, 30, 40))
    return encode_image(image, "PNG")


OFF = scene_at(100, 90, 50)  # box about (50, 40)-(150, 140) in 320 x 240


def cut(endpoint, key, image=PNG, **fields):
    """POST image_file with remove.bg fields; the answer's pixels as a numpy array."""
    r = requests.post(endpoint, headers={"X-Api-Key": key}, files={"image_file": ("in.png", image, "image/png")},
                      data={"size": "full", **fields}, timeout=60)
    assert r.status_code == 200, r.text
    return r, np.asarray(open_image(r.content))


def box_of(alpha: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(alpha >= SUBJECT)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def red(pixels: np.ndarray) -> np.ndarray:
    """Where the red disc is (a shadow is black, the backgrounds grey, white or green)."""
    pixels = pixels.astype(int)
    return pixels[:, :, 0] - pixels[:, :, 1] > 100


def header_box(r) -> tuple[int, int, int, int]:
    return tuple(int(r.headers[f"X-Foreground-{n}"]) for n in ("Left", "Top", "Width", "Height"))


def errors_of(r, status):
    assert r.status_code == status, r.text
    errors = r.json()["errors"]
    assert len(errors) == 1 and set(errors[0]) == {"title", "code"} and errors[0]["title"]
    assert r.headers["X-Credits-Charged"] == "0"
    return errors[0]


# -- the remove.bg npm package ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def node_client():
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node and npm are needed to run the remove.bg npm client")
    if not (JS / "node_modules" / "remove.bg" / "package.json").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS, check=True, timeout=300,
                       capture_output=True)

    def call(endpoint: str, fn: str, options: dict) -> dict:
        out = subprocess.run([node, "removebg_client.js", endpoint, fn, json.dumps(options)], cwd=JS,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])
    return call


def test_npm_client_file_upload(node_client, endpoint, key, tmp_path, compat_app):
    source, output = tmp_path / "in.jpg", tmp_path / "out.png"
    source.write_bytes(JPEG)
    answer = node_client(endpoint, "removeBackgroundFromImageFile",
                         {"path": str(source), "apiKey": key, "size": "regular", "type": "person",
                          "outputFile": str(output)})
    assert answer["ok"], answer
    result = answer["result"]
    assert result["creditsCharged"] == "0.25" and result["detectedType"] == "person"
    assert (result["resultWidth"], result["resultHeight"]) == ("320", "240")
    assert int(result["rateLimitRemaining"]) < int(result["rateLimit"])
    saved = open_image(output.read_bytes())
    assert saved.format == "PNG" and saved.mode == "RGBA" and saved.size == (320, 240) and alpha_iou(saved) > 0.9


def test_npm_client_base64_with_colour_and_url_with_crop(node_client, endpoint, key, tmp_path, image_server):
    flat = tmp_path / "flat.jpg"
    answer = node_client(endpoint, "removeBackgroundFromImageBase64",
                         {"base64img": base64.b64encode(PNG).decode(), "apiKey": key, "size": "hd",
                          "bg_color": "81d4fa", "outputFile": str(flat)})
    assert answer["ok"], answer
    assert answer["result"]["creditsCharged"] == "1"
    image = open_image(flat.read_bytes())  # format auto + opaque background -> JPEG
    assert image.format == "JPEG" and image.size == (320, 240)
    assert np.abs(np.asarray(image)[5, 5].astype(int) - (0x81, 0xD4, 0xFA)).max() <= 6

    cropped = tmp_path / "cropped.png"
    answer = node_client(endpoint, "removeBackgroundFromImageUrl",
                         {"url": f"{image_server}/scene.png", "apiKey": key, "size": "medium", "crop": True,
                          "outputFile": str(cropped)})
    assert answer["ok"], answer
    image = open_image(cropped.read_bytes())
    assert image.mode == "RGBA" and 100 < image.size[0] < 160 and 100 < image.size[1] < 160


def test_npm_client_sends_scale_position_and_add_shadow(node_client, endpoint, key, tmp_path):
    """The npm client's scale, position and add_shadow options, as multipart fields (file upload) and as
    JSON values (base64: add_shadow is a JSON boolean)."""
    source, output = tmp_path / "off.png", tmp_path / "placed.png"
    source.write_bytes(OFF)
    answer = node_client(endpoint, "removeBackgroundFromImageFile",
                         {"path": str(source), "apiKey": key, "size": "full", "scale": "40%", "position": "50% 0%",
                          "add_shadow": True, "outputFile": str(output)})
    assert answer["ok"], answer
    assert (answer["result"]["resultWidth"], answer["result"]["resultHeight"]) == ("320", "240")
    rgba = np.asarray(open_image(output.read_bytes())).astype(int)
    alpha = rgba[:, :, 3]
    left, top, width, height = box_of(np.where(red(rgba) & (alpha >= 128), 255, 0))  # the disc, not its shadow
    assert top <= 1 and abs(left + width / 2 - 160) <= 1 and abs(height / 240 - 0.4) <= 0.02  # top centre, 40 %
    assert alpha[top + height + 2:top + height + 12, left + width // 4:left + 3 * width // 4].max() > 20  # shadow

    flat = tmp_path / "flat.jpg"
    answer = node_client(endpoint, "removeBackgroundFromImageBase64",
                         {"base64img": base64.b64encode(OFF).decode(), "apiKey": key, "size": "full",
                          "scale": "60%", "add_shadow": True, "bg_color": "ffffff", "outputFile": str(flat)})
    assert answer["ok"], answer
    rgb = np.asarray(open_image(flat.read_bytes())).astype(int)  # format auto + a colour: JPEG
    left, top, width, height = box_of(np.where(red(rgb), 255, 0))
    assert abs(height / 240 - 0.6) <= 0.02 and abs(top + height / 2 - 120) <= 2
    assert rgb[5, 5].min() >= 250 and rgb[top + height + 3:top + height + 8, 150:170].max() < 245  # shadow on white


def test_npm_client_sees_errors_in_remove_bg_shape(node_client, endpoint):
    answer = node_client(endpoint, "removeBackgroundFromImageBase64",
                         {"base64img": base64.b64encode(PNG).decode(), "apiKey": "cc_live_wrong"})
    assert not answer["ok"] and answer["error"][0]["code"] == "invalid_api_key"


# -- the removebg PyPI package ---------------------------------------------------------------------------

def test_removebg_pypi_client(endpoint, key, tmp_path, monkeypatch, image_server):
    """removebg 0.4 sends only size and bg_color (its methods take no other option), so it cannot send
    scale, position, roi, add_shadow or semitransparency: this drives everything it can send."""
    from removebg import RemoveBg, removebg as module

    monkeypatch.setattr(module, "API_ENDPOINT", endpoint)
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "in.jpg"
    source.write_bytes(JPEG)
    client = RemoveBg(key, str(tmp_path / "errors.log"))
    client.remove_background_from_img_file(str(source), size="regular")
    saved = open_image((tmp_path / "in.jpg_no_bg.png").read_bytes())
    assert saved.format == "PNG" and saved.mode == "RGBA" and alpha_iou(saved) > 0.9
    client.remove_background_from_base64_img(base64.b64encode(PNG).decode(), new_file_name="b64.png",
                                             bg_color="green")
    flat = open_image((tmp_path / "b64.png").read_bytes())
    assert flat.format == "JPEG" and np.asarray(flat)[3, 3].tolist()[1] > 100  # CSS green background
    client.remove_background_from_img_url(f"{image_server}/scene.png", new_file_name="url.png")
    assert alpha_iou(open_image((tmp_path / "url.png").read_bytes())) > 0.9
    with pytest.raises(requests.HTTPError) as err:
        client.remove_background_from_img_file(str(source), size="gigantic")
    assert err.value.response.status_code == 400


# -- the remove-bg PyPI package --------------------------------------------------------------------------

_REMOVE_BG_SCRIPT = """
import collections, collections.abc, json, sys
collections.Callable = collections.abc.Callable  # remove-bg 0.2.1 predates Python 3.10
from removebg import RemoveBg, constants, exceptions
constants.API_ENDPOINT = sys.argv[1]
key, path, out, options = sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
try:
    data = RemoveBg(api_token=key).remove_background_from_file(path, **options)
except exceptions.APIException as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
else:
    open(out, "wb").write(data)
    print(json.dumps({"saved": out}))
"""


@pytest.fixture(scope="module")
def remove_bg_client():
    if not (REMOVE_BG / "removebg" / "requests.py").exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(REMOVE_BG),
                        *REMOVE_BG_PINS], check=True, timeout=300, capture_output=True)

    def call(server: str, key: str, path, out, **options) -> dict:
        env = {**os.environ, "PYTHONPATH": str(REMOVE_BG)}
        done = subprocess.run([sys.executable, "-c", _REMOVE_BG_SCRIPT, server + "/v1.0/", key, str(path), str(out),
                               json.dumps(options)], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])
    return call


def test_remove_bg_pypi_client_zip_and_errors(remove_bg_client, server, key, tmp_path):
    source, out = tmp_path / "in.jpg", tmp_path / "out.zip"
    source.write_bytes(JPEG)
    assert remove_bg_client(server, key, source, out, size="full", format="zip") == {"saved": str(out)}
    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == ["alpha.png", "color.jpg"]
        color, alpha = (open_image(archive.read(n)) for n in ("color.jpg", "alpha.png"))
    assert color.format == "JPEG" and color.mode == "RGB" and color.size == (320, 240)
    assert alpha.format == "PNG" and alpha.mode == "L" and alpha.size == (320, 240) and mask_iou(alpha) > 0.9
    answer = remove_bg_client(server, key, source, out, size="gigantic")
    assert answer["error"] == "InvalidParameters" and "size must be one of" in answer["message"]
    answer = remove_bg_client(server, "cc_live_wrong", source, out)
    assert answer["error"] == "AuthenticationFailed"


def test_remove_bg_pypi_client_sends_roi_semitransparency_scale_and_shadows(remove_bg_client, server, key,
                                                                            tmp_path):
    """remove-bg 0.2.1 passes any keyword on as a form field (booleans as Python's True/False)."""
    source, out = tmp_path / "off.png", tmp_path / "out.zip"
    source.write_bytes(OFF)
    assert remove_bg_client(server, key, source, out, size="full", format="zip", roi="0% 0% 30% 100%",
                            semitransparency=False) == {"saved": str(out)}
    with zipfile.ZipFile(out) as archive:
        alpha = np.asarray(open_image(archive.read("alpha.png")))
    assert alpha[:, 96:].max() == 0 and alpha[:, :96].max() == 255 and set(np.unique(alpha)) == {0, 255}
    placed = tmp_path / "placed.png"
    assert remove_bg_client(server, key, source, placed, size="full", format="png", scale="50%", position="0% 0%",
                            add_shadow=True, shadow_type="3D", shadow_opacity=80) == {"saved": str(placed)}
    rgba = np.asarray(open_image(placed.read_bytes())).astype(int)
    left, top, width, height = box_of(np.where(red(rgba) & (rgba[:, :, 3] >= 128), 255, 0))
    assert left <= 2 and top <= 2 and abs(height / 240 - 0.5) <= 0.02
    assert rgba[:, :, 3][shadow_band(top + height, left, width)].min() > 0  # the shadow under it
    answer = remove_bg_client(server, key, source, out, shadow_type="drop")
    assert answer["error"] == "InvalidParameters" and "add_shadow=true" in answer["message"]


# -- the rest of the contract, with requests -------------------------------------------------------------

def test_json_mode_headers_and_job_row(endpoint, key, compat_app, server):
    r = requests.post(endpoint, headers={"X-Api-Key": key, "Accept": "application/json"},
                      files={"image_file": ("in.jpg", JPEG, "image/jpeg")}, data={"size": "full"}, timeout=60)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert set(data) == {"result_b64", "foreground_top", "foreground_left", "foreground_width", "foreground_height"}
    assert 55 <= data["foreground_left"] <= 105 and data["foreground_width"] > 100
    assert r.headers["X-Foreground-Left"] == str(data["foreground_left"]) and r.headers["X-Type"] == "auto"
    assert r.headers["X-Credits-Charged"] == "1" and r.headers["X-Width"] == "320"
    job = job_row(compat_app, r.headers["X-Job-ID"])
    assert job.source == "removebg" and job.status == "succeeded" and job.options["format"] == "png"
    replay = requests.get(f"{server}/v2/jobs/{job.id}/result", headers={"x-api-key": key}, timeout=30)
    assert replay.content == base64.b64decode(data["result_b64"])


def test_semi_transparent_colour_background_image_and_alpha(endpoint, key, image_server):
    r = requests.post(endpoint, headers={"X-Api-Key": key}, files={"image_file": ("in.png", PNG, "image/png")},
                      data={"bg_color": "ff000080"}, timeout=60)
    image = np.asarray(open_image(r.content))
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png" and image.shape == (240, 320, 4)
    assert image[3, 3].tolist() == [255, 0, 0, 128] and image[120, 160, 3] == 255
    r = requests.post(endpoint, headers={"X-Api-Key": key}, data={"image_url": f"{image_server}/scene.png",
                                                                   "bg_image_url": f"{image_server}/green.png",
                                                                   "format": "jpg"}, timeout=60)
    image = np.asarray(open_image(r.content))
    assert r.headers["Content-Type"] == "image/jpeg" and abs(int(image[3, 3, 1]) - 200) < 8 and image[3, 3, 0] < 10
    r = requests.post(endpoint, headers={"X-Api-Key": key}, files={"image_file": ("in.png", PNG, "image/png")},
                      data={"channels": "alpha"}, timeout=60)
    mask = open_image(r.content)
    assert mask.mode == "L" and mask_iou(mask) > 0.9


# -- scale, position, roi, shadows, semitransparency ----------------------------------------------------

@pytest.mark.parametrize("scale", ["30%", "80%"])
def test_scale_centres_the_subject_and_sets_its_fill(endpoint, key, scale):
    r, image = cut(endpoint, key, OFF, scale=scale, format="png")
    assert image.shape == (240, 320, 4)
    left, top, width, height = box_of(image[:, :, 3])
    assert abs(left + width / 2 - 160) <= 1 and abs(top + height / 2 - 120) <= 1  # scale implies center
    assert abs(max(width / 320, height / 240) - float(scale[:-1]) / 100) <= 0.01
    assert header_box(r) == (left, top, width, height)
    _, same = cut(endpoint, key, OFF, scale="original", format="png")
    _, plain = cut(endpoint, key, OFF, format="png")
    assert np.array_equal(same, plain) and box_of(plain[:, :, 3])[0] < 60  # original: where it was


def test_position_with_scale_with_crop_and_alone(endpoint, key):
    _, image = cut(endpoint, key, OFF, scale="40%", position="100% 100%", format="png")
    left, top, width, height = box_of(image[:, :, 3])
    assert abs(left + width - 320) <= 1 and abs(top + height - 240) <= 1 and abs(height / 240 - 0.4) <= 0.01
    _, image = cut(endpoint, key, OFF, scale="40%", position="original", format="png")
    left, top, width, height = box_of(image[:, :, 3])  # scaled about its own centre (100, 90)
    assert abs(left + width / 2 - 100) <= 1 and abs(top + height / 2 - 90) <= 1
    # crop: the canvas is the subject plus its margin (here 80 px on the right); position places it there
    _, cropped = cut(endpoint, key, OFF, crop="true", crop_margin="0px 80px 0px 0px", format="png")
    _, centred = cut(endpoint, key, OFF, crop="true", crop_margin="0px 80px 0px 0px", position="center",
                     format="png")
    assert cropped.shape == centred.shape and box_of(cropped[:, :, 3])[0] == 0
    left, _, width, _ = box_of(centred[:, :, 3])
    assert abs(left + width / 2 - centred.shape[1] / 2) <= 1 and left >= 39
    _, scaled = cut(endpoint, key, OFF, crop="true", scale="50%", format="png")
    left, top, width, height = box_of(scaled[:, :, 3])
    side = max(scaled.shape[:2])
    assert abs(max(width, height) / side - 0.5) <= 0.02 and abs(left + width / 2 - scaled.shape[1] / 2) <= 1
    # neither scale nor crop: position does nothing on remove.bg, so nothing here either
    _, alone = cut(endpoint, key, OFF, position="center", format="png")
    _, plain = cut(endpoint, key, OFF, format="png")
    assert np.array_equal(alone, plain)


def test_scale_after_the_size_cap(endpoint, key):
    r, image = cut(endpoint, key, scene_at(300, 200, 120, size=(800, 600)), size="preview", scale="60%",
                   format="png")
    height, width = image.shape[:2]
    assert width * height <= 250_000 and (int(r.headers["X-Width"]), int(r.headers["X-Height"])) == (width, height)
    left, top, w, h = box_of(image[:, :, 3])
    assert abs(max(w / width, h / height) - 0.6) <= 0.01
    assert abs(left + w / 2 - width / 2) <= 1 and abs(top + h / 2 - height / 2) <= 1


def test_add_shadow_lies_under_the_subject_and_follows_type_and_opacity(endpoint, key):
    _, bare = cut(endpoint, key, format="png")
    bare_alpha = bare[:, :, 3].astype(int)
    left, top, width, height = box_of(bare_alpha)

    def added(**fields):
        _, shaded = cut(endpoint, key, add_shadow="true", format="png", **fields)
        alpha = shaded[:, :, 3].astype(int)
        assert (alpha[bare_alpha == 255] == 255).all()  # the subject is untouched
        shadow = (alpha > bare_alpha) & (bare_alpha == 0)
        assert shadow.any() and (shaded[:, :, :3][shadow] == 0).all()  # black, semi-transparent
        assert alpha[shadow].max() < 255
        return shadow, alpha
    shadow, _ = added()  # remove.bg's default shadow type is car: on the ground under the subject
    ys, xs = np.nonzero(shadow)
    assert ys.min() > top + height / 2 and abs(xs.mean() - (left + width / 2)) <= 2
    shadow, _ = added(shadow_type="3D")
    assert np.nonzero(shadow)[0].min() > top + height / 2
    shadow, _ = added(shadow_type="drop")  # offset behind the subject, down and to the right
    ys, xs = np.nonzero(shadow)
    assert xs.mean() > left + width / 2 and ys.mean() > top + height / 2
    faint, strong = (added(shadow_opacity=str(o))[1][shadow_band(top + height, left, width)].max() for o in (20, 80))
    assert 0 < faint < strong


def shadow_band(bottom: int, left: int, width: int):
    """The rows just below the subject, across its middle half: where a ground shadow is darkest."""
    return np.s_[bottom + 1:bottom + 6, left + width // 4:left + 3 * width // 4]


def test_shadows_on_colours_images_and_in_zip(endpoint, key, image_server):
    _, bare = cut(endpoint, key, format="png")
    left, top, width, height = box_of(bare[:, :, 3])
    band = shadow_band(top + height, left, width)
    _, white = cut(endpoint, key, add_shadow="true", bg_color="ffffff")  # format auto: an opaque JPEG
    assert white.ndim == 3 and white.shape[2] == 3
    assert white[5, 5].min() >= 250 and white[band].max() < 200  # it darkens the background
    _, green = cut(endpoint, key, add_shadow="true", bg_image_url=f"{image_server}/green.png", format="png")
    assert abs(int(green[5, 5, 1]) - 200) < 8 and green[band][:, :, 1].max() < 160
    r = requests.post(endpoint, headers={"X-Api-Key": key}, files={"image_file": ("in.png", PNG, "image/png")},
                      data={"format": "zip", "add_shadow": "true", "size": "full"}, timeout=60)
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        color, alpha = (np.asarray(open_image(archive.read(n))) for n in ("color.jpg", "alpha.png"))
    assert alpha.ndim == 2 and 0 < alpha[band].min() and alpha[band].max() < 255  # the shadow is in the matte
    assert color[band].max() < 40 and (alpha[bare[:, :, 3] == 255] == 255).all()  # black where it is


def test_add_shadow_with_crop_keeps_the_whole_shadow(endpoint, key):
    _, cropped = cut(endpoint, key, crop="true", format="png")
    _, shaded = cut(endpoint, key, crop="true", add_shadow="true", format="png")
    assert shaded.shape[0] > cropped.shape[0] and shaded[-1, :, 3].max() <= 2  # not cut off at the bottom


def test_roi_keeps_only_its_region(endpoint, key):
    _, half = cut(endpoint, key, roi="0% 0% 50% 100%", format="png")
    assert half[:, 160:, 3].max() == 0 and half[:, :160, 3].max() == 255
    _, same = cut(endpoint, key, roi="0px 0px 160px 240px", format="png")
    assert np.array_equal(same[:, :, 3], half[:, :, 3])
    r, cropped = cut(endpoint, key, roi="0% 0% 50% 100%", crop="true", format="png")  # crop after roi
    assert abs(cropped.shape[1] - 61) <= 2 and abs(cropped.shape[0] - 123) <= 2
    _, whole = cut(endpoint, key, roi="0% 0% 100% 100%", format="png")
    _, plain = cut(endpoint, key, format="png")
    assert np.array_equal(whole, plain)


def test_semitransparency_false_gives_a_hard_matte(endpoint, key):
    _, soft = cut(endpoint, key, format="png")
    _, hard = cut(endpoint, key, semitransparency="false", format="png")
    assert len(np.unique(soft[:, :, 3])) > 2 and set(np.unique(hard[:, :, 3])) == {0, 255}
    r = requests.post(endpoint, headers={"X-Api-Key": key}, files={"image_file": ("in.png", PNG, "image/png")},
                      data={"format": "zip", "semitransparency": "false", "scale": "70%"}, timeout=60)
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        assert set(np.unique(np.asarray(open_image(archive.read("alpha.png"))))) == {0, 255}


def test_account(server, key):
    body = requests.get(server + "/v1.0/account", headers={"X-Api-Key": key}).json()
    attributes = body["data"]["attributes"]
    assert set(attributes["credits"]) >= {"total", "subscription", "payg"} and attributes["unlimited"] is True
    assert attributes["usage"]["images"] >= 1


def test_errors_in_remove_bg_shape(endpoint, key, compat_app, monkeypatch):
    before = job_count(compat_app)
    auth = {"X-Api-Key": key}
    png = {"image_file": ("in.png", PNG, "image/png")}
    assert errors_of(requests.post(endpoint, files=png), 403)["code"] == "missing_api_key"
    assert errors_of(requests.post(endpoint, headers={"X-Api-Key": revoked_key(compat_app, "rbg-revoked")},
                                   files=png), 403)["code"] == "revoked_api_key"
    assert errors_of(requests.post(endpoint, headers=auth, data={"size": "hd"}), 400)["code"] == "missing_image"
    assert errors_of(requests.post(endpoint, headers=auth, json={"image_file_b64": "aGVs bG8="}),
                     400)["code"] == "invalid_base64"
    assert errors_of(requests.post(endpoint, headers=auth, files={"image_file": ("x.gif", b"GIF89a nope", "image/gif")}),
                     400)["code"] == "invalid_image"
    assert errors_of(requests.post(endpoint, headers=auth, files={"image_file": ("x.ppm", PPM, "image/x-ppm")}),
                     400)["code"] == "unsupported_image_format"
    assert errors_of(requests.post(endpoint, headers={**auth, "Content-Type": "text/plain"}, data="hello"),
                     400)["code"] == "unsupported_media_type"
    for fields, code in [({"type": "spaceship"}, "invalid_type"), ({"bg_color": "bluish"}, "invalid_bg_color"),
                         ({"format": "zip", "channels": "alpha"}, "invalid_channels"),
                         ({"scale": "5%"}, "invalid_scale"), ({"scale": "huge"}, "invalid_scale"),
                         ({"position": "top", "scale": "50%"}, "invalid_position"),
                         ({"roi": "10% 10% 90%"}, "invalid_roi"), ({"roi": "400px 0px 500px 100px"}, "invalid_roi"),
                         ({"add_shadow": "sometimes"}, "invalid_boolean"),
                         ({"shadow_type": "drop"}, "invalid_shadow_type"),
                         ({"add_shadow": "false", "shadow_opacity": "40"}, "invalid_shadow_opacity"),
                         ({"add_shadow": "true", "shadow_type": "hard"}, "invalid_shadow_type"),
                         ({"add_shadow": "true", "shadow_opacity": "150"}, "invalid_shadow_opacity"),
                         ({"semitransparency": "sometimes"}, "invalid_semitransparency")]:
        err = errors_of(requests.post(endpoint, headers=auth, files=png, data=fields), 400)
        assert err["code"] == code, (fields, err)
        assert any(name in err["title"] for name in fields if name != "add_shadow") or code == "invalid_boolean", err
    assert job_count(compat_app) == before  # none of these created a job
    monkeypatch.setenv("CLEARCUT_MAX_UPLOAD_MB", "0.01")
    assert errors_of(requests.post(endpoint, headers=auth, files={"image_file": ("big.jpg", JPEG + bytes(20000), "image/jpeg")}),
                     400)["code"] == "image_too_large"


def test_rate_limit(endpoint, compat_app):
    limited = new_key(compat_app, "rbg-rate")
    with rate_limited(compat_app, 1):
        requests.get(endpoint.replace("removebg", "account"), headers={"X-Api-Key": limited})
        r = requests.post(endpoint, headers={"X-Api-Key": limited}, files={"image_file": ("in.png", PNG)})
    assert errors_of(r, 429)["code"] == "rate_limited"
    assert 1 <= int(r.headers["Retry-After"]) <= 60 and r.headers["X-RateLimit-Limit"] == "1"


def test_mixed_vendor_fields_are_refused(endpoint, key):
    err = errors_of(requests.post(endpoint, headers={"X-Api-Key": key},
                                  files={"image_file": ("in.png", PNG, "image/png")},
                                  data={"bg_color_code": "ffffff"}), 400)
    assert err["code"] == "mixed_vendor_fields" and "Slazzer" in err["title"] and "'bg_color'" in err["title"]
    err = errors_of(requests.post(endpoint, headers={"X-Api-Key": key},
                                  files={"source_image_file": ("in.png", PNG, "image/png")}), 400)
    assert err["code"] == "mixed_vendor_fields" and "'image_file'" in err["title"]
