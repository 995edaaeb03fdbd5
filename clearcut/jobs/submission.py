"""Recording jobs (from the API) and reading them back: submit, submit a job the worker fetches, get,
cancel, list.

The SQL row is the source of truth; every transition is a conditional UPDATE, so a request that races
a worker changes nothing the worker already decided.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import and_, or_, select, update

from clearcut.context import Context
from clearcut.db.models import Account, ApiKey, Job, utcnow
from clearcut.errors import ClearcutError
from clearcut.jobs.events import check_batch_complete, on_terminal
from clearcut.jobs.results import cached, deadline, finish_from_cache, owned, result_key, store_original
from clearcut.options import Options
from clearcut.pipeline import region
from clearcut.pipeline.encode import CONTENT_TYPES


@dataclass(frozen=True)
class Submission:
    job: Job
    enqueue: bool  # False when the result came from the cache
    deliveries: tuple[str, ...] = field(default=())  # webhook messages to dispatch (cache hits)


def submit(ctx: Context, account: Account, key: ApiKey | None, data: bytes, content_type: str,
           options: Options, *, source: str = "v2", request_id: str | None = None,
           use_cache: bool = True, webhook_url: str | None = None, metadata: dict | None = None,
           priority: int = 5, queue: str = "cpu", output: dict | None = None,
           external_id: str | None = None) -> Submission:
    """Store the original, record the job, and either finish it from the cache or ask for a worker."""
    region.check(options.roi, data)  # a region outside this image is a 400 before any job exists
    with ctx.db.begin() as session:
        account = session.merge(account)
        original = store_original(ctx, session, account, data, content_type)
        rkey = result_key(original.sha256, options)
        now = utcnow()
        job = Job(account_id=account.id, api_key_id=key.id if key else None, request_id=request_id,
                  source=source, options=options.normalised(), input_asset_id=original.id, result_key=rkey,
                  content_type=CONTENT_TYPES[options.format], deadline_at=deadline(ctx), queued_at=now,
                  webhook_url=webhook_url, meta=metadata, priority=priority, queue=queue, output=output,
                  external_id=external_id)
        session.add(job)
        session.flush()
        hit = cached(ctx, session, rkey) if use_cache else None
        deliveries: list[str] = []
        if hit is not None:
            finish_from_cache(ctx, session, job, hit)
            deliveries = on_terminal(ctx, session, job)
        return Submission(job, enqueue=hit is None, deliveries=tuple(deliveries))


def submit_pending(ctx: Context, account: Account, key: ApiKey | None, options: Options, input_spec: dict, *,
                   source: str = "jobs", request_id: str | None = None, webhook_url: str | None = None,
                   metadata: dict | None = None, priority: int = 5, queue: str = "cpu", output: dict | None = None,
                   external_id: str | None = None) -> Job:
    """Record a job whose image the worker fetches (``{"image_url": ...}`` or ``{"s3_key": ...}``)."""
    with ctx.db.begin() as session:
        now = utcnow()
        job = Job(account_id=account.id, api_key_id=key.id if key else None, request_id=request_id, source=source,
                  options=options.normalised(), content_type=CONTENT_TYPES[options.format], deadline_at=deadline(ctx),
                  queued_at=now, webhook_url=webhook_url, meta=metadata, priority=priority, queue=queue,
                  output=output, external_id=external_id, input_spec=input_spec)
        session.add(job)
        session.flush()
        return job


def get(ctx: Context, account_id: str, job_id: str) -> Job:
    """A job of this account; another account's job is indistinguishable from a missing one (404)."""
    return owned(ctx, Job, job_id, account_id, "job")


def cancel(ctx: Context, account_id: str, job_id: str) -> Job:
    """Cancel a queued job (the worker then skips it); a running or finished job is a 409."""
    job = get(ctx, account_id, job_id)
    with ctx.db.begin() as session:
        done = session.execute(update(Job).where(Job.id == job_id, Job.status == "queued")
                               .values(status="canceled", canceled_at=utcnow(), finished_at=utcnow())).rowcount
    if not done:
        job = get(ctx, account_id, job_id)
        raise ClearcutError(f"job {job_id} is {job.status}; only queued jobs can be canceled",
                            code="job_not_cancelable", status=409, job_status=job.status)
    check_batch_complete(ctx, job.batch_id)
    return get(ctx, account_id, job_id)


def accept(ctx: Context, account_id: str, job_id: str) -> Job:
    """Accept a succeeded job's cutout after review: clears ``needs_review`` and records when (a later
    replay makes a new cutout, flagged or not by its own confidence)."""
    job = get(ctx, account_id, job_id)
    with ctx.db.begin() as session:
        done = session.execute(update(Job).where(Job.id == job_id, Job.status == "succeeded")
                               .values(needs_review=False, accepted_at=utcnow())).rowcount
    if not done:
        raise ClearcutError(f"job {job_id} is {job.status}; only a succeeded job's cutout can be accepted",
                            code="job_not_finished", status=409, job_status=job.status)
    return get(ctx, account_id, job_id)


def encode_cursor(created_at: datetime, job_id: str) -> str:
    raw = json.dumps([_naive(created_at).isoformat(), job_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, job_id = json.loads(raw)
        return datetime.fromisoformat(stamp).replace(tzinfo=timezone.utc), str(job_id)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise ClearcutError("cursor is not valid; pass the next_cursor value of the previous page unchanged",
                            code="invalid_cursor", status=400) from None


def _naive(value: datetime) -> datetime:
    return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value


def list_jobs(ctx: Context, account_id: str, *, statuses: list[str] | None = None, batch_id: str | None = None,
              created_after: datetime | None = None, created_before: datetime | None = None, limit: int = 50,
              cursor: str | None = None, needs_review: bool | None = None,
              confidence_below: float | None = None,
              finished_after: datetime | None = None) -> tuple[list[Job], str | None]:
    """A page of the account's jobs, newest first (keyset pagination on (created_at, id)); the review
    queue is ``needs_review=True``, and ``confidence_below`` keeps succeeded jobs scored below it.
    ``finished_after`` keeps jobs that ended at or after that time (what a poller has not seen yet)."""
    query = select(Job).where(Job.account_id == account_id)
    if needs_review is not None:
        query = query.where(Job.needs_review.is_(needs_review))
    if confidence_below is not None:
        query = query.where(Job.confidence < confidence_below)
    if statuses:
        query = query.where(Job.status.in_(statuses))
    if batch_id:
        query = query.where(Job.batch_id == batch_id)
    if created_after:
        query = query.where(Job.created_at >= created_after)
    if created_before:
        query = query.where(Job.created_at < created_before)
    if finished_after:
        query = query.where(Job.finished_at >= finished_after)
    if cursor:
        stamp, last_id = decode_cursor(cursor)
        query = query.where(or_(Job.created_at < stamp, and_(Job.created_at == stamp, Job.id < last_id)))
    query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    with ctx.db() as session:
        rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None)
