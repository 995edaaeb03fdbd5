"""API observability: Prometheus ``/metrics``, one JSON access-log line per request, and the
request id bound to every log line written while a request is served.

Metrics (prefixed ``clearcut_``):
  http_requests_total{method,route,status}       requests by route template (``/v2/jobs/<job_id>``)
  http_request_duration_seconds{method,route}    latency histogram
  cache_lookups_total{result}                    POST /v2 answered from the result cache (hit) or a model (miss)
  queue_depth{queue}                             Redis LLEN of each Celery queue, read at scrape time
With several gunicorn workers set PROMETHEUS_MULTIPROC_DIR (deploy/gunicorn.conf.py does) so each
scrape sums every worker process.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Mapping

from flask import Flask, Response, current_app, g, request

log = logging.getLogger("clearcut.access")
_lock = threading.Lock()
_metrics: dict | None = None
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def metrics() -> dict:
    global _metrics
    with _lock:
        if _metrics is None:
            from prometheus_client import Counter, Histogram

            _metrics = {
                "requests": Counter("clearcut_http_requests_total", "HTTP requests by route and status.",
                                    ["method", "route", "status"]),
                "latency": Histogram("clearcut_http_request_duration_seconds", "HTTP request latency by route.",
                                     ["method", "route"], buckets=BUCKETS),
                "cache": Counter("clearcut_cache_lookups_total",
                                 "POST /v2 results served from the cache (hit) or computed (miss).", ["result"]),
            }
        return _metrics


def _registry_output(queue_registry) -> bytes:
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        base = CollectorRegistry()
        multiprocess.MultiProcessCollector(base)
    else:
        base = REGISTRY
    return generate_latest(base) + generate_latest(queue_registry)


def _cache_hit(job_id: str) -> bool | None:
    from sqlalchemy import select

    from clearcut.db.models import Job

    with current_app.extensions["clearcut_context"].db() as session:
        return session.scalar(select(Job.cache_hit).where(Job.id == job_id))


def install(app: Flask, env: Mapping[str, str]) -> None:
    """Configure logging, count every request, and serve ``GET /metrics`` and ``GET /livez``."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

    from app.errors import request_id
    from clearcut.logging import bind, configure, unbind
    from worker.metrics import QueueDepthCollector

    configure(env)
    queues = CollectorRegistry(auto_describe=False)
    queues.register(QueueDepthCollector(env))
    metrics()

    @app.before_request
    def _start():
        g.metrics_started = time.perf_counter()
        g.log_tokens = bind(request_id=request_id())

    @app.after_request
    def _record(response):
        started = g.pop("metrics_started", None)
        if started is None:
            return response
        seconds = time.perf_counter() - started
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        m = metrics()
        m["requests"].labels(request.method, route, str(response.status_code)).inc()
        m["latency"].labels(request.method, route).observe(seconds)
        job_id = response.headers.get("X-Job-ID")
        if request.endpoint == "v2.remove_background" and response.status_code == 200 and job_id:
            try:
                hit = _cache_hit(job_id)
                m["cache"].labels("hit" if hit else "miss").inc()
            except Exception:  # noqa: BLE001 - a metric is not worth failing the response
                log.exception("could not read the job's cache flag")
        if route not in ("/metrics", "/livez"):
            log.info("%s %s %s", request.method, request.path, response.status_code,
                     extra={"method": request.method, "route": route, "status": response.status_code,
                            "duration_ms": round(seconds * 1000, 1), "job_id": job_id})
        return response

    @app.teardown_request
    def _unbind(_exc=None):
        tokens = g.pop("log_tokens", None)
        if tokens:
            unbind(tokens)

    @app.get("/livez")
    def livez():
        """Liveness: the process serves requests (dependencies are /v2/health's business)."""
        return Response("ok\n", mimetype="text/plain")

    @app.get("/metrics")
    def prometheus_metrics():
        return Response(_registry_output(queues), mimetype=CONTENT_TYPE_LATEST.split(";")[0],
                        headers={"Content-Type": CONTENT_TYPE_LATEST})
