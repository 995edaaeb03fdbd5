"""withoutbg drop-in, driven by the official `withoutbg` PyPI client (its base_url pointed at Clearcut)
and by the plain `requests` calls withoutbg's own documentation shows."""
from __future__ import annotations

import base64

import pytest
import requests
from PIL import Image

from tests.test_compat_common import (JPEG, PNG, PPM, alpha_iou, compat_app, image_server,  # noqa: F401
                                      job_count, job_row, latest_job, mask_iou, monkeypatch_module,
                                      new_key, open_image, rate_limited, revoked_key, server)

B64 = "/v1.0/image-without-background-base64"


@pytest.fixture(scope="module")
def key(compat_app):
    return new_key(compat_app, "withoutbg-tests")


def test_official_client_remove_background_and_get_usage(server, key, compat_app, tmp_path):
    from withoutbg import WithoutBG, WithoutBGAPIClient

    source = tmp_path / "input.jpg"
    source.write_bytes(JPEG)
    cutout = WithoutBG.api(api_key=key, base_url=server).remove_background(str(source))
    cutout.save(tmp_path / "output.png")
    saved = Image.open(tmp_path / "output.png")
    assert saved.format == "PNG" and saved.mode == "RGBA" and saved.size == (320, 240)
    assert alpha_iou(saved) > 0.9
    job = latest_job(compat_app, "withoutbg")
    assert job.status == "succeeded" and job.options["channels"] == "alpha"  # the client asks for the matte

    usage = WithoutBGAPIClient(api_key=key, base_url=server).get_usage()
    assert set(usage) >= {"credit", "expiration_date"} and usage["used"] >= 1 and usage["unlimited"] is True


def test_documented_base64_request_and_data_url_prefix(server, key, compat_app):
    b64 = base64.b64encode(PNG).decode()
    for value in (b64, "data:image/png;base64," + b64):
        r = requests.post(server + B64, headers={"Content-Type": "application/json", "X-API-Key": key},
                          json={"image_base64": value}, timeout=60)
        assert r.status_code == 200, r.text
        out = open_image(base64.b64decode(r.json()["img_without_background_base64"]))
        assert out.format == "PNG" and out.mode == "RGBA" and out.size == (320, 240) and alpha_iou(out) > 0.9
    job = job_row(compat_app, r.headers["X-Job-ID"])
    assert job.source == "withoutbg" and job.status == "succeeded"
    replay = requests.get(f"{server}/v2/jobs/{job.id}/result", headers={"x-api-key": key}, timeout=30)
    assert replay.content == base64.b64decode(r.json()["img_without_background_base64"])


def test_binary_variants(server, key):
    r = requests.post(server + "/v1.0/image-without-background", headers={"X-API-Key": key},
                      files={"file": ("in.jpg", JPEG, "image/jpeg")}, timeout=60)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png"
    assert open_image(r.content).mode == "RGBA" and alpha_iou(open_image(r.content)) > 0.9
    m = requests.post(server + "/v1.0/alpha-channel", headers={"X-API-Key": key},
                      files={"file": ("in.jpg", JPEG, "image/jpeg")}, timeout=60)
    mask = open_image(m.content)
    assert m.status_code == 200 and mask.mode == "L" and mask.size == (320, 240) and mask_iou(mask) > 0.9


def _detail(r, status):
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == ["detail"] and isinstance(body["detail"], str) and body["detail"]
    return body["detail"]


def test_errors_in_withoutbg_shape(server, key, compat_app):
    before = job_count(compat_app)
    auth = {"X-API-Key": key}
    _detail(requests.post(server + B64, headers=auth, json={}), 400)
    _detail(requests.post(server + B64, headers={**auth, "Content-Type": "application/json"}, data="{nope"), 400)
    _detail(requests.post(server + B64, json={"image_base64": base64.b64encode(PNG).decode()}), 401)
    _detail(requests.post(server + B64, headers={"X-API-Key": "cc_live_wrong"}, json={"image_base64": "x"}), 401)
    _detail(requests.post(server + B64, headers={"X-API-Key": revoked_key(compat_app, "withoutbg-revoked")},
                          json={"image_base64": "x"}), 403)
    big = base64.b64encode(b"\xff\xd8\xff" + bytes(10 * 1024 * 1024)).decode()
    assert "10.0 MB" in _detail(requests.post(server + B64, headers=auth, json={"image_base64": big}), 413)
    _detail(requests.post(server + B64, headers=auth, json={"image_base64": base64.b64encode(PPM).decode()}), 415)
    _detail(requests.post(server + B64, headers=auth, json={"image_base64": "aGVs bG8="}), 422)
    _detail(requests.post(server + B64, headers=auth,
                          json={"image_base64": base64.b64encode(b"not an image at all").decode()}), 422)
    _detail(requests.post(server + "/v1.0/alpha-channel", headers=auth, json={"image_base64": "x"}), 400)
    assert job_count(compat_app) == before  # validation failures never create a job


def test_rate_limit_429_with_retry_after(server, compat_app):
    limited = new_key(compat_app, "withoutbg-rate")
    with rate_limited(compat_app, 1):
        ok = requests.get(server + "/available-credit", headers={"X-API-Key": limited})
        r = requests.get(server + "/available-credit", headers={"X-API-Key": limited})
    assert ok.status_code == 200
    _detail(r, 429)
    assert 1 <= int(r.headers["Retry-After"]) <= 60 and r.headers["X-RateLimit-Remaining"] == "0"


def test_mixed_vendor_fields_are_refused(server, key):
    b64 = base64.b64encode(PNG).decode()
    detail = _detail(requests.post(server + B64, headers={"X-API-Key": key},
                                   json={"image_base64": b64, "bg_color": "white"}), 400)
    assert "bg_color" in detail and "withoutbg" in detail
    detail = _detail(requests.post(server + B64, headers={"X-API-Key": key}, json={"image_file_b64": b64}), 400)
    assert "'image_base64'" in detail


def test_sync_timeout_is_a_503_and_the_job_still_finishes(server, key, compat_app, monkeypatch):
    import time

    from PIL import ImageOps

    from tests.test_compat_common import SCENE
    from tests.conftest import encode_image

    monkeypatch.setenv("CLEARCUT_SYNC_TIMEOUT_S", "0.001")
    fresh = base64.b64encode(encode_image(ImageOps.mirror(SCENE), "PNG")).decode()  # not in the result cache
    r = requests.post(server + B64, headers={"X-API-Key": key}, json={"image_base64": fresh}, timeout=60)
    assert "/v2/jobs/" in _detail(r, 503) and 1 <= int(r.headers["Retry-After"]) <= 60
    job_id = r.headers["X-Job-ID"]
    deadline = time.monotonic() + 60
    while job_row(compat_app, job_id).status != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.2)
    result = requests.get(f"{server}/v2/jobs/{job_id}/result", headers={"x-api-key": key}, timeout=30)
    assert result.status_code == 200 and open_image(result.content).mode == "RGBA"
