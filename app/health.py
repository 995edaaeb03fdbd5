"""Readiness report: one check per dependency, run concurrently, each bounded by
CLEARCUT_HEALTH_TIMEOUT, so a dead dependency costs about one timeout, not one per check.

The answer is 200 ``{"status": "ok"}`` only when the database, the broker, the object store and
at least one worker all answer; otherwise 503 ``{"status": "degraded"}`` with the failing check
marked ``"down"`` and its error, so an operator sees which dependency to fix.
"""
from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Mapping

from flask import Blueprint, current_app, jsonify

from clearcut import config

bp = Blueprint("health", __name__)


def _redact(url: str) -> str:
    """The URL without its password (health output may be seen by anyone who can reach it)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy understands
        return url.split("@")[-1]


class HealthChecks:
    """Lazily built clients for each dependency, shared across requests (built once, reused)."""

    def __init__(self, environ: Mapping[str, str]):
        from clearcut.endpoints import database_url, redis_url

        self.env = dict(environ)
        self.timeout = config.get("CLEARCUT_HEALTH_TIMEOUT", self.env)
        self.database_url = database_url(self.env)
        self.redis_url = redis_url(self.env)
        self._lock = threading.Lock()
        self._engine = self._storage = self._celery = None

    # -- lazily created clients -------------------------------------------------------------

    def engine(self):
        with self._lock:
            if self._engine is None:
                import sqlalchemy

                url = sqlalchemy.engine.make_url(self.database_url)
                if url.get_backend_name() == "sqlite":
                    args = {"timeout": self.timeout}
                elif url.get_backend_name() == "postgresql":
                    args = {"connect_timeout": max(1, math.ceil(self.timeout))}
                else:
                    args = {}
                self._engine = sqlalchemy.create_engine(url, pool_pre_ping=True, connect_args=args)
            return self._engine

    def storage(self):
        with self._lock:
            if self._storage is None:
                from clearcut.storage import from_settings

                self._storage = from_settings(self.env, connect_timeout=self.timeout,
                                              read_timeout=self.timeout, max_attempts=1)
            return self._storage

    def celery(self):
        with self._lock:
            if self._celery is None:
                from worker.celery_app import create_celery

                self._celery = create_celery(self.redis_url, environ=self.env)
            return self._celery

    # -- checks: return details, raise on failure --------------------------------------------

    def check_database(self) -> dict:
        import sqlalchemy

        with self.engine().connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
        return {"backend": self.engine().url.get_backend_name(), "url": _redact(self.database_url)}

    def check_broker(self) -> dict:
        import redis

        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=self.timeout,
                                      socket_timeout=self.timeout)
        try:
            client.ping()
        finally:
            client.close()
        return {"url": _redact(self.redis_url)}

    def check_storage(self) -> dict:
        return self.storage().check()

    def check_worker(self) -> dict:
        """Ask every worker for ``clearcut_info`` (a control command the worker's main process
        answers even while busy) and wait ``timeout`` seconds for the replies."""
        replies = self.celery().control.broadcast("clearcut_info", reply=True, timeout=self.timeout)
        workers = [{"name": name, **(reply if isinstance(reply, dict) else {"reply": reply})}
                   for answer in replies or [] for name, reply in answer.items()]
        if not workers:
            raise RuntimeError(f"no worker answered within {self.timeout:g}s "
                               f"(is `celery -A worker.celery_app worker` running?)")
        return {"workers": sorted(workers, key=lambda w: w["name"])}

    # -- the report ---------------------------------------------------------------------------

    def report(self) -> dict:
        def broker_then_worker() -> tuple[dict, dict]:
            broker = _run(self.check_broker)
            if broker["status"] != "ok":
                return broker, {"status": "down", "error": "skipped: the broker is down"}
            return broker, _run(self.check_worker)

        # Build the clients (imports included, no I/O) in this thread: concurrent first imports of
        # the same packages from several threads can fail with partially initialised modules.
        for build in (self.engine, self.storage, self.celery):
            try:
                build()
            except Exception:  # noqa: BLE001 - the check itself reports the failure
                pass
        import redis  # noqa: F401

        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="health") as pool:
            database = pool.submit(_run, self.check_database)
            storage = pool.submit(_run, self.check_storage)
            broker_worker = pool.submit(broker_then_worker)
            broker, worker = broker_worker.result()
            checks = {"database": database.result(), "broker": broker, "storage": storage.result(),
                      "worker": worker}
        healthy = all(c["status"] == "ok" for c in checks.values())
        return {"status": "ok" if healthy else "degraded", "checks": checks}


def _run(check: Callable[[], dict]) -> dict:
    started = time.perf_counter()
    try:
        details = check()
        result = {"status": "ok", **details}
    except Exception as exc:  # noqa: BLE001 - every failure is reported, none is raised
        result = {"status": "down", "error": f"{type(exc).__name__}: {exc}"[:500]}
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


@bp.get("/")
@bp.get("/health")
@bp.get("/v2/health")
def health():
    report = current_app.extensions["clearcut_health"].report()
    return jsonify(report), (200 if report["status"] == "ok" else 503)
