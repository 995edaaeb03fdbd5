"""The sweeper (run on a Celery beat schedule): nothing is lost.

* Jobs still queued or processing past ``deadline_at`` (a lost message, a worker killed mid-job, a
  broker restart) are re-enqueued. A queued job counts as lost only when its queue is empty
  (``queue_depth``): behind a long batch it is merely waiting, not lost. They are re-enqueued with a
  fresh deadline, until ``CLEARCUT_JOB_MAX_ATTEMPTS`` attempts or re-enqueues; then they fail with ``max_attempts_exceeded`` (and can be replayed).
* Batches whose jobs are all finished but that are still marked processing get completed.
* Webhook deliveries that are due (retries, or a message that was lost) are returned for dispatch.
* Idempotency keys older than ``CLEARCUT_IDEMPOTENCY_TTL_H`` are deleted.

Every step is a conditional update, so two sweepers running at once do no harm.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import delete, select, update

from clearcut import webhooks
from clearcut.context import Context
from clearcut.db.models import Batch, IdempotencyKey, Job, utcnow
from clearcut.jobs.events import check_batch_complete
from clearcut.jobs.processing import finish_failed
from clearcut.jobs.results import ACTIVE


@dataclass
class SweepResult:
    requeued: list[tuple[str, str, int]] = field(default_factory=list)  # (job id, queue, priority)
    failed: list[str] = field(default_factory=list)
    deliveries: list[str] = field(default_factory=list)
    batches_completed: list[str] = field(default_factory=list)
    idempotency_keys_deleted: int = 0


def sweep(ctx: Context, *, now: datetime | None = None, limit: int = 1000,
          queue_depth: Callable[[str], int] | None = None) -> SweepResult:
    """One pass; ``queue_depth(queue)`` gives the broker's message count (None: treat queues as empty)."""
    now = now or utcnow()
    depths: dict[str, int] = {}
    out = SweepResult()
    max_attempts = ctx.setting("CLEARCUT_JOB_MAX_ATTEMPTS")
    deadline = timedelta(seconds=ctx.setting("CLEARCUT_JOB_DEADLINE_S"))
    with ctx.db() as session:
        stuck = session.execute(select(Job.id, Job.status, Job.attempts, Job.sweeps, Job.queue, Job.priority)
                                .where(Job.status.in_(ACTIVE), Job.deadline_at < now)
                                .order_by(Job.deadline_at).limit(limit)).all()
    for job_id, status, attempts, sweeps, queue, priority in stuck:
        if status == "queued" and queue_depth is not None:
            if queue not in depths:
                depths[queue] = queue_depth(queue)
            if depths[queue] > 0:
                continue  # still waiting its turn
        if max(attempts, sweeps) >= max_attempts:
            message = (f"the job did not finish after {max(attempts, sweeps)} attempts (workers lost or the "
                       "deadline CLEARCUT_JOB_DEADLINE_S too short); replay it with POST /v2/jobs/{id}/replay")
            out.deliveries += finish_failed(ctx, job_id, "max_attempts_exceeded", message.replace(
                "{id}", job_id), 500)
            out.failed.append(job_id)
            continue
        with ctx.db.begin() as session:
            moved = session.execute(update(Job).where(Job.id == job_id, Job.status == status, Job.sweeps == sweeps,
                                                      Job.deadline_at < now)
                                    .values(status="queued", sweeps=Job.sweeps + 1, queued_at=now,
                                            deadline_at=now + deadline)).rowcount
        if moved:
            out.requeued.append((job_id, queue, priority))
    with ctx.db() as session:
        open_batches = list(session.scalars(select(Batch.id).where(Batch.status == "processing").limit(limit)))
    for batch_id in open_batches:
        delivered = check_batch_complete(ctx, batch_id)
        with ctx.db() as session:
            if session.scalar(select(Batch.status).where(Batch.id == batch_id)) == "completed":
                out.batches_completed.append(batch_id)
        out.deliveries += delivered
    out.deliveries += [d for d in webhooks.due(ctx, now=now, limit=limit) if d not in out.deliveries]
    ttl = timedelta(hours=ctx.setting("CLEARCUT_IDEMPOTENCY_TTL_H"))
    with ctx.db.begin() as session:
        out.idempotency_keys_deleted = session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.created_at < now - ttl)).rowcount
    return out
