"""Prometheus metrics and JSON logs after real requests: Flask app -> real SeaweedFS, SQLite, Redis,
and a worker subprocess of this module with its metrics server on (CLEARCUT_WORKER_METRICS_PORT)."""
import base64
import io
import json
import os
import sys
import urllib.request

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from clearcut import accounts
from clearcut.db import sessionmaker_for, upgrade
from clearcut.local.services import free_port, spawn, stop_process_group, wait_until
from tests.conftest import ROOT, encode_image, synthetic_scene

SCENE, _ = synthetic_scene(200, 160, radius=40)
PNG = encode_image(SCENE, "PNG")


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def stack(service_env, tmp_path_factory, monkeypatch_module):
    """(app, env, worker metrics URL, worker log path): a private broker prefix so only this module's
    worker consumes these jobs."""
    env = {**service_env, "CLEARCUT_BROKER_PREFIX": service_env["CLEARCUT_BROKER_PREFIX"] + "metrics:",
           "CLEARCUT_RATE_LIMIT_PER_MINUTE": "1000"}
    for name, value in env.items():
        monkeypatch_module.setenv(name, value)
    upgrade(env["CLEARCUT_DATABASE_URL"])
    port = free_port()
    log_path = tmp_path_factory.mktemp("metrics-worker") / "worker.log"
    process = spawn([sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", "cpu,gpu",
                     "--concurrency", "1", "-n", "metrics@%h", "--without-gossip", "--without-mingle",
                     "--loglevel", "INFO"],
                    env={**os.environ, **env, "CLEARCUT_WORKER_METRICS_PORT": str(port), "PYTHONUNBUFFERED": "1"},
                    cwd=ROOT, log_path=log_path)
    from app import create_app

    app = create_app(env)
    app.testing = True
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: urllib.request.urlopen(url + "/healthz", timeout=2).read(), timeout=90,
                   what="worker metrics server", alive=lambda: process.poll() is None, log_path=log_path,
                   interval=0.5)
        wait_until(lambda: _ping(app, env), timeout=90, what="metrics worker", alive=lambda: process.poll() is None,
                   log_path=log_path, interval=0.5)
        yield app, env, url, log_path
    finally:
        stop_process_group(process, timeout=15)


def _ping(app, env):
    celery = app.extensions["clearcut_celery"]()
    if not celery.control.ping(timeout=1.0):
        raise RuntimeError("no worker yet")


@pytest.fixture(scope="module")
def key(stack):
    app, env, _, _ = stack
    with sessionmaker_for(env["CLEARCUT_DATABASE_URL"]).begin() as session:
        account = accounts.get_or_create_account(session, "metrics-tests")
        _, secret = accounts.create_key(session, account)
    return secret


def samples(text: str) -> dict:
    """{(name, frozenset(labels)): value} for every sample of a Prometheus text exposition."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(scraped: dict, name: str, **labels) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


def api_metrics(client) -> dict:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.mimetype == "text/plain"
    return samples(r.get_data(as_text=True))


def worker_metrics(url: str) -> dict:
    return samples(urllib.request.urlopen(url + "/metrics", timeout=10).read().decode())


def test_api_counts_requests_latency_and_cache(stack, key):
    app, _, _, _ = stack
    client = app.test_client()
    before = api_metrics(client)
    image = {"image_file": (io.BytesIO(PNG), "a.png")}
    first = client.post("/v2", headers={"x-api-key": key}, data=dict(image))
    second = client.post("/v2", headers={"x-api-key": key}, data={"image_file": (io.BytesIO(PNG), "a.png")})
    assert first.status_code == 200 and second.status_code == 200, first.get_data(as_text=True)
    assert client.post("/v2", data={"image_file": (io.BytesIO(PNG), "a.png")}).status_code == 401
    assert client.get("/v2/jobs/job_nope", headers={"x-api-key": key}).status_code == 404
    after = api_metrics(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("clearcut_http_requests_total", method="POST", route="/v2", status="200") == 2
    assert delta("clearcut_http_requests_total", method="POST", route="/v2", status="401") == 1
    assert delta("clearcut_http_requests_total", method="GET", route="/v2/jobs/<job_id>", status="404") == 1
    assert delta("clearcut_http_request_duration_seconds_count", method="POST", route="/v2") == 3
    assert delta("clearcut_http_request_duration_seconds_sum", method="POST", route="/v2") > 0
    assert delta("clearcut_cache_lookups_total", result="miss") == 1
    assert delta("clearcut_cache_lookups_total", result="hit") == 1


def test_queue_depth_is_read_from_redis_at_scrape_time(stack):
    app, env, url, _ = stack
    client = app.test_client()
    broker = redis.Redis.from_url(env["CLEARCUT_REDIS_URL"])
    gpu_key = env["CLEARCUT_BROKER_PREFIX"] + "gpu"
    celery = app.extensions["clearcut_celery"]()
    # The worker consumes cpu and gpu; stop it consuming gpu so the messages wait there.
    celery.control.cancel_consumer("gpu", reply=True, timeout=5)
    try:
        for _ in range(3):
            celery.send_task("clearcut.ping", queue="gpu")
        def queued():
            if broker.llen(gpu_key) != 3:
                raise RuntimeError(f"{broker.llen(gpu_key)} messages queued")

        wait_until(queued, timeout=10, what="3 queued messages")
        assert value(api_metrics(client), "clearcut_queue_depth", queue="gpu") == 3
        assert value(worker_metrics(url), "clearcut_queue_depth", queue="gpu") == 3
        assert ("clearcut_queue_depth", frozenset({"queue": "cpu"}.items())) in api_metrics(client)
    finally:
        broker.delete(gpu_key)
        celery.control.add_consumer("gpu", reply=True, timeout=5)
    assert value(api_metrics(client), "clearcut_queue_depth", queue="gpu") == 0


def test_worker_exports_job_stages_inference_and_provider(stack, key):
    app, _, url, _ = stack
    client = app.test_client()
    before = worker_metrics(url)
    r = client.post("/v2", headers={"x-api-key": key},
                    data={"image_file": (io.BytesIO(PNG), "b.png"), "format": "webp", "cache": "false"})
    assert r.status_code == 200, r.get_data(as_text=True)

    stages = ("decode", "infer", "refine", "compose", "encode")

    def recorded():
        # One scrape is not a snapshot: prometheus_client reads the pool process's counter and histogram
        # files one after the other, so it can see the job counted before its stages, or the reverse.
        now = worker_metrics(url)
        moved = [value(now, "clearcut_jobs_total", queue="cpu", outcome="succeeded") >
                 value(before, "clearcut_jobs_total", queue="cpu", outcome="succeeded")]
        moved += [value(now, "clearcut_job_stage_seconds_count", stage=stage) >
                  value(before, "clearcut_job_stage_seconds_count", stage=stage) for stage in stages]
        moved.append(value(now, "clearcut_cutout_confidence_count", models="u2netp") >
                     value(before, "clearcut_cutout_confidence_count", models="u2netp"))
        if not all(moved):
            raise RuntimeError(f"job counted: {moved[0]}; stages and confidence recorded: {moved[1:]}")
        return now

    after = wait_until(recorded, timeout=20, what="worker job and stage metrics", interval=0.2)
    assert value(after, "clearcut_model_inference_seconds_count", models="u2netp") >= 1
    assert value(after, "clearcut_model_inference_seconds_sum", models="u2netp") > 0
    confidence = float(r.headers["X-Confidence"])
    assert value(after, "clearcut_cutout_confidence_bucket", models="u2netp", le="1.0") >= 1 and 0 <= confidence <= 1
    assert value(after, "clearcut_job_duration_seconds_count", queue="cpu") >= 1
    assert value(after, "clearcut_execution_provider_info", provider="CPUExecutionProvider", requested="auto") == 1


def test_webhook_delivery_counter_is_available():
    from prometheus_client import REGISTRY

    from worker.metrics import record_webhook

    before = REGISTRY.get_sample_value("clearcut_webhook_deliveries_total", {"outcome": "delivered"}) or 0
    record_webhook("delivered")
    assert REGISTRY.get_sample_value("clearcut_webhook_deliveries_total", {"outcome": "delivered"}) == before + 1


def test_json_logs_carry_ids_and_never_keys_or_image_bytes(stack, key, capsys):
    app, _, _, log_path = stack
    client = app.test_client()
    b64 = base64.b64encode(PNG).decode()
    capsys.readouterr()
    # Legacy key in the query string: logged as a warning, which must not contain the key.
    r = client.post(f"/v2?api_key={key}", json={"image_base64": b64, "format": "png", "cache": "false"})
    assert r.status_code == 200, r.get_data(as_text=True)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]   # every line is one JSON object
    rid, job_id = r.headers["X-Request-ID"], r.headers["X-Job-ID"]
    assert entries and all(e["request_id"] == rid for e in entries)
    access = [e for e in entries if e["logger"] == "clearcut.access"]
    assert access and access[-1]["status"] == 200 and access[-1]["job_id"] == job_id
    assert access[-1]["route"] == "/v2" and access[-1]["duration_ms"] > 0
    assert any("legacy" in e["message"] for e in entries)
    text = "\n".join(lines)
    assert key not in text and key[len("cc_live_"):] not in text and b64[:300] not in text

    def job_line():
        for line in log_path.read_text().splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("job_id") == job_id and entry["message"] == "job succeeded":
                    return entry
        raise RuntimeError("no log line for the job yet")

    entry = wait_until(job_line, timeout=20, what="worker log line", interval=0.2)
    assert entry["request_id"] == rid and entry["queue"] == "cpu" and entry["level"] == "INFO"
    assert key not in log_path.read_text()
