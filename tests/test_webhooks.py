"""Signed webhooks end to end: a local receiver, a real worker delivering, retries, 410, resend, rotation."""
import base64
import hashlib
import hmac
import io
import json
import os
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import select

from clearcut import webhooks
from clearcut.db.models import WebhookAttempt, WebhookDelivery
from tests import async_support as support
from tests.conftest import encode_image, synthetic_scene

pytestmark = pytest.mark.timeout(300)


class Receiver(support.Quiet):
    """Answers POST /<name> from a per-path script of statuses (then 200); records every request."""
    script: dict = {}
    received: list = []
    lock = threading.Lock()

    def do_POST(self):  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            type(self).received.append((self.path, dict(self.headers), body, time.time()))
            steps = type(self).script.get(self.path) or []
            status, extra = steps.pop(0) if steps else (200, {})
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    @classmethod
    def at(cls, path):
        return [r for r in cls.received if r[0] == path]


def independent_verify(secret: str, headers: dict, body: bytes) -> bool:
    """Standard Webhooks verification written from the spec, without clearcut code."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(sig.split(",", 1)[1] == expected for sig in headers["webhook-signature"].split(" "))


from tests.async_support import env, stack  # noqa: E402,F401 - shared module fixtures


@pytest.fixture(scope="module")
def receiver():
    server = support.Server(Receiver)
    yield server
    server.close()


@pytest.fixture(scope="module")
def account(stack, env):
    key = support.new_key(env, "webhook-tests")
    client = stack[0].test_client()
    r = client.post("/v2/webhooks/secret/rotate", headers={"x-api-key": key})
    assert r.status_code == 201 and r.get_json()["secret"].startswith("whsec_")
    return key, r.get_json()["secret"]


def _lower(headers):
    return {k.lower(): v for k, v in headers.items()}


def _job(client, key, url, image=None, **fields):
    image = image or encode_image(synthetic_scene(96, 64, 20)[0], "PNG")
    r = client.post("/v2/jobs", headers={"x-api-key": key},
                    data={"image_file": (io.BytesIO(image), "a.png"), "webhook_url": url, "cache": "false", **fields})
    assert r.status_code == 202, r.get_data(as_text=True)
    return r.get_json()["id"]


def _deliveries(client, key, job_id, until=lambda d: d and all(x["status"] in ("succeeded", "failed") for x in d)):
    def probe():
        data = client.get(f"/v2/jobs/{job_id}/webhooks", headers={"x-api-key": key}).get_json()["data"]
        return data if until(data) else None
    return support.wait_for(probe, 60, 0.1, "webhook deliveries")


def test_signed_job_succeeded_and_failed_events(stack, account, receiver, env):
    client, (key, secret) = stack[0].test_client(), account
    job_id = _job(client, key, f"{receiver.url}/ok", metadata=json.dumps({"sku": "S-1"}))
    [delivery] = _deliveries(client, key, job_id)
    assert delivery["event"] == "job.succeeded" and delivery["status"] == "succeeded"
    assert [a["status_code"] for a in delivery["attempts"]] == [200]
    path, headers, body, _ = Receiver.at("/ok")[-1]
    headers = _lower(headers)
    assert headers["webhook-id"] == delivery["id"] and headers["content-type"] == "application/json"
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    assert independent_verify(secret, headers, body)
    payload = webhooks.verify(secret, headers, body)
    assert payload["type"] == "job.succeeded" and payload["data"]["id"] == job_id
    assert payload["data"]["metadata"] == {"sku": "S-1"} and payload["data"]["status"] == "succeeded"
    assert payload["data"]["result_url"].endswith(f"/v2/jobs/{job_id}/result")  # CLEARCUT_PUBLIC_URL + path
    assert len(body) < 2000 and "base64" not in body.decode()  # thin: ids and URLs, never image bytes
    # Tampering, a wrong secret or an old timestamp fail verification.
    with pytest.raises(webhooks.WebhookVerificationError):
        webhooks.verify(secret, headers, body.replace(b"succeeded", b"failed"))
    with pytest.raises(webhooks.WebhookVerificationError):
        webhooks.verify(webhooks.new_secret(), headers, body)
    with pytest.raises(webhooks.WebhookVerificationError):
        webhooks.verify(secret, headers, body, now=time.time() + 3600)
    # A job that fails in the worker (truncated JPEG) sends job.failed with its error code.
    jpeg = encode_image(synthetic_scene(96, 64, 20)[0], "JPEG")
    failed_id = _job(client, key, f"{receiver.url}/failed", image=jpeg[: len(jpeg) // 2])
    [failed] = _deliveries(client, key, failed_id)
    data = webhooks.verify(secret, _lower(Receiver.at("/failed")[-1][1]), Receiver.at("/failed")[-1][2])["data"]
    assert failed["event"] == "job.failed" and data["error"]["code"] == "corrupt_image"


def test_retries_against_a_receiver_that_fails_twice(stack, account, receiver):
    client, (key, secret) = stack[0].test_client(), account
    Receiver.script["/flaky"] = [(500, {}), (503, {}), (200, {})]
    job_id = _job(client, key, f"{receiver.url}/flaky")
    [delivery] = _deliveries(client, key, job_id)
    assert delivery["status"] == "succeeded"
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 503, 200]
    assert [a["number"] for a in delivery["attempts"]] == [1, 2, 3]
    hits = Receiver.at("/flaky")
    assert len(hits) == 3 and len({_lower(h)["webhook-id"] for _, h, _, _ in hits}) == 1  # same message id
    assert all(independent_verify(secret, _lower(h), b) for _, h, b, _ in hits)


def test_retry_after_is_honoured_and_redirects_not_followed(stack, account, receiver, env):
    client, (key, _) = stack[0].test_client(), account
    Receiver.script["/busy"] = [(503, {"Retry-After": "2"}), (200, {})]
    job_id = _job(client, key, f"{receiver.url}/busy")
    [delivery] = _deliveries(client, key, job_id)
    first, second = Receiver.at("/busy")[-2:]
    assert delivery["status"] == "succeeded" and second[3] - first[3] >= 1.9  # not the 0.2 s schedule
    Receiver.script["/moved"] = [(302, {"Location": f"{receiver.url}/ok"})] * 10
    before = len(Receiver.at("/ok"))
    moved_id = _job(client, key, f"{receiver.url}/moved")
    [moved] = _deliveries(client, key, moved_id)
    assert moved["status"] == "failed" and all(a["status_code"] == 302 for a in moved["attempts"])
    assert len(moved["attempts"]) == 5 and "redirects are not followed" in moved["attempts"][0]["error"]
    assert len(Receiver.at("/ok")) == before  # the redirect target was never called


def test_410_disables_the_endpoint_until_a_resend(stack, account, receiver):
    client, (key, _) = stack[0].test_client(), account
    Receiver.script["/gone"] = [(410, {})]
    job_id = _job(client, key, f"{receiver.url}/gone")
    [delivery] = _deliveries(client, key, job_id)
    assert delivery["status"] == "failed" and [a["status_code"] for a in delivery["attempts"]] == [410]
    endpoints = client.get("/v2/webhooks/endpoints", headers={"x-api-key": key}).get_json()["data"]
    assert {e["url"]: e["enabled"] for e in endpoints}[f"{receiver.url}/gone"] is False
    calls = len(Receiver.at("/gone"))
    second = _job(client, key, f"{receiver.url}/gone", image=encode_image(synthetic_scene(96, 64, 22)[0], "PNG"))
    [skipped] = _deliveries(client, key, second)
    assert skipped["status"] == "failed" and skipped["attempts"] == [] and "disabled" in skipped["last_error"]
    assert len(Receiver.at("/gone")) == calls
    r = client.post(f"/v2/jobs/{second}/webhooks/{skipped['id']}/resend", headers={"x-api-key": key})
    assert r.status_code == 202
    [resent] = _deliveries(client, key, second, until=lambda d: d and d[0]["status"] == "succeeded")
    assert [a["status_code"] for a in resent["attempts"]] == [200]
    endpoints = client.get("/v2/webhooks/endpoints", headers={"x-api-key": key}).get_json()["data"]
    assert {e["url"]: e["enabled"] for e in endpoints}[f"{receiver.url}/gone"] is True
    assert client.post(f"/v2/jobs/{second}/webhooks/msg_nope/resend",
                       headers={"x-api-key": key}).get_json()["error"]["code"] == "delivery_not_found"


def test_ssrf_guard_applies_to_webhooks(stack, account, env):
    client, (key, _) = stack[0].test_client(), account
    job_id = _job(client, key, "http://10.255.255.1/hook")
    [delivery] = _deliveries(client, key, job_id)
    assert delivery["status"] == "failed" and "url_not_allowed" in delivery["attempts"][0]["error"]


def test_cli_rotation_overlap_signs_with_both_secrets(stack, account, receiver, env):
    client, (key, old) = stack[0].test_client(), account
    out = subprocess.run([sys.executable, "-c", "import sys; from clearcut.cli.main import main; sys.exit(main())",
                          "webhooks", "rotate-secret", "--account", "webhook-tests"],
                         capture_output=True, text=True, timeout=60, env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    new = out.stdout.strip().splitlines()[-1]
    assert new.startswith("whsec_") and new != old
    job_id = _job(client, key, f"{receiver.url}/rotated", image=encode_image(synthetic_scene(96, 64, 23)[0], "PNG"))
    _deliveries(client, key, job_id)
    _, headers, body, _ = Receiver.at("/rotated")[-1]
    headers = _lower(headers)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert webhooks.verify(new, headers, body) and webhooks.verify(old, headers, body)
    assert independent_verify(new, headers, body) and independent_verify(old, headers, body)
    bad = subprocess.run([sys.executable, "-c", "import sys; from clearcut.cli.main import main; sys.exit(main())",
                          "webhooks", "rotate-secret", "--account", "no-such-account"],
                         capture_output=True, text=True, timeout=60, env={**os.environ, **env})
    assert bad.returncode == 2 and "account_not_found" in bad.stderr


def test_attempts_are_recorded_in_the_database(stack, account, env):
    with support.context(env).db() as session:
        rows = session.scalars(select(WebhookDelivery)).all()
        assert rows and all(r.attempts <= len(webhooks.schedule()) for r in rows)
        attempts = session.scalars(select(WebhookAttempt)).all()
        assert any(a.status_code == 500 for a in attempts) and any(a.status_code == 410 for a in attempts)
        assert all(a.duration_ms is not None and a.started_at is not None for a in attempts)
