"""Async jobs: ``POST /v2/jobs`` (202 at once), list, status, cancel, result, replay, webhook attempts;
and the ``Idempotency-Key`` handling every POST shares. Thin: parse, call ``clearcut``, render."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

from flask import Blueprint, Response, current_app, g, jsonify, redirect, request, url_for
from sqlalchemy import select
from werkzeug.datastructures import ImmutableMultiDict

from app.auth import authenticate, presented_key
from app.errors import request_id
from app.inputs import BadRequest, json_body, parse_request
from app.v2 import _failed, job_view, result_headers
from clearcut import accounts, config, jobs, webhooks
from clearcut.jobs import batches, idempotency
from clearcut.db.models import Job, WebhookAttempt, WebhookDelivery, utcnow
from clearcut.errors import ClearcutError

bp = Blueprint("jobs_api", __name__)
ASYNC_FIELDS = ("webhook_url", "metadata", "priority", "output", "external_id")
PRIORITY_NAMES = {"low": 2, "normal": 5, "high": 8}
REPLAYED_HEADERS = ("Content-Type", "Location", "X-Job-ID", "X-Width", "X-Height", "X-Foreground-Top",
                    "X-Foreground-Left", "X-Foreground-Width", "X-Foreground-Height", "X-Confidence", "X-Needs-Review")


def _ctx():
    return current_app.extensions["clearcut_context"]


# --- queueing ---------------------------------------------------------------------------------------

def celery_priority(priority: int) -> int:
    """API priority 9 = most urgent; Redis transport priority 0 = served first."""
    return 9 - max(0, min(9, int(priority)))


def dispatch(items: list[tuple[str, str, int]]) -> None:
    """Send ``clearcut.process_job`` for each (job id, queue, priority) over one producer connection."""
    if not items:
        return
    celery = current_app.extensions["clearcut_celery"]()
    with celery.producer_or_acquire() as producer:
        for job_id, queue, priority in items:
            celery.send_task("clearcut.process_job", args=[job_id], queue=queue,
                             priority=celery_priority(priority), producer=producer)


def dispatch_deliveries(ids) -> None:
    if not ids:
        return
    celery = current_app.extensions["clearcut_celery"]()
    for delivery_id in ids:
        celery.send_task("clearcut.deliver_webhook", args=[delivery_id], queue="webhooks")


# --- idempotency (every POST) --------------------------------------------------------------------

def _fingerprint() -> str:
    """Method, path, query and content; multipart is hashed by fields and file contents, because its
    boundary changes on every send."""
    digest = hashlib.sha256(f"{request.method} {request.path}\n".encode())
    digest.update(json.dumps(sorted((k, v) for k, v in request.args.items(multi=True) if k != "api_key"))
                  .encode())
    mimetype = (request.mimetype or "").lower()
    if mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        digest.update(json.dumps(sorted(request.form.items(multi=True))).encode())
        for name, upload in sorted(request.files.items(multi=True), key=lambda item: item[0]):
            data = upload.stream.read()
            upload.stream.seek(0)
            digest.update(f"{name}:{hashlib.sha256(data).hexdigest()}".encode())
    else:
        digest.update(mimetype.encode() + b"\n" + request.get_data(cache=True))
    return digest.hexdigest()


@bp.before_app_request
def _idempotency_begin():
    key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or key is None:
        return None
    idempotency.validate(key.strip())
    try:
        with _ctx().db() as session:
            _, account = accounts.authenticate(session, presented_key(json_body()))
    except ClearcutError:
        return None  # the view answers the auth or JSON error itself
    outcome = idempotency.begin(_ctx(), account.id, key.strip(), _fingerprint())
    if isinstance(outcome, idempotency.Stored):
        response = Response(outcome.body, status=outcome.status_code)
        for name, value in outcome.headers.items():
            response.headers[name] = value
        response.headers["Idempotent-Replayed"] = "true"
        return response
    g.idempotency_row = outcome
    return None


@bp.after_app_request
def _idempotency_finish(response):
    row = g.pop("idempotency_row", None)
    if row is None:
        return response
    if response.status_code >= 500 or response.status_code == 429 or response.is_streamed:
        idempotency.release(_ctx(), row)
    else:
        headers = {h: response.headers[h] for h in REPLAYED_HEADERS if h in response.headers}
        idempotency.finish(_ctx(), row, response.status_code, headers, response.get_data())
    return response


# --- async fields -------------------------------------------------------------------------------

def _pop_async_fields() -> dict:
    """Take the async-only fields out of the request, so the shared /v2 intake sees only image + options."""
    raw = request._get_current_object()
    found: dict = {}
    body = json_body()
    if body is not None:
        rest = {}
        for name, value in body.items():
            (found if name.strip().lower() in ASYNC_FIELDS else rest)[name.strip().lower() if name.strip().lower()
                                                                       in ASYNC_FIELDS else name] = value
        raw._cached_data = json.dumps(rest).encode()
        return found
    mimetype = (request.mimetype or "").lower()
    source = "form" if mimetype in ("multipart/form-data", "application/x-www-form-urlencoded") else "args"
    values = getattr(raw, source)
    kept = []
    for name, value in values.items(multi=True):
        if isinstance(name, str) and name.strip().lower() in ASYNC_FIELDS:  # a nameless part: intake's 400
            found[name.strip().lower()] = value
        else:
            kept.append((name, value))
    raw.__dict__[source] = ImmutableMultiDict(kept)
    return found


def _pending_intake():
    """(options, use_cache, input_spec) when the image is one the worker fetches: ``image_url`` or ``s3_key``
    (an object in the caller's import area) is the only image input; None otherwise (the shared intake then
    handles the request, including every error about image inputs)."""
    from app.inputs import IMAGE_FIELDS, _lower_keys, _options
    from clearcut import netguard

    body = json_body()
    files: dict = {}
    if body is not None:
        fields = _lower_keys(body.items())
    elif (request.mimetype or "").lower() in ("multipart/form-data", "application/x-www-form-urlencoded"):
        fields = _lower_keys((k, v) for k in request.form for v in request.form.getlist(k))
        files = dict(request.files)
    else:
        return None
    present = [name for name in IMAGE_FIELDS if fields.get(name) not in (None, "")] + [str(name) for name in files]
    if fields.get("s3_key") not in (None, ""):
        if present:
            raise BadRequest(f"send exactly one image input; got s3_key, {', '.join(present)}",
                             code="multiple_images", fields=["s3_key", *present])
        key = batches.check_key(_ctx(), fields.pop("s3_key"), g.account.id, "CLEARCUT_S3_INPUT_PREFIXES", "s3_key")
        if not _ctx().storage.exists(key):
            raise ClearcutError(f"no object at s3_key {key!r}; upload it under your import prefix first "
                                "(GET /v2/imports lists them)", code="s3_key_not_found", status=400, s3_key=key)
        spec = {"s3_key": key}
    elif present == ["image_url"] and isinstance(fields["image_url"], str):  # no file parts either
        spec = {"image_url": fields.pop("image_url").strip()}
        netguard._split(spec["image_url"])  # scheme, host and credentials now; addresses are checked when fetching
    else:
        return None
    fields.pop("api_key", None)
    for name in IMAGE_FIELDS:
        fields.pop(name, None)
    options, use_cache = _options(fields)
    return options, use_cache, {**spec, "cache": use_cache}


def parse_metadata(value):
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise BadRequest("metadata must be a JSON object", code="invalid_metadata") from None
    if not isinstance(value, dict):
        raise BadRequest("metadata must be a JSON object such as {\"sku\": \"A-1\"}", code="invalid_metadata")
    limit = config.get("CLEARCUT_METADATA_MAX_BYTES")
    size = len(json.dumps(value, separators=(",", ":")).encode())
    if size > limit:
        raise BadRequest(f"metadata is {size} bytes of JSON; the limit is {limit}", code="metadata_too_large",
                         limit=limit)
    return value


def parse_priority(value) -> int:
    if value is None or value == "":
        return 5
    if isinstance(value, str) and value.strip().lower() in PRIORITY_NAMES:
        return PRIORITY_NAMES[value.strip().lower()]
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if isinstance(value, bool) or not 0 <= number <= 9 or str(value).strip() != str(number):
        raise BadRequest("priority must be an integer 0-9 (9 = most urgent) or low, normal, high",
                         code="invalid_priority")
    return number


def parse_webhook_url(value, account_id: str) -> str | None:
    if value in (None, ""):
        return None
    url = webhooks.validate_url(value)
    with _ctx().db() as session:
        if not webhooks.has_secret(session, account_id):
            raise ClearcutError("this account has no webhook signing secret yet; create one with POST "
                                "/v2/webhooks/secret/rotate (or `clearcut webhooks rotate-secret`) and store it",
                                code="webhook_secret_missing", status=400)
    return url


def parse_output(value, account_id: str) -> dict | None:
    """``{"prefix": "exports/<account id>/..."}``: the result is also written there (same bucket)."""
    if value in (None, ""):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise BadRequest("output must be a JSON object such as {\"prefix\": \"exports/...\"}",
                             code="invalid_output") from None
    if not isinstance(value, dict) or set(value) - {"prefix", "bucket"} or "prefix" not in value:
        raise BadRequest("output must be {\"prefix\": \"...\"} (optionally with \"bucket\")", code="invalid_output")
    bucket = value.get("bucket")
    if bucket not in (None, config.get("CLEARCUT_S3_BUCKET")):
        raise ClearcutError(f"output.bucket {bucket!r} is not writable; results can only go to the "
                            f"{config.get('CLEARCUT_S3_BUCKET')!r} bucket", code="output_not_allowed", status=403)
    try:
        prefix = batches.check_key(_ctx(), value["prefix"], account_id, "CLEARCUT_S3_OUTPUT_PREFIXES",
                                   "output_prefix")
    except ClearcutError as exc:
        raise ClearcutError(exc.message, code="output_not_allowed" if exc.code.endswith("not_allowed")
                            else "invalid_output", status=403 if exc.code.endswith("not_allowed") else 400,
                            **exc.details) from None
    return {"prefix": prefix}


# --- views ----------------------------------------------------------------------------------------

def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _ms_between(start, end) -> float | None:
    start, end = _aware(start), _aware(end)
    return round((end - start).total_seconds() * 1000, 1) if start and end else None


def job_detail(job: Job) -> dict:
    """The /v2 job view plus the async fields: timings per stage, metadata, presigned download URL."""
    view = job_view(job)
    meta = job.result or {}
    view.update({
        "object": "job", "batch_id": job.batch_id, "external_id": job.external_id, "metadata": job.meta,
        "asset_id": job.input_asset_id, "priority": job.priority, "queue": job.queue, "webhook_url": job.webhook_url, "replays": job.replays,
        "queued_at": _iso(job.queued_at), "canceled_at": _iso(job.canceled_at),
        "timings_ms": {"queued": _ms_between(job.queued_at, job.started_at),
                       "processing": _ms_between(job.started_at, job.finished_at),
                       "total": _ms_between(job.queued_at, job.finished_at),
                       **(job.timings or {}), "pipeline": meta.get("timings_ms")},
        "webhooks_url": url_for("jobs_api.job_webhooks", job_id=job.id, _external=True),
        "download_url": None, "download_expires_at": None,
    })
    if job.input_spec:
        view["input"] = {k: v for k, v in job.input_spec.items() if k in ("image_url", "s3_key")}
    if job.output:
        view["output"] = {"prefix": job.output.get("prefix"), "key": jobs.output_key(job)
                          if job.status == "succeeded" else None}
    if job.status == "succeeded" and job.result_key:
        ttl = config.get("CLEARCUT_PRESIGN_TTL_S")
        view["download_url"] = _ctx().storage.presigned_url(job.result_key, ttl)
        view["download_expires_at"] = (utcnow() + timedelta(seconds=ttl)).isoformat()
    return view


def _accepted(body: dict, status: int = 202) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers["Location"] = body["status_url"]
    if body.get("object") == "job":
        response.headers["X-Job-ID"] = body["id"]
    return response


@bp.post("/v2/jobs")
def create_job():
    authenticate(json_body())
    extra = _pop_async_fields()
    metadata = parse_metadata(extra.get("metadata"))
    priority = parse_priority(extra.get("priority"))
    webhook_url = parse_webhook_url(extra.get("webhook_url"), g.account.id)
    output = parse_output(extra.get("output"), g.account.id)
    external = extra.get("external_id")
    if external is not None and (not isinstance(external, (str, int)) or len(str(external)) > 200):
        raise BadRequest("external_id must be a string of at most 200 characters", code="invalid_external_id")
    pending = _pending_intake()
    if pending is not None:  # the worker fetches the image (URLs through the SSRF guard): 202 without waiting
        options, _, spec = pending
        job = jobs.submit_pending(_ctx(), g.account, g.key, options, spec,
                                  request_id=request_id(), webhook_url=webhook_url, metadata=metadata,
                                  priority=priority, output=output, queue=config.get("CLEARCUT_ASYNC_QUEUE"),
                                  external_id=None if external is None else str(external))
        dispatch([(job.id, job.queue, priority)])
        return _accepted(job_detail(jobs.get(_ctx(), g.account.id, job.id)))
    intake = parse_request()
    submission = jobs.submit(_ctx(), g.account, g.key, intake.data, intake.content_type, intake.options,
                             source="jobs", request_id=request_id(), use_cache=intake.use_cache,
                             webhook_url=webhook_url, metadata=metadata, priority=priority, output=output,
                             queue=config.get("CLEARCUT_ASYNC_QUEUE"),
                             external_id=None if external is None else str(external))
    if submission.enqueue:
        dispatch([(submission.job.id, submission.job.queue, priority)])
    dispatch_deliveries(submission.deliveries)
    return _accepted(job_detail(jobs.get(_ctx(), g.account.id, submission.job.id)))


def _parse_time(name: str) -> datetime | None:
    value = request.args.get(name)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name} must be an ISO 8601 timestamp such as 2026-01-31T12:00:00Z",
                         code="invalid_timestamp", parameter=name) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def page_args(default: int = 50, maximum: int = 500) -> tuple[int, str | None]:
    raw = request.args.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise BadRequest(f"limit must be an integer from 1 to {maximum}", code="invalid_limit")
    return int(raw), request.args.get("cursor") or None


def status_filter(default=None) -> list[str] | None:
    raw = request.args.get("status")
    if not raw:
        return default
    statuses = [s.strip().lower() for s in raw.split(",") if s.strip()]
    bad = [s for s in statuses if s not in jobs.STATUSES]
    if bad:
        raise BadRequest(f"status must be among {', '.join(jobs.STATUSES)} (got {', '.join(bad)})",
                         code="invalid_status")
    return statuses


def review_filters() -> dict:
    """``needs_review`` (boolean) and ``confidence_below`` (0-1) of GET /v2/jobs, validated."""
    from clearcut.options import parse_bool, parse_review_below

    found = {}
    if request.args.get("needs_review"):
        found["needs_review"] = parse_bool("needs_review", request.args["needs_review"])
    if request.args.get("confidence_below"):
        try:
            found["confidence_below"] = parse_review_below(request.args["confidence_below"])
        except ClearcutError:
            raise BadRequest("confidence_below must be a number from 0 to 1 such as 0.9",
                             code="invalid_confidence_below", parameter="confidence_below") from None
    return found


@bp.get("/v2/jobs")
def list_jobs():
    _, acct = authenticate()
    limit, cursor = page_args()
    rows, next_cursor = jobs.list_jobs(_ctx(), acct.id, statuses=status_filter(), batch_id=request.args.get("batch"),
                                       created_after=_parse_time("created_after"),
                                       created_before=_parse_time("created_before"),
                                       finished_after=_parse_time("finished_after"), limit=limit, cursor=cursor,
                                       **review_filters())
    return jsonify({"object": "list", "data": [job_detail(j) for j in rows], "has_more": next_cursor is not None,
                    "next_cursor": next_cursor})


def _job_response(job):
    response = jsonify(job_detail(job))
    response.headers["X-Job-ID"] = job.id
    return response


@bp.get("/v2/jobs/<job_id>")
def get_job(job_id: str):
    _, acct = authenticate()
    return _job_response(jobs.get(_ctx(), acct.id, job_id))


@bp.delete("/v2/jobs/<job_id>")
def cancel_job(job_id: str):
    _, acct = authenticate()
    return _job_response(jobs.cancel(_ctx(), acct.id, job_id))


@bp.get("/v2/jobs/<job_id>/result")
def get_result(job_id: str):
    _, acct = authenticate()
    job = jobs.get(_ctx(), acct.id, job_id)
    if job.status == "failed":
        _failed(job)
    if job.status != "succeeded":
        raise ClearcutError(f"job {job.id} is {job.status}; poll its status until it has succeeded",
                            code="job_not_finished", status=409, job_status=job.status)
    if request.args.get("redirect", "").lower() in ("1", "true", "yes"):
        response = redirect(_ctx().storage.presigned_url(job.result_key, config.get("CLEARCUT_PRESIGN_TTL_S")),
                            code=303)
    else:
        response = Response(_ctx().storage.get(job.result_key), mimetype=job.content_type)
    response.headers.update(result_headers(job))
    return response


@bp.post("/v2/jobs/<job_id>/accept")
def accept_job(job_id: str):
    _, acct = authenticate(json_body())
    return _job_response(jobs.accept(_ctx(), acct.id, job_id))


@bp.post("/v2/jobs/<job_id>/replay")
def replay_job(job_id: str):
    from clearcut.options import parse, parse_bool

    _, acct = authenticate(json_body())
    body = json_body() or {}
    options = body.get("options")
    if options is not None and not isinstance(options, dict):
        raise BadRequest("options must be an object of options to change", code="invalid_options")
    parsed = None
    if options:
        changed = parse(options)  # validates names and values
        names = {str(k).strip().lower() for k in options}
        current = jobs.options_from_row(jobs.get(_ctx(), acct.id, job_id).options)
        parsed = current.with_(**{name: getattr(changed, name) for name in names})
    use_cache = parse_bool("cache", body["cache"]) if "cache" in body else True
    outcome = jobs.replay(_ctx(), acct.id, job_id, parsed, use_cache=use_cache)
    if outcome.enqueue:
        dispatch([(outcome.job.id, outcome.job.queue, outcome.job.priority)])
    dispatch_deliveries(outcome.deliveries)
    return _accepted(job_detail(outcome.job))


@bp.get("/v2/jobs/<job_id>/webhooks")
def job_webhooks(job_id: str):
    _, acct = authenticate()
    jobs.get(_ctx(), acct.id, job_id)
    with _ctx().db() as session:
        deliveries = session.scalars(select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
                                     .order_by(WebhookDelivery.created_at)).all()
        data = []
        for delivery in deliveries:
            attempts = session.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery.id)
                                       .order_by(WebhookAttempt.number)).all()
            data.append(webhooks.delivery_view(delivery, list(attempts)))
    return jsonify({"object": "list", "data": data})


@bp.post("/v2/jobs/<job_id>/webhooks/<delivery_id>/resend")
def resend_webhook(job_id: str, delivery_id: str):
    _, acct = authenticate(json_body())
    jobs.get(_ctx(), acct.id, job_id)
    with _ctx().db.begin() as session:
        delivery = webhooks.resend(session, acct.id, delivery_id, job_id=job_id)
        view = webhooks.delivery_view(delivery, [])
    dispatch_deliveries([delivery_id])
    response = jsonify(view)
    response.status_code = 202
    return response
