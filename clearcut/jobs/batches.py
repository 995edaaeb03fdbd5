"""Batches (catalog imports): many items in one request, each item a job on the ``batch`` queue.

Items name their image by ``image_url`` (fetched by the worker through the SSRF guard, so a broken URL
fails that item alone with a clear code), ``s3_key`` (an object under an allowed prefix of the bucket)
or ``asset_id`` (an original this account stored before). Everything is validated before any row
exists: one bad item rejects the whole request with its index, and nothing is queued.
The batch row holds no counters: counts are a GROUP BY over its jobs, so they cannot drift.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import func, insert, select

from clearcut.context import Context
from clearcut.db.models import Account, ApiKey, Asset, Batch, Job, new_id, utcnow
from clearcut.errors import ClearcutError
from clearcut.jobs.events import counts
from clearcut.jobs.replays import Replay, replay as replay_job
from clearcut.jobs.results import STATUSES, TERMINAL, deadline, owned, result_key
from clearcut.options import parse, parse_bool
from clearcut.pipeline.encode import CONTENT_TYPES

QUEUE = "batch"
SOURCES = ("image_url", "s3_key", "asset_id")
ITEM_FIELDS = (*SOURCES, "external_id", "options")


class InvalidBatch(ClearcutError):
    status = 400
    code = "invalid_batch"


def _item_error(index: int, message: str, code: str = "invalid_batch_item", **details) -> InvalidBatch:
    return InvalidBatch(f"items[{index}]: {message}", code=code, index=index, **details)


def allowed_prefixes(raw: str, account_id: str) -> list[str]:
    """The comma-separated prefixes of a CLEARCUT_S3_*_PREFIXES value, ``{account}`` filled in."""
    return [p.strip().replace("{account}", account_id) for p in raw.split(",") if p.strip()]


def is_relative_key(key) -> bool:
    """A bucket key (or key prefix) that cannot leave its prefix: relative, no '..' part, no control
    characters, at most 900 characters."""
    return (isinstance(key, str) and 0 < len(key) <= 900 and ".." not in key.split("/") and not key.startswith("/")
            and not any(ord(c) < 32 for c in key))


def check_key(ctx: Context, key, account_id: str, setting: str, what: str) -> str:
    """A bucket key under one of the account's allowed prefixes (the setting ``setting``; no
    traversal, no absolute paths)."""
    prefixes = allowed_prefixes(ctx.setting(setting), account_id)
    if not is_relative_key(key):
        raise InvalidBatch(f"{what} must be a relative object key without '..' or control characters",
                           code=f"invalid_{what}")
    if not any(key.startswith(p) for p in prefixes):
        raise InvalidBatch(f"{what} {key!r} is outside the prefixes this account may use "
                           f"({', '.join(prefixes) or 'none configured'}; see {setting})",
                           code=f"{what}_not_allowed", allowed_prefixes=prefixes)
    return key


def merged_options(shared: dict | None, item: dict | None):
    values = {str(k).lower(): v for k, v in (shared or {}).items()}
    values.update({str(k).lower(): v for k, v in (item or {}).items()})
    use_cache = values.pop("cache", True)
    return parse(values), parse_bool("cache", use_cache) if not isinstance(use_cache, bool) else use_cache


def create(ctx: Context, account: Account, key: ApiKey | None, items, *, options: dict | None = None,
           webhook_url: str | None = None, metadata: dict | None = None, priority: int = 5,
           request_id: str | None = None) -> tuple[Batch, list[tuple[str, int]]]:
    """Validate every item, then record the batch and its jobs in one transaction.
    Returns the batch and the (job id, priority) pairs to enqueue."""
    from clearcut import netguard

    limit = ctx.setting("CLEARCUT_BATCH_MAX_ITEMS")
    if not isinstance(items, list) or not items:
        raise InvalidBatch("items must be a non-empty list of {\"image_url\" | \"s3_key\" | \"asset_id\": ...}",
                           code="invalid_batch")
    if len(items) > limit:
        raise InvalidBatch(f"a batch holds at most {limit} items (got {len(items)}); split it",
                           code="batch_too_large", limit=limit)
    if options is not None and not isinstance(options, dict):
        raise InvalidBatch("options must be an object of shared options", code="invalid_batch")
    now = utcnow()
    rows: list[dict] = []
    batch_id = new_id("batch")
    with ctx.db.begin() as session:
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise _item_error(index, "each item must be an object")
            unknown = [k for k in item if k not in ITEM_FIELDS]
            if unknown:
                raise _item_error(index, f"unknown field(s) {', '.join(map(str, unknown))}; accepted: "
                                  f"{', '.join(ITEM_FIELDS)}", code="unknown_field")
            given = [s for s in SOURCES if item.get(s) not in (None, "")]
            if len(given) != 1:
                raise _item_error(index, "give exactly one of image_url, s3_key or asset_id",
                                  code="missing_image" if not given else "multiple_images")
            if item.get("options") is not None and not isinstance(item["options"], dict):
                raise _item_error(index, "options must be an object")
            external = item.get("external_id")
            if external is not None and (not isinstance(external, (str, int)) or len(str(external)) > 200):
                raise _item_error(index, "external_id must be a string of at most 200 characters")
            try:
                parsed, use_cache = merged_options(options, item.get("options"))
            except ClearcutError as exc:
                raise _item_error(index, exc.message, code=exc.code) from None
            row = dict(id=new_id("job"), account_id=account.id, api_key_id=key.id if key else None,
                       request_id=request_id, source="batch", status="queued", options=parsed.normalised(),
                       queue=QUEUE, content_type=CONTENT_TYPES[parsed.format], batch_id=batch_id,
                       external_id=None if external is None else str(external), priority=priority,
                       created_at=now, queued_at=now, deadline_at=deadline(ctx), attempts=0, replays=0,
                       sweeps=0, cache_hit=False, input_asset_id=None, result_key=None, input_spec=None)
            source = given[0]
            if source == "image_url":
                url = item["image_url"]
                if not isinstance(url, str):
                    raise _item_error(index, "image_url must be a string", code="invalid_image_url")
                try:
                    netguard._split(url.strip())
                except ClearcutError as exc:
                    raise _item_error(index, exc.message, code=exc.code) from None
                row["input_spec"] = {"image_url": url.strip(), "cache": use_cache}
            elif source == "s3_key":
                try:
                    row["input_spec"] = {"s3_key": check_key(ctx, item["s3_key"], account.id,
                                                             "CLEARCUT_S3_INPUT_PREFIXES", "s3_key"),
                                         "cache": use_cache}
                except ClearcutError as exc:
                    raise _item_error(index, exc.message, code=exc.code) from None
            else:
                asset = session.get(Asset, str(item["asset_id"]))
                if asset is None or asset.account_id != account.id or asset.kind != "original" \
                        or asset.deleted_at is not None:
                    raise _item_error(index, f"no stored original {item['asset_id']!r} for this account",
                                      code="asset_not_found")
                row["input_asset_id"], row["result_key"] = asset.id, result_key(asset.sha256, parsed)
            rows.append(row)
        session.add(Batch(id=batch_id, account_id=account.id, status="processing", options=options, meta=metadata,
                          webhook_url=webhook_url, total=len(rows), request_id=request_id, created_at=now,
                          started_at=now))
        session.flush()
        for start in range(0, len(rows), 1000):
            session.execute(insert(Job), rows[start:start + 1000])
        batch = session.get(Batch, batch_id)
    return batch, [(r["id"], priority) for r in rows]


def get(ctx: Context, account_id: str, batch_id: str) -> Batch:
    return owned(ctx, Batch, batch_id, account_id, "batch")


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def progress(ctx: Context, batch: Batch) -> dict:
    """Counts, progress, throughput (jobs/s since the batch last started) and ETA."""
    with ctx.db() as session:
        tally = counts(session, batch.id)
        started = _aware(batch.started_at or batch.created_at)
        finished_since, last = session.execute(
            select(func.count(), func.max(Job.finished_at)).where(
                Job.batch_id == batch.id, Job.status.in_(TERMINAL), Job.finished_at >= started)).one()
    total = sum(tally[s] for s in STATUSES)
    done = sum(tally[s] for s in TERMINAL)
    end = _aware(last) if batch.status == "completed" and last else utcnow()
    elapsed = max((end - started).total_seconds(), 1e-3)
    rate = finished_since / elapsed if finished_since else 0.0
    remaining = total - done
    return {"counts": tally, "total": total, "progress": round(done / total, 4) if total else 1.0,
            "throughput_per_s": round(rate, 3),
            "eta_s": (round(remaining / rate, 1) if rate else None) if remaining else 0.0}


def replay(ctx: Context, account_id: str, batch_id: str, statuses: list[str]) -> tuple[list[Replay], Batch]:
    """Replay the batch's jobs in ``statuses`` (terminal ones only), each as ``jobs.replay`` does."""
    get(ctx, account_id, batch_id)
    bad = [s for s in statuses if s not in TERMINAL]
    if bad:
        raise InvalidBatch(f"status must be among {', '.join(TERMINAL)} (got {', '.join(bad)})",
                           code="invalid_status")
    with ctx.db() as session:
        ids = list(session.scalars(select(Job.id).where(Job.batch_id == batch_id, Job.status.in_(statuses))
                                   .order_by(Job.created_at, Job.id)))
    replays = [replay_job(ctx, account_id, job_id) for job_id in ids]
    return replays, get(ctx, account_id, batch_id)
