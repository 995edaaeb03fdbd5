"""SQLAlchemy 2 tables: accounts, API keys, assets, jobs, usage, batches, idempotency keys and webhooks.

The job row, not the queue, is the source of truth: its status moves queued -> processing ->
succeeded|failed (or canceled) only through conditional updates in ``clearcut.jobs``, and usage has
one row per job (a unique constraint), so a duplicate delivery can never charge twice.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

from sqlalchemy import (JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String, Text,
                        UniqueConstraint, false)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict: JSON}


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("acct"))
    name: Mapped[str] = mapped_column(String(200), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    plan: Mapped[str] = mapped_column(String(40), default="self-hosted")
    status: Mapped[str] = mapped_column(String(20), default="active")  # active | inactive
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("key"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the secret; never the key
    fingerprint: Mapped[str] = mapped_column(String(40), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16), default="live")  # live | admin | synthetic
    label: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class Asset(Base):
    __tablename__ = "assets"
    __table_args__ = (UniqueConstraint("account_id", "storage_key", name="uq_asset_account_key"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("asset"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # original | result
    storage_key: Mapped[str] = mapped_column(String(300))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    content_type: Mapped[str] = mapped_column(String(80))
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(index=True)
    deleted_at: Mapped[datetime | None]


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("job"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    api_key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    request_id: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(32), default="v2")  # route that created it
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    options: Mapped[dict] = mapped_column(JSON)
    queue: Mapped[str] = mapped_column(String(16), default="cpu")
    input_asset_id: Mapped[str | None] = mapped_column(ForeignKey("assets.id", ondelete="SET NULL"))
    result_asset_id: Mapped[str | None] = mapped_column(ForeignKey("assets.id", ondelete="SET NULL"))
    result_key: Mapped[str | None] = mapped_column(String(300))
    content_type: Mapped[str | None] = mapped_column(String(80))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_status: Mapped[int | None] = mapped_column(Integer)  # the HTTP status the error maps to
    error_message: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict | None] = mapped_column(JSON)  # pipeline metadata: size, boxes, models, timings
    cache_hit: Mapped[bool] = mapped_column(Boolean, default=False)
    # Review queue: the cutout's confidence (estimated IoU, clearcut.pipeline.confidence), whether it is
    # below the job's review threshold, and when someone accepted it (which clears needs_review)
    confidence: Mapped[float | None] = mapped_column(Float, index=True)
    needs_review: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false(), index=True)
    accepted_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    deadline_at: Mapped[datetime | None]
    # Async jobs and batches
    batch_id: Mapped[str | None] = mapped_column(
        ForeignKey("batches.id", ondelete="SET NULL", name="fk_jobs_batch_id_batches"), index=True)
    external_id: Mapped[str | None] = mapped_column(String(200))   # the catalog's SKU, echoed back
    meta: Mapped[dict | None] = mapped_column("metadata", JSON)      # caller's small JSON object, echoed
    webhook_url: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(Integer, default=5, server_default="5")  # 0 (lowest)..9 (highest)
    input_spec: Mapped[dict | None] = mapped_column(JSON)  # {"image_url"|"s3_key": ...} fetched by the worker
    output: Mapped[dict | None] = mapped_column(JSON)      # {"prefix": ...}: copy the result there too
    timings: Mapped[dict | None] = mapped_column(JSON)     # worker stage timings (ms) of the last attempt
    queued_at: Mapped[datetime | None]                     # last (re-)enqueue: creation, replay or sweep
    replays: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    sweeps: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # re-enqueues by the sweeper this run
    canceled_at: Mapped[datetime | None]
    # The running attempt's lease: renewed by its worker while it runs (clearcut.jobs.leases)
    lease_owner: Mapped[str | None] = mapped_column(String(64))      # the Celery task id that claimed it
    lease_expires_at: Mapped[datetime | None]


class Batch(Base):
    """A group of jobs (catalog import); counts are derived from its jobs, never stored twice."""
    __tablename__ = "batches"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("batch"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="processing")  # processing | completed
    options: Mapped[dict | None] = mapped_column(JSON)       # the shared options as sent
    meta: Mapped[dict | None] = mapped_column("metadata", JSON)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    total: Mapped[int] = mapped_column(Integer, default=0)
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None]                      # last (re)start: creation or replay
    completed_at: Mapped[datetime | None]


class IdempotencyKey(Base):
    """One row per (account, Idempotency-Key): the request's fingerprint and the response it got."""
    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("account_id", "key", name="uq_idempotency_account_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | done
    status_code: Mapped[int | None] = mapped_column(Integer)
    headers: Mapped[dict | None] = mapped_column(JSON)
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class WebhookSecret(Base):
    """Signing secrets (``whsec_…``); after a rotation the old one signs too until ``expires_at``."""
    __tablename__ = "webhook_secrets"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("whs"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    secret: Mapped[str] = mapped_column(String(100))  # needed in clear to sign (HMAC), like any shared secret
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]


class WebhookEndpoint(Base):
    """A receiver URL of an account; a 410 answer disables it (an explicit resend re-enables it)."""
    __tablename__ = "webhook_endpoints"
    __table_args__ = (UniqueConstraint("account_id", "url", name="uq_webhook_endpoint_account_url"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("whe"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    disabled_at: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event message (its id is the ``webhook-id`` header, stable across retries)."""
    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("msg"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(40))
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)  # the exact signed body
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|sending|succeeded|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    locked_until: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    duration_ms: Mapped[float | None]
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None]


class Usage(Base):
    __tablename__ = "usage"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    units: Mapped[float] = mapped_column(default=1.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
