"""Job leases: how the sweeper tells a dead worker from a slow one within seconds.

A worker that claims a job records its task id (``lease_owner``) and a lease
(``lease_expires_at`` = now + ``CLEARCUT_JOB_LEASE_S``), and a thread of the running process renews
the lease every third of that while the job runs. A process that is SIGKILLed, OOM-killed or loses
its node stops renewing; the sweeper re-enqueues the job once the lease has run out. A job that is
slow but alive keeps renewing and is never taken away, however long it takes; a hung one is stopped
by Celery's time limits (the renewal stops with the task) and ``CLEARCUT_JOB_DEADLINE_S`` stays the
backstop for pools without time limits.

A claim takes a queued job, a processing job whose lease ran out, or one its own task already holds
(a retry of the same task keeps its id), so a redelivered message never runs a job twice at once.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.exc import SQLAlchemyError

from clearcut.context import Context
from clearcut.db.models import Job, utcnow

log = logging.getLogger(__name__)


def lease_until(ctx: Context, extra_s: float = 0.0) -> datetime:
    return utcnow() + timedelta(seconds=ctx.setting("CLEARCUT_JOB_LEASE_S") + extra_s)


def claimable(owner: str | None, now: datetime):
    """The SQL condition under which ``owner`` may claim an active job now."""
    if owner is None:  # run outside a worker task (tests, tools): any active job
        return Job.status.in_(("queued", "processing"))
    return or_(Job.status == "queued",
               (Job.status == "processing") & or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < now,
                                                  Job.lease_owner == owner))


def renew(ctx: Context, job_id: str, owner: str | None, extra_s: float = 0.0) -> bool:
    """Extend the lease of a processing job held by ``owner``; False when it is no longer held."""
    query = update(Job).where(Job.id == job_id, Job.status == "processing")
    if owner is not None:
        query = query.where(Job.lease_owner == owner)
    with ctx.db.begin() as session:
        return bool(session.execute(query.values(lease_expires_at=lease_until(ctx, extra_s))).rowcount)


@contextmanager
def held(ctx: Context, job_id: str, owner: str | None):
    """Renew the job's lease in a daemon thread for as long as the block runs."""
    interval = ctx.setting("CLEARCUT_JOB_LEASE_S") / 3
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval):
            try:
                if not renew(ctx, job_id, owner):
                    return  # finished, failed, or handed to another attempt by the sweeper
            except SQLAlchemyError as exc:  # the database away for a moment: try again next time
                log.warning("could not renew the lease of job %s: %s", job_id, exc)

    thread = threading.Thread(target=run, name=f"lease-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
