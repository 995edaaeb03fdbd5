"""Job operations shared by the API and the worker: submit, process, look up.

The SQL row is the source of truth and the queue is at-least-once, so every transition is a
conditional UPDATE (queued -> processing -> succeeded | failed): a duplicate delivery of a finished job
does nothing, and a redelivery after a worker died simply runs the job again. Results are stored under
a key derived from (original sha256, normalised options, model versions), written only if absent, so
duplicates cannot produce two different results, and an identical later request is served from
storage without running a model.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from clearcut import config
from clearcut.context import Context
from clearcut.db.models import Account, ApiKey, Asset, Job, Usage, utcnow
from clearcut.errors import ClearcutError, NotFound
from clearcut.models.registry import spec
from clearcut.options import Options
from clearcut.pipeline.encode import CONTENT_TYPES

TERMINAL = ("succeeded", "failed", "canceled")
EXTENSIONS = {"png": "png", "jpg": "jpg", "webp": "webp", "bmp": "bmp", "tiff": "tiff", "gif": "gif"}


@dataclass(frozen=True)
class Submission:
    job: Job
    enqueue: bool  # False when the result came from the cache


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
    from clearcut.pipeline.segment import resolve_models

    models = [(name, spec(name).version) for name in resolve_models(options.model)]
    material = json.dumps({"original": original_sha256, "options": options.normalised(), "models": models},
                          sort_keys=True)
    return f"results/{hashlib.sha256(material.encode()).hexdigest()}.{EXTENSIONS[options.format]}"


def _retention_deadline():
    return utcnow() + timedelta(hours=config.get("CLEARCUT_RETENTION_HOURS"))


def store_original(ctx: Context, session: Session, account: Account, data: bytes, content_type: str) -> Asset:
    digest = hashlib.sha256(data).hexdigest()
    key = f"originals/{digest}"
    if not ctx.storage.exists(key):
        ctx.storage.put(key, data, content_type or "application/octet-stream")
    asset = session.scalar(select(Asset).where(Asset.account_id == account.id, Asset.storage_key == key))
    if asset is None:
        asset = Asset(account_id=account.id, kind="original", storage_key=key, sha256=digest,
                      content_type=content_type or "application/octet-stream", size_bytes=len(data))
        session.add(asset)
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


def submit(ctx: Context, account: Account, key: ApiKey | None, data: bytes, content_type: str,
           options: Options, *, source: str = "v2", request_id: str | None = None,
           use_cache: bool = True) -> Submission:
    """Store the original, record the job, and either finish it from the cache or ask for a worker."""
    with ctx.db.begin() as session:
        account = session.merge(account)
        original = store_original(ctx, session, account, data, content_type)
        rkey = result_key(original.sha256, options)
        job = Job(account_id=account.id, api_key_id=key.id if key else None, request_id=request_id,
                  source=source, options=options.normalised(), input_asset_id=original.id, result_key=rkey,
                  content_type=CONTENT_TYPES[options.format],
                  deadline_at=utcnow() + timedelta(seconds=config.get("CLEARCUT_JOB_DEADLINE_S")))
        session.add(job)
        session.flush()
        hit = _cached(ctx, session, rkey) if use_cache else None
        if hit is not None:
            now = utcnow()
            job.status, job.cache_hit, job.result = "succeeded", True, hit.result
            job.started_at = job.finished_at = now
            _attach_result(session, job, rkey, hit.result or {}, size=None)
            _charge(session, job)
        return Submission(job, enqueue=hit is None)


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
    """Move a job to processing (from queued, or from processing after a lost worker); None if terminal."""
    with ctx.db.begin() as session:
        claimed = session.execute(
            update(Job).where(Job.id == job_id, Job.status.in_(("queued", "processing")))
            .values(status="processing", attempts=Job.attempts + 1, started_at=utcnow())
        ).rowcount
        if not claimed:
            return None
        return session.get(Job, job_id)


def process(ctx: Context, job_id: str) -> str:
    """Run one job to a terminal state; returns that state. Transient faults propagate (to be retried)."""
    from clearcut.pipeline import process as run_pipeline

    job = claim(ctx, job_id)
    if job is None:
        with ctx.db() as session:
            row = session.get(Job, job_id)
            return row.status if row else "missing"
    with ctx.db() as session:
        original = session.get(Asset, job.input_asset_id)
        original_key = original.storage_key
    data = ctx.storage.get(original_key)
    try:
        result = run_pipeline(data, options_from_row(job.options))
    except ClearcutError as exc:
        if exc.retryable:
            raise
        finish_failed(ctx, job_id, exc.code, exc.message, exc.status)
        return "failed"
    if not ctx.storage.exists(job.result_key):  # first writer wins: one result object per key
        ctx.storage.put(job.result_key, result.data, result.content_type)
    with ctx.db.begin() as session:
        done = session.execute(
            update(Job).where(Job.id == job_id, Job.status == "processing")
            .values(status="succeeded", result=result.metadata, finished_at=utcnow(), error_code=None,
                    error_message=None)
        ).rowcount
        if done:
            row = session.get(Job, job_id)
            _attach_result(session, row, job.result_key, result.metadata, len(result.data))
            _charge(session, row)
    return "succeeded" if done else _status(ctx, job_id)


def finish_failed(ctx: Context, job_id: str, code: str, message: str, status: int = 500) -> None:
    with ctx.db.begin() as session:
        session.execute(update(Job).where(Job.id == job_id, Job.status.in_(("queued", "processing")))
                        .values(status="failed", error_code=code, error_message=message, error_status=status,
                                finished_at=utcnow()))


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
