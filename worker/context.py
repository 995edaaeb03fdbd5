"""The worker process's ``Context`` (database + storage) and Redis client, built once on first use."""
from __future__ import annotations

import logging
import threading

from clearcut.context import Context

log = logging.getLogger(__name__)
_lock = threading.Lock()
_context: Context | None = None
_redis = None


def context() -> Context:
    global _context
    with _lock:
        if _context is None:
            _context = Context.from_env()
        return _context


def _redis_client():
    global _redis
    with _lock:
        if _redis is None:
            from clearcut.endpoints import redis_client

            _redis = redis_client()
        return _redis


def announce_finished(job_id: str) -> None:
    """Wake a sync request waiting on ``job_id`` (``clearcut.notify``). Best effort: the job row is
    already committed, and a waiter that misses this reads it within one wait slice anyway."""
    from redis.exceptions import RedisError

    from clearcut import notify

    try:
        notify.announce(_redis_client(), job_id)
    except RedisError as exc:
        log.warning("could not announce job %s as finished: %s", job_id, exc)
