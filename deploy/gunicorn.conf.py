"""gunicorn settings for the API image: JSON logs through clearcut.logging, no separate access log
(the app writes one JSON line per request), Prometheus multiprocess mode across gunicorn workers."""
import os

from clearcut import config

bind = f"{config.get('CLEARCUT_API_HOST')}:{config.get('CLEARCUT_API_PORT')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# A synchronous POST /v2 may wait CLEARCUT_SYNC_TIMEOUT_S for the worker.
timeout = int(config.get("CLEARCUT_SYNC_TIMEOUT_S")) + 30
graceful_timeout = 30
accesslog = None
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"clearcut": {"()": "clearcut.logging.JsonFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "clearcut",
                            "stream": "ext://sys.stderr"}},
    "loggers": {"gunicorn.error": {"handlers": ["stderr"], "level": "INFO", "propagate": False}},
}


def on_starting(server):
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:  # a fresh directory per start: stale samples of dead processes would be summed in
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
