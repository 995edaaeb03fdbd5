"""Celery signal handlers: provider check at worker start, JSON logging, per-task log ids and metrics.

``connect()`` is called by ``create_celery``; the handlers only act inside ``celery worker`` /
``celery beat`` processes (the signals never fire in an API process that merely sends tasks).
"""
from __future__ import annotations

import logging
import os
import sys
import time

log = logging.getLogger("clearcut.worker")
_connected = False
_running: dict[str, tuple[float, list]] = {}   # task id -> (start, log-context tokens), per pool process
EXIT_PROVIDER_UNAVAILABLE = 78                 # EX_CONFIG: the configuration cannot work on this machine


def connect() -> None:
    global _connected
    if _connected:
        return
    from celery import signals

    signals.setup_logging.connect(_setup_logging, weak=False, dispatch_uid="clearcut-logging")
    signals.worker_init.connect(_worker_init, weak=False, dispatch_uid="clearcut-worker-init")
    signals.task_prerun.connect(_task_prerun, weak=False, dispatch_uid="clearcut-task-prerun")
    signals.task_postrun.connect(_task_postrun, weak=False, dispatch_uid="clearcut-task-postrun")
    signals.worker_process_shutdown.connect(_process_shutdown, weak=False, dispatch_uid="clearcut-proc-down")
    _connected = True


def _setup_logging(loglevel=None, **_kwargs) -> None:
    """Replaces Celery's own logging setup with clearcut's (JSON lines by default)."""
    from clearcut import config
    from clearcut.logging import configure

    # An explicit CLEARCUT_LOG_LEVEL wins over the command line's --loglevel.
    explicit = os.environ.get("CLEARCUT_LOG_LEVEL")
    configure(level=config.get("CLEARCUT_LOG_LEVEL") if explicit or not loglevel else loglevel)


def _default_models_problem() -> str | None:
    """Why the default model(s) cannot be used (missing, altered, unreadable model dir), or None.

    Checked once at start so a broken model dir is one clear refusal, not a worker that accepts jobs
    only to fail every one of them."""
    from clearcut.errors import ModelError
    from clearcut.models.store import ModelStore
    from clearcut.pipeline.segment import resolve_models

    store = ModelStore()
    try:
        for name in resolve_models(None):
            store.path(name)
    except ModelError as exc:
        return exc.message
    except OSError as exc:
        return f"the model directory {store.directory} cannot be read ({exc.strerror}); fix its permissions"
    return None


def _worker_init(sender=None, **_kwargs) -> None:
    """In the worker's parent process, before the pool starts: refuse to run on the wrong provider,
    then start the metrics server if CLEARCUT_WORKER_METRICS_PORT is set."""
    from clearcut import config
    from clearcut.models.session import ProviderUnavailable, startup_check

    if not any(h.get_name() == "clearcut" for h in logging.getLogger().handlers):
        _setup_logging()   # worker_init fires before Celery sets up logging
    requested = config.get("CLEARCUT_EXECUTION_PROVIDER")
    try:
        provider = startup_check(requested)
    except ProviderUnavailable as exc:
        log.critical("worker refuses to start: %s", exc.message)
        print(f"clearcut worker: refusing to start: {exc.message}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_PROVIDER_UNAVAILABLE) from None
    log.info("execution provider %s (CLEARCUT_EXECUTION_PROVIDER=%s)", provider, requested,
             extra={"provider": provider})
    problem = _default_models_problem()
    if problem:
        log.critical("worker refuses to start: %s", problem)
        print(f"clearcut worker: refusing to start: {problem}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_PROVIDER_UNAVAILABLE)
    port = config.get("CLEARCUT_WORKER_METRICS_PORT")
    if port:
        from worker import metrics

        metrics.serve(port, None, provider, requested)
        log.info("metrics on :%d/metrics", port)
        if config.get("CLEARCUT_INFERENCE_BATCH_SIZE") > 1:  # batches run in this process (threads pool)
            from clearcut.models import batching

            batching.OBSERVERS.append(metrics.record_batch)


def _task_prerun(task_id=None, task=None, args=None, **_kwargs) -> None:
    from clearcut.logging import bind

    job_id = args[0] if task is not None and task.name == "clearcut.process_job" and args else None
    tokens = bind(job_id=job_id, request_id=_request_id_of(job_id) if job_id else None)
    _running[task_id] = (time.perf_counter(), tokens)


def _task_postrun(task_id=None, task=None, args=None, retval=None, state=None, **_kwargs) -> None:
    from clearcut.logging import unbind

    started, tokens = _running.pop(task_id, (None, []))
    try:
        if task is not None and task.name == "clearcut.process_job":
            seconds = time.perf_counter() - started if started is not None else None
            queue = ((task.request.delivery_info or {}).get("routing_key") if task.request else None) or "cpu"
            if state == "SUCCESS":
                outcome = retval if isinstance(retval, str) else "succeeded"
            else:
                outcome = {"RETRY": "retry"}.get(state, "error")
            result = _result_of(args[0]) if outcome == "succeeded" and args else None
            from worker.metrics import record_job

            record_job(queue, outcome, seconds, result)
            log.info("job %s", outcome, extra={"duration_ms": round((seconds or 0) * 1000, 1), "queue": queue})
    except Exception:  # noqa: BLE001 - metrics must never fail a task
        log.exception("could not record job metrics")
    finally:
        unbind(tokens)


def _process_shutdown(pid=None, **_kwargs) -> None:
    from worker.metrics import mark_dead

    mark_dead(pid or os.getpid())


def _job_row(job_id: str):
    from clearcut.db.models import Job
    from worker.context import context

    with context().db() as session:
        return session.get(Job, job_id)


def _request_id_of(job_id: str) -> str | None:
    try:
        row = _job_row(job_id)
        return row.request_id if row is not None else None
    except Exception:  # noqa: BLE001 - a log field is not worth failing a task
        return None


def _result_of(job_id: str) -> dict | None:
    row = _job_row(job_id)
    return dict(row.result or {}) if row is not None else None
