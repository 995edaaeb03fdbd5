"""Idempotency keys: the same key and request within the TTL gets the original response again.

A key is claimed by inserting its row (``pending``) before the request runs — the unique constraint
makes two concurrent requests with one key collide instead of both running — then the response is
stored on it (``done``). The same key with a different request fingerprint is a 409
``idempotency_conflict``; a key whose request is still running is a 409 ``idempotency_in_progress``.
Responses that must not stick (5xx, 429) release the key so the client can retry with it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta, timezone

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from clearcut.context import Context
from clearcut.db.models import IdempotencyKey, utcnow
from clearcut.errors import ClearcutError

PENDING_STALE_S = 300  # a pending key older than this belongs to a request that died


class IdempotencyError(ClearcutError):
    status = 409
    code = "idempotency_conflict"


@dataclass
class Stored:
    status_code: int
    headers: dict
    body: bytes


def validate(key: str) -> str:
    if not key or len(key) > 255 or not key.isprintable():
        raise ClearcutError("Idempotency-Key must be 1-255 printable characters (a UUID is a good choice)",
                            code="invalid_idempotency_key", status=400)
    return key


def begin(ctx: Context, account_id: str, key: str, fingerprint: str) -> Stored | int:
    """The stored response to replay, or the id of the newly claimed row (run the request)."""
    now = utcnow()
    ttl = timedelta(hours=ctx.setting("CLEARCUT_IDEMPOTENCY_TTL_H"))
    with ctx.db.begin() as session:
        row = session.scalar(select(IdempotencyKey).where(IdempotencyKey.account_id == account_id,
                                                          IdempotencyKey.key == key))
        if row is not None:
            created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=timezone.utc)
            stale = row.state == "pending" and (now - created).total_seconds() > PENDING_STALE_S
            if created < now - ttl or stale:
                session.delete(row)
                session.flush()
                row = None
    if row is not None:
        return _existing(row, fingerprint)
    try:
        with ctx.db.begin() as session:
            row = IdempotencyKey(account_id=account_id, key=key, fingerprint=fingerprint, created_at=now)
            session.add(row)
            session.flush()
            return row.id
    except IntegrityError:
        with ctx.db() as session:
            row = session.scalar(select(IdempotencyKey).where(IdempotencyKey.account_id == account_id,
                                                              IdempotencyKey.key == key))
        if row is None:
            raise IdempotencyError("the Idempotency-Key is in use by a concurrent request; retry shortly",
                                   code="idempotency_in_progress", retry_after=1) from None
        return _existing(row, fingerprint)


def _existing(row: IdempotencyKey, fingerprint: str) -> Stored:
    if row.fingerprint != fingerprint:
        raise IdempotencyError("this Idempotency-Key was already used with a different request; use a new key "
                               "for a new request", key=row.key)
    if row.state != "done":
        raise IdempotencyError("the first request with this Idempotency-Key is still running; retry shortly",
                               code="idempotency_in_progress", retry_after=1)
    return Stored(row.status_code, row.headers or {}, row.body or b"")


def finish(ctx: Context, row_id: int, status_code: int, headers: dict, body: bytes) -> None:
    with ctx.db.begin() as session:
        session.execute(update(IdempotencyKey).where(IdempotencyKey.id == row_id)
                        .values(state="done", status_code=status_code, headers=headers, body=body))


def release(ctx: Context, row_id: int) -> None:
    with ctx.db.begin() as session:
        session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == row_id))
