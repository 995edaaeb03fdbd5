"""Security: SSRF (image_url, webhook_url, output targets), tenancy, presigned URL expiry, revocation,
secrets at rest and in logs. Real stack: Flask test client, SQLite, Redis, SeaweedFS, Celery, u2netp.

The URL allow-list is empty here (as in production), except where a test opens 127.0.0.1 to reach
its own local server for the first hop of a redirect.
"""
import hashlib
import io
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import pytest
import requests
from sqlalchemy import select, text

from clearcut import accounts, netguard, webhooks
from clearcut.context import Context
from clearcut.db import sessionmaker_for, upgrade
from clearcut.db.models import ApiKey, WebhookAttempt, WebhookDelivery, WebhookSecret
from clearcut.errors import ClearcutError
from tests.conftest import encode_image, synthetic_scene

pytestmark = pytest.mark.timeout(300)
PNG = encode_image(synthetic_scene(96, 64, radius=20)[0], "PNG")

PRIVATE_URLS = [
    "http://127.0.0.1/x.png", "http://localhost/x.png", "http://127.1/x.png", "http://0.0.0.0/x.png",
    "http://10.1.2.3/x.png", "http://172.16.5.4/x.png", "http://192.168.1.1/x.png", "http://100.64.0.1/x.png",
    "http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/latest/meta-data/",
    "http://[::1]/x.png", "http://[::ffff:127.0.0.1]/x.png", "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/", "http://[fe80::1]/x.png", "http://[fc00::1]/x.png",
    "http://2130706433/x.png", "http://0x7f000001/x.png", "http://0177.0.0.1/x.png", "http://0x7f.0.0.1/x.png",
    "http://017700000001/x.png", "http://2852039166/latest/meta-data/",      # 169.254.169.254 as a decimal
    "http://224.0.0.1/x.png", "http://255.255.255.255/x.png",
]


@pytest.fixture(scope="module")
def mp():
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


@pytest.fixture(scope="module")
def settings(service_env, mp):
    values = {**service_env, "CLEARCUT_URL_ALLOWLIST": "", "CLEARCUT_RATE_LIMIT_PER_MINUTE": "100000",
              "CLEARCUT_PRESIGN_TTL_S": "2", "CLEARCUT_LOG_LEVEL": "DEBUG"}
    for name, value in values.items():
        mp.setenv(name, value)
    return values


@pytest.fixture(scope="module")
def api(settings, celery_worker, model_dir):
    upgrade(settings["CLEARCUT_DATABASE_URL"])
    from app import create_app

    app = create_app(settings)
    app.testing = True
    return app


@pytest.fixture(scope="module")
def db(settings):
    return sessionmaker_for(settings["CLEARCUT_DATABASE_URL"])


def _key(db, name: str) -> str:
    with db.begin() as session:
        return accounts.create_key(session, accounts.get_or_create_account(session, name))[1]


@pytest.fixture(scope="module")
def key_a(api, db):
    return _key(db, "security-a")


@pytest.fixture(scope="module")
def key_b(api, db):
    return _key(db, "security-b")


def _error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()["error"]
    assert body["code"] == code and body["request_id"] == response.headers["X-Request-ID"]
    return body


# --- SSRF ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_image_url_to_a_private_address_is_refused(api, key_a, url):
    _error(api.test_client().post("/v2", headers={"x-api-key": key_a}, data={"image_url": url}), 400,
           "url_not_allowed")


@pytest.mark.parametrize("url", PRIVATE_URLS[::3])
def test_webhook_delivery_to_a_private_address_is_refused(url):
    with pytest.raises(ClearcutError) as info:
        webhooks.post(url, b"{}", {})
    assert info.value.code == "url_not_allowed"


class _Redirector(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(302)
        self.send_header("Location", unquote(self.path.split("to=", 1)[1]))
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def redirector():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://localhost:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("target", ["http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/",
                                    "http://10.0.0.7/x.png", "http://127.0.0.1:6379/", "http://0x7f000001/",
                                    "http://[::ffff:127.0.0.1]:6379/"])
def test_redirect_from_an_allowed_host_to_a_private_one_is_refused(api, key_a, redirector, monkeypatch, target):
    # The first hop's host name only (a trusted image host): every address of every other hop is checked.
    monkeypatch.setenv("CLEARCUT_URL_ALLOWLIST", "localhost")
    _error(api.test_client().post("/v2", headers={"x-api-key": key_a},
                                  data={"image_url": f"{redirector}/img?to={target}"}), 400, "url_not_allowed")


def test_async_image_url_and_webhook_to_private_addresses_fail_with_url_not_allowed(api, key_a, settings):
    """POST /v2/jobs answers at once; the worker's fetch is refused, and the webhook delivery to the
    metadata address is refused by the same guard (recorded as an attempt, no request made)."""
    client = api.test_client()
    assert client.post("/v2/webhooks/secret/rotate", headers={"x-api-key": key_a}).status_code == 201
    r = client.post("/v2/jobs", headers={"x-api-key": key_a},
                    json={"image_url": "http://169.254.169.254/latest/meta-data/iam",
                          "webhook_url": "http://[::ffff:169.254.169.254]/hook"})
    assert r.status_code == 202, r.get_data(as_text=True)
    job_id = r.get_json()["id"]
    deadline = time.monotonic() + 60
    while (job := client.get(f"/v2/jobs/{job_id}", headers={"x-api-key": key_a}).get_json())["status"] not in (
            "failed", "succeeded") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job["status"] == "failed" and job["error"]["code"] == "url_not_allowed"
    ctx = Context.from_env(settings)
    with ctx.db() as session:
        delivery_id = session.scalar(select(WebhookDelivery.id).where(WebhookDelivery.job_id == job_id))
    webhooks.deliver(ctx, delivery_id)          # what the worker's webhooks queue runs
    with ctx.db() as session:
        attempt = session.scalar(select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id))
    assert attempt.status_code is None and attempt.error.startswith("url_not_allowed")


@pytest.mark.parametrize("output,code", [({"prefix": "exports/acct_someone_else/x/"}, "output_not_allowed"),
                                         ({"prefix": "originals/"}, "output_not_allowed"),
                                         ({"prefix": "exports/{account}/../../originals/"}, None),
                                         ({"prefix": "exports/{account}/", "bucket": "other-bucket"},
                                          "output_not_allowed")])
def test_s3_output_target_outside_the_account_prefix_is_refused(api, key_a, db, output, code):
    with db() as session:
        account_id = session.scalar(select(ApiKey.account_id).where(
            ApiKey.key_hash == hashlib.sha256(key_a.encode()).hexdigest()))
    output = {k: v.replace("{account}", account_id) for k, v in output.items()}
    r = api.test_client().post("/v2/jobs", headers={"x-api-key": key_a},
                               json={"image_base64": __import__("base64").b64encode(PNG).decode(), "output": output})
    assert r.status_code in (400, 403), r.get_data(as_text=True)
    assert r.get_json()["error"]["code"] in ((code,) if code else ("output_not_allowed", "invalid_output"))


def test_netguard_resolves_names_and_checks_every_address():
    """A DNS name that resolves locally (localhost) is judged by its addresses, not its spelling."""
    with pytest.raises(ClearcutError) as info:
        netguard.resolve_checked("localhost", 80)
    assert info.value.code == "url_not_allowed"
    assert not netguard.is_public("::ffff:10.0.0.1") and not netguard.is_public("2002:7f00:1::1")  # 6to4 of 127/8


# --- tenancy -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tenant_a(api, key_a):
    """A's job (succeeded, with a webhook delivery), and a batch built from A's asset."""
    client = api.test_client()
    client.post("/v2/webhooks/secret/rotate", headers={"x-api-key": key_a})
    r = client.post("/v2", headers={"x-api-key": key_a}, data={"image_file": (io.BytesIO(PNG), "a.png")})
    assert r.status_code == 200, r.get_data(as_text=True)
    job = client.get(f"/v2/jobs/{r.headers['X-Job-ID']}", headers={"x-api-key": key_a}).get_json()
    batch = client.post("/v2/batches", headers={"x-api-key": key_a},
                        json={"items": [{"asset_id": job["asset_id"], "external_id": "A-1"}]})
    assert batch.status_code == 202, batch.get_data(as_text=True)
    async_job = client.post("/v2/jobs", headers={"x-api-key": key_a},
                            data={"image_file": (io.BytesIO(PNG), "a.png"), "webhook_url": "http://hooks.invalid/x"})
    assert async_job.status_code == 202
    return {"job": job, "batch": batch.get_json(), "async_job": async_job.get_json()}


def test_every_url_of_account_a_is_404_for_account_b(api, key_a, key_b, tenant_a, settings):
    client = api.test_client()
    job_id, batch_id = tenant_a["job"]["id"], tenant_a["batch"]["id"]
    ctx = Context.from_env(settings)
    with ctx.db() as session:
        delivery_id = session.scalar(select(WebhookDelivery.id).where(
            WebhookDelivery.job_id == tenant_a["async_job"]["id"])) or "msg_none"
    probes = [("get", f"/v2/jobs/{job_id}"), ("get", f"/v2/jobs/{job_id}/result"),
              ("get", f"/v2/jobs/{job_id}/result?redirect=1"), ("post", f"/v2/jobs/{job_id}/replay"),
              ("delete", f"/v2/jobs/{job_id}"), ("get", f"/v2/jobs/{job_id}/webhooks"),
              ("post", f"/v2/jobs/{tenant_a['async_job']['id']}/webhooks/{delivery_id}/resend"),
              ("get", f"/v2/batches/{batch_id}"), ("post", f"/v2/batches/{batch_id}/replay")]
    for method, path in probes:
        as_b = getattr(client, method)(path, headers={"x-api-key": key_b})
        assert as_b.status_code == 404, (path, as_b.get_data(as_text=True))
        assert as_b.get_json()["error"]["code"].endswith("not_found")
        assert "asset_id" not in as_b.get_data(as_text=True)   # nothing of A's job leaks into the answer
        as_a = getattr(client, "get")(path.split("?")[0] if method == "get" else f"/v2/jobs/{job_id}",
                                      headers={"x-api-key": key_a})
        assert as_a.status_code in (200, 303), (path, as_a.get_data(as_text=True))  # it does exist
    listing = client.get(f"/v2/jobs?batch={batch_id}", headers={"x-api-key": key_b}).get_json()
    assert listing["data"] == []
    everything = client.get("/v2/jobs?limit=500", headers={"x-api-key": key_b}).get_json()
    assert job_id not in {j["id"] for j in everything["data"]}
    assert batch_id not in {b["id"] for b in client.get("/v2/batches", headers={"x-api-key": key_b}).get_json()["data"]}
    stolen = client.post("/v2/batches", headers={"x-api-key": key_b},
                         json={"items": [{"asset_id": tenant_a["job"]["asset_id"]}]})
    assert 400 <= stolen.status_code < 500 and stolen.status_code != 202


def test_presigned_result_urls_expire(api, key_a, tenant_a):
    job = api.test_client().get(f"/v2/jobs/{tenant_a['job']['id']}", headers={"x-api-key": key_a}).get_json()
    url = job["download_url"]
    assert url and "X-Amz-Expires=2" in url and "X-Amz-Signature" in url
    fresh = requests.get(url, timeout=10)
    assert fresh.status_code == 200 and fresh.content[:8] == b"\x89PNG\r\n\x1a\n"
    time.sleep(3.5)
    assert requests.get(url, timeout=10).status_code == 403
    tampered = url.replace("X-Amz-Expires=2", "X-Amz-Expires=99999")
    assert requests.get(tampered, timeout=10).status_code == 403


def test_revoked_keys_stop_working_at_once(api, db):
    secret = _key(db, "security-revoke")
    client = api.test_client()
    assert client.get("/v2/account", headers={"x-api-key": secret}).status_code == 200
    with db.begin() as session:
        accounts.revoke(session, accounts.fingerprint_of(secret))
    for attempt in (client.get("/v2/account", headers={"x-api-key": secret}),
                    client.post("/v2/jobs", headers={"x-api-key": secret},
                                data={"image_file": (io.BytesIO(PNG), "a.png")}),
                    client.get(f"/v2/account?api_key={secret}")):
        _error(attempt, 403, "revoked_api_key")


# --- secrets -------------------------------------------------------------------------------------

def test_keys_are_hashed_at_rest(api, db, key_a):
    with db() as session:
        rows = session.execute(text("SELECT * FROM api_keys")).mappings().all()
    assert rows
    dump = repr([dict(r) for r in rows])
    assert key_a not in dump and key_a.split("_", 2)[-1] not in dump
    assert hashlib.sha256(key_a.encode()).hexdigest() in dump


def test_webhook_secret_is_shown_once(api, key_a, db):
    client = api.test_client()
    first = client.post("/v2/webhooks/secret/rotate", headers={"x-api-key": key_a})
    secret = first.get_json()["secret"]
    assert first.status_code == 201 and secret.startswith("whsec_")
    views = [client.get(path, headers={"x-api-key": key_a}).get_data(as_text=True)
             for path in ("/v2/webhooks/endpoints", "/v2/account", "/v2/jobs?limit=50", "/v2/batches")]
    assert all(secret not in v and secret[6:] not in v for v in views)
    second = client.post("/v2/webhooks/secret/rotate", headers={"x-api-key": key_a}).get_json()["secret"]
    assert second != secret
    with db() as session:   # stored (HMAC needs it) but never served again
        assert session.scalar(select(WebhookSecret).where(WebhookSecret.secret == second)) is not None


def test_secrets_never_reach_the_logs(api, db, caplog, capfd, tmp_path_factory):
    """Every way of sending a key, plus a webhook secret: none of them appear in any log line the API
    or the session's worker wrote."""
    secret = _key(db, "security-logs")
    client = api.test_client()
    with caplog.at_level(logging.DEBUG):
        client.get("/v2/account", headers={"x-api-key": secret})
        client.get("/v2/account", headers={"Authorization": f"Bearer {secret}"})
        client.get(f"/v2/account?api_key={secret}")                                 # legacy, logged as legacy
        client.post("/v2", json={"api_key": secret, "image_base64": "!!"})           # legacy JSON field
        client.post("/v2", headers={"x-api-key": secret + "x"}, data={"format": "png"})  # a wrong key
        client.post("/v2", headers={"x-api-key": secret}, data={"image_file": (io.BytesIO(PNG), "a.png")})
        hook = client.post("/v2/webhooks/secret/rotate", headers={"x-api-key": secret}).get_json()["secret"]
    captured = caplog.text + "".join(capfd.readouterr())
    assert "GET /v2/account" in captured or "/v2/account" in captured, "the logs were not captured"
    worker_logs = "".join(p.read_text(errors="replace") for p in tmp_path_factory.getbasetemp().rglob("*.log"))
    for leaked in (secret, secret.split("_", 2)[-1], hook, hook[6:]):
        assert leaked not in captured and leaked not in worker_logs


def test_key_comparison_is_constant_time():
    import inspect

    assert "compare_digest" in inspect.getsource(accounts.authenticate)
    assert "compare_digest" in inspect.getsource(webhooks.verify)
