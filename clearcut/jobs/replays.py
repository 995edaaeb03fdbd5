"""Replaying a finished job: a new attempt with its stored original and, optionally, new options."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import update

from clearcut.context import Context
from clearcut.db.models import Asset, Batch, Job, utcnow
from clearcut.errors import ClearcutError
from clearcut.jobs.events import check_batch_complete, on_terminal
from clearcut.jobs.results import (ACTIVE, TERMINAL, cached, deadline, finish_from_cache, options_from_row,
                                   result_key)
from clearcut.jobs.submission import get
from clearcut.options import Options
from clearcut.pipeline.encode import CONTENT_TYPES


@dataclass(frozen=True)
class Replay:
    job: Job
    enqueue: bool
    deliveries: tuple[str, ...] = ()


def replay(ctx: Context, account_id: str, job_id: str, options: Options | None = None, *,
           use_cache: bool = True) -> Replay:
    """A new attempt of a finished job with its stored original (no re-upload). Unchanged options and a
    result still in storage: served from the cache without a worker."""
    current = get(ctx, account_id, job_id)
    if current.status in ACTIVE:
        raise ClearcutError(f"job {job_id} is {current.status}; replay it once it has finished",
                            code="job_not_finished", status=409, job_status=current.status)
    with ctx.db.begin() as session:
        job = session.get(Job, job_id)
        new_options = options.normalised() if options is not None else job.options
        original = session.get(Asset, job.input_asset_id) if job.input_asset_id else None
        if original is not None and (original.deleted_at is not None or not ctx.storage.exists(original.storage_key)):
            original = None
        if original is None and not (job.input_spec or {}).get("image_url") and not (job.input_spec or {}).get("s3_key"):
            raise ClearcutError("the stored original has expired (CLEARCUT_RETENTION_HOURS); submit the image again",
                                code="original_expired", status=410)
        parsed = options_from_row(new_options)
        rkey = result_key(original.sha256, parsed) if original is not None else None
        hit = cached(ctx, session, rkey) if (rkey and use_cache) else None
        previous = (job.status, job.finished_at)
        result = session.execute(update(Job).where(Job.id == job_id, Job.status.in_(TERMINAL)).values(
            status="queued", options=new_options, content_type=CONTENT_TYPES[parsed.format], result_key=rkey,
            input_asset_id=original.id if original is not None else None, error_code=None, error_message=None,
            error_status=None, started_at=None, finished_at=None, canceled_at=None, attempts=0, sweeps=0,
            replays=Job.replays + 1, queued_at=utcnow(), deadline_at=deadline(ctx), cache_hit=False, timings=None,
            confidence=None, needs_review=False, accepted_at=None,
            input_spec={**(job.input_spec or {}), "cache": use_cache} if job.input_spec else None))
        if not result.rowcount:
            raise ClearcutError(f"job {job_id} changed state while replaying; retry", code="job_not_finished",
                                status=409, job_status=previous[0])
        session.refresh(job)
        if job.batch_id:
            session.execute(update(Batch).where(Batch.id == job.batch_id)
                            .values(status="processing", completed_at=None))
        deliveries: list[str] = []
        if hit is not None:
            finish_from_cache(ctx, session, job, hit)
            deliveries = on_terminal(ctx, session, job)
        session.flush()
    if hit is not None:
        deliveries += check_batch_complete(ctx, job.batch_id)
    return Replay(get(ctx, account_id, job_id), enqueue=hit is None, deliveries=tuple(deliveries))
