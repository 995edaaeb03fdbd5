"""Worker metrics (Prometheus) and the collectors shared with the API.

Celery's prefork pool runs tasks in child processes, so the worker uses prometheus_client's
multiprocess mode: ``serve()`` (called in the parent at ``worker_init``, before the pool forks)
points PROMETHEUS_MULTIPROC_DIR at a fresh directory, the children write their samples there, and
the parent's small HTTP server (CLEARCUT_WORKER_METRICS_PORT) aggregates them per scrape. Metric
objects are created lazily, after that switch, so importing this module has no side effects.

Metrics (all prefixed ``clearcut_``):
  jobs_total{queue,outcome}                 tasks finished: succeeded | failed | retry | error
  job_duration_seconds{queue}               wall time of a process_job task
  job_stage_seconds{stage}                  pipeline stages from the job's timings_ms (decode, infer, ...)
  model_inference_seconds{models}           the ``infer`` stage, by model combination
  cutout_confidence{models}                 confidence (estimated IoU) of each cutout a worker made
  webhook_deliveries_total{outcome}         webhook attempts (delivered | failed | retry | gave_up ...)
  queue_depth{queue}                        Redis LLEN of each Celery queue, read at scrape time
  execution_provider_info{provider,requested}  1 for the provider this worker runs on
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
from typing import Mapping

_lock = threading.Lock()
_metrics: dict | None = None

CONFIDENCE_BUCKETS = (0.3, 0.5, 0.7, 0.8, 0.85, 0.9, 0.92, 0.94, 0.96, 0.98, 1.0)
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def metrics() -> dict:
    """The worker's metric objects (created on first use, in whichever process records)."""
    global _metrics
    with _lock:
        if _metrics is None:
            from prometheus_client import Counter, Histogram

            _metrics = {
                "jobs": Counter("clearcut_jobs_total", "Jobs finished by workers, by queue and outcome.",
                                ["queue", "outcome"]),
                "duration": Histogram("clearcut_job_duration_seconds", "Wall time of one process_job task.",
                                      ["queue"], buckets=BUCKETS),
                "stage": Histogram("clearcut_job_stage_seconds", "Pipeline stage durations (timings_ms).",
                                   ["stage"], buckets=BUCKETS),
                "inference": Histogram("clearcut_model_inference_seconds",
                                       "Model inference time per job, by model combination.", ["models"],
                                       buckets=BUCKETS),
                "confidence": Histogram("clearcut_cutout_confidence",
                                        "Confidence (estimated IoU against a human mask) of each cutout made, "
                                        "by model combination.", ["models"], buckets=CONFIDENCE_BUCKETS),
                "webhooks": Counter("clearcut_webhook_deliveries_total", "Webhook delivery attempts by outcome.",
                                    ["outcome"]),
                "batch": Histogram("clearcut_inference_batch_size",
                                   "Images per model run on batching (GPU) workers.", ["model"],
                                   buckets=(1, 2, 4, 8, 16, 32, 64)),
            }
        return _metrics


def record_webhook(outcome: str) -> None:
    """Count one webhook delivery attempt (``delivered``, ``failed``, ``retry``, ``gave_up``, ...)."""
    metrics()["webhooks"].labels(outcome=outcome).inc()


def record_batch(model: str, size: int) -> None:
    """One batched model run (``clearcut.models.batching.OBSERVERS`` calls it)."""
    metrics()["batch"].labels(model=model).observe(size)


def record_job(queue: str, outcome: str, seconds: float | None, result: Mapping | None) -> None:
    """Count a finished task and, for a succeeded job, its stage timings from the result metadata."""
    m = metrics()
    if seconds is not None:
        m["duration"].labels(queue=queue or "unknown").observe(seconds)
    timings = (result or {}).get("timings_ms") or {}
    for stage, ms in timings.items():
        m["stage"].labels(stage=stage).observe(float(ms) / 1000.0)
    models = "+".join(x.get("name", "?") for x in (result or {}).get("models") or []) or "unknown"
    if "infer" in timings:
        m["inference"].labels(models=models).observe(float(timings["infer"]) / 1000.0)
    if (result or {}).get("confidence") is not None:
        m["confidence"].labels(models=models).observe(float(result["confidence"]))
    # Counted last. In multiprocess mode a scrape reads the counter and histogram files one after the
    # other (in directory order), so it is not a snapshot: a reader that needs a job's stages waits for them.
    m["jobs"].labels(queue=queue or "unknown", outcome=outcome).inc()


class QueueDepthCollector:
    """``clearcut_queue_depth{queue}``: messages waiting in each Celery queue (Redis LLEN at scrape time,
    including kombu's priority sub-queues). Reports nothing if the broker cannot be reached."""

    PRIORITY_SEP = "\x06\x16"
    PRIORITIES = (3, 6, 9)

    def __init__(self, environ: Mapping[str, str] | None = None, queues: tuple[str, ...] | None = None):
        from clearcut import config
        from clearcut.endpoints import redis_url

        env = dict(environ) if environ is not None else None
        self.url = redis_url(env)
        self.prefix = config.get("CLEARCUT_BROKER_PREFIX", env)
        if queues is None:
            from worker.queues import QUEUES

            queues = QUEUES
        self.queues = tuple(queues)
        self._client = None

    def depths(self) -> dict[str, int]:
        import redis

        if self._client is None:
            self._client = redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=2)
        pipe = self._client.pipeline(transaction=False)
        for queue in self.queues:
            for key in self._keys(queue):
                pipe.llen(key)
        counts = iter(pipe.execute())
        return {queue: sum(next(counts) for _ in self._keys(queue)) for queue in self.queues}

    def _keys(self, queue: str) -> list[str]:
        base = f"{self.prefix}{queue}"
        return [base, *(f"{base}{self.PRIORITY_SEP}{p}" for p in self.PRIORITIES)]

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily("clearcut_queue_depth", "Messages waiting in each Celery queue.",
                                   labels=["queue"])
        try:
            depths = self.depths()
        except Exception:  # noqa: BLE001 - a scrape must not fail because the broker is away
            return
        for queue, depth in depths.items():
            family.add_metric([queue], depth)
        yield family


class ProviderCollector:
    """``clearcut_execution_provider_info{provider,requested} 1`` for this worker."""

    def __init__(self, provider: str, requested: str):
        self.provider, self.requested = provider, requested

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily("clearcut_execution_provider_info",
                                   "ONNX Runtime execution provider this worker runs on.",
                                   labels=["provider", "requested"])
        family.add_metric([self.provider, self.requested], 1)
        yield family


def enable_multiprocess() -> str:
    """Switch prometheus_client to multiprocess mode in this process and its future children."""
    from prometheus_client import values

    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        directory = tempfile.mkdtemp(prefix="clearcut-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    else:  # stale files of an earlier run would be summed in
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):
            if name.endswith(".db"):
                os.unlink(os.path.join(directory, name))
    values.ValueClass = values.get_value_class()
    return directory


def mark_dead(pid: int) -> None:
    """Drop a finished pool process's live gauges (counters and histograms keep their samples)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def serve(port: int, environ: Mapping[str, str] | None, provider: str, requested: str, host: str = "0.0.0.0"):
    """Start the worker's metrics server in a daemon thread: ``/metrics`` and ``/healthz``.

    ``/healthz`` answers from the parent process without touching the broker, so it stays up while a
    pool process is busy with a long inference."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from prometheus_client import CollectorRegistry, make_wsgi_app, multiprocess
    from prometheus_client.exposition import ThreadingWSGIServer

    enable_multiprocess()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(QueueDepthCollector(environ))
    registry.register(ProviderCollector(provider, requested))
    metrics_app = make_wsgi_app(registry)

    def app(environ_, start_response):
        if environ_.get("PATH_INFO") == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        return metrics_app(environ_, start_response)

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):  # scrapes every few seconds would flood the log
            pass

    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, name="clearcut-metrics", daemon=True).start()
    return server


def cleanup(directory: str | None = None) -> None:
    directory = directory or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory and os.path.basename(directory).startswith("clearcut-metrics-"):
        shutil.rmtree(directory, ignore_errors=True)
