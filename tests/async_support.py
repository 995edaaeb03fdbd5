"""Helpers for the async job, batch, webhook and sweeper tests: a worker subprocess of their own
(consuming cpu, batch and webhooks, with a fast webhook backoff), the app, keys and local HTTP servers."""
from __future__ import annotations

import os
import socket
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from clearcut import accounts
from clearcut.context import Context
from clearcut.db import sessionmaker_for, upgrade
from tests.conftest import encode_image, synthetic_scene

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Settings the app process and the worker share in these tests: loopback receivers and image hosts are
# allowed, webhook retries come fast (the production schedule is minutes to hours).
ASYNC_QUEUE = f"async-{uuid.uuid4().hex[:8]}"  # POST /v2/jobs work: only these tests' workers consume it
FAST = {
    "CLEARCUT_ASYNC_QUEUE": ASYNC_QUEUE,
    "CLEARCUT_URL_ALLOWLIST": "127.0.0.1",
    "CLEARCUT_RATE_LIMIT_PER_MINUTE": "100000",
    "CLEARCUT_WEBHOOK_BACKOFF_S": "0,0.2,0.2,0.2,0.2",
    "CLEARCUT_WEBHOOK_JITTER": "0",
    "CLEARCUT_WEBHOOK_TIMEOUT_S": "3",
    "CLEARCUT_PUBLIC_URL": "http://clearcut.test",
}


def scene_png(width=96, height=64, radius=20, shift=0) -> bytes:
    image, _ = synthetic_scene(width, height, radius)
    if shift:
        image = image.rotate(shift)
    return encode_image(image, "PNG")


@contextmanager
def worker(service_env: dict, log_dir, *, queues=f"cpu,batch,webhooks,{ASYNC_QUEUE}", concurrency=1, extra=None):
    """A ``celery worker`` subprocess (own process group) on ``service_env``; yields (process, celery app)."""
    from clearcut.local.services import spawn, stop_process_group, wait_until
    from worker.celery_app import create_celery

    node = f"async-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
    log_path = log_dir / f"{node.split('@')[0]}.log"
    env = {**os.environ, **service_env, **FAST, **(extra or {}), "PYTHONUNBUFFERED": "1"}
    process = spawn([sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", queues,
                     "--concurrency", str(concurrency), "-n", node, "--without-gossip", "--without-mingle",
                     "--loglevel", "INFO"], env=env, cwd=ROOT, log_path=log_path)
    app = create_celery(environ=service_env)

    def answers():
        if not any(node in reply for reply in app.control.ping(timeout=1.0) or []):
            raise RuntimeError("not yet")

    try:
        wait_until(answers, timeout=90, what="celery worker", alive=lambda: process.poll() is None,
                   log_path=log_path, interval=0.5)
        yield process, app
    finally:
        if process.poll() is None:
            stop_process_group(process, timeout=15)
        app.close()


def make_app(service_env: dict):
    upgrade(service_env["CLEARCUT_DATABASE_URL"])
    from app import create_app

    app = create_app({**service_env, **FAST})
    app.testing = True
    return app


def context(service_env: dict) -> Context:
    return Context.from_env(service_env)


def new_key(service_env: dict, name: str) -> str:
    with sessionmaker_for(service_env["CLEARCUT_DATABASE_URL"]).begin() as session:
        account = accounts.get_or_create_account(session, name)
        _, secret = accounts.create_key(session, account)
    return secret


def wait_for(probe, timeout=60.0, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def wait_job(client, key, job_id, statuses=("succeeded", "failed", "canceled"), timeout=60.0) -> dict:
    def probe():
        body = client.get(f"/v2/jobs/{job_id}", headers={"x-api-key": key}).get_json()
        return body if body["status"] in statuses else None
    return wait_for(probe, timeout, what=f"job {job_id} to reach {statuses}")


def serving(*handlers):
    """Yield a ``Server`` per handler class (for a module fixture), closing them afterwards."""
    servers = [Server(handler) for handler in handlers]
    try:
        yield tuple(servers)
    finally:
        for server in servers:
            server.close()


class Server:
    """A ThreadingHTTPServer on 127.0.0.1 with a handler class; ``url`` is its base URL."""

    def __init__(self, handler):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Quiet(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve_images(images: dict[str, bytes]):
    """Yield the base URL of a server answering GET PATH with ``images[PATH]`` as image/png (404 for any
    other path), for a module fixture."""
    class Images(Quiet):
        def do_GET(self):  # noqa: N802 - http.server API
            body = images.get(self.path)
            self.reply(200 if body else 404, body or b"", "image/png")

    with contextmanager(serving)(Images) as (server,):
        yield server.url


class Recorder(Quiet):
    """Answers every POST with 204 and records (headers, body); subclasses give their own ``received``."""
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()


@pytest.fixture(scope="module")
def env(service_env, model_dir):
    """service_env plus FAST, also in this process's environment, for one test module."""
    mp = pytest.MonkeyPatch()
    for name, value in {**service_env, **FAST}.items():
        mp.setenv(name, value)
    yield service_env
    mp.undo()


@pytest.fixture(scope="module")
def stack(env, tmp_path_factory, request):
    """(app, celery): the app and a worker of this module's own."""
    app = make_app(env)
    name = request.module.__name__.rsplit(".", 1)[-1]
    with worker(env, tmp_path_factory.mktemp(f"{name}-worker")) as (_, celery):
        yield app, celery


@contextmanager
def live_server(app):
    """``app`` served over real HTTP by werkzeug on 127.0.0.1 (a random port) in a thread; yields its URL."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args, **kwargs):  # the app logs its own access lines
            pass

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def live(stack):
    """(url, app): this module's stack (app + worker) served over real HTTP."""
    with live_server(stack[0]) as url:
        yield url, stack[0]
