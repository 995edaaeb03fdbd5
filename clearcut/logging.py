"""Structured logs: one JSON object per line, with ``request_id`` and ``job_id`` on every line.

The ids live in context variables: the API binds ``request_id`` for each request (app/metrics.py),
the worker binds ``job_id`` (and the job's ``request_id``) for each task (worker/signals.py), and a
filter copies them onto every record, whoever logged it (our code, Celery, gunicorn, botocore).

Secrets and payloads never reach the output: API keys (``cc_live_…``/``cc_test_…``, Authorization
and x-api-key values) are masked, and bytes or long base64 runs are replaced by their length.
``configure()`` is called by the API factory and by the worker/beat ``setup_logging`` signal;
importing this module changes nothing.
"""
from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import traceback
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Mapping

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("clearcut_request_id", default=None)
job_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("clearcut_job_id", default=None)

_KEY = re.compile(r"\b(cc_(?:live|test)_)[A-Za-z0-9_-]{4,}")
_HEADER = re.compile(r"(?i)\b(x-api-key|api_key|authorization)(\"?\s*[:=]\s*\"?)(?:(?:bearer|token|api-key)\s+)?"
                     r"[^\s\"',;&]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/=_-]{256,}")
# Attributes every LogRecord has; anything else was passed with ``extra=`` and is emitted as a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "request_id",
                                                                          "job_id"}
_HANDLER_NAME = "clearcut"


def redact(text: str) -> str:
    """``text`` with API keys masked and long base64 runs (image payloads) replaced by their length."""
    text = _KEY.sub(r"\1***", text)
    text = _HEADER.sub(r"\1\2***", text)
    return _BASE64.sub(lambda m: f"<{len(m.group())} base64 chars>", text)


def _safe(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_safe(v) for v in value]
    return redact(str(value))


class ContextFilter(logging.Filter):
    """Puts the bound ids on each record and replaces byte payloads in its arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        if getattr(record, "job_id", None) is None:
            record.job_id = job_id_var.get()
        if isinstance(record.args, tuple):
            record.args = tuple(f"<{len(a)} bytes>" if isinstance(a, (bytes, bytearray, memoryview)) else a
                                for a in record.args)
        return True


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", "request_id", "job_id", "process", ...extra, "exc"}``."""

    def format(self, record: logging.LogRecord) -> str:
        ContextFilter().filter(record)
        entry = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": record.request_id,
            "job_id": record.job_id,
            "process": record.process,
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_") and name not in entry:
                entry[name] = _safe(value)
        if record.exc_info:
            entry["exc"] = redact("".join(traceback.format_exception(*record.exc_info)))
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s [request_id=%(request_id)s job_id=%(job_id)s] "
                         "%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        ContextFilter().filter(record)
        return redact(super().format(record))


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (test runners and daemons swap it)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def formatter(fmt: str = "json") -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter()


def configure(environ: Mapping[str, str] | None = None, *, level: str | int | None = None) -> logging.Handler:
    """Install the one clearcut handler on the root logger (idempotent: replaces an earlier one)."""
    from clearcut import config

    env = dict(environ) if environ is not None else None
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    handler = _StderrHandler()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter(config.get("CLEARCUT_LOG_FORMAT", env)))
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    root.setLevel(level or config.get("CLEARCUT_LOG_LEVEL", env))
    return handler


@contextmanager
def bound(*, request_id: str | None = None, job_id: str | None = None):
    """Bind ids for the log lines written inside the block."""
    tokens = bind(request_id=request_id, job_id=job_id)
    try:
        yield
    finally:
        unbind(tokens)


def bind(*, request_id: str | None = None, job_id: str | None = None) -> list:
    tokens = []
    if request_id is not None:
        tokens.append(request_id_var.set(request_id))
    if job_id is not None:
        tokens.append(job_id_var.set(job_id))
    return tokens


def unbind(tokens: list) -> None:
    for token in reversed(tokens):
        token.var.reset(token)
