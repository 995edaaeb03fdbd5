"""/v2/health reports each dependency and answers 503 naming the one that is down."""
from __future__ import annotations

import pytest

from app import create_app
from clearcut.local.services import free_port

pytestmark = pytest.mark.timeout(180)


def _get(settings, path="/v2/health"):
    client = create_app(settings).test_client()
    response = client.get(path)
    return response.status_code, response.get_json()


def test_health_ok_with_every_dependency_up(service_env, celery_worker):
    for path in ("/v2/health", "/health", "/"):
        status, body = _get(service_env, path)
        assert status == 200, body
        assert body["status"] == "ok"
        assert set(body["checks"]) == {"database", "broker", "storage", "worker"}
        assert all(check["status"] == "ok" for check in body["checks"].values())
    workers = body["checks"]["worker"]["workers"]
    assert celery_worker.conf.clearcut_worker_name in [w["name"] for w in workers]
    assert all("models" in w and w["queues"] == ["cpu"] for w in workers)
    assert all(w["provider"] == "CPUExecutionProvider" and w["default_model"] == "u2netp" for w in workers)


def test_health_on_postgres(service_env, postgres_url, celery_worker):
    status, body = _get({**service_env, "CLEARCUT_DATABASE_URL": postgres_url})
    assert status == 200, body
    assert body["checks"]["database"]["backend"] == "postgresql"


def test_wrong_s3_endpoint_is_reported(service_env, celery_worker):
    settings = {**service_env, "CLEARCUT_S3_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    status, body = _get(settings)
    assert status == 503
    assert body["status"] == "degraded"
    assert body["checks"]["storage"]["status"] == "down"
    assert "unreachable" in body["checks"]["storage"]["error"]
    assert body["checks"]["worker"]["status"] == "ok"


def test_no_worker_is_reported(service_env):
    # A fresh broker prefix: no worker listens there, whatever else runs on this Redis.
    settings = {**service_env, "CLEARCUT_BROKER_PREFIX": "clearcut-test-nobody:"}
    status, body = _get(settings)
    assert status == 503
    assert body["checks"]["worker"]["status"] == "down"
    assert "no worker answered" in body["checks"]["worker"]["error"]
    assert body["checks"]["broker"]["status"] == "ok"


def test_broker_down_is_reported(service_env):
    settings = {**service_env, "CLEARCUT_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    status, body = _get(settings)
    assert status == 503
    assert body["checks"]["broker"]["status"] == "down"
    assert body["checks"]["worker"]["status"] == "down"
    assert body["checks"]["database"]["status"] == "ok"


def test_database_down_is_reported(service_env):
    settings = {**service_env, "CLEARCUT_DATABASE_URL": f"postgresql+psycopg://x@127.0.0.1:{free_port()}/x"}
    status, body = _get(settings)
    assert status == 503
    assert body["checks"]["database"]["status"] == "down"


def test_create_app_connects_to_nothing():
    # Everything points at closed ports: building the app must still succeed instantly.
    dead = f"http://127.0.0.1:{free_port()}"
    app = create_app({"CLEARCUT_S3_ENDPOINT": dead, "CLEARCUT_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert {"/", "/health", "/v2/health"} <= {rule.rule for rule in app.url_map.iter_rules()}


def test_app_import_does_not_load_onnxruntime():
    import subprocess
    import sys

    code = "import app, sys; app.create_app(); assert 'onnxruntime' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
