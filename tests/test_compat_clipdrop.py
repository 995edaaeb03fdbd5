"""Clipdrop drop-in (POST /remove-background/v1). No maintained Clipdrop client exists on PyPI or npm, so
this sends the plain `requests` call Clipdrop's public documentation shows, against a live Clearcut server."""
from __future__ import annotations

import pytest
import requests

from tests.test_compat_common import (JPEG, PNG, PPM, alpha_iou, compat_app, job_count, job_row,  # noqa: F401
                                      monkeypatch_module, new_key, open_image, rate_limited, revoked_key, server)


@pytest.fixture(scope="module")
def key(compat_app):
    return new_key(compat_app, "clipdrop-tests")


@pytest.fixture(scope="module")
def url(server):
    return server + "/remove-background/v1"


def remove(url, key, accept=None, image=JPEG, name="car.jpg", data=None):
    headers = {"x-api-key": key, **({"Accept": accept} if accept else {})}
    return requests.post(url, files={"image_file": (name, image, "image/jpeg")}, headers=headers, data=data,
                         timeout=60)


def test_documented_request_and_accept_header(url, key, compat_app):
    r = remove(url, key)
    assert r.ok and r.headers["Content-Type"] == "image/png"
    assert r.headers["x-credits-consumed"] == "1" and r.headers["x-remaining-credits"] == "unlimited"
    image = open_image(r.content)
    assert image.mode == "RGBA" and image.size == (320, 240) and alpha_iou(image) > 0.9
    assert job_row(compat_app, r.headers["X-Job-ID"]).source == "clipdrop"
    webp = remove(url, key, "image/webp")
    assert webp.headers["Content-Type"] == "image/webp" and alpha_iou(open_image(webp.content)) > 0.9
    jpeg = remove(url, key, "image/jpeg")
    assert jpeg.headers["Content-Type"] == "image/jpeg" and open_image(jpeg.content).format == "JPEG"


def error_of(r, status):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "code"} and body["error"]
    assert r.headers["x-credits-consumed"] == "0"
    return body


def test_errors_in_clipdrop_shape(url, key, compat_app, monkeypatch):
    before = job_count(compat_app)
    assert error_of(remove(url, ""), 401)["code"] == "missing_api_key"
    assert error_of(remove(url, "cc_live_wrong"), 403)["code"] == "invalid_api_key"
    assert error_of(remove(url, revoked_key(compat_app, "clipdrop-revoked")), 403)["code"] == "revoked_api_key"
    assert error_of(remove(url, key, "text/html"), 406)["code"] == "not_acceptable"
    assert error_of(remove(url, key, data={"transparency": "keep"}), 400)["code"] == "unknown_option"
    no_image = requests.post(url, headers={"x-api-key": key}, files={"other": (None, "x")})
    assert error_of(no_image, 400)["code"] == "unknown_option"
    assert error_of(requests.post(url, headers={"x-api-key": key}, data={"a": "b"}), 400)["code"] == "invalid_request"
    assert error_of(remove(url, key, image=PPM, name="a.ppm"), 400)["code"] == "unsupported_image_format"
    assert error_of(remove(url, key, image=b"GIF89a nope", name="a.gif"), 400)["code"] == "invalid_image"
    assert job_count(compat_app) == before
    monkeypatch.setenv("CLEARCUT_MAX_UPLOAD_MB", "0.01")
    assert error_of(remove(url, key, image=JPEG + bytes(20000)), 400)["code"] == "image_too_large"


def test_rate_limit(url, compat_app):
    limited = new_key(compat_app, "clipdrop-rate")
    with rate_limited(compat_app, 1):
        remove(url, limited, "text/html")
        r = remove(url, limited)
    assert error_of(r, 429)["code"] == "rate_limited" and 1 <= int(r.headers["Retry-After"]) <= 60


def test_mixed_vendor_fields_are_refused(url, key):
    body = error_of(remove(url, key, data={"format": "jpg"}), 400)
    assert body["code"] == "mixed_vendor_fields" and "Accept header" in body["error"]
    r = requests.post(url, headers={"x-api-key": key}, files={"source_image_file": ("a.png", PNG)}, timeout=60)
    assert error_of(r, 400)["code"] == "mixed_vendor_fields"
