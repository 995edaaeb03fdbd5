"""Nothing lost: the sweeper against PostgreSQL and SQLite, duplicate task delivery, and recovery after a
worker is killed with SIGKILL in the middle of a job."""
import os
import signal
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from clearcut import accounts, jobs, webhooks
from clearcut.jobs import batches, idempotency, sweeper
from clearcut.context import Context
from clearcut.db import sessionmaker_for, upgrade
from clearcut.db.models import Batch, IdempotencyKey, Job, Usage, WebhookDelivery, utcnow
from clearcut.options import parse
from tests import async_support as support
from tests.conftest import encode_image, synthetic_scene

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def ctx(database_url, s3, model_dir):
    upgrade(database_url)
    return Context(db=sessionmaker_for(database_url), storage=s3.storage, database_url=database_url)


@pytest.fixture()
def account(ctx, request):
    with ctx.db.begin() as session:
        return accounts.get_or_create_account(session, f"sweep-{request.node.name}")


def _submit(ctx, account, radius=20):
    # Rotated scenes no other module uses: a replay here must not find another test's cached result.
    return jobs.submit(ctx, account, None, support.scene_png(96, 64, radius, shift=11), "image/png", parse({}),
                       use_cache=False).job


def _row(ctx, job_id) -> Job:
    with ctx.db() as session:
        return session.get(Job, job_id)


def test_stuck_processing_job_is_requeued_then_fails_at_max_attempts(ctx, account, monkeypatch):
    monkeypatch.setenv("CLEARCUT_JOB_MAX_ATTEMPTS", "3")
    job = _submit(ctx, account)
    later = lambda: utcnow() + timedelta(seconds=3600)  # noqa: E731 - past every deadline
    for attempt in (1, 2):
        assert jobs.claim(ctx, job.id) is not None  # a worker took it ... and died
        result = sweeper.sweep(ctx, now=later())
        assert (job.id, "cpu", 5) in result.requeued
        row = _row(ctx, job.id)
        assert row.status == "queued" and row.attempts == attempt and row.sweeps == attempt
        assert job.id not in [r[0] for r in sweeper.sweep(ctx, now=utcnow()).requeued]  # fresh deadline
    jobs.claim(ctx, job.id)
    result = sweeper.sweep(ctx, now=later())
    assert job.id in result.failed and job.id not in [r[0] for r in result.requeued]
    row = _row(ctx, job.id)
    assert row.status == "failed" and row.error_code == "max_attempts_exceeded" and row.attempts == 3
    assert "replay" in row.error_message
    replayed = jobs.replay(ctx, account.id, job.id)
    assert replayed.enqueue and replayed.job.status == "queued" and replayed.job.attempts == 0


def test_a_job_held_for_a_worker_retry_is_left_to_that_worker(ctx, account, monkeypatch):
    """A worker backing off from a storage outage pushes the deadline past its retry: the sweeper neither
    re-enqueues the job nor fails it at max attempts, however many retries the outage took."""
    monkeypatch.setenv("CLEARCUT_JOB_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("CLEARCUT_JOB_DEADLINE_S", "20")
    job = _submit(ctx, account, radius=21)
    for _ in range(5):  # five claims (the task's retries), more than CLEARCUT_JOB_MAX_ATTEMPTS
        assert jobs.claim(ctx, job.id) is not None
    assert jobs.hold_for_retry(ctx, job.id, 60)
    held = _row(ctx, job.id).deadline_at.replace(tzinfo=None)  # SQLite returns naive UTC
    assert held >= utcnow().replace(tzinfo=None) + timedelta(seconds=75)  # deadline (20 s) after the retry (60 s)
    result = sweeper.sweep(ctx, now=utcnow() + timedelta(seconds=70))  # the plain deadline has passed
    assert job.id not in result.failed and job.id not in [r[0] for r in result.requeued]
    assert _row(ctx, job.id).status == "processing"
    # past the held deadline the worker is presumed lost: the usual rule applies again
    result = sweeper.sweep(ctx, now=utcnow() + timedelta(seconds=3600))
    assert job.id in result.failed
    assert not jobs.hold_for_retry(ctx, job.id, 60)  # a terminal job is not touched


def test_queued_job_behind_a_busy_queue_is_not_lost(ctx, account):
    job = _submit(ctx, account, radius=21)
    later = utcnow() + timedelta(seconds=3600)
    waiting = sweeper.sweep(ctx, now=later, queue_depth=lambda queue: 250)
    assert job.id not in [r[0] for r in waiting.requeued] and _row(ctx, job.id).sweeps == 0
    lost = sweeper.sweep(ctx, now=later, queue_depth=lambda queue: 0)
    assert job.id in [r[0] for r in lost.requeued] and _row(ctx, job.id).sweeps == 1


def test_finished_batch_is_completed_and_old_idempotency_keys_expire(ctx, account):
    batch, queued = batches.create(ctx, account, None, [{"image_url": "http://127.0.0.1:9/a.png"}])
    with ctx.db.begin() as session:  # its only job finished, but the completion check was lost
        session.execute(text("UPDATE jobs SET status = 'failed' WHERE id = :id"), {"id": queued[0][0]})
    result = sweeper.sweep(ctx)
    assert batch.id in result.batches_completed
    with ctx.db() as session:
        assert session.get(Batch, batch.id).status == "completed"
    row = idempotency.begin(ctx, account.id, "old-key", "f" * 64)
    idempotency.finish(ctx, row, 202, {}, b"{}")
    assert sweeper.sweep(ctx).idempotency_keys_deleted == 0
    assert sweeper.sweep(ctx, now=utcnow() + timedelta(hours=25)).idempotency_keys_deleted >= 1
    with ctx.db() as session:
        assert session.scalar(select(func.count()).select_from(IdempotencyKey)
                              .where(IdempotencyKey.key == "old-key")) == 0


def test_a_live_lease_is_left_alone_an_expired_one_is_requeued(ctx, account):
    from clearcut.jobs import leases

    job = _submit(ctx, account, radius=22)
    assert jobs.claim(ctx, job.id, owner="task-a") is not None
    lease_s = ctx.setting("CLEARCUT_JOB_LEASE_S")
    assert jobs.claim(ctx, job.id, owner="task-b") is None  # a redelivered copy never runs it twice
    assert jobs.claim(ctx, job.id, owner="task-a") is not None  # the same task's retry may
    soon = utcnow() + timedelta(seconds=lease_s / 2)
    assert job.id not in [r[0] for r in sweeper.sweep(ctx, now=soon).requeued]
    assert leases.renew(ctx, job.id, "task-a") and not leases.renew(ctx, job.id, "task-b")
    later = utcnow() + timedelta(seconds=lease_s + 1)  # before the deadline, after the lease
    assert job.id in [r[0] for r in sweeper.sweep(ctx, now=later).requeued]
    row = _row(ctx, job.id)
    assert row.status == "queued" and row.sweeps == 1 and row.lease_owner is None
    assert not leases.renew(ctx, job.id, "task-a")  # the dead attempt's lease is gone
    assert jobs.claim(ctx, job.id, owner="task-c") is not None


def test_lost_queued_jobs_are_sent_again_interactive_first_by_priority(ctx, account):
    fresh = [_submit(ctx, account, radius=r) for r in (23, 24)]
    with ctx.db.begin() as session:
        for row, (queue, priority) in zip(fresh, [("batch", 9), ("cpu", 1)]):
            session.get(Job, row.id).queue, session.get(Job, row.id).priority = queue, priority
    first = _submit(ctx, account, radius=25)
    with ctx.db.begin() as session:
        session.get(Job, first.id).priority = 8
    mine = {j.id for j in [*fresh, first]}
    # the broker was emptied: every queued job is sent again at once, the rows untouched
    result = sweeper.sweep(ctx, broker_emptied=lambda: True, queue_depth=lambda queue: 0)
    sent = [r for r in result.requeued if r[0] in mine]
    assert sent == [(first.id, "cpu", 8), (fresh[1].id, "cpu", 1), (fresh[0].id, "batch", 9)]
    assert {_row(ctx, j).sweeps for j in mine} == {0}
    # otherwise a queued job counts as lost once it waited a lease in an empty queue
    assert not {r[0] for r in sweeper.sweep(ctx, queue_depth=lambda queue: 0).requeued} & mine
    later = utcnow() + timedelta(seconds=ctx.setting("CLEARCUT_JOB_LEASE_S") + 1)
    assert not {r[0] for r in sweeper.sweep(ctx, now=later, queue_depth=lambda queue: 3).requeued} & mine
    assert {r[0] for r in sweeper.sweep(ctx, now=later, queue_depth=lambda queue: 0).requeued} >= mine


def test_the_lease_migration_upgrades_and_downgrades(tmp_path):
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import inspect

    from clearcut.db import MIGRATIONS, engine_for

    url = f"sqlite:///{tmp_path / 'leases.db'}"
    upgrade(url, "0002")
    with engine_for(url).begin() as conn:
        conn.execute(text("INSERT INTO accounts (id, name, plan, status, created_at) VALUES ('a', 'a', 'p', 'active', "
                          "CURRENT_TIMESTAMP)"))
    upgrade(url)
    columns = {c["name"] for c in inspect(engine_for(url)).get_columns("jobs")}
    assert {"lease_owner", "lease_expires_at"} <= columns
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["url"] = url
    command.downgrade(cfg, "0002")
    engine_for.cache_clear()
    assert "lease_owner" not in {c["name"] for c in inspect(engine_for(url)).get_columns("jobs")}


# --- with real workers (the session's SQLite database and SeaweedFS) -------------------------------

@pytest.fixture(scope="module")
def env(service_env, model_dir):
    mp = pytest.MonkeyPatch()
    for name, value in {**service_env, **support.FAST}.items():
        mp.setenv(name, value)
    upgrade(service_env["CLEARCUT_DATABASE_URL"])
    yield service_env
    mp.undo()


def _live_account(env, name):
    ctx = support.context(env)
    with ctx.db.begin() as session:
        account = accounts.get_or_create_account(session, name)
        webhooks.rotate_secret(session, account.id)
    return ctx, account


def test_duplicate_delivery_runs_once_in_effect(env, tmp_path_factory):
    ctx, account = _live_account(env, "sweep-duplicates")
    queue = f"dup-{uuid.uuid4().hex[:6]}"  # only this test's worker consumes it
    job = jobs.submit(ctx, account, None, support.scene_png(96, 64, 25), "image/png", parse({}), use_cache=False,
                      webhook_url="http://127.0.0.1:9/hook", queue=queue).job
    with support.worker(env, tmp_path_factory.mktemp("dup-worker"), queues=queue, concurrency=2) as (_, app):
        first = app.send_task("clearcut.process_job", args=[job.id], queue=queue)
        second = app.send_task("clearcut.process_job", args=[job.id], queue=queue)
        # the copy that arrives while the other runs leaves it alone (its lease is live): "processing"
        outcomes = [first.get(timeout=60), second.get(timeout=60)]
        assert "succeeded" in outcomes and set(outcomes) <= {"succeeded", "processing"}
        third = app.send_task("clearcut.process_job", args=[job.id], queue=queue).get(timeout=60)
        assert third == "succeeded"
    with ctx.db() as session:
        row = session.get(Job, job.id)
        assert row.status == "succeeded" and row.attempts == 1  # claimed once: never run twice at once
        assert session.scalar(select(func.count()).select_from(Usage).where(Usage.job_id == job.id)) == 1
        events = session.scalars(select(WebhookDelivery.event).where(WebhookDelivery.job_id == job.id)).all()
        assert events == ["job.succeeded"]
        keys = [k for k in ctx.storage.client.list_objects_v2(Bucket=ctx.storage.bucket, Prefix="results/")
                .get("Contents", []) if k["Key"] == row.result_key]
        assert len(keys) == 1


def test_sweeper_recovers_a_job_from_a_worker_killed_mid_job(env, tmp_path_factory):
    ctx, account = _live_account(env, "sweep-sigkill")
    big = encode_image(synthetic_scene(2400, 1800, 600)[0], "PNG")  # seconds of work: time to kill it
    queue = f"kill-{uuid.uuid4().hex[:6]}"  # only this test's workers consume it (not the session's worker)
    job = jobs.submit(ctx, account, None, big, "image/png", parse({}), use_cache=False, queue=queue).job
    logs = tmp_path_factory.mktemp("killed-worker")
    with support.worker(env, logs, queues=queue, extra={"CLEARCUT_JOB_DEADLINE_S": "3"}) as (process, app):
        app.send_task("clearcut.process_job", args=[job.id], queue=queue)
        support.wait_for(lambda: _row(ctx, job.id).status == "processing", 60, 0.01, "the job to start")
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    row = _row(ctx, job.id)
    assert row.status == "processing" and row.attempts == 1  # stuck: nobody will finish it
    wait_s = (row.deadline_at.replace(tzinfo=None) - utcnow().replace(tzinfo=None)).total_seconds()
    assert wait_s < 5  # the killed worker's 3 s deadline
    time.sleep(max(0.0, wait_s) + 0.5)
    with support.worker(env, tmp_path_factory.mktemp("rescue-worker"), queues=queue) as (_, app):
        swept = app.send_task("clearcut.sweep", queue=queue).get(timeout=60)
        assert swept["requeued"] >= 1
        support.wait_for(lambda: _row(ctx, job.id).status == "succeeded", 90, 0.2, "the rescued job")
    row = _row(ctx, job.id)
    assert row.attempts == 2 and row.sweeps == 1 and row.result["width"] == 2400
    with ctx.db() as session:
        assert session.scalar(select(func.count()).select_from(Usage).where(Usage.job_id == job.id)) == 1
