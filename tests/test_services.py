"""Embedded services and the storage layer against real servers (SeaweedFS, Valkey)."""
from __future__ import annotations

import pytest
import requests

from clearcut.errors import ClearcutError
from clearcut.local.services import free_port, start_valkey
from clearcut.storage import LocalStorage, ObjectNotFound, S3Storage, StorageError

pytestmark = pytest.mark.timeout(120)


def test_s3_round_trip(s3):
    storage = s3.storage
    key = "originals/round-trip.png"
    assert not storage.exists(key)
    storage.put(key, b"\x89PNG fake bytes", "image/png")
    assert storage.exists(key)
    assert storage.get(key) == b"\x89PNG fake bytes"

    url = storage.presigned_url(key, expires_s=60)
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert response.content == b"\x89PNG fake bytes"
    assert response.headers["Content-Type"] == "image/png"

    storage.delete(key)
    assert not storage.exists(key)
    storage.delete(key)  # deleting twice is fine
    with pytest.raises(ObjectNotFound) as missing:
        storage.get(key)
    assert missing.value.status == 404 and not missing.value.retryable


@pytest.mark.parametrize("backend", ["s3", "local"])
def test_a_capped_read_stops_at_the_cap(backend, s3, tmp_path):
    """get(key, max_bytes=n) returns at most n bytes (S3: a Range request), so a worker reading an import
    object larger than the upload limit holds limit + 1 bytes, not the object."""
    storage = s3.storage if backend == "s3" else LocalStorage(tmp_path)
    key = "imports/acct/big.bin"
    data = bytes(range(256)) * 4096  # 1 MiB
    storage.put(key, data)
    assert storage.get(key, max_bytes=1001) == data[:1001]
    assert storage.get(key, max_bytes=len(data) + 5) == data
    assert storage.get(key) == data
    storage.delete(key)


def test_s3_unsigned_request_is_refused(s3):
    response = requests.get(f"{s3.endpoint}/{s3.settings['CLEARCUT_S3_BUCKET']}/anything", timeout=10)
    assert response.status_code in (401, 403)


def test_s3_wrong_secret_is_refused(s3):
    wrong = {**s3.settings, "CLEARCUT_S3_SECRET_KEY": "not-the-secret"}
    storage = S3Storage.from_settings(wrong, max_attempts=1)
    with pytest.raises(StorageError) as refused:
        storage.put("originals/intruder.png", b"x", "image/png")
    assert refused.value.code == "storage_unavailable"
    assert "SignatureDoesNotMatch" in refused.value.message
    assert not s3.storage.exists("originals/intruder.png")


def test_s3_down_maps_to_storage_error():
    settings = {"CLEARCUT_S3_ENDPOINT": f"http://127.0.0.1:{free_port()}", "CLEARCUT_S3_BUCKET": "nothing",
                "CLEARCUT_S3_ACCESS_KEY": "a", "CLEARCUT_S3_SECRET_KEY": "b"}
    storage = S3Storage.from_settings(settings, connect_timeout=1, max_attempts=1)
    for call in (lambda: storage.put("k", b"x"), lambda: storage.get("k"), lambda: storage.exists("k"),
                 lambda: storage.delete("k"), storage.check):
        with pytest.raises(StorageError) as down:
            call()
        error = down.value
        assert isinstance(error, ClearcutError)
        assert (error.code, error.status, error.retryable) == ("storage_unavailable", 503, True)


def test_local_storage_round_trip(tmp_path):
    storage = LocalStorage(tmp_path / "objects")
    storage.put("results/a.png", b"abc", "image/png")
    assert storage.exists("results/a.png") and storage.get("results/a.png") == b"abc"
    assert storage.presigned_url("results/a.png").startswith("file://")
    storage.delete("results/a.png")
    assert not storage.exists("results/a.png")
    with pytest.raises(ObjectNotFound):
        storage.get("results/a.png")
    with pytest.raises(StorageError):
        storage.put("../escape.png", b"x")


@pytest.mark.parametrize("backend", ["s3", "local"])
def test_listing_is_nested_ordered_and_paged(backend, s3, tmp_path):
    """Both backends list every key under a prefix, nested ones included, in key order, page by page;
    a sibling folder whose name merely starts the same is not under ``list/a/``."""
    import hashlib
    import uuid

    storage = s3.storage if backend == "s3" else LocalStorage(tmp_path / "objects")
    base = f"list-{uuid.uuid4().hex[:8]}/"
    names = ["a/1.png", "a/2.png", "a/deep/3.png", "a/deep/deeper/4.png", "a/z.txt"]
    for n, name in enumerate(names):
        storage.put(base + name, bytes([n]) * (n + 1))
    storage.put(base + "ab/other.png", b"not under a/")
    seen, cursor, pages = [], None, 0
    while True:
        page, more = storage.list(base + "a/", start_after=cursor, limit=2)
        pages += 1
        seen += page
        if not more:
            break
        cursor = page[-1].key
    assert [o.key for o in seen] == [base + name for name in names] and pages == 3
    assert [o.size for o in seen] == [1, 2, 3, 4, 5]
    assert seen[1].etag == hashlib.md5(b"\x01\x01").hexdigest()  # one-part upload: the md5
    assert seen[0].last_modified is not None
    assert storage.list(base + "a/", start_after=base + "a/z.txt") == ([], False)
    assert storage.list(base + "nothing/") == ([], False)


def test_valkey_starts_and_answers(tmp_path):
    import redis

    with start_valkey(data_dir=tmp_path / "valkey") as valkey:
        assert valkey.url.startswith("redis://127.0.0.1:")
        client = redis.Redis.from_url(valkey.url)
        assert client.ping()
        client.set("clearcut", "ok")
        assert client.get("clearcut") == b"ok"
        client.close()
    assert not valkey.alive()
