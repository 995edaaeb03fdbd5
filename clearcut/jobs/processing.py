"""Running a job (in the worker): claim it, fetch or load its image, run the pipeline, store the result.

The queue is at-least-once, so every transition is a conditional UPDATE (queued -> processing ->
succeeded | failed): a duplicate delivery of a finished job does nothing, and a redelivery after a
worker died simply runs the job again. The result object is written only if absent, so duplicates
cannot produce two different results.
"""
from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from clearcut.context import Context
from clearcut.db.models import Account, Asset, Job, utcnow
from clearcut.errors import ClearcutError, ImageTooLarge
from clearcut.jobs.events import check_batch_complete, on_terminal
from clearcut.jobs.leases import claimable, held, lease_until
from clearcut.jobs.results import (ACTIVE, attach_result, cached, charge, deadline, finish_from_cache,
                                   options_from_row, result_key, review_values, store_original, write_output)


def claim(ctx: Context, job_id: str, owner: str | None = None) -> Job | None:
    """Move a job to processing (from queued, or from processing after a lost worker) under a lease held
    by ``owner`` (the task id); None if terminal (finished, failed, or canceled while it waited) or
    running under another task's live lease. The deadline restarts: the sweeper acts on it."""
    now = utcnow()
    with ctx.db.begin() as session:
        claimed = session.execute(
            update(Job).where(Job.id == job_id, Job.status.in_(ACTIVE), claimable(owner, now))
            .values(status="processing", attempts=Job.attempts + 1, started_at=now, deadline_at=deadline(ctx),
                    lease_owner=owner, lease_expires_at=lease_until(ctx))
        ).rowcount
        if not claimed:
            return None
        return session.get(Job, job_id)


def hold_for_retry(ctx: Context, job_id: str, delay_s: float) -> bool:
    """Push a processing job's deadline past a worker retry scheduled in ``delay_s`` seconds.

    A worker that backs off from a storage outage still owns the job; without this, the sweeper would
    see the deadline pass during the outage, re-enqueue copies, and fail the job with
    ``max_attempts_exceeded`` although the worker's own retry would have finished it. Best effort:
    with the database itself down nothing can be recorded (and no sweeper runs either)."""
    try:
        with ctx.db.begin() as session:
            return bool(session.execute(
                update(Job).where(Job.id == job_id, Job.status == "processing")
                .values(deadline_at=deadline(ctx) + timedelta(seconds=delay_s),
                        lease_expires_at=lease_until(ctx, delay_s))).rowcount)
    except SQLAlchemyError:
        return False


def process(ctx: Context, job_id: str, owner: str | None = None) -> str:
    """Run one job to a terminal state as task ``owner``, renewing its lease meanwhile; returns that state
    ("processing" when another task runs it). Transient faults propagate (to be retried)."""
    job = claim(ctx, job_id, owner)
    if job is None:
        with ctx.db() as session:
            row = session.get(Job, job_id)
            return row.status if row else "missing"
    with held(ctx, job_id, owner):
        return _run(ctx, job)


def _run(ctx: Context, job: Job) -> str:
    from clearcut.pipeline import process as run_pipeline

    job_id = job.id
    timings: dict[str, float] = {}
    data = None
    if job.input_asset_id is None:
        try:
            job, data = _fetch_input(ctx, job, timings)
        except ClearcutError as exc:
            if exc.retryable:
                raise
            finish_failed(ctx, job_id, exc.code, exc.message, exc.status, timings=timings)
            return "failed"
        if job.status == "succeeded":
            return "succeeded"
    if data is None:  # a fetched batch item already has its bytes; everything else loads the original
        started = time.perf_counter()
        with ctx.db() as session:
            original = session.get(Asset, job.input_asset_id)
            original_key = original.storage_key
        data = ctx.storage.get(original_key)
        timings["load_ms"] = _ms(started)
    started = time.perf_counter()
    try:
        result = run_pipeline(data, options_from_row(job.options))
    except ClearcutError as exc:
        if exc.retryable:
            raise
        finish_failed(ctx, job_id, exc.code, exc.message, exc.status, timings=timings)
        return "failed"
    timings["pipeline_ms"] = _ms(started)
    started = time.perf_counter()
    if not ctx.storage.exists(job.result_key):  # first writer wins: one result object per key
        ctx.storage.put(job.result_key, result.data, result.content_type)
    write_output(ctx, job, result.data)
    timings["store_ms"] = _ms(started)
    with ctx.db.begin() as session:
        done = session.execute(
            update(Job).where(Job.id == job_id, Job.status == "processing")
            .values(status="succeeded", result=result.metadata, finished_at=utcnow(), error_code=None,
                    error_message=None, error_status=None, cache_hit=False, timings=timings,
                    **review_values(ctx, job.options, result.metadata))
        ).rowcount
        if done:
            row = session.get(Job, job_id)
            attach_result(ctx, session, row, job.result_key, result.metadata, len(result.data))
            charge(session, row)
            on_terminal(ctx, session, row)
    check_batch_complete(ctx, job.batch_id)
    return "succeeded" if done else _status(ctx, job_id)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _fetch_input(ctx: Context, job: Job, timings: dict) -> tuple[Job, bytes]:
    """Fetch a batch item's image (``image_url`` through the SSRF guard, or ``s3_key``), store it as the
    original, then serve it from the result cache when an identical result exists. Returns the job and
    the fetched bytes (so the pipeline does not read back what was just stored)."""
    from clearcut import netguard
    from clearcut.pipeline.decode import _open
    from clearcut.storage.errors import ObjectNotFound

    spec = job.input_spec or {}
    started = time.perf_counter()
    limit = int(ctx.setting("CLEARCUT_MAX_UPLOAD_MB") * 1024 * 1024)
    if spec.get("image_url"):
        fetched = netguard.fetch(spec["image_url"], max_bytes=limit)
        data, content_type = fetched.data, fetched.content_type
    elif spec.get("s3_key"):
        try:
            data = ctx.storage.get(spec["s3_key"], max_bytes=limit + 1)
        except ObjectNotFound:
            raise ClearcutError(f"no object at s3_key {spec['s3_key']!r}; upload it first", code="s3_key_not_found",
                                status=400) from None
        if len(data) > limit:
            raise ImageTooLarge(f"the object at s3_key {spec['s3_key']!r} is larger than the "
                                f"{ctx.setting('CLEARCUT_MAX_UPLOAD_MB'):g} MB limit (CLEARCUT_MAX_UPLOAD_MB)")
        content_type = "application/octet-stream"
    else:
        raise ClearcutError("the job has no stored original and nothing to fetch", code="original_missing",
                            status=410)
    timings["fetch_ms"] = _ms(started)
    _open(data)  # invalid_image / image_too_large before anything is stored
    options = options_from_row(job.options)
    with ctx.db.begin() as session:
        row = session.get(Job, job.id)
        account = session.get(Account, row.account_id)
        original = store_original(ctx, session, account, data, content_type)
        row.input_asset_id, row.result_key = original.id, result_key(original.sha256, options)
        hit = cached(ctx, session, row.result_key) if spec.get("cache", True) else None
        if hit is not None and row.status == "processing":
            finish_from_cache(ctx, session, row, hit)
            row.timings = timings
            on_terminal(ctx, session, row)
        session.flush()
        session.expunge(row)
    if row.status == "succeeded":
        check_batch_complete(ctx, row.batch_id)
    return row, data


def finish_failed(ctx: Context, job_id: str, code: str, message: str, status: int = 500, *,
                  timings: dict | None = None) -> list[str]:
    """Fail an active job (conditional); returns the webhook deliveries it created."""
    deliveries: list[str] = []
    with ctx.db.begin() as session:
        values = dict(status="failed", error_code=code, error_message=message, error_status=status,
                      finished_at=utcnow())
        if timings is not None:
            values["timings"] = timings
        done = session.execute(update(Job).where(Job.id == job_id, Job.status.in_(ACTIVE)).values(**values)).rowcount
        row = session.get(Job, job_id)
        if done:
            deliveries = on_terminal(ctx, session, row)
        batch_id = row.batch_id if row else None
    return deliveries + check_batch_complete(ctx, batch_id)


def _status(ctx: Context, job_id: str) -> str:
    with ctx.db() as session:
        return session.scalar(select(Job.status).where(Job.id == job_id)) or "missing"
