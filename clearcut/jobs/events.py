"""What happens when a job reaches a terminal state: its webhook event, and its batch's completion.

Both are recorded in SQL (``webhook_deliveries``); the caller dispatches the returned delivery ids
after its commit.
"""
from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from clearcut import webhooks
from clearcut.context import Context
from clearcut.db.models import Batch, Job, utcnow
from clearcut.jobs.results import ACTIVE, STATUSES


def on_terminal(ctx: Context, session: Session, job: Job) -> list[str]:
    """Record the job's webhook event (inside the transaction that made it terminal)."""
    if not job.webhook_url or job.status not in ("succeeded", "failed"):
        return []
    delivery = webhooks.emit(session, account_id=job.account_id, event=f"job.{job.status}", url=job.webhook_url,
                             data=webhooks.job_payload(job, ctx.setting("CLEARCUT_PUBLIC_URL")), job_id=job.id)
    return [delivery.id]


def check_batch_complete(ctx: Context, batch_id: str | None) -> list[str]:
    """Mark the batch completed once none of its jobs is active; returns its event's delivery ids.
    Runs in its own transaction, after the finishing job's commit, and completes a batch only once."""
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
        data = batch_payload(batch, counts(session, batch_id), ctx.setting("CLEARCUT_PUBLIC_URL"))
        delivery = webhooks.emit(session, account_id=batch.account_id, event="batch.completed",
                                 url=batch.webhook_url, data=data, batch_id=batch_id)
        return [delivery.id]


def counts(session: Session, batch_id: str) -> dict[str, int]:
    """The batch's jobs by status (a GROUP BY, so the counts cannot drift), and ``needs_review``: its
    succeeded jobs flagged for review (a subset of ``succeeded``)."""
    found = dict(session.execute(select(Job.status, func.count()).where(Job.batch_id == batch_id)
                                 .group_by(Job.status)).all())
    flagged = session.scalar(select(func.count()).select_from(Job).where(
        Job.batch_id == batch_id, Job.status == "succeeded", Job.needs_review.is_(True)))
    return {**{status: int(found.get(status, 0)) for status in STATUSES}, "needs_review": int(flagged or 0)}


def batch_payload(batch: Batch, tally: dict[str, int], base: str) -> dict:
    """Thin data for the batch.completed webhook (URLs under ``base``, CLEARCUT_PUBLIC_URL)."""
    return {"id": batch.id, "object": "batch", "status": batch.status, "counts": tally, "total": batch.total,
            "metadata": batch.meta, "status_url": webhooks.public_url(base, f"/v2/batches/{batch.id}")}
