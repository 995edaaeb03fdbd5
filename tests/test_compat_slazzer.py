"""Slazzer drop-in (POST /v2.0/remove_image_background). No maintained Slazzer client exists on PyPI or
npm (`slazzer-cli` 1.0.0 ships no code), so this sends the plain `requests` calls Slazzer's public
documentation shows, against a live Clearcut server."""
from __future__ import annotations

import base64

import numpy as np
import pytest
import requests

from tests.test_compat_common import (JPEG, PNG, PPM, alpha_iou, compat_app, image_server, job_count,  # noqa: F401
                                      job_row, mask_iou, monkeypatch_module, new_key, open_image, rate_limited,
                                      revoked_key, server)


@pytest.fixture(scope="module")
def key(compat_app):
    return new_key(compat_app, "slazzer-tests")


@pytest.fixture(scope="module")
def url(server):
    return server + "/v2.0/remove_image_background"


def post(url, key, files=None, data=None):
    return requests.post(url, files=files, data=data, headers={"API-KEY": key}, timeout=60)


def test_documented_request_and_every_input(url, key, compat_app, image_server):
    r = post(url, key, files={"source_image_file": ("image.jpg", JPEG)})
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png"
    image = open_image(r.content)
    assert image.mode == "RGBA" and image.size == (320, 240) and alpha_iou(image) > 0.9
    assert job_row(compat_app, r.headers["X-Job-ID"]).source == "slazzer"
    fields = {"source_image_url": f"{image_server}/scene.png", "bg_color_code": "#0000FF", "format": "jpg"}
    flat = post(url, key, files={name: (None, value) for name, value in fields.items()})  # multipart
    assert flat.status_code == 200, flat.text
    pixels = np.asarray(open_image(flat.content))
    assert np.abs(pixels[3, 3].astype(int) - (0, 0, 255)).max() <= 6
    mask = post(url, key, data={"source_image_base64": base64.b64encode(PNG).decode(), "channel": "alpha"})
    assert open_image(mask.content).mode == "L" and mask_iou(open_image(mask.content)) > 0.9
    cropped = post(url, key, files={"source_image_file": ("image.jpg", JPEG)}, data={"crop": "true"})
    assert open_image(cropped.content).size[0] < 200


def error_of(r, status):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "code"} and body["error"]
    return body


def test_errors_in_slazzer_shape(url, key, compat_app, monkeypatch):
    before = job_count(compat_app)
    file = {"source_image_file": ("image.jpg", JPEG)}
    assert error_of(requests.post(url, files=file), 401)["code"] == "missing_api_key"
    assert error_of(post(url, "cc_live_wrong", files=file), 401)["code"] == "invalid_api_key"
    assert error_of(post(url, revoked_key(compat_app, "slazzer-revoked"), files=file), 403)["code"] == \
        "revoked_api_key"
    assert error_of(post(url, key, data={"crop": "true"}), 400)["code"] == "missing_image"
    assert error_of(post(url, key, files=file, data={"source_image_base64": base64.b64encode(PNG).decode()}),
                    400)["code"] == "multiple_images"
    assert error_of(post(url, key, files=file, data={"channel": "rgb"}), 400)["code"] == "invalid_channels"
    assert error_of(post(url, key, files=file, data={"bg_color_code": "bluish"}), 400)["code"] == "invalid_bg_color"
    assert error_of(post(url, key, data={"source_image_base64": "aGVs bG8="}), 400)["code"] == "invalid_base64"
    assert error_of(post(url, key, files={"source_image_file": ("a.ppm", PPM)}), 415)["code"] == \
        "unsupported_image_format"
    assert error_of(post(url, key, files={"source_image_file": ("a.gif", b"GIF89a nope")}), 422)["code"] == \
        "invalid_image"
    assert job_count(compat_app) == before
    monkeypatch.setenv("CLEARCUT_MAX_UPLOAD_MB", "0.01")
    assert error_of(post(url, key, files={"source_image_file": ("b.jpg", JPEG + bytes(20000))}), 413)["code"] == \
        "image_too_large"


def test_rate_limit(url, compat_app):
    limited = new_key(compat_app, "slazzer-rate")
    with rate_limited(compat_app, 1):
        post(url, limited, data={"channel": "rgb"})
        r = post(url, limited, files={"source_image_file": ("image.jpg", JPEG)})
    assert error_of(r, 429)["code"] == "rate_limited" and 1 <= int(r.headers["Retry-After"]) <= 60


def test_mixed_vendor_fields_are_refused(url, key):
    body = error_of(post(url, key, files={"image_file": ("image.jpg", JPEG)}), 400)
    assert body["code"] == "mixed_vendor_fields" and "'source_image_file'" in body["error"]
    body = error_of(post(url, key, files={"source_image_file": ("image.jpg", JPEG)}, data={"bg_color": "red"}), 400)
    assert body["code"] == "mixed_vendor_fields" and "'bg_color_code'" in body["error"]
