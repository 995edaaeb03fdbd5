"""Photoroom drop-in (POST /v1/segment). No maintained Photoroom client exists on PyPI or npm, so this
sends the plain `requests` call Photoroom's public documentation shows, against a live Clearcut server."""
from __future__ import annotations

import numpy as np
import pytest
import requests

from tests.test_compat_common import (JPEG, PNG, PPM, alpha_iou, compat_app, job_count, job_row,  # noqa: F401
                                      mask_iou, monkeypatch_module, new_key, open_image, rate_limited,
                                      revoked_key, server)


@pytest.fixture(scope="module")
def key(compat_app):
    return new_key(compat_app, "photoroom-tests")


@pytest.fixture(scope="module")
def url(server):
    return server + "/v1/segment"


def segment(url, key, data=None, image=JPEG, name="input.jpg"):
    return requests.post(url, headers={"Accept": "image/png, application/json", "x-api-key": key},
                         files={"image_file": (name, image)}, data=data or {}, timeout=60)


def test_documented_request_and_options(url, key, compat_app):
    r = segment(url, key)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png"
    image = open_image(r.content)
    assert image.mode == "RGBA" and image.size == (320, 240) and alpha_iou(image) > 0.9
    assert job_row(compat_app, r.headers["X-Job-ID"]).source == "photoroom"
    flat = open_image(segment(url, key, {"format": "jpg", "bg_color": "#FF0000", "despill": "true"}).content)
    assert flat.format == "JPEG" and np.abs(np.asarray(flat)[3, 3].astype(int) - (255, 0, 0)).max() <= 6
    mask = open_image(segment(url, key, {"channels": "alpha", "size": "preview"}).content)
    assert mask.mode == "L" and mask_iou(mask) > 0.9
    cropped = open_image(segment(url, key, {"crop": "true", "format": "webp"}).content)
    assert cropped.format == "WEBP" and cropped.size[0] < 200 and cropped.mode == "RGBA"


def error_of(r, status):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"detail", "status_code", "type"} and body["status_code"] == status and body["detail"]
    return body


def test_errors_in_photoroom_shape(url, key, compat_app, monkeypatch):
    before = job_count(compat_app)
    assert error_of(segment(url, ""), 401)["type"] == "missing_api_key"
    assert error_of(segment(url, "cc_live_wrong"), 401)["type"] == "invalid_api_key"
    assert error_of(segment(url, revoked_key(compat_app, "photoroom-revoked")), 403)["type"] == "revoked_api_key"
    assert error_of(segment(url, key, {"format": "svg"}), 400)["type"] == "invalid_format"
    assert error_of(segment(url, key, {"bg_color": "bluish"}), 400)["type"] == "invalid_bg_color"
    no_image = requests.post(url, headers={"x-api-key": key}, files={"format": (None, "png")})
    assert error_of(no_image, 400)["type"] == "missing_image"
    not_multipart = requests.post(url, headers={"x-api-key": key}, data={"format": "png"})
    assert error_of(not_multipart, 400)["type"] == "invalid_request"
    assert error_of(segment(url, key, image=PPM, name="a.ppm"), 415)["type"] == "unsupported_image_format"
    assert error_of(segment(url, key, image=b"GIF89a nope", name="a.gif"), 422)["type"] == "invalid_image"
    assert job_count(compat_app) == before
    monkeypatch.setenv("CLEARCUT_MAX_UPLOAD_MB", "0.01")
    assert error_of(segment(url, key, image=JPEG + bytes(20000)), 413)["type"] == "image_too_large"


def test_rate_limit(url, compat_app):
    limited = new_key(compat_app, "photoroom-rate")
    with rate_limited(compat_app, 1):
        segment(url, limited, {"format": "svg"})
        r = segment(url, limited)
    assert error_of(r, 429)["type"] == "rate_limited" and 1 <= int(r.headers["Retry-After"]) <= 60


def test_mixed_vendor_fields_are_refused(url, key):
    body = error_of(segment(url, key, {"bg_color_code": "#FFFFFF"}), 400)
    assert body["type"] == "mixed_vendor_fields" and "'bg_color'" in body["detail"]
    r = requests.post(url, headers={"x-api-key": key}, files={"source_image_file": ("a.png", PNG)}, timeout=60)
    body = error_of(r, 400)
    assert body["type"] == "mixed_vendor_fields" and "'image_file'" in body["detail"]
