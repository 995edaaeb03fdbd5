"""Recovery from a dead worker or an emptied broker, with real processes: Celery workers and a Celery
beat running the sweeper, a private SQLite database, the session's SeaweedFS and, for the broker
tests, a Valkey of their own that is restarted without persistence.

The lease and the sweep interval are shortened so the tests stay short; the mechanism is the one the
defaults use (``benchmarks/reliability.py`` measures it at default settings). The time bounds below
are generous on purpose: they catch a job left to its deadline, not a slow machine.
"""
import json
import os
import signal
import sys
import time
import uuid
from contextlib import contextmanager

import pytest
import redis
from sqlalchemy import func, select

from clearcut import accounts, jobs, webhooks
from clearcut.db import sessionmaker_for, upgrade
from clearcut.db.models import Job, Usage, WebhookDelivery
from clearcut.jobs import batches
from clearcut.local.services import spawn, start_valkey, stop_process_group
from clearcut.options import parse
from tests import async_support as support
from tests.conftest import encode_image, synthetic_scene

pytestmark = pytest.mark.timeout(600)
FAST_SWEEP = {"CLEARCUT_JOB_LEASE_S": "3", "CLEARCUT_SWEEP_INTERVAL_S": "1", "CLEARCUT_ORT_THREADS": "1"}


@pytest.fixture()
def env(service_env, tmp_path, request, model_dir):
    """A database and broker namespace of this test alone: no other job is swept into its queues."""
    env = {**service_env, **support.FAST, **FAST_SWEEP,
           "CLEARCUT_DATABASE_URL": f"sqlite:///{tmp_path / 'recovery.db'}",
           "CLEARCUT_BROKER_PREFIX": f"{service_env['CLEARCUT_BROKER_PREFIX']}{request.node.name}-{uuid.uuid4().hex[:4]}:"}
    upgrade(env["CLEARCUT_DATABASE_URL"])
    mp = pytest.MonkeyPatch()
    for name, value in env.items():
        mp.setenv(name, value)
    yield env
    mp.undo()


@contextmanager
def beat(env, log_dir):
    process = spawn([sys.executable, "-m", "celery", "-A", "worker.celery_app", "beat", "--loglevel", "INFO",
                     "--schedule", str(log_dir / "beat-schedule")], env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
                    cwd=support.ROOT, log_path=log_dir / "beat.log")
    try:
        yield process
    finally:
        stop_process_group(process, timeout=10)


class Hooks(support.Quiet):
    seen: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        Hooks.seen.append((self.headers.get("webhook-id"), body.get("type"), body.get("data", {}).get("id")))
        self.send_response(200)
        self.end_headers()


def _account(ctx, name):
    with ctx.db.begin() as session:
        account = accounts.get_or_create_account(session, name)
        webhooks.rotate_secret(session, account.id)
    return account


def _rows(ctx, ids) -> dict:
    with ctx.db() as session:
        return {j.id: j for j in session.scalars(select(Job).where(Job.id.in_(list(ids))))}


def _all(ctx, ids, status="succeeded"):
    return all(r.status == status for r in _rows(ctx, ids).values())


def _assert_once_in_effect(ctx, ids, max_attempts=2):
    """One usage row, one stored result object, a cutout of the right size; claimed at most twice."""
    rows = _rows(ctx, ids)
    assert len(rows) == len(ids)
    with ctx.db() as session:
        usage = dict(session.execute(select(Usage.job_id, func.count()).where(Usage.job_id.in_(list(ids)))
                                     .group_by(Usage.job_id)).all())
    for job_id, row in rows.items():
        assert row.status == "succeeded", (job_id, row.status, row.error_code, row.error_message)
        assert usage.get(job_id) == 1 and 1 <= row.attempts <= max_attempts
        listed = ctx.storage.client.list_objects_v2(Bucket=ctx.storage.bucket, Prefix=row.result_key)
        assert [o["Key"] for o in listed.get("Contents", [])] == [row.result_key]
    return rows


def _submit(ctx, account, data, **kwargs) -> str:
    return jobs.submit(ctx, account, None, data, "image/png", parse({"model": "u2net"}), use_cache=False,
                       **kwargs).job.id


def _batch(ctx, account, images) -> list[str]:
    items = []
    for i, data in enumerate(images):
        key = f"imports/{account.id}/item-{uuid.uuid4().hex[:6]}-{i}.png"
        ctx.storage.put(key, data, "image/png")
        items.append({"s3_key": key, "options": {"model": "u2net"}})
    _, queued = batches.create(ctx, account, None, items, options={"cache": False})
    return [job_id for job_id, _ in queued]


def test_sigkill_of_every_worker_process_mid_job_and_mid_batch(env, tmp_path):
    """The whole worker process group is SIGKILLed while an async job and a batch run: the sweeper finds
    the jobs by their lapsed leases, not at the 600 s deadline, and each runs to one result."""
    from worker.webhooks import send_jobs

    ctx = support.context(env)
    account = _account(ctx, "recovery-sigkill")
    hooks = support.Server(Hooks)
    Hooks.seen = []
    big = encode_image(synthetic_scene(2400, 1800, 600)[0], "PNG", compress_level=1)
    images = [encode_image(synthetic_scene(1600, 1200, 380 + i)[0], "PNG") for i in range(3)]
    try:
        with beat(env, tmp_path):
            with support.worker(env, tmp_path, queues="cpu,batch,webhooks", concurrency=2) as (first, app):
                job_id = _submit(ctx, account, big, webhook_url=hooks.url + "/hook")
                items = _batch(ctx, account, images)
                ids = [job_id, *items]
                send_jobs(app, [(job_id, "cpu", 5), *[(i, "batch", 5) for i in items]])
                support.wait_for(lambda: sum(r.status == "processing" for r in _rows(ctx, ids).values()) >= 2,
                                 120, 0.05, "two jobs running")
                os.killpg(first.pid, signal.SIGKILL)  # parent and pool processes: a lost node
                first.wait(10)
            killed = time.monotonic()
            running = [i for i, r in _rows(ctx, ids).items() if r.status == "processing"]
            assert running  # orphaned: only the lease says their worker is gone
            with support.worker(env, tmp_path, queues="cpu,batch,webhooks"):
                support.wait_for(lambda: _all(ctx, ids), 240, 0.2, "every job to succeed")
                recovered_s = time.monotonic() - killed
                # the delivery is a task of its own: wait for it while a worker still consumes its queue
                support.wait_for(lambda: any(t == "job.succeeded" for _, t, j in Hooks.seen if j == job_id), 120,
                                 0.2, "the webhook")
        rows = _assert_once_in_effect(ctx, ids)
        assert any(rows[i].sweeps >= 1 for i in running)  # found by the sweeper, not by the broker
        assert recovered_s < ctx.setting("CLEARCUT_JOB_DEADLINE_S")
        assert len({m for m, t, j in Hooks.seen if j == job_id and t == "job.succeeded"}) == 1  # one message id
        with ctx.db() as session:
            assert session.scalars(select(WebhookDelivery.event).where(WebhookDelivery.job_id == job_id)).all() \
                == ["job.succeeded"]
    finally:
        hooks.close()


def test_a_broker_restart_without_persistence_requeues_every_queued_job(env, tmp_path):
    """Valkey restarts empty while a long job runs and four wait: the running job finishes untouched,
    the sweeper sends every queued job again (higher priority first) and each succeeds once."""
    from worker.webhooks import send_jobs

    valkey = start_valkey()
    port = int(valkey.url.rsplit(":", 1)[1].split("/")[0])
    env = {**env, "CLEARCUT_REDIS_URL": valkey.url}
    os.environ["CLEARCUT_REDIS_URL"] = valkey.url
    ctx = support.context(env)
    account = _account(ctx, "recovery-broker")
    long_png = encode_image(synthetic_scene(3000, 2000, 700)[0], "PNG", compress_level=1)
    marker = f"{env['CLEARCUT_BROKER_PREFIX']}clearcut:broker-marker"
    try:
        with beat(env, tmp_path), support.worker(env, tmp_path, queues="cpu,batch,webhooks") as (_, app):
            broker = redis.Redis.from_url(valkey.url)
            support.wait_for(lambda: broker.exists(marker), 60, 0.2, "a first sweep")
            long_id = _submit(ctx, account, long_png)
            send_jobs(app, [(long_id, "cpu", 5)])
            support.wait_for(lambda: _rows(ctx, [long_id])[long_id].status == "processing", 60, 0.05, "the long job")
            low, high = (_submit(ctx, account, support.scene_png(320, 240, 60 + i), priority=p)
                         for i, p in ((0, 1), (1, 9)))
            items = _batch(ctx, account, [support.scene_png(320, 240, 70 + i) for i in range(2)])
            queued = [low, high, *items]
            send_jobs(app, [(low, "cpu", 1), (high, "cpu", 9), *[(i, "batch", 5) for i in items]])
            valkey.stop()  # every message, binding and key is gone; clients stay configured
            valkey = start_valkey(port)
            support.wait_for(lambda: _all(ctx, [long_id, *queued]), 240, 0.2, "every job to succeed")
        rows = _assert_once_in_effect(ctx, [long_id, *queued])
        assert rows[long_id].attempts == 1 and rows[long_id].sweeps == 0  # never taken from its worker
        assert rows[high].started_at <= rows[low].started_at
        assert all(rows[i].sweeps == 0 for i in queued)  # sent again, not counted as attempts
    finally:
        valkey.stop()


def test_a_slow_job_is_never_stolen_and_a_hung_one_ends(env, tmp_path):
    """A job that runs for many leases keeps its lease (a second, idle pool process never gets it); a
    task stopped by its soft time limit stops renewing and fails at CLEARCUT_JOB_MAX_ATTEMPTS."""
    from worker.webhooks import send_jobs

    ctx = support.context(env)
    account = _account(ctx, "recovery-slow")
    env = {**env, "CLEARCUT_JOB_LEASE_S": "1", "CLEARCUT_SWEEP_INTERVAL_S": "0.5"}
    big = encode_image(synthetic_scene(6000, 4000, 1500)[0], "PNG", compress_level=1)
    with beat(env, tmp_path), support.worker(env, tmp_path, queues="cpu,batch,webhooks", concurrency=2) as (_, app):
        # recorded only now: a queued row without a message for a lease would rightly count as lost
        slow = jobs.submit(ctx, account, None, big, "image/png", parse({"model": "quality"}), use_cache=False).job.id
        send_jobs(app, [(slow, "cpu", 5)])
        support.wait_for(lambda: _all(ctx, [slow]), 300, 0.2, "the 24 MP job")
    row = _assert_once_in_effect(ctx, [slow], max_attempts=1)[slow]
    took = (row.finished_at - row.started_at).total_seconds()
    assert took > 3  # several leases long: renewed, never swept
    assert row.sweeps == 0 and row.result["width"] == 6000

    hung_env = {**env, "CLEARCUT_TASK_SOFT_TIME_LIMIT": "1", "CLEARCUT_TASK_TIME_LIMIT": "30",
                "CLEARCUT_JOB_MAX_ATTEMPTS": "2"}
    big = encode_image(synthetic_scene(6000, 4000, 1400)[0], "PNG", compress_level=1)
    with beat(hung_env, tmp_path), support.worker(hung_env, tmp_path, queues="cpu,batch,webhooks") as (_, app):
        hung = jobs.submit(ctx, account, None, big, "image/png", parse({"model": "quality"}), use_cache=False).job.id
        send_jobs(app, [(hung, "cpu", 5)])
        support.wait_for(lambda: _all(ctx, [hung], "failed"), 240, 0.2, "the stopped job to fail")
    row = _rows(ctx, [hung])[hung]
    assert row.error_code == "max_attempts_exceeded" and row.attempts == 2
    with ctx.db() as session:
        assert session.scalar(select(func.count()).select_from(Usage).where(Usage.job_id == hung)) == 0
