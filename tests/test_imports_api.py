"""The import area against a live stack (the app over real HTTP, SeaweedFS, a real worker): ``GET
/v2/imports`` pages through the caller's ``imports/<account>/`` and nothing else, and ``POST /v2/jobs``
takes an ``s3_key`` there instead of an upload."""
from __future__ import annotations

import hashlib
import io
import uuid

import pytest
import requests
from PIL import Image

from clearcut.client import Client, ClearcutError
from tests import async_support as support
from tests.async_support import env, live, stack  # noqa: F401 - shared module fixtures

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def cc(live, env):
    with Client(live[0], support.new_key(env, "imports-api"), retries=0) as client:
        yield client


@pytest.fixture(scope="module")
def account_id(cc):
    return cc.account()["account"]["id"]


def _put(s3, key: str, data: bytes) -> None:
    s3.storage.client.put_object(Bucket=s3.storage.bucket, Key=key, Body=data, ContentType="image/png")


def test_listing_pages_through_nested_keys_of_the_prefix(cc, s3, account_id):
    base = f"imports/{account_id}/cat-{uuid.uuid4().hex[:6]}/"
    names = ["a.png", "b.png", "shoes/c.png", "shoes/d.png", "shoes/deep/e.png", "z/f.png", "z/g.txt"]
    blobs = {name: f"object {name}".encode() * (n + 1) for n, name in enumerate(names)}
    for name, data in blobs.items():
        _put(s3, base + name, data)
    _put(s3, base.rstrip("/") + "-sibling/x.png", b"a sibling folder, not under the prefix")

    pages, cursor = [], None
    while True:
        page = cc.list_imports(base, limit=3, cursor=cursor)
        assert page["prefix"] == base
        pages.append(page)
        cursor = page["next_cursor"]
        if not page["has_more"]:
            assert cursor is None
            break
    assert [len(p["data"]) for p in pages] == [3, 3, 1]
    listed = [entry for p in pages for entry in p["data"]]
    assert [e["relative_key"] for e in listed] == names and [e["key"] for e in listed] == [base + n for n in names]
    assert [e["size"] for e in listed] == [len(blobs[n]) for n in names]
    assert listed[2]["etag"] == hashlib.md5(blobs["shoes/c.png"]).hexdigest() and listed[0]["last_modified"]
    assert list(cc.iter_imports(base, page_size=2)) == listed

    everything = [e["key"] for e in cc.iter_imports()]  # default: the whole imports/<account>/
    assert cc.list_imports(limit=1)["prefix"] == f"imports/{account_id}/"
    assert set(everything) >= {base + n for n in names} | {base.rstrip("/") + "-sibling/x.png"}


@pytest.mark.parametrize("prefix,status,code", [
    ("imports/{other}/", 403, "import_prefix_not_allowed"),
    ("imports/{other}/catalog/", 403, "import_prefix_not_allowed"),
    ("imports/", 403, "import_prefix_not_allowed"),
    ("imports/{me}", 403, "import_prefix_not_allowed"),  # would also match imports/<me>-something/
    ("originals/", 403, "import_prefix_not_allowed"),
    ("imports/{me}/../{other}/", 400, "invalid_import_prefix"),
    ("/imports/{me}/", 400, "invalid_import_prefix"),
])
def test_a_prefix_outside_the_callers_area_is_refused(cc, env, account_id, prefix, status, code):
    with Client(cc.base_url, support.new_key(env, "imports-other"), retries=0) as other:
        other_id = other.account()["account"]["id"]
    with pytest.raises(ClearcutError) as refused:
        cc.list_imports(prefix.format(me=account_id, other=other_id))
    error = refused.value
    assert (error.status, error.code) == (status, code), error
    assert error.request_id and "prefix" in error.message
    if status == 403:
        assert error.details["allowed_prefixes"] == [f"imports/{account_id}/"]
        assert f"imports/{account_id}/" in error.message  # says what would be allowed


def test_bad_cursor_limit_and_key_are_refused(cc, s3, account_id):
    base = f"imports/{account_id}/cursor-{uuid.uuid4().hex[:6]}/"
    for n in range(3):
        _put(s3, f"{base}{n}.png", b"x")
    first = cc.list_imports(base, limit=1)
    assert first["has_more"] and first["next_cursor"]
    for prefix, cursor in ((f"imports/{account_id}/", first["next_cursor"]), (base, "not-a-cursor")):
        with pytest.raises(ClearcutError) as refused:
            cc.list_imports(prefix, limit=1, cursor=cursor)
        assert (refused.value.status, refused.value.code) == (400, "invalid_cursor")
    with pytest.raises(ClearcutError) as refused:
        cc.list_imports(base, limit=0)
    assert refused.value.code == "invalid_limit"
    anonymous = requests.get(f"{cc.base_url}/v2/imports", timeout=10)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "missing_api_key"


def test_a_job_names_an_import_object_instead_of_an_upload(cc, s3, env, account_id):
    key = f"imports/{account_id}/jobs/{uuid.uuid4().hex[:6]}.png"
    _put(s3, key, support.scene_png(120, 80, 24))
    job = cc.submit_job(s3_key=key, options={"format": "webp"}, external_id="from-the-area")
    assert job["status"] == "queued" and job["input"]["s3_key"] == key
    done = cc.wait_job(job["id"], timeout=120)
    assert done["status"] == "succeeded", done
    result = Image.open(io.BytesIO(cc.download_result(job["id"])))
    assert (result.format, result.size, result.mode) == ("WEBP", (120, 80), "RGBA")

    with Client(cc.base_url, support.new_key(env, "imports-other"), retries=0) as other:
        other_id = other.account()["account"]["id"]
    refusals = [({"s3_key": f"imports/{other_id}/x.png"}, "s3_key_not_allowed"),
                ({"s3_key": f"imports/{account_id}/nothing-{uuid.uuid4().hex[:6]}.png"}, "s3_key_not_found"),
                ({"s3_key": "imports/../originals/x"}, "invalid_s3_key"),
                ({"s3_key": key, "image_url": "http://127.0.0.1:9/a.png"}, "multiple_images")]
    for body, code in refusals:
        with pytest.raises(ClearcutError) as refused:
            cc.request("POST", "/v2/jobs", json=body)
        assert (refused.value.status, refused.value.code) == (400, code), refused.value
        assert refused.value.message and refused.value.request_id
    with pytest.raises(ClearcutError) as both:
        cc.request("POST", "/v2/jobs", data={"s3_key": key}, files={"image_file": ("a.png", b"\x89PNG")})
    assert both.value.code == "multiple_images"
