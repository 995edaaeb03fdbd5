"""Task definitions. Tasks stay thin: decode arguments, call into ``clearcut``, return JSON."""
from __future__ import annotations

from celery import Celery

# Faults worth retrying (storage or database briefly away); bad input is never retried.
MAX_RETRIES = 10  # with the back-off below: about 5 minutes of storage/database outage tolerated


def register(app: Celery) -> None:
    """Attach the tasks to ``app`` (per app, so building an app has no global side effects)."""

    @app.task(name="clearcut.ping", bind=True)
    def ping(self) -> dict:
        from worker.info import worker_info

        queue = (self.request.delivery_info or {}).get("routing_key")
        return worker_info([queue] if queue else None)

    @app.task(name="clearcut.retention")
    def retention() -> int:
        from clearcut.jobs import retention as policy
        from worker.context import context

        return policy.sweep(context())

    @app.task(name="clearcut.process_job", bind=True, max_retries=MAX_RETRIES)
    def process_job(self, job_id: str) -> str:
        from sqlalchemy.exc import OperationalError

        from clearcut import jobs
        from clearcut.storage.errors import StorageError
        from worker.context import announce_finished, context
        from worker.webhooks import due_for_job, send_deliveries

        try:
            status = jobs.process(context(), job_id, owner=self.request.id)
        except (StorageError, OperationalError) as exc:
            if self.request.retries >= MAX_RETRIES:
                jobs.finish_failed(context(), job_id, "transient_failure_exhausted",
                                   f"storage or database unavailable after {MAX_RETRIES} retries; replay the job",
                                   503)
                announce_finished(job_id)
                send_deliveries(app, due_for_job(context(), job_id))
                return "failed"
            countdown = min(60, 2 ** self.request.retries)
            jobs.hold_for_retry(context(), job_id, countdown)
            raise self.retry(exc=exc, countdown=countdown)
        announce_finished(job_id)
        send_deliveries(app, due_for_job(context(), job_id))
        return status

    @app.task(name="clearcut.deliver_webhook", bind=True)
    def deliver_webhook(self, delivery_id: str) -> str:
        from clearcut import webhooks
        from worker.context import context
        from worker.webhooks import COUNTDOWN_LIMIT_S

        status, delay = webhooks.deliver(context(), delivery_id)
        if status == "pending" and delay is not None and delay <= COUNTDOWN_LIMIT_S:
            self.apply_async(args=[delivery_id], countdown=delay, queue=self.request.delivery_info.get(
                "routing_key") or "webhooks")
        return status

    @app.task(name="clearcut.sweep")
    def sweep() -> dict:
        from clearcut.jobs import sweeper
        from worker.context import context
        from worker.webhooks import broker_emptied, queue_depth, send_deliveries, send_jobs

        result = sweeper.sweep(context(), queue_depth=lambda queue: queue_depth(app, queue),
                               broker_emptied=broker_emptied)
        send_jobs(app, result.requeued)
        send_deliveries(app, result.deliveries)
        return {"requeued": len(result.requeued), "failed": len(result.failed),
                "deliveries": len(result.deliveries), "batches_completed": len(result.batches_completed)}
