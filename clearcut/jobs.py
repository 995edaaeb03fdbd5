"""Job operations shared by the API and the worker: submit, process, look up.

The SQL row is the source of truth and the queue is at-least-once, so every transition is a
conditional UPDATE (queued -> processing -> succeeded | failed): a duplicate delivery of a finished job
does nothing, and a redelivery after a worker died simply runs the job again. Results are stored under
a key derived from (original sha256, normalised options, model versions), written only if absent, so
duplicates cannot produce two different results, and an identical later request is served from
storage without running a model.
"""
from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from clearcut import config
from clearcut.context import Context
from clearcut.db.models import Account, ApiKey, Asset, Batch, Job, Usage, utcnow
from clearcut.errors import ClearcutError, NotFound
from clearcut.models.registry import spec
from clearcut.options import Options
from clearcut.pipeline.encode import CONTENT_TYPES

TERMINAL = ("succeeded", "failed", "canceled")
ACTIVE = ("queued", "processing")
STATUSES = (*ACTIVE, *TERMINAL)
EXTENSIONS = {"png": "png", "jpg": "jpg", "webp": "webp", "bmp": "bmp", "tiff": "tiff", "gif": "gif"}


@dataclass(frozen=True)
class Submission:
    job: Job
    enqueue: bool  # False when the result came from the cache
    deliveries: tuple[str, ...] = field(default=())  # webhook messages to dispatch (cache hits)


def options_from_row(data: dict) -> Options:
    from clearcut.options import parse

    values = dict(data)
    margin = values.pop("crop_margin", None) or {}
    options = parse({k: v for k, v in values.items() if k in ("format", "channels", "size", "crop", "bg_color",
                                                              "despill", "model")})
    if margin:
        from clearcut.options import Margin

        options = options.with_(crop_margin=Margin(**margin))
    return options


def result_key(original_sha256: str, options: Options) -> str:
    from clearcut.pipeline import REVISION
    from clearcut.pipeline.segment import resolve_models

    models = [(name, spec(name).version) for name in resolve_models(options.model)]
    material = json.dumps({"original": original_sha256, "options": options.normalised(), "models": models,
                           "pipeline": REVISION}, sort_keys=True)
    return f"results/{hashlib.sha256(material.encode()).hexdigest()}.{EXTENSIONS[options.format]}"


def _retention_deadline():
    return utcnow() + timedelta(hours=config.get("CLEARCUT_RETENTION_HOURS"))


def store_original(ctx: Context, session: Session, account: Account, data: bytes, content_type: str) -> Asset:
    digest = hashlib.sha256(data).hexdigest()
    key = f"originals/{digest}"
    if not ctx.storage.exists(key):
        ctx.storage.put(key, data, content_type or "application/octet-stream")
    query = select(Asset).where(Asset.account_id == account.id, Asset.storage_key == key)
    asset = session.scalar(query)
    if asset is None:
        candidate = Asset(account_id=account.id, kind="original", storage_key=key, sha256=digest,
                          content_type=content_type or "application/octet-stream", size_bytes=len(data))
        try:  # two concurrent requests with the same image: the second reuses the first one's row
            with session.begin_nested():
                session.add(candidate)
            asset = candidate
        except IntegrityError:
            asset = session.scalar(query)
    asset.expires_at = _retention_deadline()
    asset.deleted_at = None
    session.flush()
    return asset


def _cached(ctx: Context, session: Session, key: str) -> Job | None:
    """A finished job whose result object still exists under ``key``."""
    done = session.scalar(select(Job).where(Job.result_key == key, Job.status == "succeeded")
                          .order_by(Job.finished_at.desc()).limit(1))
    if done is not None and ctx.storage.exists(key):
        return done
    return None


def _deadline() -> datetime:
    return utcnow() + timedelta(seconds=config.get("CLEARCUT_JOB_DEADLINE_S"))


def submit(ctx: Context, account: Account, key: ApiKey | None, data: bytes, content_type: str,
           options: Options, *, source: str = "v2", request_id: str | None = None,
           use_cache: bool = True, webhook_url: str | None = None, metadata: dict | None = None,
           priority: int = 5, queue: str = "cpu", output: dict | None = None,
           external_id: str | None = None) -> Submission:
    """Store the original, record the job, and either finish it from the cache or ask for a worker."""
    with ctx.db.begin() as session:
        account = session.merge(account)
        original = store_original(ctx, session, account, data, content_type)
        rkey = result_key(original.sha256, options)
        now = utcnow()
        job = Job(account_id=account.id, api_key_id=key.id if key else None, request_id=request_id,
                  source=source, options=options.normalised(), input_asset_id=original.id, result_key=rkey,
                  content_type=CONTENT_TYPES[options.format], deadline_at=_deadline(), queued_at=now,
                  webhook_url=webhook_url, meta=metadata, priority=priority, queue=queue, output=output,
                  external_id=external_id)
        session.add(job)
        session.flush()
        hit = _cached(ctx, session, rkey) if use_cache else None
        deliveries: list[str] = []
        if hit is not None:
            _finish_from_cache(ctx, session, job, hit)
            deliveries = _on_terminal(session, job)
        return Submission(job, enqueue=hit is None, deliveries=tuple(deliveries))


def submit_pending(ctx: Context, account: Account, key: ApiKey | None, options: Options, input_spec: dict, *,
                   source: str = "jobs", request_id: str | None = None, webhook_url: str | None = None,
                   metadata: dict | None = None, priority: int = 5, queue: str = "cpu", output: dict | None = None,
                   external_id: str | None = None) -> Job:
    """Record a job whose image the worker fetches (``{"image_url": ...}`` or ``{"s3_key": ...}``)."""
    with ctx.db.begin() as session:
        now = utcnow()
        job = Job(account_id=account.id, api_key_id=key.id if key else None, request_id=request_id, source=source,
                  options=options.normalised(), content_type=CONTENT_TYPES[options.format], deadline_at=_deadline(),
                  queued_at=now, webhook_url=webhook_url, meta=metadata, priority=priority, queue=queue,
                  output=output, external_id=external_id, input_spec=input_spec)
        session.add(job)
        session.flush()
        return job


def _finish_from_cache(ctx: Context, session: Session, job: Job, hit: Job) -> None:
    now = utcnow()
    job.status, job.cache_hit, job.result = "succeeded", True, hit.result
    job.started_at = job.finished_at = now
    job.error_code = job.error_message = job.error_status = None
    _attach_result(session, job, job.result_key, hit.result or {}, size=None)
    _charge(session, job)
    _write_output(ctx, job)


def _on_terminal(session: Session, job: Job) -> list[str]:
    """Record the job's webhook event (inside the transaction that made it terminal)."""
    from clearcut import webhooks

    if not job.webhook_url or job.status not in ("succeeded", "failed"):
        return []
    delivery = webhooks.emit(session, account_id=job.account_id, event=f"job.{job.status}", url=job.webhook_url,
                             data=webhooks.job_payload(job), job_id=job.id)
    return [delivery.id]


def check_batch_complete(ctx: Context, batch_id: str | None) -> list[str]:
    """Mark the batch completed once none of its jobs is active; returns its event's delivery ids.
    Runs in its own transaction, after the finishing job's commit, and completes a batch only once."""
    from clearcut import webhooks
    from clearcut.batches import batch_payload, counts

    if not batch_id:
        return []
    with ctx.db.begin() as session:
        active = session.scalar(select(func.count()).select_from(Job)
                                .where(Job.batch_id == batch_id, Job.status.in_(ACTIVE)))
        if active:
            return []
        done = session.execute(update(Batch).where(Batch.id == batch_id, Batch.status == "processing")
                               .values(status="completed", completed_at=utcnow())).rowcount
        batch = session.get(Batch, batch_id)
        if not done or not batch.webhook_url:
            return []
        delivery = webhooks.emit(session, account_id=batch.account_id, event="batch.completed",
                                 url=batch.webhook_url, data=batch_payload(batch, counts(session, batch_id)),
                                 batch_id=batch_id)
        return [delivery.id]


def _attach_result(session: Session, job: Job, rkey: str, metadata: dict, size: int | None) -> None:
    asset = session.scalar(select(Asset).where(Asset.account_id == job.account_id, Asset.storage_key == rkey))
    if asset is None:
        asset = Asset(account_id=job.account_id, kind="result", storage_key=rkey, sha256=rkey.split("/")[1][:64],
                      content_type=job.content_type or "application/octet-stream", size_bytes=size or 0,
                      width=metadata.get("width"), height=metadata.get("height"))
        session.add(asset)
    asset.expires_at = _retention_deadline()
    asset.deleted_at = None
    session.flush()
    job.result_asset_id = asset.id


def _charge(session: Session, job: Job) -> None:
    """One usage row per job (unique job_id), so a duplicate delivery cannot charge twice."""
    exists = session.scalar(select(Usage.id).where(Usage.job_id == job.id))
    if exists is None:
        session.add(Usage(account_id=job.account_id, job_id=job.id, units=1.0))


def claim(ctx: Context, job_id: str) -> Job | None:
    """Move a job to processing (from queued, or from processing after a lost worker); None if terminal
    (finished, failed, or canceled while it waited). The deadline restarts: the sweeper acts on it."""
    with ctx.db.begin() as session:
        claimed = session.execute(
            update(Job).where(Job.id == job_id, Job.status.in_(ACTIVE))
            .values(status="processing", attempts=Job.attempts + 1, started_at=utcnow(), deadline_at=_deadline())
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
                .values(deadline_at=_deadline() + timedelta(seconds=delay_s))).rowcount)
    except SQLAlchemyError:
        return False


def process(ctx: Context, job_id: str) -> str:
    """Run one job to a terminal state; returns that state. Transient faults propagate (to be retried)."""
    from clearcut.pipeline import process as run_pipeline

    job = claim(ctx, job_id)
    if job is None:
        with ctx.db() as session:
            row = session.get(Job, job_id)
            return row.status if row else "missing"
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
    _write_output(ctx, job, result.data)
    timings["store_ms"] = _ms(started)
    with ctx.db.begin() as session:
        done = session.execute(
            update(Job).where(Job.id == job_id, Job.status == "processing")
            .values(status="succeeded", result=result.metadata, finished_at=utcnow(), error_code=None,
                    error_message=None, error_status=None, cache_hit=False, timings=timings)
        ).rowcount
        if done:
            row = session.get(Job, job_id)
            _attach_result(session, row, job.result_key, result.metadata, len(result.data))
            _charge(session, row)
            _on_terminal(session, row)
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
    limit = int(config.get("CLEARCUT_MAX_UPLOAD_MB") * 1024 * 1024)
    if spec.get("image_url"):
        fetched = netguard.fetch(spec["image_url"], max_bytes=limit)
        data, content_type = fetched.data, fetched.content_type
    elif spec.get("s3_key"):
        try:
            data = ctx.storage.get(spec["s3_key"])
        except ObjectNotFound:
            raise ClearcutError(f"no object at s3_key {spec['s3_key']!r}; upload it first", code="s3_key_not_found",
                                status=400) from None
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
        hit = _cached(ctx, session, row.result_key) if spec.get("cache", True) else None
        if hit is not None and row.status == "processing":
            _finish_from_cache(ctx, session, row, hit)
            row.timings = timings
            _on_terminal(session, row)
        session.flush()
        session.expunge(row)
    if row.status == "succeeded":
        check_batch_complete(ctx, row.batch_id)
    return row, data


def _write_output(ctx: Context, job: Job, data: bytes | None = None) -> None:
    """Copy the result to the job's ``output.prefix`` (validated at submission) in the same bucket."""
    if not job.output or not job.output.get("prefix"):
        return
    name = _safe_name(job.external_id) if job.external_id else job.id
    key = f"{job.output['prefix']}{name}.{EXTENSIONS.get(job.result_key.rsplit('.', 1)[-1], 'bin')}"
    ctx.storage.put(key, data if data is not None else ctx.storage.get(job.result_key),
                    job.content_type or "application/octet-stream")


def _safe_name(value: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]", "_", value)[:150] or "item"


def output_key(job: Job) -> str | None:
    if not job.output or not job.output.get("prefix") or not job.result_key:
        return None
    name = _safe_name(job.external_id) if job.external_id else job.id
    return f"{job.output['prefix']}{name}.{job.result_key.rsplit('.', 1)[-1]}"


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
            deliveries = _on_terminal(session, row)
        batch_id = row.batch_id if row else None
    return deliveries + check_batch_complete(ctx, batch_id)


def _status(ctx: Context, job_id: str) -> str:
    with ctx.db() as session:
        return session.scalar(select(Job.status).where(Job.id == job_id)) or "missing"


def get(ctx: Context, account_id: str, job_id: str) -> Job:
    """A job of this account; another account's job is indistinguishable from a missing one (404)."""
    with ctx.db() as session:
        job = session.get(Job, job_id)
        if job is None or job.account_id != account_id:
            raise NotFound(f"no job {job_id!r} for this account", code="job_not_found")
        return job


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
        hit = _cached(ctx, session, rkey) if (rkey and use_cache) else None
        previous = (job.status, job.finished_at)
        result = session.execute(update(Job).where(Job.id == job_id, Job.status.in_(TERMINAL)).values(
            status="queued", options=new_options, content_type=CONTENT_TYPES[parsed.format], result_key=rkey,
            input_asset_id=original.id if original is not None else None, error_code=None, error_message=None,
            error_status=None, started_at=None, finished_at=None, canceled_at=None, attempts=0, sweeps=0,
            replays=Job.replays + 1, queued_at=utcnow(), deadline_at=_deadline(), cache_hit=False, timings=None,
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
            _finish_from_cache(ctx, session, job, hit)
            deliveries = _on_terminal(session, job)
        session.flush()
    if hit is not None:
        deliveries += check_batch_complete(ctx, job.batch_id)
    return Replay(get(ctx, account_id, job_id), enqueue=hit is None, deliveries=tuple(deliveries))


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
              cursor: str | None = None) -> tuple[list[Job], str | None]:
    """A page of the account's jobs, newest first (keyset pagination on (created_at, id))."""
    query = select(Job).where(Job.account_id == account_id)
    if statuses:
        query = query.where(Job.status.in_(statuses))
    if batch_id:
        query = query.where(Job.batch_id == batch_id)
    if created_after:
        query = query.where(Job.created_at >= created_after)
    if created_before:
        query = query.where(Job.created_at < created_before)
    if cursor:
        stamp, last_id = decode_cursor(cursor)
        query = query.where(or_(Job.created_at < stamp, and_(Job.created_at == stamp, Job.id < last_id)))
    query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    with ctx.db() as session:
        rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None)
