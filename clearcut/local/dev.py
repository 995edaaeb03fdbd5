"""``clearcut dev``: the whole service on one machine, with no external services.

A small supervisor starts SeaweedFS (S3), Valkey (broker, unless CLEARCUT_REDIS_URL is set), one
Celery worker and the API under gunicorn, with SQLite under the data directory unless
CLEARCUT_DATABASE_URL is set. Each child is the leader of its own process group, so stopping it
also stops whatever it forked (gunicorn and Celery pool processes); a child that dies is
restarted with exponential backoff and the reason is logged. Ctrl-C / SIGTERM stops everything
in reverse start order. Children's output goes to ``<data dir>/logs/<name>.log``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from clearcut import config
from clearcut.local.services import (LOCALHOST, SeaweedPorts, port_is_free, s3_ready_probe, seaweed_command,
                                     socket_dir, spawn, stop_process_group, write_s3_identities)

BACKOFF_START_S = 1.0
EXIT_CONFIG = 78  # EX_CONFIG: what a worker exits with when it refuses its configuration
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 30.0   # a child that ran this long before dying restarts without backoff
READY_TIMEOUT_S = 120.0


def create_demo_key(env: dict[str, str]) -> str | None:
    """A fresh key for the ``demo`` account, made through the same path as ``clearcut keys create``
    (keys are stored hashed, so an earlier run's key cannot be shown again)."""
    from clearcut import accounts
    from clearcut.db import sessionmaker_for

    with sessionmaker_for(env["CLEARCUT_DATABASE_URL"]).begin() as session:
        account = accounts.get_or_create_account(session, "demo")
        _, secret = accounts.create_key(session, account, label="clearcut dev")
    return secret


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    ready: Callable[[], object] | None = None   # raises until the child serves
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    backoff: float = BACKOFF_START_S
    restart_at: float | None = None
    restarts: int = 0
    history: list[int] = field(default_factory=list)   # pids, for tests and post-mortems

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


class Supervisor:
    def __init__(self, children: list[Child], log: Callable[[str], None] | None = None):
        self.children = children
        self.stopping = False
        self._log = log or (lambda message: print(f"[dev] {message}", file=sys.stderr, flush=True))

    def request_stop(self, signum=None, frame=None) -> None:
        if not self.stopping and signum is not None:
            self._log(f"{signal.Signals(signum).name} received, stopping")
        self.stopping = True

    def start(self, child: Child) -> None:
        child.process = spawn(child.argv, env=child.env, log_path=child.log_path)
        child.started_at = time.monotonic()
        child.restart_at = None
        child.history.append(child.process.pid)
        self._log(f"{child.name}: started (pid {child.process.pid}, log {child.log_path})")

    def wait_ready(self, child: Child, timeout: float = READY_TIMEOUT_S) -> bool:
        """Block until ``child.ready`` passes; False if asked to stop meanwhile."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while not self.stopping:
            if not child.alive():
                raise RuntimeError(f"{child.name} {_describe_exit(child.process.returncode)} during startup; "
                                   f"see {child.log_path}")
            try:
                if child.ready is not None:
                    child.ready()
                return True
            except Exception as exc:  # noqa: BLE001 - not ready yet
                last = exc
            if time.monotonic() > deadline:
                raise TimeoutError(f"{child.name} not ready after {timeout:.0f}s ({last}); see {child.log_path}")
            time.sleep(0.2)
        return False

    def start_all(self) -> bool:
        for child in self.children:
            if self.stopping:
                return False
            self.start(child)
            if not self.wait_ready(child):
                return False
        return True

    def poll(self) -> None:
        """Restart dead children once their backoff has passed."""
        now = time.monotonic()
        for child in self.children:
            if self.stopping:
                return
            if child.restart_at is None and child.process is not None and child.process.poll() is not None:
                if child.process.returncode == EXIT_CONFIG:
                    # The child refused its configuration (e.g. no usable model): restarting cannot help.
                    child.restart_at = float("inf")
                    self._log(f"{child.name}: refused to start (exit {EXIT_CONFIG}, a configuration problem); "
                              f"not restarting it — see {child.log_path}")
                    continue
                ran = now - child.started_at
                stop_process_group(child.process, timeout=2)   # reap whatever it forked
                if ran >= STABLE_AFTER_S:
                    child.backoff = BACKOFF_START_S
                delay = child.backoff
                child.backoff = min(child.backoff * 2, BACKOFF_MAX_S)
                child.restart_at = now + delay
                child.restarts += 1
                self._log(f"{child.name}: {_describe_exit(child.process.returncode)} after {ran:.1f}s; "
                          f"restarting in {delay:.0f}s (restart #{child.restarts}, log {child.log_path})")
            elif child.restart_at is not None and now >= child.restart_at:
                self.start(child)

    def stop_all(self) -> None:
        for child in reversed(self.children):
            if child.process is not None and child.process.returncode is None:
                self._log(f"{child.name}: stopping (pid {child.process.pid})")
                stop_process_group(child.process, timeout=15)
            elif child.process is not None:
                stop_process_group(child.process, timeout=1)   # sweep a dead leader's group

    def run(self, on_ready: Callable[[], None] | None = None) -> int:
        previous = {sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            if self.start_all() and on_ready is not None:
                on_ready()
            while not self.stopping:
                self.poll()
                time.sleep(0.2)
            return 0
        finally:
            # Ignore further Ctrl-C while shutting down so the children get their grace period.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            self.stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._log("all processes stopped")


def _require_free(port: int, what: str, flag: str) -> None:
    if not port_is_free(port):
        raise SystemExit(f"clearcut dev: port {port} ({what}) is in use; is another `clearcut dev` running? "
                         f"Pick another with {flag}.")


def build_children(env: dict[str, str]) -> tuple[list[Child], dict[str, str]]:
    """The children and the environment they share (CLEARCUT_* URLs of the embedded services)."""
    from clearcut.endpoints import database_url

    data_dir = Path(config.get("CLEARCUT_DATA_DIR", env)).resolve()
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env["CLEARCUT_DATA_DIR"] = str(data_dir)
    env["CLEARCUT_MODEL_DIR"] = str(Path(config.get("CLEARCUT_MODEL_DIR", env)).resolve())
    env["PYTHONUNBUFFERED"] = "1"
    children: list[Child] = []

    if not env.get("CLEARCUT_S3_ENDPOINT"):
        ports = SeaweedPorts.from_s3_port(config.get("CLEARCUT_S3_PORT", env))
        for port in ports.all():
            _require_free(port, "SeaweedFS", "--s3-port")
        root = data_dir / "seaweedfs"
        (root / "data").mkdir(parents=True, exist_ok=True)
        (root / "logs").mkdir(parents=True, exist_ok=True)
        s3_config = write_s3_identities(root / "s3-identities.json", config.get("CLEARCUT_S3_ACCESS_KEY", env),
                                        config.get("CLEARCUT_S3_SECRET_KEY", env))
        env["CLEARCUT_S3_ENDPOINT"] = f"http://{LOCALHOST}:{ports.s3}"
        children.append(Child("s3", seaweed_command(root, ports, s3_config, socket_dir(root)), env,
                              logs / "s3.log"))

    if not env.get("CLEARCUT_REDIS_URL"):
        port = config.get("CLEARCUT_REDIS_PORT", env)
        _require_free(port, "Valkey", "--redis-port")
        env["CLEARCUT_REDIS_URL"] = f"redis://{LOCALHOST}:{port}/0"
        children.append(Child("valkey", [sys.executable, "-m", "clearcut.local.services", "valkey",
                                         "--port", str(port), "--dir", str(data_dir / "valkey")],
                              env, logs / "valkey.log"))

    env["CLEARCUT_DATABASE_URL"] = database_url(env)

    for child in children:   # readiness probes need the final environment
        if child.name == "s3":
            child.ready = s3_ready_probe(env)
        elif child.name == "valkey":
            child.ready = _redis_probe(env["CLEARCUT_REDIS_URL"])

    concurrency = config.get("CLEARCUT_WORKER_CONCURRENCY", env)
    children.append(Child("worker", [
        sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", "cpu,batch,webhooks",
        "--concurrency", str(concurrency), "-n", "clearcut-dev@%h", "--without-gossip", "--without-mingle",
        "--loglevel", "INFO", "--beat", "--schedule", str(data_dir / "celerybeat-schedule")],
        env, logs / "worker.log"))

    host, port = config.get("CLEARCUT_API_HOST", env), config.get("CLEARCUT_API_PORT", env)
    _require_free(port, "API", "--api-port")
    children.append(Child("api", [
        sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}", "--workers", "1", "--threads", "8",
        "--timeout", "120", "--graceful-timeout", "5", "--access-logfile", "-", "app:create_app()"],
        env, logs / "api.log", ready=_http_probe(f"http://{host}:{port}/v2/health")))
    return children, env


def _redis_probe(url: str) -> Callable[[], None]:
    def probe() -> None:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            client.ping()
        finally:
            client.close()
    return probe


def _http_probe(url: str) -> Callable[[], None]:
    def probe() -> None:
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(url, timeout=5).close()
        except urllib.error.HTTPError:
            pass   # 503 while the worker boots still means the API serves
    return probe


def run_dev(args) -> int:
    env = dict(os.environ)
    overrides = {"CLEARCUT_DATA_DIR": args.data_dir, "CLEARCUT_API_HOST": args.api_host,
                 "CLEARCUT_API_PORT": args.api_port, "CLEARCUT_S3_PORT": args.s3_port,
                 "CLEARCUT_REDIS_PORT": args.redis_port, "CLEARCUT_WORKER_CONCURRENCY": args.concurrency}
    env.update({k: str(v) for k, v in overrides.items() if v is not None})
    for name in config.SETTINGS:   # fail fast, naming the bad variable
        config.get(name, env)
    children, env = build_children(env)
    from clearcut.db import upgrade

    upgrade(env["CLEARCUT_DATABASE_URL"])  # SQLite file (or the configured database) at the latest schema
    url = f"http://{config.get('CLEARCUT_API_HOST', env)}:{config.get('CLEARCUT_API_PORT', env)}"

    def on_ready() -> None:
        key = create_demo_key(env)
        print(f"Clearcut is running at {url}  (health: {url}/v2/health)", flush=True)
        print(f"demo key: {key}", flush=True)
        print(f"S3: {env['CLEARCUT_S3_ENDPOINT']}  broker: {env['CLEARCUT_REDIS_URL']}  "
              f"database: {env['CLEARCUT_DATABASE_URL']}", flush=True)
        print(f"logs: {Path(env['CLEARCUT_DATA_DIR']) / 'logs'}  (Ctrl-C stops everything)", flush=True)

    try:
        return Supervisor(children).run(on_ready)
    except (RuntimeError, TimeoutError) as exc:
        print(f"clearcut dev: {exc}", file=sys.stderr, flush=True)
        return 1


def register(subparsers) -> None:
    p = subparsers.add_parser("dev", help="run API, worker, S3 and broker locally (no external services)")
    p.add_argument("--data-dir", help="state directory (default: CLEARCUT_DATA_DIR, ./var)")
    p.add_argument("--api-host", help="API bind address (default: CLEARCUT_API_HOST)")
    p.add_argument("--api-port", type=int, help="API port (default: CLEARCUT_API_PORT, 8080)")
    p.add_argument("--s3-port", type=int,
                   help="SeaweedFS S3 port; its other components use the next 8 ports and port+10008 "
                        "(default: CLEARCUT_S3_PORT, 8333)")
    p.add_argument("--redis-port", type=int, help="embedded Valkey port (default: CLEARCUT_REDIS_PORT, 6390)")
    p.add_argument("--concurrency", type=int, help="worker processes (default: CLEARCUT_WORKER_CONCURRENCY)")
    p.set_defaults(func=run_dev)
