"""Job-finished wake-ups (clearcut.notify) against the real Redis and a real Celery worker."""
import time

import pytest
import redis

from clearcut import accounts, jobs, notify
from clearcut.context import Context
from clearcut.db import upgrade
from clearcut.db.models import Job
from clearcut.options import parse
from tests.conftest import encode_image, synthetic_scene


@pytest.fixture(scope="module")
def client(redis_url):
    return redis.Redis.from_url(redis_url)


def test_wait_returns_on_announce_and_times_out_without_one(client, service_env):
    job_id = f"job_notify_{time.monotonic_ns()}"
    started = time.monotonic()
    assert notify.wait(client, job_id, 0.2, service_env) is False
    assert 0.15 <= time.monotonic() - started < 2
    notify.announce(client, job_id, service_env)
    name = notify.key(job_id, service_env)
    assert name.startswith(service_env["CLEARCUT_BROKER_PREFIX"])
    assert 0 < client.ttl(name) <= notify.KEEP_S
    started = time.monotonic()
    assert notify.wait(client, job_id, 5, service_env) is True
    assert time.monotonic() - started < 0.5
    assert client.exists(name) == 0  # consumed: a second waiter falls back to reading the row


def test_worker_announces_after_the_terminal_state_is_committed(client, service_env, celery_worker, model_dir):
    upgrade(service_env["CLEARCUT_DATABASE_URL"])
    ctx = Context.from_env(service_env)
    with ctx.db.begin() as session:
        account = accounts.get_or_create_account(session, "notify-tests")
        session.expunge(account)
    image, _ = synthetic_scene(96, 64, 20)
    submission = jobs.submit(ctx, account, None, encode_image(image, "PNG"), "image/png",
                             parse({"model": "u2netp"}), use_cache=False)
    celery_worker.send_task("clearcut.process_job", args=[submission.job.id], queue="cpu")
    popped = client.blpop([notify.key(submission.job.id, service_env)], timeout=60)
    assert popped is not None
    with ctx.db() as session:  # the wake-up comes after the commit, never before
        assert session.get(Job, submission.job.id).status == "succeeded"
