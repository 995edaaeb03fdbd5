"""Stopping a real worker mid-job loses nothing.

* SIGTERM (what Kubernetes / compose / tini send first): Celery's warm shutdown lets the running
  job finish, then the worker exits 0.
* SIGKILL of the whole worker (the grace period ran out, OOM, node lost): the unacknowledged
  message returns to the queue after the broker visibility timeout and a new worker completes it.

Jobs use u2net on a 2400x1800 image so they are still running when the signal arrives."""
import io
import os
import signal
import sys
import time

import numpy as np
import pytest
from PIL import Image

from clearcut import accounts, jobs
from clearcut.context import Context
from clearcut.db import sessionmaker_for, upgrade
from clearcut.db.models import Job
from clearcut.options import parse
from clearcut.local.services import spawn, stop_process_group, wait_until
from tests.conftest import ROOT, encode_image, synthetic_scene

SCENE, MASK = synthetic_scene(2400, 1800, radius=600)
# 17 MP: several seconds of work even on a fast machine, so a kill lands mid-job
BIG_SCENE, BIG_MASK = synthetic_scene(4800, 3600, radius=1200)


def start_worker(env, name, log_path):
    process = spawn([sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", "cpu",
                     "--concurrency", "1", "-n", f"{name}@%h", "--without-gossip", "--without-mingle",
                     "--loglevel", "INFO"], env={**os.environ, **env, "PYTHONUNBUFFERED": "1"}, cwd=ROOT,
                    log_path=log_path)
    from worker.celery_app import create_celery

    app = create_celery(environ=env)

    def answers():
        if not any(any(node.startswith(name + "@") for node in reply) for reply in app.control.ping(timeout=1.0) or []):
            raise RuntimeError("worker has not answered yet")

    wait_until(answers, timeout=90, what=name, alive=lambda: process.poll() is None, log_path=log_path,
               interval=0.5)
    return process, app


def submit(env, content: bytes, tag: str) -> str:
    ctx = Context.from_env(env)
    with sessionmaker_for(env["CLEARCUT_DATABASE_URL"]).begin() as session:
        account = accounts.get_or_create_account(session, "sigterm-tests")
    submission = jobs.submit(ctx, account, None, content, "image/png", parse({"model": "u2net"}),
                             source=f"test-{tag}", use_cache=False)
    return submission.job.id


def job_row(env, job_id) -> Job:
    with sessionmaker_for(env["CLEARCUT_DATABASE_URL"])() as session:
        return session.get(Job, job_id)


def wait_for_status(env, job_id, status, timeout, process=None, log_path=None):
    def check():
        row = job_row(env, job_id)
        if row.status != status:
            raise RuntimeError(f"job is {row.status}")
        return row
    return wait_until(check, timeout=timeout, what=f"job {status}", interval=0.1, log_path=log_path,
                      alive=(lambda: process.poll() is None) if process else None)


def assert_cutout(env, row, mask=MASK):
    data = Context.from_env(env).storage.get(row.result_key)
    alpha = np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))[:, :, 3] > 127
    assert alpha.shape == mask.shape and (alpha & mask).sum() / (alpha | mask).sum() > 0.9


@pytest.fixture()
def env(service_env, request):
    # A private queue namespace per test, so no other worker takes these jobs.
    env = {**service_env, "CLEARCUT_BROKER_PREFIX": f"{service_env['CLEARCUT_BROKER_PREFIX']}{request.node.name}:"}
    upgrade(env["CLEARCUT_DATABASE_URL"])
    return env


def test_sigterm_mid_job_finishes_the_job_then_exits(env, tmp_path, model_dir):
    process, app = start_worker(env, "sigterm", tmp_path / "worker.log")
    try:
        # A distinct image per test (the original is stored by hash; the result key depends on it).
        job_id = submit(env, encode_image(SCENE, "PNG", compress_level=1), "sigterm")
        app.send_task("clearcut.process_job", args=[job_id], queue="cpu")
        wait_for_status(env, job_id, "processing", 60, process, tmp_path / "worker.log")
        time.sleep(1.0)   # inside the model run
        signalled = time.time()
        os.kill(process.pid, signal.SIGTERM)   # the parent only, as tini forwards it
        assert process.wait(timeout=180) == 0, (tmp_path / "worker.log").read_text()[-3000:]
        row = job_row(env, job_id)
        assert row.status == "succeeded" and row.attempts == 1
        assert row.finished_at.timestamp() > signalled - 1   # it really was mid-flight
        assert_cutout(env, row)
        assert "warm shutdown" in (tmp_path / "worker.log").read_text().lower()
    finally:
        stop_process_group(process, timeout=15)
        app.close()


def test_killed_worker_job_is_requeued_and_completed(env, tmp_path, model_dir):
    # Short limits so the broker visibility timeout (2 x hard limit) passes within the test.
    env = {**env, "CLEARCUT_TASK_SOFT_TIME_LIMIT": "40", "CLEARCUT_TASK_TIME_LIMIT": "45"}
    first, app = start_worker(env, "doomed", tmp_path / "first.log")
    try:
        job_id = submit(env, encode_image(BIG_SCENE, "PNG", compress_level=1), "sigkill")
        app.send_task("clearcut.process_job", args=[job_id], queue="cpu")
        wait_for_status(env, job_id, "processing", 60, first, tmp_path / "first.log")
        time.sleep(0.3)
        stop_process_group(first, timeout=0.1, sig=signal.SIGKILL)   # parent and pool process, no goodbye
        assert first.wait(timeout=10) == -signal.SIGKILL
        assert job_row(env, job_id).status == "processing"
    finally:
        stop_process_group(first, timeout=5)
    second, app2 = start_worker(env, "rescuer", tmp_path / "second.log")
    try:
        row = wait_for_status(env, job_id, "succeeded", 240, second, tmp_path / "second.log")
        assert row.attempts == 2   # claimed again by the second worker
        assert_cutout(env, row, BIG_MASK)
    finally:
        stop_process_group(second, timeout=15)
        app.close()
        app2.close()
