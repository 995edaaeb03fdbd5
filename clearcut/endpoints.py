"""Effective URLs of the backing services.

An empty CLEARCUT_*_URL / _ENDPOINT means "the local service ``clearcut dev`` runs", so a worker
or API started by hand next to ``clearcut dev`` finds the same services without extra settings.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from clearcut import config


def database_url(environ: Mapping[str, str] | None = None) -> str:
    """CLEARCUT_DATABASE_URL, else SQLite at ``<CLEARCUT_DATA_DIR>/clearcut.db`` (absolute path)."""
    env = dict(environ) if environ is not None else None
    url = config.get("CLEARCUT_DATABASE_URL", env)
    if url:
        return url
    path = Path(config.get("CLEARCUT_DATA_DIR", env)).resolve() / "clearcut.db"
    return f"sqlite:///{path}"


def redis_url(environ: Mapping[str, str] | None = None) -> str:
    """CLEARCUT_REDIS_URL, else the embedded Valkey on 127.0.0.1:CLEARCUT_REDIS_PORT."""
    env = dict(environ) if environ is not None else None
    return config.get("CLEARCUT_REDIS_URL", env) or f"redis://127.0.0.1:{config.get('CLEARCUT_REDIS_PORT', env)}/0"


def redis_client(environ: Mapping[str, str] | None = None):
    """A Redis client for ``redis_url`` with the timeouts the API and workers share (connect 3 s, reads
    5 s: above the longest blocking call they make, ``notify.WAIT_SLICE_S``)."""
    import redis

    return redis.Redis.from_url(redis_url(environ), socket_connect_timeout=3, socket_timeout=5)


def s3_endpoint(environ: Mapping[str, str] | None = None) -> str:
    """CLEARCUT_S3_ENDPOINT, else the embedded SeaweedFS on 127.0.0.1:CLEARCUT_S3_PORT."""
    env = dict(environ) if environ is not None else None
    return config.get("CLEARCUT_S3_ENDPOINT", env) or f"http://127.0.0.1:{config.get('CLEARCUT_S3_PORT', env)}"
