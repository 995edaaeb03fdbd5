"""Flask app factory. Importing this package has no side effects and never loads ONNX Runtime;
connections are made on first use (``create_app`` itself connects to nothing)."""
from __future__ import annotations

import os
import threading
from typing import Callable, Mapping

from flask import Flask, g


def _lazy(factory: Callable[[], object]) -> Callable[[], object]:
    """A thread-safe, build-once accessor (clients are created on first request, not at import)."""
    lock, box = threading.Lock(), []

    def get():
        if not box:
            with lock:
                if not box:
                    box.append(factory())
        return box[0]
    return get


class _LazyContext:
    """Proxy for ``clearcut.context.Context`` that builds it on first attribute access."""

    def __init__(self, env: Mapping[str, str]):
        from clearcut.context import Context

        self._get = _lazy(lambda: Context.from_env(env))

    def __getattr__(self, name):
        return getattr(self._get(), name)


def create_app(settings: Mapping[str, str] | None = None) -> Flask:
    """Build the WSGI app. ``settings``: CLEARCUT_* values that override the environment."""
    from app import (batches_api, compat, console, errors, imports_api, jobs_api, metrics, openapi, v2,
                     webhooks_api)
    from app.health import HealthChecks, bp as health_bp
    from clearcut import config
    from clearcut.endpoints import redis_client

    app = Flask(__name__)
    env = {**os.environ, **(settings or {})}
    app.config["CLEARCUT_SETTINGS"] = env
    # Slightly above the image cap so multipart overhead never turns a valid upload into a 413.
    app.config["MAX_CONTENT_LENGTH"] = int(config.get("CLEARCUT_MAX_UPLOAD_MB", env) * 1024 * 1024 * 1.4) + 65536
    app.extensions["clearcut_health"] = HealthChecks(env)
    app.extensions["clearcut_context"] = _LazyContext(env)

    def _celery():
        from worker.celery_app import create_celery

        return create_celery(environ=env)

    app.extensions["clearcut_redis"] = _lazy(lambda: redis_client(env))
    app.extensions["clearcut_celery"] = _lazy(_celery)
    errors.install(app)
    metrics.install(app, env)  # JSON logs with request ids, request metrics, GET /metrics
    for blueprint in (health_bp, v2.bp, jobs_api.bp, batches_api.bp, imports_api.bp, webhooks_api.bp,
                      compat.bp,     # vendor drop-in routes
                      console.bp,    # web console at /console
                      openapi.bp):   # GET /v2/openapi.json
        app.register_blueprint(blueprint)

    @app.after_request
    def _rate_headers(response):
        for name, value in (g.get("rate_headers") or {}).items():
            response.headers[name] = value
        return response

    return app
