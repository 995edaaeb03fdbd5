"""Worker-side dispatch: send job and webhook-delivery tasks that the domain layer asked for."""
from __future__ import annotations

from celery import Celery

from worker.queues import WEBHOOK_QUEUE

# Retries due sooner than this are scheduled with a countdown; later ones wait for the sweeper (a long
# ETA would outlive the broker's visibility timeout and be redelivered early).
COUNTDOWN_LIMIT_S = 60.0


def send_deliveries(app: Celery, ids) -> None:
    for delivery_id in dict.fromkeys(ids or ()):
        app.send_task("clearcut.deliver_webhook", args=[delivery_id], queue=WEBHOOK_QUEUE)


def send_jobs(app: Celery, items) -> None:
    """(job id, queue, priority) triples; API priority 9 is the most urgent, Redis serves 0 first."""
    for job_id, queue, priority in items:
        app.send_task("clearcut.process_job", args=[job_id], queue=queue, priority=9 - max(0, min(9, priority)))


def due_for_job(ctx, job_id: str) -> list[str]:
    """Webhook messages of this job and of its batch that are ready to send."""
    from clearcut import webhooks
    from clearcut.db.models import Job

    with ctx.db() as session:
        job = session.get(Job, job_id)
        batch_id = job.batch_id if job else None
    return webhooks.due(ctx, job_id=job_id, batch_id=batch_id)


def queue_depth(app: Celery, queue: str) -> int:
    """Messages waiting in ``queue`` (all priorities); 0 when the queue does not exist yet."""
    try:
        with app.connection_for_read() as conn:
            channel = conn.default_channel
            size = getattr(channel, "_size", None)  # Redis: every priority list (a passive declare misses the
            if size is not None:                    # key prefix and finds no queue)
                return int(size(queue))
            return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except Exception:  # noqa: BLE001 - a missing queue is an empty one
        return 0


def broker_emptied() -> bool:
    """True when the broker holds no marker key: it restarted without persistence or was flushed since
    the last sweep (or this is the first sweep ever). Sets the marker, so exactly one sweeper acts."""
    from redis.exceptions import RedisError

    from clearcut import config
    from worker.context import _redis_client

    try:
        return bool(_redis_client().set(f"{config.get('CLEARCUT_BROKER_PREFIX')}clearcut:broker-marker", "1",
                                        nx=True))
    except RedisError:
        return False  # the broker is away: nothing can be sent now anyway
