"""clearcut.client against a live stack (the app over real HTTP, a real worker, u2netp): cutouts, jobs,
idempotency, batches, replays, the error type, and back-off on 429 (the rate limiter) and 503."""
from __future__ import annotations

import io
import json
from contextlib import contextmanager

import pytest
from PIL import Image

from clearcut.client import Client, ClearcutError
from tests import async_support as support
from tests.async_support import env, live, stack  # noqa: F401 - shared module fixtures

pytestmark = pytest.mark.timeout(300)
PNG = support.scene_png(96, 64, 18, shift=9)  # bytes of its own: no other test module's cached result


class ImageHost(support.Quiet):
    """/img/N.png serves an image; anything else is 404."""

    def do_GET(self):  # noqa: N802 - http.server API
        if self.path.startswith("/img/"):
            self.reply(200, PNG, "image/png")
        else:
            self.reply(404, b"gone", "text/plain")


class Flaky(support.Quiet):
    """Answers 503 with ``Retry-After: 0`` to the first ``failures`` requests, then 200 {"ok": true}."""
    failures = 2
    seen: list = []

    def do_GET(self):  # noqa: N802 - http.server API
        type(self).seen.append(self.headers.get("Idempotency-Key"))
        if len(type(self).seen) <= type(self).failures:
            body = {"error": {"code": "storage_unavailable", "message": "try later", "status": 503,
                              "request_id": "req_flaky", "details": {}}}
            self.send_response(503)
            self.send_header("Retry-After", "0")
            data = json.dumps(body).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:
            self.reply(200, b'{"ok": true}', "application/json")

    do_POST = do_GET


@pytest.fixture(scope="module")
def host():
    yield from support.serving(ImageHost)


@pytest.fixture(scope="module")
def key(stack, env):
    return support.new_key(env, "client-tests")


@pytest.fixture()
def cc(live, key):
    with Client(live[0], key, retries=3, backoff=0.05) as client:
        yield client


def test_sync_cutout_and_account(cc):
    cut = cc.remove(PNG, filename="scene.png", format="png", size="full")
    assert cut.content_type == "image/png" and cut.job_id.startswith("job_")
    assert (cut.width, cut.height) == (96, 64) and 0 <= cut.confidence <= 1
    assert Image.open(io.BytesIO(cut.data)).mode == "RGBA"
    account = cc.account()
    assert account["api_key"]["valid"] is True and account["account"]["name"] == "client-tests"


def test_jobs_idempotency_result_list_and_replay(cc):
    first = cc.submit_job(PNG, filename="a.png", options={"format": "webp"}, external_id="SKU-1",
                          metadata={"run": 1}, priority="high", idempotency_key="client-test-job-1")
    again = cc.submit_job(PNG, filename="a.png", options={"format": "webp"}, external_id="SKU-1",
                          metadata={"run": 1}, priority="high", idempotency_key="client-test-job-1")
    assert first["status"] == "queued" and again["id"] == first["id"]
    done = cc.wait_job(first["id"], timeout=120)
    assert done["status"] == "succeeded" and done["external_id"] == "SKU-1" and done["priority"] == 8
    data = cc.download_result(first["id"])
    assert Image.open(io.BytesIO(data)).format == "WEBP"
    # direct: the presigned URL from the object store, fetched without the API key; the same bytes
    assert cc.download_result(first["id"], direct=True) == data and "x-api-key" not in cc.storage_session.headers
    listed = [j["id"] for j in cc.iter_jobs(status="succeeded", limit=2)]
    assert first["id"] in listed and len(listed) == len(set(listed))
    replayed = cc.replay_job(first["id"], options={"format": "png"})
    assert replayed["id"] == first["id"]
    assert cc.wait_job(first["id"], timeout=120)["options"]["format"] == "png"


def test_batch_items_and_replay(cc, host):
    (server,) = host
    batch = cc.create_batch([{"image_url": f"{server.url}/img/1.png", "external_id": "ok"},
                             {"image_url": f"{server.url}/missing/2.png", "external_id": "gone"}],
                            options={"format": "png"}, idempotency_key="client-test-batch-1")
    assert cc.create_batch([{"image_url": f"{server.url}/img/1.png", "external_id": "ok"},
                            {"image_url": f"{server.url}/missing/2.png", "external_id": "gone"}],
                           options={"format": "png"}, idempotency_key="client-test-batch-1")["id"] == batch["id"]
    support.wait_for(lambda: cc.get_batch(batch["id"])["status"] == "completed", 120, 0.3, "batch to complete")
    items = {j["external_id"]: j for j in cc.batch_items(batch["id"])}
    assert items["ok"]["status"] == "succeeded"
    assert items["gone"]["status"] == "failed" and items["gone"]["error"]["code"] == "image_url_unreachable"
    for direct in (False, True):
        with pytest.raises(ClearcutError) as failed:
            cc.download_result(items["gone"]["id"], direct=direct)
        assert failed.value.code == "image_url_unreachable"
    replay = cc.replay_batch(batch["id"])
    assert replay["replayed_job_ids"] == [items["gone"]["id"]]


def test_errors_carry_code_status_and_request_id(cc, live):
    with pytest.raises(ClearcutError) as bad_option:
        cc.remove(PNG, bg_color="bluish")
    assert (bad_option.value.code, bad_option.value.status) == ("invalid_bg_color", 400)
    assert bad_option.value.request_id.startswith("req_") and bad_option.value.details == {"option": "bg_color"}
    with pytest.raises(ClearcutError) as missing:
        cc.get_job("job_doesnotexist")
    assert (missing.value.code, missing.value.status) == ("job_not_found", 404)
    with Client(live[0], "cc_live_not-a-key") as wrong, pytest.raises(ClearcutError) as denied:
        wrong.account()
    assert denied.value.code == "invalid_api_key" and denied.value.status in (401, 403)
    with Client("http://127.0.0.1:9", "x", retries=1, backoff=0.01) as nobody, pytest.raises(ClearcutError) as down:
        nobody.account()
    assert (down.value.code, down.value.status) == ("connection_error", 0)


def test_rate_limiter_429_is_waited_out(live, env):
    url, app = live
    limited = support.new_key(env, "client-rate-limited")
    settings = app.config["CLEARCUT_SETTINGS"]
    previous = settings.get("CLEARCUT_RATE_LIMIT_PER_MINUTE")
    settings["CLEARCUT_RATE_LIMIT_PER_MINUTE"] = "2"
    waits = []

    def sleep(seconds):  # the window resets while the client waits: lift the limit instead of sleeping
        waits.append(seconds)
        settings["CLEARCUT_RATE_LIMIT_PER_MINUTE"] = previous or "100000"

    try:
        with Client(url, limited, sleep=sleep) as client:
            answers = [client.account() for _ in range(3)]
    finally:
        settings["CLEARCUT_RATE_LIMIT_PER_MINUTE"] = previous or "100000"
    assert all(a["api_key"]["valid"] for a in answers)
    assert len(waits) == 1 and 1 <= waits[0] <= 60  # Retry-After of the fixed one-minute window


def test_503_retried_with_the_same_idempotency_key():
    Flaky.seen = []
    with _server(Flaky) as url, Client(url, "k", backoff=0.01) as client:
        assert client.request("POST", "/anything").json() == {"ok": True}
    assert len(Flaky.seen) == 3 and len(set(Flaky.seen)) == 1 and Flaky.seen[0]
    Flaky.seen = []
    with _server(Flaky) as url, Client(url, "k", retries=1, backoff=0.01) as client:
        with pytest.raises(ClearcutError) as exhausted:
            client.account()
    assert (exhausted.value.code, exhausted.value.status, exhausted.value.request_id) == \
        ("storage_unavailable", 503, "req_flaky")


@contextmanager
def _server(handler):
    server = support.Server(handler)
    try:
        yield server.url
    finally:
        server.close()
