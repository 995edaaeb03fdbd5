"""The sweeper (run on a Celery beat schedule): nothing is lost.

* Processing jobs whose lease ran out (their worker died: ``clearcut.jobs.leases``) or that are past
  ``deadline_at`` are re-enqueued.
* Queued jobs whose message is gone are re-enqueued: all of them at once when the broker lost its
  keys (``broker_emptied``: a restart without persistence, a FLUSHDB), and otherwise those queued for
  longer than ``CLEARCUT_JOB_LEASE_S`` (or past their deadline) in a queue that is empty
  (``queue_depth``): behind a long batch a job is merely waiting, not lost.
* Re-enqueued jobs get a fresh deadline, until ``CLEARCUT_JOB_MAX_ATTEMPTS`` attempts or re-enqueues;
  then they fail with ``max_attempts_exceeded`` (and can be replayed). They are sent interactive
  queues first, then by priority, then oldest first.
* Batches whose jobs are all finished but that are still marked processing get completed.
* Webhook deliveries that are due (retries, or a message that was lost) are returned for dispatch.
* Idempotency keys older than ``CLEARCUT_IDEMPOTENCY_TTL_H`` are deleted.

Every step is a conditional update, so two sweepers running at once do no harm.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import delete, or_, select, update

from clearcut import webhooks
from clearcut.context import Context
from clearcut.db.models import Batch, IdempotencyKey, Job, utcnow
from clearcut.jobs.events import check_batch_complete
from clearcut.jobs.processing import finish_failed

QUEUE_RANK = {"batch": 1}  # sent after the interactive queues (cpu, gpu)


@dataclass
class SweepResult:
    requeued: list[tuple[str, str, int]] = field(default_factory=list)  # (job id, queue, priority)
    failed: list[str] = field(default_factory=list)
    deliveries: list[str] = field(default_factory=list)
    batches_completed: list[str] = field(default_factory=list)
    idempotency_keys_deleted: int = 0


def _order(items: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    return sorted(items, key=lambda item: (QUEUE_RANK.get(item[1], 0), -item[2]))  # stable: oldest first


def sweep(ctx: Context, *, now: datetime | None = None, limit: int = 1000,
          queue_depth: Callable[[str], int] | None = None,
          broker_emptied: Callable[[], bool] | None = None) -> SweepResult:
    """One pass. ``queue_depth(queue)`` gives the broker's message count (None: queues are treated as
    empty, and queued jobs are only re-enqueued at their deadline); ``broker_emptied()`` says whether
    the broker lost its keys since it was last asked (then every queued job is sent again)."""
    now = now or utcnow()
    depths: dict[str, int] = {}
    out = SweepResult()
    max_attempts = ctx.setting("CLEARCUT_JOB_MAX_ATTEMPTS")
    deadline = timedelta(seconds=ctx.setting("CLEARCUT_JOB_DEADLINE_S"))
    waited = now - timedelta(seconds=ctx.setting("CLEARCUT_JOB_LEASE_S"))
    emptied = broker_emptied() if broker_emptied is not None else False
    if emptied:  # every message is gone: send each queued job again, rows untouched (claims are conditional)
        with ctx.db() as session:
            out.requeued += _order(session.execute(
                select(Job.id, Job.queue, Job.priority).where(Job.status == "queued")
                .order_by(Job.priority.desc(), Job.queued_at, Job.id)).all())
    lost_message = Job.deadline_at < now
    if queue_depth is not None and not emptied:
        lost_message = or_(lost_message, Job.queued_at < waited)
    expired = or_(Job.deadline_at < now, Job.lease_expires_at < now)
    with ctx.db() as session:
        stuck = session.execute(select(Job.id, Job.status, Job.attempts, Job.sweeps, Job.queue, Job.priority)
                                .where(or_((Job.status == "processing") & expired,
                                           (Job.status == "queued") & lost_message))
                                .order_by(Job.queued_at, Job.id).limit(limit)).all()
    swept: list[tuple[str, str, int]] = []
    for job_id, status, attempts, sweeps, queue, priority in stuck:
        if status == "queued" and (emptied or queue_depth is not None):
            if emptied:
                continue  # sent again above
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
                                                      expired if status == "processing" else lost_message)
                                    .values(status="queued", sweeps=Job.sweeps + 1, queued_at=now,
                                            deadline_at=now + deadline, lease_owner=None,
                                            lease_expires_at=None)).rowcount
        if moved:
            swept.append((job_id, queue, priority))
    out.requeued += _order(swept)
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
