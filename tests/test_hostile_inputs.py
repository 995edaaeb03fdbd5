"""Hostile input end to end: every corpus file and hostile request gets its specific answer (a 4xx with
its code, or a correct cutout for legal oddities), never a 5xx; refusals create no job; the worker
survives the lot and a normal job right after still succeeds.

Real stack: Flask test client -> SeaweedFS, SQLite, Redis, the session's Celery worker, u2netp.
"""
import io
import json

import pytest
from PIL import Image
from sqlalchemy import func, select

from clearcut import accounts
from clearcut.db import sessionmaker_for, upgrade
from clearcut.db.models import Job, Usage
from tests.conftest import encode_image, synthetic_scene
from tests.corpus import build as corpus
from tests.corpus import hostile_requests

UPLOAD_MB = 2
CASES = corpus.cases()
REQUESTS = hostile_requests.build(UPLOAD_MB * 1024 * 1024)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def api(service_env, celery_worker, model_dir):
    mp = pytest.MonkeyPatch()
    settings = {**service_env, "CLEARCUT_MAX_UPLOAD_MB": str(UPLOAD_MB), "CLEARCUT_RATE_LIMIT_PER_MINUTE": "100000"}
    for name, value in settings.items():
        mp.setenv(name, value)
    upgrade(service_env["CLEARCUT_DATABASE_URL"])
    from app import create_app

    app = create_app(settings)
    app.testing = True
    yield app
    mp.undo()


@pytest.fixture(scope="module")
def key(api):
    with sessionmaker_for(api.config["CLEARCUT_SETTINGS"]["CLEARCUT_DATABASE_URL"]).begin() as session:
        account = accounts.get_or_create_account(session, "hostile-inputs")
        return accounts.create_key(session, account)[1]


@pytest.fixture(scope="module")
def db(api):
    return sessionmaker_for(api.config["CLEARCUT_SETTINGS"]["CLEARCUT_DATABASE_URL"])


def _pool_pids(celery_app) -> list[int]:
    node = celery_app.conf.clearcut_worker_name
    stats = celery_app.control.inspect([node], timeout=5).stats() or {}
    return sorted(stats[node]["pool"]["processes"])


@pytest.fixture(scope="module")
def pool_before(celery_worker):
    """The worker's pool processes before any hostile input: a crash would replace one of them."""
    return _pool_pids(celery_worker)


def _assert_refusal(response, status, code):
    body = response.get_data(as_text=True)
    assert response.status_code < 500, body
    assert response.status_code == status, body
    error = response.get_json()["error"]
    assert error["code"] == code and error["status"] == status, error
    assert error["request_id"] == response.headers["X-Request-ID"] and error["message"]
    assert "Traceback" not in body
    return error


@pytest.mark.parametrize("case", [c for c, _ in CASES], ids=lambda c: c.name)
def test_corpus_file(api, key, db, pool_before, case):
    data = dict(CASES)[case]
    response = api.test_client().post("/v2", headers={"x-api-key": key},
                                      data={"image_file": (io.BytesIO(data), case.name), "cache": "false"})
    request_id = response.headers["X-Request-ID"]
    with db() as session:
        job = session.scalar(select(Job).where(Job.request_id == request_id))
        charged = job is not None and session.scalar(
            select(func.count()).select_from(Usage).where(Usage.job_id == job.id))
    if case.status == 200:
        assert response.status_code == 200, response.get_data(as_text=True)
        out = Image.open(io.BytesIO(response.data))
        assert out.size == case.size and out.mode == "RGBA"
        assert (response.headers["X-Width"], response.headers["X-Height"]) == tuple(map(str, case.size))
        assert job.status == "succeeded" and charged == 1
        return
    _assert_refusal(response, case.status, case.code)
    if job is None:
        return  # refused from the header: no job, no worker time, no charge
    # Past its header the file could only be found broken by decoding it: a failed job, never charged.
    assert case.code == "corrupt_image" and job.status == "failed" and job.error_code == case.code
    assert charged == 0


@pytest.mark.parametrize("case", REQUESTS, ids=lambda c: c.name)
def test_hostile_request(api, key, db, pool_before, case):
    headers = {"x-api-key": key, **case.headers}
    if case.content_type:
        headers["Content-Type"] = case.content_type
    response = api.test_client().post(case.path, headers=headers, data=case.body)
    _assert_refusal(response, case.status, case.code)
    with db() as session:
        assert session.scalar(select(func.count()).select_from(Job)
                              .where(Job.request_id == response.headers["X-Request-ID"])) == 0


def test_hostile_file_as_async_job_fails_cleanly(api, key):
    """The async route: a file broken past its header is accepted (202) and fails with corrupt_image."""
    import time

    data = dict((c.name, d) for c, d in CASES)["truncated.png"]
    client = api.test_client()
    accepted = client.post("/v2/jobs", headers={"x-api-key": key},
                           data={"image_file": (io.BytesIO(data), "t.png"), "cache": "false"})
    assert accepted.status_code == 202, accepted.get_data(as_text=True)
    deadline = time.monotonic() + 60
    while True:
        job = client.get(f"/v2/jobs/{accepted.get_json()['id']}", headers={"x-api-key": key}).get_json()
        if job["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert job["status"] == "failed" and job["error"]["code"] == "corrupt_image" and job["error"]["status"] == 422


def test_worker_survives_and_normal_jobs_still_work(api, key, celery_worker, pool_before):
    """After every hostile case above: the same worker processes, and a normal image comes out right."""
    scene, mask = synthetic_scene(160, 120, radius=35)
    response = api.test_client().post("/v2", headers={"x-api-key": key},
                                      data={"image_file": (io.BytesIO(encode_image(scene, "PNG")), "ok.png"),
                                            "cache": "false"})
    assert response.status_code == 200, response.get_data(as_text=True)
    import numpy as np

    alpha = np.asarray(Image.open(io.BytesIO(response.data)).convert("RGBA"))[:, :, 3] > 127
    assert (alpha & mask).sum() / (alpha | mask).sum() > 0.85
    assert _pool_pids(celery_worker) == pool_before, "a worker process died and was replaced"


def test_corpus_builder_writes_files(tmp_path):
    built = corpus.build(tmp_path)
    assert {c.name for c in built} == {p.name for p in tmp_path.iterdir()}
    assert (tmp_path / "zero-byte.png").stat().st_size == 0
    assert len((tmp_path / "bomb.gif").read_bytes()) < 100   # 4.3 gigapixels claimed in under 100 bytes
    assert json.dumps([c.name for c in built])


def test_multipart_part_without_a_parsable_name_is_a_400(api, key):
    """Found by schemathesis: a part whose Content-Disposition name werkzeug cannot parse was a 500."""
    body = (b'--b\r\nContent-Disposition: form-data; name="\\6\xf3\x99\xb4\xb8"\r\n\r\nnull\r\n'
            b'--b\r\nContent-Disposition: form-data; nam\r\n\r\nx\r\n--b--\r\n')
    for path in ("/v2", "/v2/jobs", "/remove-background/v1"):
        response = api.test_client().post(path, headers={"x-api-key": key,
                                                         "Content-Type": "multipart/form-data; boundary=b"}, data=body)
        assert 400 <= response.status_code < 500, (path, response.get_data(as_text=True))
