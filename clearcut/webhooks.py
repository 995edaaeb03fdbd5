"""Signed webhooks (Standard Webhooks): secrets, events, delivery with retries, and ``verify``.

Every message carries ``webhook-id`` (stable across retries), ``webhook-timestamp`` (Unix seconds) and
``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``; during a secret rotation's
overlap both the new and the previous secret sign (space-separated signatures). Payloads are thin:
ids, status, URLs and metadata, never image bytes.

Delivery happens on the worker: one attempt per call of ``deliver``, claimed with a conditional update
(so duplicate task deliveries cannot double-send), every attempt recorded. Retries follow
``CLEARCUT_WEBHOOK_BACKOFF_S`` with jitter; ``Retry-After`` is honoured; redirects are not followed;
410 Gone disables the endpoint; the target address passes the same SSRF guard as ``image_url``.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import secrets
import time
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Mapping

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from clearcut import config
from clearcut.context import Context
from clearcut.db.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookSecret, utcnow
from clearcut.errors import ClearcutError

SECRET_PREFIX = "whsec_"
EVENTS = ("job.succeeded", "job.failed", "batch.completed")
TOLERANCE_S = 300
MAX_RETRY_AFTER_S = 24 * 3600


class WebhookVerificationError(ClearcutError):
    status = 400
    code = "webhook_verification_failed"


class InvalidWebhookUrl(ClearcutError):
    status = 400
    code = "invalid_webhook_url"


# --- signing and verification -------------------------------------------------------------------

def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    body = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    return base64.b64decode(body)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes | str) -> str:
    """``v1,<base64 signature>`` of ``msg_id.timestamp.body`` with ``secret`` (``whsec_<base64 key>``)."""
    payload = body.encode() if isinstance(body, str) else body
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + payload, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(secret: str, headers: Mapping[str, str], body: bytes | str, *, tolerance_s: int = TOLERANCE_S,
           now: float | None = None) -> dict:
    """Check a received webhook; returns the decoded JSON payload or raises ``WebhookVerificationError``.

    ``headers``: any mapping (names are matched case-insensitively); ``body``: the raw request body,
    exactly as received. The timestamp must be within ``tolerance_s`` of now (replay protection).
    """
    lower = {str(k).lower(): v for k, v in headers.items()}
    msg_id, stamp, signatures = (lower.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and stamp and signatures):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance window; reject the message")
    expected = sign(secret, msg_id, timestamp, body).split(",", 1)[1]
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return json.loads(body)
    raise WebhookVerificationError("no signature matches this secret")


def signature_headers(secrets_: list[str], msg_id: str, body: bytes, timestamp: int | None = None) -> dict:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in secrets_)}


# --- secrets --------------------------------------------------------------------------------------

def rotate_secret(session: Session, account_id: str, *, now: datetime | None = None,
                  overlap_h: float | None = None) -> str:
    """Create a new current secret; the previous one keeps signing for ``overlap_h`` hours
    (CLEARCUT_WEBHOOK_SECRET_OVERLAP_H unless given). Returns it (the only time it is shown)."""
    now = now or utcnow()
    if overlap_h is None:
        overlap_h = config.get("CLEARCUT_WEBHOOK_SECRET_OVERLAP_H")
    overlap = timedelta(hours=overlap_h)
    for old in session.scalars(select(WebhookSecret).where(WebhookSecret.account_id == account_id)):
        if old.expires_at is None or _aware(old.expires_at) > now + overlap:
            old.expires_at = now + overlap
        if _aware(old.expires_at) <= now:
            session.delete(old)
    secret = new_secret()
    session.add(WebhookSecret(account_id=account_id, secret=secret, created_at=now))
    session.flush()
    return secret


def signing_secrets(session: Session, account_id: str, now: datetime | None = None) -> list[str]:
    """The current secret first, then any previous one still inside its overlap window."""
    now = now or utcnow()
    rows = session.scalars(select(WebhookSecret).where(WebhookSecret.account_id == account_id)
                           .order_by(WebhookSecret.created_at.desc())).all()
    return [r.secret for r in rows if r.expires_at is None or _aware(r.expires_at) > now]


def has_secret(session: Session, account_id: str) -> bool:
    return bool(signing_secrets(session, account_id))


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


# --- URLs and events ------------------------------------------------------------------------------

def validate_url(url) -> str:
    """Syntax check at submission time (the address guard runs again at every delivery)."""
    from clearcut import netguard

    if not isinstance(url, str) or not url.strip() or len(url) > 2000:
        raise InvalidWebhookUrl("webhook_url must be an http(s) URL of at most 2000 characters")
    try:
        netguard._split(url.strip())
    except ClearcutError as exc:
        raise InvalidWebhookUrl(f"webhook_url is not usable: {exc.message}") from None
    return url.strip()


def public_url(base: str, path: str) -> str:
    """``path`` under the service's public base URL (CLEARCUT_PUBLIC_URL)."""
    return base.rstrip("/") + path


def job_payload(job, base: str) -> dict:
    """Thin job data: ids, status, URLs (under ``base``), metadata — never image bytes."""
    data = {"id": job.id, "object": "job", "status": job.status, "batch_id": job.batch_id,
            "external_id": job.external_id, "metadata": job.meta, "attempts": job.attempts,
            "status_url": public_url(base, f"/v2/jobs/{job.id}")}
    if job.status == "succeeded":
        meta = job.result or {}
        data.update(result_url=public_url(base, f"/v2/jobs/{job.id}/result"), content_type=job.content_type,
                    width=meta.get("width"), height=meta.get("height"), cache_hit=job.cache_hit,
                    confidence=job.confidence, needs_review=job.needs_review)
    if job.status == "failed":
        data["error"] = {"code": job.error_code, "message": job.error_message}
    return data


def emit(session: Session, *, account_id: str, event: str, url: str, data: dict, job_id: str | None = None,
         batch_id: str | None = None, now: datetime | None = None) -> WebhookDelivery:
    """Record one event message for ``url``; the worker sends it (``deliver``)."""
    now = now or utcnow()
    delivery = WebhookDelivery(account_id=account_id, job_id=job_id, batch_id=batch_id, event=event, url=url,
                               created_at=now, next_attempt_at=now, payload="")
    session.add(delivery)
    session.flush()
    delivery.payload = json.dumps({"type": event, "timestamp": now.isoformat(), "id": delivery.id, "data": data},
                                  separators=(",", ":"), default=str)
    endpoint = _endpoint(session, account_id, url)
    if endpoint.disabled_at is not None:
        delivery.status, delivery.next_attempt_at, delivery.finished_at = "failed", None, now
        delivery.last_error = f"endpoint disabled ({endpoint.disabled_reason}); resend to re-enable it"
    return delivery


def _endpoint(session: Session, account_id: str, url: str) -> WebhookEndpoint:
    endpoint = session.scalar(select(WebhookEndpoint).where(WebhookEndpoint.account_id == account_id,
                                                            WebhookEndpoint.url == url))
    if endpoint is None:
        endpoint = WebhookEndpoint(account_id=account_id, url=url)
        session.add(endpoint)
        session.flush()
    return endpoint


# --- delivery -------------------------------------------------------------------------------------

def schedule(raw: str | None = None) -> list[float]:
    """Seconds before each retry, from ``raw`` (CLEARCUT_WEBHOOK_BACKOFF_S unless given)."""
    if raw is None:
        raw = config.get("CLEARCUT_WEBHOOK_BACKOFF_S")
    try:
        delays = [float(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"CLEARCUT_WEBHOOK_BACKOFF_S={raw!r} must be comma-separated seconds") from None
    return delays or [0.0]


def _jittered(delay: float, jitter: float) -> float:
    return max(0.0, delay * (1 + random.uniform(-jitter, jitter)))


def _retry_after(value: str | None, now: datetime) -> float | None:
    if not value:
        return None
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, float(value)))
    except ValueError:
        pass
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, (parsedate_to_datetime(value) - now).total_seconds()))
    except (TypeError, ValueError):
        return None


def due(ctx: Context, *, job_id: str | None = None, batch_id: str | None = None, now: datetime | None = None,
        limit: int = 500) -> list[str]:
    """Deliveries ready for an attempt (pending and due, or stuck 'sending' past their lock)."""
    now = now or utcnow()
    query = select(WebhookDelivery.id).where(or_(
        (WebhookDelivery.status == "pending") & (WebhookDelivery.next_attempt_at <= now),
        (WebhookDelivery.status == "sending") & (WebhookDelivery.locked_until < now)))
    if job_id or batch_id:
        query = query.where(or_(WebhookDelivery.job_id == job_id, WebhookDelivery.batch_id == batch_id))
    with ctx.db() as session:
        return list(session.scalars(query.order_by(WebhookDelivery.next_attempt_at).limit(limit)))


def _claim(ctx: Context, delivery_id: str, now: datetime) -> WebhookDelivery | None:
    lock = now + timedelta(seconds=3 * ctx.setting("CLEARCUT_WEBHOOK_TIMEOUT_S") + 30)
    with ctx.db.begin() as session:
        claimed = session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id, or_(
            (WebhookDelivery.status == "pending") & (WebhookDelivery.next_attempt_at <= now),
            (WebhookDelivery.status == "sending") & (WebhookDelivery.locked_until < now)))
            .values(status="sending", locked_until=lock, attempts=WebhookDelivery.attempts + 1)).rowcount
        return session.get(WebhookDelivery, delivery_id) if claimed else None


def deliver(ctx: Context, delivery_id: str) -> tuple[str, float | None]:
    """Make one attempt; returns (status, seconds until the next attempt or None)."""
    now = utcnow()
    delivery = _claim(ctx, delivery_id, now)
    if delivery is None:
        return "skipped", None
    with ctx.db() as session:
        keys = signing_secrets(session, delivery.account_id, now)
        number = 1 + len(session.scalars(select(WebhookAttempt.id)
                                         .where(WebhookAttempt.delivery_id == delivery_id)).all())
    body = delivery.payload.encode()
    started = time.perf_counter()
    code, error, excerpt, retry_after = None, None, None, None
    if not keys:
        error = "the account has no webhook secret; create one with POST /v2/webhooks/secret/rotate"
    else:
        try:
            code, excerpt, retry_after_raw = post(delivery.url, body, signature_headers(keys, delivery.id, body),
                                                  timeout=ctx.setting("CLEARCUT_WEBHOOK_TIMEOUT_S"))
            retry_after = _retry_after(retry_after_raw, utcnow())
        except ClearcutError as exc:
            error = f"{exc.code}: {exc.message}"
    duration = (time.perf_counter() - started) * 1000
    finished = utcnow()
    delays = schedule(ctx.setting("CLEARCUT_WEBHOOK_BACKOFF_S"))
    next_delay = None
    if code is not None and 200 <= code < 300:
        status = "succeeded"
    elif code == 410:
        status = "failed"
        error = "the endpoint answered 410 Gone; it is disabled until a delivery to it is resent"
    elif delivery.attempts < len(delays) and keys:
        status = "pending"
        next_delay = _jittered(delays[delivery.attempts], ctx.setting("CLEARCUT_WEBHOOK_JITTER"))
        if retry_after is not None:
            next_delay = max(next_delay, retry_after)
        if code is not None and 300 <= code < 400:
            error = f"redirects are not followed (HTTP {code}); configure the final URL"
    else:
        status = "failed"
    next_at = finished + timedelta(seconds=next_delay) if next_delay is not None else None
    with ctx.db.begin() as session:
        session.add(WebhookAttempt(delivery_id=delivery_id, number=number, started_at=now, duration_ms=duration,
                                   status_code=code, error=error, response_excerpt=excerpt, next_attempt_at=next_at))
        session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id,
                                                      WebhookDelivery.status == "sending")
                        .values(status=status, next_attempt_at=next_at, last_status_code=code, last_error=error,
                                locked_until=None, finished_at=finished if status != "pending" else None))
        if code == 410:
            endpoint = _endpoint(session, delivery.account_id, delivery.url)
            endpoint.disabled_at, endpoint.disabled_reason = finished, "410 Gone"
    return status, next_delay


def post(url: str, body: bytes, headers: dict, *, timeout: float | None = None) -> tuple[int, str, str | None]:
    """POST through the SSRF guard without following redirects; (status, body excerpt, Retry-After).
    ``timeout``: seconds, CLEARCUT_WEBHOOK_TIMEOUT_S unless given."""
    import urllib3

    from clearcut import netguard

    if timeout is None:
        timeout = config.get("CLEARCUT_WEBHOOK_TIMEOUT_S")
    pool, path, host_header = netguard.pinned_pool(url, timeout)
    try:
        response = pool.urlopen("POST", path, body=body, redirect=False, preload_content=False, headers={
            "Host": host_header, "User-Agent": "Clearcut-Webhooks/1.0", "Content-Type": "application/json",
            **headers})
        try:
            excerpt = response.read(1024, decode_content=False).decode("utf-8", "replace")
        finally:
            response.release_conn()
        return response.status, excerpt, response.headers.get("Retry-After")
    except urllib3.exceptions.TimeoutError:
        raise ClearcutError(f"no answer within {timeout:g} s", code="webhook_timeout") from None
    except urllib3.exceptions.HTTPError as exc:
        raise ClearcutError(f"connection failed ({type(exc).__name__})", code="webhook_unreachable") from None
    finally:
        pool.close()


def resend(session: Session, account_id: str, delivery_id: str, job_id: str | None = None) -> WebhookDelivery:
    """Queue a delivery again (same message id, a full retry schedule) and re-enable its endpoint."""
    from clearcut.errors import NotFound

    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.account_id != account_id or (job_id and delivery.job_id != job_id):
        raise NotFound(f"no webhook delivery {delivery_id!r} for this job", code="delivery_not_found")
    if delivery.status == "sending":
        raise ClearcutError("this delivery is being attempted right now; retry in a few seconds",
                            code="delivery_in_progress", status=409)
    endpoint = _endpoint(session, account_id, delivery.url)
    endpoint.disabled_at = endpoint.disabled_reason = None
    delivery.status, delivery.attempts, delivery.next_attempt_at = "pending", 0, utcnow()
    delivery.finished_at = delivery.last_error = None
    session.flush()
    return delivery


def delivery_view(delivery: WebhookDelivery, attempts: list[WebhookAttempt]) -> dict:
    iso = (lambda d: d.isoformat() if d else None)
    return {"id": delivery.id, "event": delivery.event, "url": delivery.url, "status": delivery.status,
            "created_at": iso(delivery.created_at), "next_attempt_at": iso(delivery.next_attempt_at),
            "finished_at": iso(delivery.finished_at), "last_status_code": delivery.last_status_code,
            "last_error": delivery.last_error, "payload": json.loads(delivery.payload),
            "attempts": [{"number": a.number, "started_at": iso(a.started_at), "duration_ms": a.duration_ms,
                          "status_code": a.status_code, "error": a.error, "response_excerpt": a.response_excerpt,
                          "next_attempt_at": iso(a.next_attempt_at)} for a in attempts]}
