"""Settings: declared once (name, default, help), read from the environment, validated.

Every variable the code reads is declared in ``SETTINGS`` so the README table can be generated
from this module (``clearcut config --markdown``) and nothing is read ad hoc elsewhere.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class Setting:
    env: str
    default: str
    help: str
    parse: Callable[[str], object] = str


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError("must be > 0")
    return number


def _non_negative_float(value: str) -> float:
    number = float(value)
    if number < 0:
        raise ValueError("must be >= 0")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError("must be > 0")
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("must be >= 0")
    return number


def _unit_interval(value: str) -> float:
    number = float(value)
    if not 0 <= number <= 1:
        raise ValueError("must be between 0 and 1")
    return number


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        normalised = value.strip().upper() if allowed[0].isupper() else value.strip().lower()
        if normalised not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return normalised
    return parse


def _port(value: str) -> int:
    number = int(value)
    if not 0 <= number <= 65535:
        raise ValueError("must be a TCP port (0-65535)")
    return number


def _cache_path(value: str) -> Path:
    """A path where ``$XDG_CACHE_HOME`` is the per-user cache (``~/.cache`` when that is unset) and ``~``
    is the home directory."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(value.replace("$XDG_CACHE_HOME", cache)).expanduser()


SETTINGS: dict[str, Setting] = {
    s.env: s
    for s in [
        Setting("CLEARCUT_MODEL_DIR", "$XDG_CACHE_HOME/clearcut/models",
                "Where verified model files are cached: the per-user cache (`~/.cache/clearcut/models` when "
                "`XDG_CACHE_HOME` is unset), shared by the CLI, `clearcut dev` and the tests. The images set "
                "their own.", _cache_path),
        Setting("CLEARCUT_DEFAULT_MODEL", "quality",
                "Model used when a request names none: a preset (`quality`: ISNet, with U2-Net consulted on "
                "photos up to 1024 px and ISNet's mirror-image run averaged in on larger ones; `fast`: ISNet alone; `soft`: `quality` with edges from the photo's colours, "
                "for hair and fur) or a model name from `clearcut models list`."),
        Setting("CLEARCUT_MAX_MEGAPIXELS", "50", "Largest accepted input, in megapixels (checked before decoding).",
                _positive_float),
        Setting("CLEARCUT_REVIEW_BELOW", "0.94",
                "A cutout whose confidence (its estimated IoU against a human mask, 0-1) is below this is "
                "flagged `needs_review`; requests override it with `review_below`. The default flags 11 % of "
                "eval/product's photos, among them every cutout below 0.9 IoU (docs/benchmarks.md, Confidence).",
                _unit_interval),
        Setting("CLEARCUT_CUSTOM_MODELS", "",
                "Extra models, `;`-separated `name=path_or_https_url|sha256|size|norm` entries; norm is "
                "`isnet` (x/255-0.5) or `imagenet`."),
        Setting("CLEARCUT_ORT_THREADS", "0",
                "ONNX Runtime intra-op threads per process (0 = all cores / worker concurrency).", int),
        Setting("CLEARCUT_MALLOC_RETAIN_MB", "512",
                "Freed memory a worker process keeps for the next image (glibc): allocations below half of it "
                "reuse heap pages instead of fresh ones (-10 to -20 % time per 4 MP image), and its threads share "
                "that heap; 0 = glibc defaults.",
                _non_negative_int),
        Setting("CLEARCUT_EXECUTION_PROVIDER", "auto",
                "ONNX Runtime provider: `auto` (CUDA when active, else CPU), `cpu`, `cuda` or `tensorrt`; a "
                "requested GPU provider that is not active stops the worker instead of falling back to CPU.",
                _choice("auto", "cpu", "cuda", "tensorrt")),
        Setting("CLEARCUT_MODEL_PRECISION", "auto",
                "`auto`: a model's calibrated int8 variant on the CPU when `clearcut models quantize` built it "
                "and its recorded quality check passed (GPU keeps float); `fp32` or `int8` force one.",
                _choice("auto", "fp32", "int8")),
        Setting("CLEARCUT_WORKER_METRICS_PORT", "0",
                "Port of a worker's Prometheus `/metrics` (and `/healthz`) server (0 = off).", _port),
        Setting("CLEARCUT_LOG_FORMAT", "json", "Log lines as `json` (one object per line) or `text`.",
                _choice("json", "text")),
        Setting("CLEARCUT_LOG_LEVEL", "INFO", "Log level of the API, workers and beat.",
                _choice("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
        Setting("CLEARCUT_DATA_DIR", "./var", "Root for local state made by `clearcut dev` (database, S3, logs).",
                Path),
        Setting("CLEARCUT_DATABASE_URL", "", "SQLAlchemy URL (empty: SQLite under CLEARCUT_DATA_DIR)."),
        Setting("CLEARCUT_REDIS_URL", "", "Broker URL (empty: `clearcut dev` starts an embedded Valkey)."),
        Setting("CLEARCUT_S3_ENDPOINT", "", "S3 endpoint URL (empty: `clearcut dev` starts SeaweedFS)."),
        Setting("CLEARCUT_S3_BUCKET", "clearcut", "Bucket for originals and results."),
        Setting("CLEARCUT_S3_ACCESS_KEY", "clearcut-dev", "S3 access key id."),
        Setting("CLEARCUT_S3_SECRET_KEY", "clearcut-dev-secret", "S3 secret access key."),
        Setting("CLEARCUT_S3_REGION", "us-east-1", "S3 region name."),
        Setting("CLEARCUT_RETENTION_HOURS", "24", "Hours originals and results are kept in storage.",
                _positive_float),
        Setting("CLEARCUT_JOB_DEADLINE_S", "600",
                "Seconds a job may stay queued, or processing however alive its lease, before the sweeper "
                "re-enqueues it (the backstop behind the lease).", _positive_int),
        Setting("CLEARCUT_SYNC_TIMEOUT_S", "60",
                "Seconds `POST /v2` waits for the worker before answering 202 with the job id.", _positive_float),
        Setting("CLEARCUT_MAX_UPLOAD_MB", "30", "Largest accepted request body / image, in MB.", _positive_float),
        Setting("CLEARCUT_URL_ALLOWLIST", "",
                "Comma-separated hosts/CIDRs that bypass the private-address guard for image_url and "
                "webhooks (empty: none)."),
        Setting("CLEARCUT_URL_TIMEOUT_S", "10", "Connect/read timeout for fetching image_url.", _positive_float),
        Setting("CLEARCUT_RATE_LIMIT_PER_MINUTE", "600", "Requests per API key per minute (0 = unlimited).",
                int),
        Setting("CLEARCUT_API_HOST", "127.0.0.1", "Address the API binds to."),
        Setting("CLEARCUT_API_PORT", "8080", "Port the API listens on.", _positive_int),
        Setting("CLEARCUT_S3_PORT", "8333", "S3 port of the SeaweedFS that `clearcut dev` starts.", _positive_int),
        Setting("CLEARCUT_REDIS_PORT", "6390", "Port of the Valkey that `clearcut dev` starts.", _positive_int),
        Setting("CLEARCUT_WORKER_CONCURRENCY", "1", "Celery worker processes per worker node (threads on a "
                "batching worker: CLEARCUT_INFERENCE_BATCH_SIZE > 1).", _positive_int),
        Setting("CLEARCUT_INFERENCE_BATCH_SIZE", "1",
                "Most images one model run takes (1 = off). Above 1 the worker runs a threads pool of "
                "CLEARCUT_WORKER_CONCURRENCY threads whose concurrent jobs are batched (for GPU workers).",
                _positive_int),
        Setting("CLEARCUT_INFERENCE_BATCH_WAIT_MS", "10",
                "Milliseconds a batch waits for more images after its first one (with batch size > 1).",
                _non_negative_float),
        Setting("CLEARCUT_BROKER_PREFIX", "",
                "Prefix for every broker key and channel (lets several deployments or test runs share one Redis)."),
        Setting("CLEARCUT_TASK_SOFT_TIME_LIMIT", "120",
                "Seconds a task may run before it is asked to stop (SoftTimeLimitExceeded).", _positive_int),
        Setting("CLEARCUT_TASK_TIME_LIMIT", "180",
                "Seconds after which a task's worker process is killed; the broker visibility timeout is "
                "derived from it (2x).", _positive_int),
        Setting("CLEARCUT_HEALTH_TIMEOUT", "1.0",
                "Seconds each health check (database, broker, storage, worker ping) may take.", _positive_float),
        # Async jobs, batches and webhooks (clearcut.jobs, clearcut.webhooks)
        Setting("CLEARCUT_PUBLIC_URL", "http://127.0.0.1:8080",
                "Base URL of the API as callers reach it (used for links in webhook payloads)."),
        Setting("CLEARCUT_ASYNC_QUEUE", "cpu",
                "Celery queue for `POST /v2/jobs` (`batch` keeps async jobs off the interactive queue)."),
        Setting("CLEARCUT_PRESIGN_TTL_S", "3600", "Lifetime of presigned result URLs, in seconds.", _positive_int),
        Setting("CLEARCUT_JOB_MAX_ATTEMPTS", "3",
                "Attempts (worker claims or sweeper re-enqueues) before a stuck job fails with "
                "max_attempts_exceeded.", _positive_int),
        Setting("CLEARCUT_SWEEP_INTERVAL_S", "10",
                "Seconds between sweeper runs (jobs whose lease expired, queued jobs an emptied broker lost, "
                "due webhook retries, expired idempotency keys).", _positive_float),
        Setting("CLEARCUT_JOB_LEASE_S", "30",
                "Seconds a running job's lease lasts; its worker renews it every third of that, and the "
                "sweeper re-enqueues a job whose lease ran out (its worker died).", _positive_float),
        Setting("CLEARCUT_IDEMPOTENCY_TTL_H", "24", "Hours an Idempotency-Key is remembered.", _positive_float),
        Setting("CLEARCUT_METADATA_MAX_BYTES", "4096", "Largest `metadata` JSON object on a job or batch.",
                _positive_int),
        Setting("CLEARCUT_BATCH_MAX_ITEMS", "10000", "Most items in one batch.", _positive_int),
        Setting("CLEARCUT_S3_INPUT_PREFIXES", "imports/{account}/",
                "Comma-separated key prefixes (in CLEARCUT_S3_BUCKET) of an account's import area: what "
                "`GET /v2/imports` lists and an `s3_key` (job or batch item) may read; `{account}` is the account id."),
        Setting("CLEARCUT_S3_OUTPUT_PREFIXES", "exports/{account}/",
                "Comma-separated key prefixes (in CLEARCUT_S3_BUCKET) a job's `output.prefix` may write; "
                "`{account}` is the account id (empty: `output` is refused)."),
        Setting("CLEARCUT_WEBHOOK_BACKOFF_S", "0,5,300,1800,7200,18000,36000,36000",
                "Delay before each webhook delivery attempt, in seconds (its length is the attempt limit)."),
        Setting("CLEARCUT_WEBHOOK_JITTER", "0.1", "Random +/- fraction applied to each webhook retry delay.",
                float),
        Setting("CLEARCUT_WEBHOOK_TIMEOUT_S", "10", "Connect/read timeout of one webhook attempt.",
                _positive_float),
        Setting("CLEARCUT_WEBHOOK_SECRET_OVERLAP_H", "24",
                "Hours the previous webhook secret keeps signing (a second signature) after a rotation.",
                float),
        Setting("CLEARCUT_URL", "http://127.0.0.1:8080",
                "Base URL of the server `clearcut import` talks to (`--server` overrides it)."),
        Setting("CLEARCUT_API_KEY", "", "API key `clearcut import` sends (`--key` overrides it)."),
    ]
}


def get(env: str, environ: dict[str, str] | None = None):
    """Parsed value of one declared setting; raises ValueError naming the variable on bad input."""
    setting = SETTINGS[env]
    raw = (environ if environ is not None else os.environ).get(env, "") or setting.default
    try:
        return setting.parse(raw)
    except ValueError as exc:
        raise ValueError(f"{env}={raw!r} is invalid: {exc}") from None


def markdown_table() -> str:
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for s in SETTINGS.values():
        rows.append(f"| `{s.env}` | `{s.default}` | {s.help} |")
    return "\n".join(rows)
