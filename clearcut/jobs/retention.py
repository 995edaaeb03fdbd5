"""Retention: delete stored originals and results past ``expires_at`` (CLEARCUT_RETENTION_HOURS after
their last use); the asset rows stay, marked deleted, and job rows keep their full history."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from clearcut.context import Context
from clearcut.db.models import Asset, utcnow


def sweep(ctx: Context, *, now: datetime | None = None, batch: int = 500) -> int:
    """Delete expired objects; returns how many assets were expired. Safe to run concurrently: an
    object shared by several rows (same content) is deleted only when no live row still needs it."""
    now = now or utcnow()
    expired = 0
    with ctx.db.begin() as session:
        rows = session.scalars(select(Asset).where(Asset.deleted_at.is_(None), Asset.expires_at < now)
                               .limit(batch)).all()
        for asset in rows:
            still_needed = session.scalar(select(Asset.id).where(
                Asset.storage_key == asset.storage_key, Asset.id != asset.id, Asset.deleted_at.is_(None),
                Asset.expires_at >= now).limit(1))
            if still_needed is None:
                ctx.storage.delete(asset.storage_key)
            asset.deleted_at = now
            expired += 1
    return expired
