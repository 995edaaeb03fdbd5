"""Task definitions. Tasks stay thin: decode arguments, call into ``clearcut``, return JSON."""
from __future__ import annotations

from celery import Celery


def register(app: Celery) -> None:
    """Attach the tasks to ``app`` (per app, so building an app has no global side effects)."""

    @app.task(name="clearcut.ping", bind=True)
    def ping(self) -> dict:
        from worker.info import worker_info

        queue = (self.request.delivery_info or {}).get("routing_key")
        return worker_info([queue] if queue else None)
