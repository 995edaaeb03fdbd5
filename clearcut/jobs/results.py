"""What a job stores and reuses: originals, result keys, the result cache, usage, output copies.

Results are stored under a key derived from (original sha256, normalised options, model versions,
pipeline revision), written only if absent, so duplicate deliveries cannot produce two different
results, and an identical later request is served from storage without running a model.
"""
from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from clearcut.context import Context
from clearcut.db.models import Account, Asset, Job, Usage, utcnow
from clearcut.errors import NotFound
from clearcut.models.registry import spec
from clearcut.options import LAYOUT_FIELDS, MATTE_FIELDS, PLACEMENT_FIELDS, Margin, Options, parse

TERMINAL = ("succeeded", "failed", "canceled")
ACTIVE = ("queued", "processing")
STATUSES = (*ACTIVE, *TERMINAL)
EXTENSIONS = {"png": "png", "jpg": "jpg", "webp": "webp", "bmp": "bmp", "tiff": "tiff", "gif": "gif"}


def options_from_row(data: dict) -> Options:
    """The ``Options`` stored (normalised) in a job row."""
    values = dict(data)
    margin = values.pop("crop_margin", None) or {}
    options = parse({k: v for k, v in values.items() if k in ("format", "channels", "size", "crop", "bg_color",
                                                              "despill", "model", "review_below", *LAYOUT_FIELDS,
                                                              *PLACEMENT_FIELDS, *MATTE_FIELDS)})
    if margin:
        options = options.with_(crop_margin=Margin(**margin))
    return options


def result_key(original_sha256: str, options: Options) -> str:
    """Where the result of these options on this original is stored (shared by identical requests)."""
    from clearcut.pipeline import REVISION
    from clearcut.pipeline.segment import resolve_models

    models = [(name, spec(name).version) for name in resolve_models(options.model)]
    material = json.dumps({"original": original_sha256, "options": options.cutout_key(), "models": models,
                           "pipeline": REVISION}, sort_keys=True)
    return f"results/{hashlib.sha256(material.encode()).hexdigest()}.{EXTENSIONS[options.format]}"


def retention_deadline(ctx: Context) -> datetime:
    return utcnow() + timedelta(hours=ctx.setting("CLEARCUT_RETENTION_HOURS"))


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
    asset.expires_at = retention_deadline(ctx)
    asset.deleted_at = None
    session.flush()
    return asset


def cached(ctx: Context, session: Session, key: str) -> Job | None:
    """A finished job whose result object still exists under ``key``."""
    done = session.scalar(select(Job).where(Job.result_key == key, Job.status == "succeeded")
                          .order_by(Job.finished_at.desc()).limit(1))
    if done is not None and ctx.storage.exists(key):
        return done
    return None


def deadline(ctx: Context) -> datetime:
    """When the sweeper may act on a job that is queued or processing now (CLEARCUT_JOB_DEADLINE_S)."""
    return utcnow() + timedelta(seconds=ctx.setting("CLEARCUT_JOB_DEADLINE_S"))


def review_values(ctx: Context, options: dict, metadata: dict | None) -> dict:
    """The review columns of a job that finishes with ``metadata``: its confidence, and needs_review when
    that is below the job's ``review_below`` (else CLEARCUT_REVIEW_BELOW); a new result is unaccepted."""
    score = (metadata or {}).get("confidence")
    threshold = options.get("review_below")
    if threshold is None:
        threshold = ctx.setting("CLEARCUT_REVIEW_BELOW")
    return {"confidence": score, "needs_review": score is not None and score < threshold, "accepted_at": None}


def finish_from_cache(ctx: Context, session: Session, job: Job, hit: Job) -> None:
    """Finish ``job`` with the result of the identical finished job ``hit`` (no worker runs)."""
    now = utcnow()
    job.status, job.cache_hit, job.result = "succeeded", True, hit.result
    for name, value in review_values(ctx, job.options, hit.result).items():
        setattr(job, name, value)
    job.started_at = job.finished_at = now
    job.error_code = job.error_message = job.error_status = None
    attach_result(ctx, session, job, job.result_key, hit.result or {}, size=None)
    charge(session, job)
    write_output(ctx, job)


def attach_result(ctx: Context, session: Session, job: Job, rkey: str, metadata: dict, size: int | None) -> None:
    asset = session.scalar(select(Asset).where(Asset.account_id == job.account_id, Asset.storage_key == rkey))
    if asset is None:
        asset = Asset(account_id=job.account_id, kind="result", storage_key=rkey, sha256=rkey.split("/")[1][:64],
                      content_type=job.content_type or "application/octet-stream", size_bytes=size or 0,
                      width=metadata.get("width"), height=metadata.get("height"))
        session.add(asset)
    asset.expires_at = retention_deadline(ctx)
    asset.deleted_at = None
    session.flush()
    job.result_asset_id = asset.id


def charge(session: Session, job: Job) -> None:
    """One usage row per job (unique job_id), so a duplicate delivery cannot charge twice."""
    exists = session.scalar(select(Usage.id).where(Usage.job_id == job.id))
    if exists is None:
        session.add(Usage(account_id=job.account_id, job_id=job.id, units=1.0))


def write_output(ctx: Context, job: Job, data: bytes | None = None) -> None:
    """Copy the result to the job's ``output.prefix`` (validated at submission) in the same bucket."""
    if not job.output or not job.output.get("prefix"):
        return
    name = _safe_name(job.external_id) if job.external_id else job.id
    key = f"{job.output['prefix']}{name}.{EXTENSIONS.get(job.result_key.rsplit('.', 1)[-1], 'bin')}"
    ctx.storage.put(key, data if data is not None else ctx.storage.get(job.result_key),
                    job.content_type or "application/octet-stream")


def _safe_name(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", value)[:150] or "item"


def output_key(job: Job) -> str | None:
    if not job.output or not job.output.get("prefix") or not job.result_key:
        return None
    name = _safe_name(job.external_id) if job.external_id else job.id
    return f"{job.output['prefix']}{name}.{job.result_key.rsplit('.', 1)[-1]}"


def owned(ctx: Context, model, row_id: str, account_id: str, kind: str):
    """The ``model`` row ``row_id`` if it belongs to this account. Another account's row is
    indistinguishable from a missing one (404 ``{kind}_not_found``)."""
    with ctx.db() as session:
        row = session.get(model, row_id)
        if row is None or row.account_id != account_id:
            raise NotFound(f"no {kind} {row_id!r} for this account", code=f"{kind}_not_found")
        return row
