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

from tests.conftest import ROOT
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


def test_npm_client_sees_errors_in_remove_bg_shape(node_client, endpoint):
    answer = node_client(endpoint, "removeBackgroundFromImageBase64",
                         {"base64img": base64.b64encode(PNG).decode(), "apiKey": "cc_live_wrong"})
    assert not answer["ok"] and answer["error"][0]["code"] == "invalid_api_key"


# -- the removebg PyPI package ---------------------------------------------------------------------------

def test_removebg_pypi_client(endpoint, key, tmp_path, monkeypatch, image_server):
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
    for field, value, code in [("scale", "50%", "unsupported_option"), ("roi", "1px 1px 9px 9px", "unsupported_option"),
                               ("type", "spaceship", "invalid_type"), ("bg_color", "bluish", "invalid_bg_color"),
                               ("format", "zip", "invalid_channels")]:
        extra = {"channels": "alpha"} if field == "format" else {}
        err = errors_of(requests.post(endpoint, headers=auth, files=png, data={field: value, **extra}), 400)
        assert err["code"] == code, err
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
