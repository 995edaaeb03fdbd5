"""POST /v2/jobs and friends end to end: real worker subprocess, Redis, SQLite, SeaweedFS, u2netp."""
import io
import json
from datetime import timedelta

import numpy as np
import pytest
import requests
from PIL import Image
from sqlalchemy import func, select

from clearcut import jobs
from clearcut.db.models import Account, IdempotencyKey, Job, Usage
from clearcut.options import parse
from tests import async_support as support

pytestmark = pytest.mark.timeout(300)


from tests.async_support import env, stack  # noqa: E402,F401 - shared module fixtures


@pytest.fixture()
def client(stack):
    return stack[0].test_client()


@pytest.fixture(scope="module")
def key(stack, env):
    return support.new_key(env, "async-jobs")


def _post(client, key, image, headers=None, **fields):
    return client.post("/v2/jobs", headers={"x-api-key": key, **(headers or {})},
                       data={"image_file": (io.BytesIO(image), "in.png"), **fields})


def _assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()["error"]
    assert body["code"] == code and body["request_id"] == response.headers["X-Request-ID"] and body["message"]
    return body


def _alpha(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))[:, :, 3]


def test_lifecycle_202_status_result_and_presigned_url(client, key, env):
    image = support.scene_png(96, 64, 20)
    r = _post(client, key, image, metadata=json.dumps({"sku": "A-1", "n": 3}), priority="8", external_id="sku-1",
              cache="false")
    assert r.status_code == 202, r.get_data(as_text=True)
    body = r.get_json()
    assert body["status"] in ("queued", "processing", "succeeded") and body["id"].startswith("job_")
    assert r.headers["Location"] == body["status_url"] and r.headers["X-Job-ID"] == body["id"]
    assert body["metadata"] == {"sku": "A-1", "n": 3} and body["priority"] == 8 and body["external_id"] == "sku-1"
    done = support.wait_job(client, key, body["id"])
    assert done["status"] == "succeeded" and done["attempts"] == 1 and done["error"] is None
    timings = done["timings_ms"]
    assert timings["queued"] >= 0 and timings["processing"] > 0 and timings["pipeline_ms"] > 0
    assert done["result"]["width"] == 96 and done["result"]["height"] == 64
    result = client.get(f"/v2/jobs/{body['id']}/result", headers={"x-api-key": key})
    assert result.status_code == 200 and result.mimetype == "image/png"
    alpha = _alpha(result.data)
    assert alpha[32, 48] > 200 and alpha[2, 2] < 50  # disc kept, background removed
    # The presigned URL works without our credentials and serves the same bytes.
    assert done["download_url"] and done["download_expires_at"]
    assert requests.get(done["download_url"], timeout=10).content == result.data
    moved = client.get(f"/v2/jobs/{body['id']}/result?redirect=1", headers={"x-api-key": key})
    assert moved.status_code == 303 and moved.headers["Location"].startswith(env["CLEARCUT_S3_ENDPOINT"])
    assert requests.get(moved.headers["Location"], timeout=10).content == result.data


def test_async_field_errors_create_no_job(client, key, env, stack):
    db = support.context(env).db

    def count():
        with db() as session:
            return session.scalar(select(func.count()).select_from(Job))
    before = count()
    image = support.scene_png()
    _assert_error(_post(client, key, image, metadata="[1, 2]"), 400, "invalid_metadata")
    _assert_error(_post(client, key, image, metadata=json.dumps({"x": "y" * 5000})), 400, "metadata_too_large")
    _assert_error(_post(client, key, image, priority="11"), 400, "invalid_priority")
    _assert_error(_post(client, key, image, webhook_url="ftp://example.com/x"), 400, "invalid_webhook_url")
    _assert_error(_post(client, key, image, webhook_url="https://example.com/hook"), 400, "webhook_secret_missing")
    _assert_error(_post(client, key, image, output=json.dumps({"prefix": "exports/someone-else/"})), 403,
                  "output_not_allowed")
    _assert_error(_post(client, key, image, format="svg"), 400, "invalid_format")
    assert count() == before


def test_output_prefix_receives_the_result(client, key, env, s3):
    with support.context(env).db() as session:
        account_id = session.scalar(select(Account.id).where(Account.name == "async-jobs"))
    r = _post(client, key, support.scene_png(96, 64, 18), output=json.dumps({"prefix": f"exports/{account_id}/run1/"}),
              external_id="SKU 42/blue", format="webp")
    assert r.status_code == 202, r.get_data(as_text=True)
    done = support.wait_job(client, key, r.get_json()["id"])
    assert done["status"] == "succeeded"
    assert done["output"]["key"] == f"exports/{account_id}/run1/SKU_42_blue.webp"
    data = s3.storage.get(done["output"]["key"])
    assert data == client.get(f"/v2/jobs/{done['id']}/result", headers={"x-api-key": key}).data
    assert Image.open(io.BytesIO(data)).format == "WEBP"


def test_idempotency_key_same_body_same_job_different_body_409(client, key, env):
    image = support.scene_png(96, 64, 21)
    first = _post(client, key, image, headers={"Idempotency-Key": "idem-1"}, format="png")
    again = _post(client, key, image, headers={"Idempotency-Key": "idem-1"}, format="png")
    assert first.status_code == again.status_code == 202
    assert first.get_json()["id"] == again.get_json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    conflict = _post(client, key, image, headers={"Idempotency-Key": "idem-1"}, format="webp")
    _assert_error(conflict, 409, "idempotency_conflict")
    # Another key: a new job. JSON bodies are keyed the same way.
    other = _post(client, key, image, headers={"Idempotency-Key": "idem-2"}, format="png")
    assert other.get_json()["id"] != first.get_json()["id"]
    b64 = __import__("base64").b64encode(image).decode()
    j1 = client.post("/v2/jobs", headers={"x-api-key": key, "Idempotency-Key": "idem-json"},
                     json={"image_base64": b64, "metadata": {"a": 1}})
    j2 = client.post("/v2/jobs", headers={"x-api-key": key, "Idempotency-Key": "idem-json"},
                     json={"image_base64": b64, "metadata": {"a": 1}})
    assert j1.get_json()["id"] == j2.get_json()["id"] and j1.get_json()["metadata"] == {"a": 1}
    _assert_error(client.post("/v2/jobs", headers={"x-api-key": key, "Idempotency-Key": "idem-json"},
                              json={"image_base64": b64, "metadata": {"a": 2}}), 409, "idempotency_conflict")
    with support.context(env).db() as session:
        assert session.scalar(select(func.count()).select_from(Job).where(Job.id == first.get_json()["id"])) == 1
        assert session.scalar(select(func.count()).select_from(IdempotencyKey)
                              .where(IdempotencyKey.key.in_(["idem-1", "idem-2", "idem-json"]))) == 3
    # A 4xx answer is remembered like any other: the identical request gets it again, a different one is a
    # conflict (send a corrected request with a new key).
    _assert_error(_post(client, key, image, headers={"Idempotency-Key": "idem-3"}, format="svg"), 400,
                  "invalid_format")
    replayed = _post(client, key, image, headers={"Idempotency-Key": "idem-3"}, format="svg")
    assert replayed.status_code == 400 and replayed.headers["Idempotent-Replayed"] == "true"
    _assert_error(_post(client, key, image, headers={"Idempotency-Key": "idem-3"}, format="png"), 409,
                  "idempotency_conflict")


def test_cancel_queued_job_is_skipped_by_the_worker(client, key, env, stack):
    ctx = support.context(env)
    with ctx.db() as session:
        account = session.scalar(select(Account).where(Account.name == "async-jobs"))
    # A queued job whose message has not been sent yet, so it is certainly still queued when canceled.
    submission = jobs.submit(ctx, account, None, support.scene_png(96, 64, 23), "image/png", parse({}),
                             use_cache=False)
    job_id = submission.job.id
    r = client.delete(f"/v2/jobs/{job_id}", headers={"x-api-key": key})
    assert r.status_code == 200 and r.get_json()["status"] == "canceled" and r.get_json()["canceled_at"]
    outcome = stack[1].send_task("clearcut.process_job", args=[job_id], queue="cpu").get(timeout=60)
    assert outcome == "canceled"
    with ctx.db() as session:
        row = session.get(Job, job_id)
        assert row.status == "canceled" and row.attempts == 0 and row.started_at is None
        assert session.scalar(select(func.count()).select_from(Usage).where(Usage.job_id == job_id)) == 0
    _assert_error(client.delete(f"/v2/jobs/{job_id}", headers={"x-api-key": key}), 409, "job_not_cancelable")
    _assert_error(client.get(f"/v2/jobs/{job_id}/result", headers={"x-api-key": key}), 409, "job_not_finished")
    other = support.new_key(env, "async-other")
    _assert_error(client.delete(f"/v2/jobs/{job_id}", headers={"x-api-key": other}), 404, "job_not_found")


def test_replay_unchanged_is_a_cache_hit_changed_options_run_again(client, key, env):
    r = _post(client, key, support.scene_png(96, 64, 24), format="png", cache="false")
    job_id = r.get_json()["id"]
    first = support.wait_job(client, key, job_id)
    original = client.get(f"/v2/jobs/{job_id}/result", headers={"x-api-key": key}).data
    same = client.post(f"/v2/jobs/{job_id}/replay", headers={"x-api-key": key})
    assert same.status_code == 202
    body = same.get_json()
    assert body["id"] == job_id and body["status"] == "succeeded" and body["cache_hit"] is True
    assert body["replays"] == 1 and body["attempts"] == 0  # no worker touched it
    assert client.get(f"/v2/jobs/{job_id}/result", headers={"x-api-key": key}).data == original
    changed = client.post(f"/v2/jobs/{job_id}/replay", headers={"x-api-key": key},
                          json={"options": {"format": "webp", "bg_color": "#00ff00"}})
    assert changed.status_code == 202 and changed.get_json()["status"] in ("queued", "processing", "succeeded")
    done = support.wait_job(client, key, job_id)
    assert done["replays"] == 2 and done["cache_hit"] is False and done["options"]["format"] == "webp"
    assert done["options"]["bg_color"] == "#00ff00" and first["options"]["bg_color"] is None
    out = Image.open(io.BytesIO(client.get(f"/v2/jobs/{job_id}/result", headers={"x-api-key": key}).data))
    assert out.format == "WEBP" and out.convert("RGB").getpixel((2, 2))[1] > 200  # green background
    _assert_error(client.post(f"/v2/jobs/{job_id}/replay", headers={"x-api-key": key},
                              json={"options": {"format": "svg"}}), 400, "invalid_format")
    with support.context(env).db() as session:  # replays never charge the job twice
        assert session.scalar(select(func.count()).select_from(Usage).where(Usage.job_id == job_id)) == 1


def test_list_cursor_pagination_and_filters(client, env, stack):
    ctx = support.context(env)
    key = support.new_key(env, "async-pages")
    with ctx.db() as session:
        account = session.scalar(select(Account).where(Account.name == "async-pages"))
    created = [jobs.submit(ctx, account, None, support.scene_png(96, 64, 20 + i), "image/png", parse({}),
                           use_cache=False).job.id for i in range(7)]
    jobs.cancel(ctx, account.id, created[0])
    seen, cursor, pages = [], None, 0
    while True:
        r = client.get("/v2/jobs?limit=3" + (f"&cursor={cursor}" if cursor else ""), headers={"x-api-key": key})
        assert r.status_code == 200, r.get_data(as_text=True)
        page = r.get_json()
        seen += [j["id"] for j in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        assert page["has_more"] == (cursor is not None)
        if not cursor:
            break
    assert pages == 3 and seen == list(reversed(created))  # newest first, each job exactly once
    canceled = client.get("/v2/jobs?status=canceled", headers={"x-api-key": key}).get_json()["data"]
    assert [j["id"] for j in canceled] == [created[0]]
    queued = client.get("/v2/jobs?status=queued,processing", headers={"x-api-key": key}).get_json()["data"]
    assert len(queued) == 6
    with ctx.db() as session:
        third = session.get(Job, created[3]).created_at
    after = client.get("/v2/jobs", query_string={"created_after": third.isoformat()},
                       headers={"x-api-key": key}).get_json()["data"]
    assert [j["id"] for j in after] == list(reversed(created[3:]))
    with ctx.db.begin() as session:  # two jobs that ended 10 s apart
        session.get(Job, created[1]).finished_at = third + timedelta(seconds=60)
        session.get(Job, created[2]).finished_at = third + timedelta(seconds=70)
    ended = client.get("/v2/jobs", query_string={"finished_after": (third + timedelta(seconds=65)).isoformat()},
                       headers={"x-api-key": key}).get_json()["data"]
    assert [j["id"] for j in ended] == [created[2]]
    _assert_error(client.get("/v2/jobs?finished_after=later", headers={"x-api-key": key}), 400, "invalid_timestamp")
    _assert_error(client.get("/v2/jobs?cursor=garbage!", headers={"x-api-key": key}), 400, "invalid_cursor")
    _assert_error(client.get("/v2/jobs?status=done", headers={"x-api-key": key}), 400, "invalid_status")
    _assert_error(client.get("/v2/jobs?limit=0", headers={"x-api-key": key}), 400, "invalid_limit")
    _assert_error(client.get("/v2/jobs?created_after=yesterday", headers={"x-api-key": key}), 400,
                  "invalid_timestamp")


def test_idempotency_key_on_sync_post_v2(client, key):
    image = support.scene_png(96, 64, 26)
    first = client.post("/v2", headers={"x-api-key": key, "Idempotency-Key": "sync-1"},
                        data={"image_file": (io.BytesIO(image), "a.png"), "cache": "false"})
    again = client.post("/v2", headers={"x-api-key": key, "Idempotency-Key": "sync-1"},
                        data={"image_file": (io.BytesIO(image), "a.png"), "cache": "false"})
    assert first.status_code == again.status_code == 200 and first.data == again.data
    assert first.headers["X-Job-ID"] == again.headers["X-Job-ID"] and again.headers["Idempotent-Replayed"] == "true"
    assert again.mimetype == "image/png" and again.headers["X-Width"] == "96"


def test_cursor_pagination_in_the_domain_on_both_databases(database_url, s3, model_dir):
    from clearcut import accounts
    from clearcut.context import Context
    from clearcut.db import sessionmaker_for, upgrade

    upgrade(database_url)
    ctx = Context(db=sessionmaker_for(database_url), storage=s3.storage, database_url=database_url)
    with ctx.db.begin() as session:
        account = accounts.get_or_create_account(session, f"pages-{database_url.split(':')[0]}")
    created = [jobs.submit(ctx, account, None, support.scene_png(96, 64, 30 + i), "image/png", parse({}),
                           use_cache=False).job.id for i in range(5)]
    seen, cursor = [], None
    while True:
        rows, cursor = jobs.list_jobs(ctx, account.id, limit=2, cursor=cursor)
        seen += [r.id for r in rows]
        if cursor is None:
            break
    assert seen == list(reversed(created))


class _Images(support.Quiet):
    def do_GET(self):  # noqa: N802 - http.server API
        body = support.scene_png(96, 64, 19) if self.path == "/ok.png" else b"missing"
        self.send_response(200 if self.path == "/ok.png" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_image_url_is_fetched_by_the_worker(client, key):
    server = support.Server(_Images)
    try:
        r = client.post("/v2/jobs", headers={"x-api-key": key},
                        json={"image_url": f"{server.url}/ok.png", "format": "webp", "metadata": {"k": "v"}})
        assert r.status_code == 202, r.get_data(as_text=True)
        body = r.get_json()
        assert body["input"] == {"image_url": f"{server.url}/ok.png"} and body["asset_id"] is None
        done = support.wait_job(client, key, body["id"])
        assert done["status"] == "succeeded" and done["asset_id"] and done["timings_ms"]["fetch_ms"] >= 0
        assert done["queue"] == support.ASYNC_QUEUE and done["metadata"] == {"k": "v"}
        out = client.get(f"/v2/jobs/{body['id']}/result", headers={"x-api-key": key})
        assert Image.open(io.BytesIO(out.data)).format == "WEBP"
        broken = client.post("/v2/jobs", headers={"x-api-key": key}, data={"image_url": f"{server.url}/gone.png"})
        assert broken.status_code == 202
        failed = support.wait_job(client, key, broken.get_json()["id"])
        assert failed["status"] == "failed" and failed["error"]["code"] == "image_url_unreachable"
        private = client.post("/v2/jobs", headers={"x-api-key": key}, json={"image_url": "http://10.1.2.3/x.png"})
        refused = support.wait_job(client, key, private.get_json()["id"])
        assert refused["error"]["code"] == "url_not_allowed"
        _assert_error(client.post("/v2/jobs", headers={"x-api-key": key}, json={"image_url": "file:///etc/passwd"}),
                      400, "url_not_allowed")
        _assert_error(client.post("/v2/jobs", headers={"x-api-key": key},
                                  json={"image_url": f"{server.url}/ok.png", "format": "svg"}), 400, "invalid_format")
    finally:
        server.close()
