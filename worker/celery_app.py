"""Celery app factory and queue discipline.

* Late acks + reject-on-worker-lost + prefetch 1: a task is removed from the queue only after it
  finished, and a worker killed mid-task (OOM, SIGKILL) hands it back instead of losing it.
* Soft/hard time limits bound a stuck inference; the broker visibility timeout is twice the hard
  limit so Redis never redelivers a task that is still legitimately running.
* Declared queues: ``cpu`` (the default, interactive requests), ``gpu`` (GPU workers run with
  ``-Q gpu``), ``batch`` (batch items and async jobs, so a large batch never sits in front of
  interactive requests: a worker consuming ``cpu,batch`` alternates between them) and ``webhooks``
  (deliveries). CPU workers consume ``cpu,batch,webhooks`` (see ``worker.queues.WORKER_QUEUES``).

* Pool: prefork (one model session per process) unless CLEARCUT_INFERENCE_BATCH_SIZE > 1; then the
  ``threads`` pool, so the jobs a GPU worker runs at once share one session per model and its
  micro-batcher can run them as one batch (``worker_pool``). The choice is ``app.conf.worker_pool``,
  which Celery's CLI uses when no ``--pool`` is given, so the images' commands need no change;
  ``--concurrency`` (CLEARCUT_WORKER_CONCURRENCY) is then the number of threads.

``celery -A worker.celery_app worker -Q cpu`` finds the module-level ``celery`` app, built on
first access from the environment (CLEARCUT_REDIS_URL, ...); importing this module connects to
nothing.
"""
from __future__ import annotations

from typing import Mapping

from celery import Celery
from kombu import Queue

from clearcut import config
from worker.queues import DEFAULT_QUEUE, QUEUES

_control_registered = False


def worker_pool(environ: Mapping[str, str] | None = None) -> str:
    """``threads`` when inference batching is on (CLEARCUT_INFERENCE_BATCH_SIZE > 1), else ``prefork``.

    Batching needs several jobs in one process at once; prefork runs each job in its own process with
    its own session, so nothing could be batched. The threads pool gives up Celery's task time limits
    (they need prefork); the sweeper (CLEARCUT_JOB_DEADLINE_S) still re-enqueues a job that never ends.
    Either way a running job renews its lease (CLEARCUT_JOB_LEASE_S), so a dead worker's job is found
    by the sweeper within a lease and a sweep interval.
    """
    return "threads" if config.get("CLEARCUT_INFERENCE_BATCH_SIZE", environ) > 1 else "prefork"


def create_celery(broker_url: str | None = None, *, environ: Mapping[str, str] | None = None,
                  result_backend: str | None = None) -> Celery:
    """A configured Celery app. ``broker_url`` None: the CLEARCUT_REDIS_URL setting (or dev default)."""
    from clearcut.endpoints import redis_url

    env = dict(environ) if environ is not None else None
    broker_url = broker_url or redis_url(env)
    soft = config.get("CLEARCUT_TASK_SOFT_TIME_LIMIT", env)
    hard = max(config.get("CLEARCUT_TASK_TIME_LIMIT", env), soft + 1)
    transport = {
        "visibility_timeout": 2 * hard,
        "socket_connect_timeout": 3,
        "socket_timeout": 10,
    }
    prefix = config.get("CLEARCUT_BROKER_PREFIX", env)
    if prefix:
        transport["global_keyprefix"] = prefix

    app = Celery("clearcut", broker=broker_url, backend=result_backend or broker_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_pool=worker_pool(env),
        task_soft_time_limit=soft,
        task_time_limit=hard,
        broker_transport_options=transport,
        result_backend_transport_options=dict(transport),
        broker_connection_retry_on_startup=True,
        task_queues=[Queue(name, routing_key=name) for name in QUEUES],
        task_default_queue=DEFAULT_QUEUE,
        task_default_routing_key=DEFAULT_QUEUE,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=3600,
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        broker_channel_error_retry=True,
        beat_schedule={
            "retention": {"task": "clearcut.retention", "schedule": 900.0, "options": {"queue": DEFAULT_QUEUE}},
            "sweep": {"task": "clearcut.sweep", "schedule": config.get("CLEARCUT_SWEEP_INTERVAL_S", env),
                      # a sweep that waited longer than an interval behind busy workers is superseded
                      "options": {"queue": DEFAULT_QUEUE,
                                  "expires": config.get("CLEARCUT_SWEEP_INTERVAL_S", env)}},
        },
    )
    from celery.signals import worker_process_init, worker_ready

    from worker import tasks

    tasks.register(app)
    worker_process_init.connect(_warm_models, weak=False, dispatch_uid="clearcut-warm-models")
    worker_ready.connect(_warm_threads_pool, weak=False, dispatch_uid="clearcut-warm-threads-pool")
    from worker import signals  # provider check at start, JSON logs, per-task log ids and metrics

    signals.connect()
    _register_control_commands()
    return app


def _warm_models(**_kwargs) -> None:
    """Load the default model(s) when a pool process starts, so the first job pays no load time, and
    keep freed image buffers for the next job (``clearcut.memory``)."""
    import logging

    from clearcut.memory import retain_freed_memory
    from clearcut.models.session import get_session
    from clearcut.pipeline.segment import resolve_models

    retain_freed_memory()

    try:
        names = [get_session(name).model.name for name in resolve_models(None)]
        logging.getLogger("clearcut.worker").info("models loaded: %s", ", ".join(names))
    except Exception:  # noqa: BLE001 - a job will report the same problem with its own error code
        logging.getLogger("clearcut.worker").exception("could not preload the default model")


def _warm_threads_pool(sender=None, **_kwargs) -> None:
    """The threads pool has no pool processes (``worker_process_init`` never fires): load the models in
    the worker process itself once it is ready. Never under prefork: the parent must not load models
    (or initialise CUDA) before forking."""
    from celery.concurrency.thread import TaskPool

    if isinstance(getattr(sender, "pool", None), TaskPool):
        _warm_models()


def _register_control_commands() -> None:
    """``clearcut_info``: answered by the worker's main process even while a task runs, so health
    checks see busy workers as alive. Registered once, when the first app is created."""
    global _control_registered
    if _control_registered:
        return
    from celery.worker.control import inspect_command

    @inspect_command(name="clearcut_info")
    def clearcut_info(state, **kwargs):
        from worker.info import worker_info

        queues = []
        try:
            queues = sorted(q.name for q in state.consumer.task_consumer.queues)
        except Exception:  # noqa: BLE001 - consumer not fully started yet
            pass
        return worker_info(queues)

    _control_registered = True


_app: Celery | None = None


def __getattr__(name: str):
    # Lazy module attribute (PEP 562): the Celery CLI looks up ``celery`` (or ``app``) here.
    global _app
    if name in ("celery", "app"):
        if _app is None:
            _app = create_celery()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
