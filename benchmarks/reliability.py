"""Reliability scorecard: faults, load, soak and hostile input against real processes on 127.0.0.1.

Starts a private stack (never the machine's shared PostgreSQL/Redis): embedded PostgreSQL, Valkey,
SeaweedFS, Celery workers (u2netp), a Celery beat (sweeper every few seconds) and gunicorn. Then:

* faults — each: N jobs in flight (``POST /v2/jobs``, unique synthetic scenes, ``cache=false``),
  inject, wait, then count jobs lost, duplicated (usage rows > 1), stuck (not terminal) and wrong
  (failed, or a cutout whose alpha disagrees with the scene's true mask):
  worker SIGKILL mid-inference, worker SIGTERM, Redis restart with persistence on and off (off: the
  sweeper must rebuild everything from the SQL rows), S3 down ``--s3-down`` seconds under load,
  PostgreSQL restart, webhook receiver down → slow → 500 → healthy (one success per job, at most one
  per message id), unwritable model dir at worker start, and the ``clearcut dev`` supervisor
  restarting a SIGKILLed worker with jobs in flight;
* load — ``--clients`` concurrent clients for ``--load-s`` seconds against ``POST /v2`` and
  ``POST /v2/jobs``: throughput, p50/p95/p99, error mix, 5xx, hung connections;
* soak — ``--soak`` sequential ``POST /v2``: RSS slope of the API and worker processes;
* hostile — the tests/corpus files and hostile requests against the live server.

Ends with one line per category and writes ``benchmarks/results/reliability.json``. Every loop is
bounded; everything stops by itself.

    .venv/bin/python benchmarks/reliability.py [--quick] [--only faults,load,soak,hostile]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clearcut import config  # noqa: E402
from clearcut.local.services import (LOCALHOST, SeaweedPorts, free_port, spawn, start_postgres,  # noqa: E402
                                     start_seaweedfs, start_valkey, stop_process_group, wait_until)

TERMINAL = ("succeeded", "failed", "canceled")
BIG_QUEUE = "big"   # a worker of its own runs the 24 MP job beside each fault


def overrides(args) -> dict:
    """Settings the command line changes; everything else (lease, sweeper, deadline, limits) is default."""
    named = {"CLEARCUT_SWEEP_INTERVAL_S": args.sweep_s, "CLEARCUT_JOB_DEADLINE_S": args.deadline_s,
             "CLEARCUT_JOB_LEASE_S": args.lease_s}
    return {name: str(value) for name, value in named.items() if value is not None}


def log(message: str) -> None:
    print(f"[reliability {time.strftime('%H:%M:%S')}] {message}", flush=True)


def percentile(values, q):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


# --------------------------------------------------------------------------------------------
# images with a known answer


def scene(seed: int, width: int = 160, height: int = 120) -> tuple[bytes, np.ndarray]:
    """A red disc at a seeded position on a gradient (PNG bytes) and its true mask."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    radius = int(rng.integers(22, 34))
    cx, cy = int(rng.integers(radius + 4, width - radius - 4)), int(rng.integers(radius + 4, height - radius - 4))
    yy, xx = np.mgrid[0:height, 0:width]
    bg = np.dstack([200 + 30 * xx / width, 210 + 20 * yy / height, 230 * np.ones_like(xx)]).astype(np.uint8)
    image = Image.fromarray(bg)
    ImageDraw.Draw(image).ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=(200, 30, 40))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue(), ((xx - cx) ** 2 + (yy - cy) ** 2) <= radius ** 2


def iou(data: bytes, mask: np.ndarray) -> float:
    from PIL import Image

    alpha = np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))[:, :, 3] > 127
    if alpha.shape != mask.shape:
        return 0.0
    return float((alpha & mask).sum() / max(1, (alpha | mask).sum()))


# --------------------------------------------------------------------------------------------
# the private stack


class Stack:
    """Every process of a private deployment, each restartable on the same ports and data."""

    def __init__(self, workdir: Path, args):
        self.dir, self.args = workdir, args
        self.pg = self.valkey = self.s3 = None
        self.workers: list[subprocess.Popen] = []
        self.side: list[subprocess.Popen] = []   # the worker of the 24 MP job beside the faults
        self.beat = self.api = None
        self.api_port = free_port()
        self.redis_port = free_port()
        self.s3_ports = SeaweedPorts.free()
        self.s3_creds = dict(access_key="rel-" + uuid.uuid4().hex[:6], secret_key=uuid.uuid4().hex, bucket="reliability")
        self.url = f"http://{LOCALHOST}:{self.api_port}"
        self.redis_persist = True

    # ---- services
    def start_services(self) -> None:
        log("starting embedded PostgreSQL, Valkey and SeaweedFS (private, 127.0.0.1)")
        self.pg = start_postgres()   # its own private directory (readable by its unprivileged user)
        self.start_redis(persist=True)
        self.start_s3()
        self.env = {
            **os.environ, "PYTHONUNBUFFERED": "1",
            "CLEARCUT_DATABASE_URL": self.pg.url, "CLEARCUT_REDIS_URL": f"redis://{LOCALHOST}:{self.redis_port}/0",
            "CLEARCUT_BROKER_PREFIX": "rel:", **self.s3.settings,
            "CLEARCUT_DATA_DIR": str(self.dir / "data"),
            "CLEARCUT_MODEL_DIR": str(config.get("CLEARCUT_MODEL_DIR")),
            "CLEARCUT_DEFAULT_MODEL": "u2netp", "CLEARCUT_LOG_FORMAT": "text",
            "CLEARCUT_URL_ALLOWLIST": "127.0.0.1", "CLEARCUT_RATE_LIMIT_PER_MINUTE": "0",
            **overrides(self.args),
            "CLEARCUT_WEBHOOK_BACKOFF_S": "0,2,2,2,2,2,2,2,2,2,2,2", "CLEARCUT_WEBHOOK_JITTER": "0",
            "CLEARCUT_WEBHOOK_TIMEOUT_S": "2", "CLEARCUT_PUBLIC_URL": self.url,
            "CLEARCUT_ORT_THREADS": "1",
        }
        from clearcut.db import upgrade

        upgrade(self.pg.url)

    def start_redis(self, persist: bool) -> None:
        self.redis_persist = persist
        self.valkey = start_valkey(self.redis_port, data_dir=(self.dir / "valkey") if persist else None)

    def restart_redis(self, persist: bool, down_s: float = 2.0) -> None:
        self.valkey.stop()
        time.sleep(down_s)
        self.start_redis(persist)

    def start_s3(self) -> None:
        c = self.s3_creds
        self.s3 = start_seaweedfs(self.dir, ports=self.s3_ports, bucket=c["bucket"], access_key=c["access_key"],
                                  secret_key=c["secret_key"], region="us-east-1", timeout=90)

    def stop_pg(self) -> None:
        stop_process_group(self.pg.process, sig=signal.SIGINT, timeout=20)   # keeps its data directory

    def start_pg_again(self) -> None:
        from clearcut.local.services import _postgres_bin

        root, port = Path(self.pg.root), int(self.pg.url.rsplit(":", 1)[1].split("/")[0])
        user = "nobody" if os.geteuid() == 0 else None
        argv = [str(_postgres_bin() / "postgres"), "-D", str(root / "data"), "-h", LOCALHOST, "-p", str(port),
                "-k", str(root), "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": str(root)}
        self.pg.process = spawn(argv, log_path=root / "postgres.log", env=env, cwd=root, user=user)

        def probe():
            import psycopg

            psycopg.connect(host=LOCALHOST, port=port, user="postgres", dbname="postgres", connect_timeout=2).close()
        wait_until(probe, timeout=60, what="PostgreSQL (restart)")

    # ---- app processes
    def start_worker(self, extra: dict | None = None, name: str | None = None,
                     queues: str = "cpu,batch,webhooks") -> subprocess.Popen:
        name = name or f"rel-{uuid.uuid4().hex[:6]}"
        logfile = self.dir / "logs" / f"{name}.log"
        proc = spawn([sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", queues,
                      "--concurrency", "1", "-n", f"{name}@%h", "--without-gossip", "--without-mingle",
                      "--loglevel", "INFO"], env={**self.env, **(extra or {})}, cwd=ROOT, log_path=logfile)
        proc.log_path = logfile
        (self.workers if queues != BIG_QUEUE else self.side).append(proc)
        return proc

    def start_beat(self) -> None:
        self.beat = spawn([sys.executable, "-m", "celery", "-A", "worker.celery_app", "beat", "--loglevel", "INFO",
                           "--schedule", str(self.dir / "beat-schedule")], env=self.env, cwd=ROOT,
                          log_path=self.dir / "logs" / "beat.log")

    def start_api(self) -> None:
        self.api = spawn([sys.executable, "-m", "gunicorn", "--bind", f"{LOCALHOST}:{self.api_port}", "--workers", "1",
                          "--threads", str(self.args.api_threads), "--timeout", "120", "--graceful-timeout", "5",
                          "app:create_app()"], env=self.env, cwd=ROOT, log_path=self.dir / "logs" / "api.log")

        def probe():
            requests.get(self.url + "/livez", timeout=2).raise_for_status()
        wait_until(probe, timeout=90, what="gunicorn", alive=lambda: self.api.poll() is None,
                   log_path=self.dir / "logs" / "api.log")

    def wait_worker_ready(self, proc, timeout=120) -> None:
        def probe():
            if "ready." not in Path(proc.log_path).read_text(errors="replace"):
                raise RuntimeError("not ready")
        wait_until(probe, timeout=timeout, what="celery worker", alive=lambda: proc.poll() is None,
                   log_path=proc.log_path, interval=0.3)

    def key(self, name: str) -> str:
        from clearcut import accounts
        from clearcut.db import sessionmaker_for

        with sessionmaker_for(self.pg.url).begin() as session:
            account = accounts.get_or_create_account(session, name)
            return accounts.create_key(session, account)[1]

    def stop(self) -> None:
        for proc in [self.api, self.beat, *self.workers, *self.side]:
            if proc is not None and proc.poll() is None:
                stop_process_group(proc, timeout=10)
        for service in (self.s3, self.valkey, self.pg):
            if service is not None:
                try:
                    service.stop()
                except Exception:  # noqa: BLE001 - best effort at exit
                    pass


def pool_children(proc: subprocess.Popen) -> list[int]:
    import psutil

    try:
        return [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


# --------------------------------------------------------------------------------------------
# jobs in flight and their accounting


@dataclass
class Flight:
    ids: dict = field(default_factory=dict)      # job id -> mask
    submit_errors: list = field(default_factory=list)


def submit_jobs(stack: Stack, key: str, n: int, seed: int, extra: dict | None = None, retry_s: float = 60) -> Flight:
    """Submit ``n`` jobs; a 5xx/connection error during a fault is retried (as a client would) until
    ``retry_s`` — the attempt is recorded either way."""
    flight = Flight()
    for i in range(n):
        data, mask = scene(seed * 1000 + i)
        deadline = time.monotonic() + retry_s
        while True:
            try:
                r = requests.post(stack.url + "/v2/jobs", headers={"x-api-key": key, "Idempotency-Key": f"s{seed}-{i}"},
                                  files={"image_file": ("s.png", data, "image/png")},
                                  data={"cache": "false", **(extra or {})}, timeout=30)
                if r.status_code == 202:
                    flight.ids[r.json()["id"]] = mask
                    break
                flight.submit_errors.append(r.status_code)
            except requests.RequestException as exc:
                flight.submit_errors.append(type(exc).__name__)
            if time.monotonic() > deadline:
                break
            time.sleep(1)
    return flight


def settle(stack: Stack, key: str, flight: Flight, timeout: float, fault_at: float | None = None) -> dict:
    """Wait until every job is terminal (or ``timeout``), then count lost/duplicated/stuck/wrong, and
    (with ``fault_at``, a time.time()) the seconds from the fault to each job's success that came after it."""
    from sqlalchemy import func, select

    from clearcut.db import sessionmaker_for
    from clearcut.db.models import Job, Usage

    db = sessionmaker_for(stack.pg.url)
    deadline = time.monotonic() + timeout
    rows, finished = {}, []
    while time.monotonic() < deadline:
        try:
            with db() as session:
                found = list(session.scalars(select(Job).where(Job.id.in_(list(flight.ids)))))
                rows = {j.id: (j.status, j.error_code, j.attempts) for j in found}
                finished = [j.finished_at.timestamp() for j in found if j.status == "succeeded" and j.finished_at]
            if len(rows) == len(flight.ids) and all(s in TERMINAL for s, _, _ in rows.values()):
                break
        except Exception:  # noqa: BLE001 - the database may be the thing that is down
            pass
        time.sleep(1)
    with db() as session:
        usage = dict(session.execute(select(Usage.job_id, func.count()).where(Usage.job_id.in_(list(flight.ids)))
                                     .group_by(Usage.job_id)).all())
    lost = len(flight.ids) - len(rows)
    stuck = sum(1 for s, _, _ in rows.values() if s not in TERMINAL)
    duplicated = sum(1 for n in usage.values() if n > 1)
    wrong, failed_codes = 0, {}
    for job_id, (status, code, _) in rows.items():
        if status == "failed":
            wrong += 1
            failed_codes[code] = failed_codes.get(code, 0) + 1
        elif status == "succeeded":
            r = requests.get(f"{stack.url}/v2/jobs/{job_id}/result", headers={"x-api-key": key}, timeout=30)
            if r.status_code != 200 or iou(r.content, flight.ids[job_id]) < 0.8:
                wrong += 1
    redelivered = sum(1 for _, _, a in rows.values() if a and a > 1)
    recovery = sorted(t - fault_at for t in finished if t > fault_at) if fault_at is not None else []
    return {"recovery_p50_s": round(statistics.median(recovery), 1) if recovery else None,
            "recovery_max_s": round(max(recovery), 1) if recovery else None, "recovered_jobs": len(recovery),"jobs": len(flight.ids), "lost": lost, "duplicated": duplicated, "stuck": stuck, "wrong": wrong,
            "failed_codes": failed_codes, "redelivered": redelivered,
            "submit_retries": len(flight.submit_errors), "submit_errors": sorted(set(map(str, flight.submit_errors)))}


def processing_started(stack: Stack, ids, timeout=60) -> bool:
    from sqlalchemy import select

    from clearcut.db import sessionmaker_for
    from clearcut.db.models import Job

    db = sessionmaker_for(stack.pg.url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db() as session:
            if session.scalar(select(Job.id).where(Job.id.in_(list(ids)), Job.status == "processing").limit(1)):
                return True
        time.sleep(0.05)
    return False


# --------------------------------------------------------------------------------------------
# faults


class Beside:
    """A 24 MP cutout (the ``quality`` preset, one ORT thread) on a worker of its own while a fault hits the
    others: it must finish once, never re-enqueued or taken over (a slow job, not a lost one)."""

    def __init__(self, stack: Stack, key: str, seed: int):
        from PIL import Image

        from clearcut import accounts, jobs
        from clearcut.context import Context
        from clearcut.db import sessionmaker_for
        from clearcut.options import parse
        from worker.celery_app import create_celery

        rng = np.random.default_rng(seed)
        pixels = rng.integers(0, 255, (4000, 6000, 3), dtype=np.uint8)
        pixels[1000:3000, 2000:4000] = (200, 30, 40)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
        self.stack, ctx = stack, Context.from_env(stack.env)
        with sessionmaker_for(stack.pg.url).begin() as session:
            account = accounts.get_or_create_account(session, "reliability-beside")
        self.job_id = jobs.submit(ctx, account, None, buffer.getvalue(), "image/jpeg", parse({"model": "quality"}),
                                  use_cache=False, queue=BIG_QUEUE).job.id
        app = create_celery(environ=stack.env)
        app.send_task("clearcut.process_job", args=[self.job_id], queue=BIG_QUEUE)
        app.close()
        processing_started(stack, [self.job_id], timeout=120)

    def result(self, timeout: float = 300) -> dict:
        from clearcut.db import sessionmaker_for
        from clearcut.db.models import Job, Usage
        from sqlalchemy import func, select

        db = sessionmaker_for(self.stack.pg.url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with db() as session:
                row = session.get(Job, self.job_id)
                if row.status in TERMINAL:
                    break
            time.sleep(1)
        with db() as session:
            row = session.get(Job, self.job_id)
            usage = session.scalar(select(func.count()).select_from(Usage).where(Usage.job_id == self.job_id))
        seconds = (row.finished_at - row.started_at).total_seconds() if row.finished_at else None
        return {"status": row.status, "attempts": row.attempts, "sweeps": row.sweeps, "usage_rows": usage,
                "seconds": round(seconds, 1) if seconds else None,
                "unharmed": row.status == "succeeded" and row.attempts == 1 and row.sweeps == 0 and usage == 1}


def sync_request(stack, key, seed: int, out: dict) -> threading.Thread:
    """A ``POST /v2`` caught in the fault: records its status and how long it waited."""
    data, mask = scene(seed)

    def run():
        t0 = time.monotonic()
        try:
            r = requests.post(stack.url + "/v2", headers={"x-api-key": key}, files={"image_file": ("s.png", data)},
                              data={"cache": "false"}, timeout=120)
            out.update(status=r.status_code, ok=r.status_code == 200 and iou(r.content, mask) > 0.8)
        except requests.RequestException as exc:
            out.update(status=type(exc).__name__, ok=False)
        out["seconds"] = round(time.monotonic() - t0, 1)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def fault_worker_signal(stack, key, args, sig, group: bool = False) -> dict:
    worker = stack.workers[-1]
    flight = submit_jobs(stack, key, args.jobs, seed=int(sig) * 7 + group)
    started = processing_started(stack, flight.ids)
    sync: dict = {}
    fault_at = time.time()
    if sig == signal.SIGKILL:
        beside = Beside(stack, key, seed=int(sig) + group)
        waiting = sync_request(stack, key, 8000 + group, sync)
        time.sleep(0.5)
        fault_at = time.time()
        if group:
            os.killpg(worker.pid, signal.SIGKILL)            # a lost node: the whole process group at once
        else:
            for pid in [worker.pid, *pool_children(worker)]:   # every worker process: mid-inference
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        worker.wait(10)
    else:
        os.killpg(worker.pid, signal.SIGTERM)               # warm shutdown: finish the current job
        try:
            worker.wait(90)
        except subprocess.TimeoutExpired:
            stop_process_group(worker, timeout=5)
    stop_process_group(worker, timeout=2)
    replacement = stack.start_worker()   # what the supervisor does: a worker is available again
    stack.wait_worker_ready(replacement)
    result = {"injected_mid_job": started, **settle(stack, key, flight, args.settle_s, fault_at)}
    if sig == signal.SIGKILL:
        waiting.join(150)
        result["sync_request"] = sync
        result["beside_24mp"] = beside.result()
        result["survived"] = (result["lost"] == result["duplicated"] == result["stuck"] == result["wrong"] == 0
                              and result["beside_24mp"]["unharmed"] and sync.get("ok", False))
    return result


def fault_redis(stack, key, args, persist: bool, flush: bool = False) -> dict:
    if stack.redis_persist != persist:   # switch mode first (not counted as the fault)
        stack.restart_redis(persist)
        time.sleep(3)
    flight = submit_jobs(stack, key, args.jobs, seed=(31 if persist else 37) + 2 * flush)
    processing_started(stack, flight.ids)
    beside = Beside(stack, key, seed=40 + persist + 2 * flush)
    fault_at = time.time()
    if flush:   # every message, binding and key gone while every client stays connected
        import redis

        redis.Redis(host=LOCALHOST, port=stack.redis_port).flushdb()
    else:
        stack.restart_redis(persist, down_s=3)
    result = settle(stack, key, flight, args.settle_s, fault_at)
    result["beside_24mp"] = beside.result()
    result["survived"] = (result["lost"] == result["duplicated"] == result["stuck"] == result["wrong"] == 0
                          and result["beside_24mp"]["unharmed"])
    return result


def fault_s3_threaded(stack, key, args) -> dict:
    """Submissions keep going in a thread while S3 is down; S3 restarts after ``--s3-down`` seconds."""
    results = {}
    first = submit_jobs(stack, key, args.jobs // 2, seed=41)
    processing_started(stack, first.ids)
    stack.s3.stop()
    log(f"  S3 stopped for {args.s3_down} s under load")
    thread = threading.Thread(target=lambda: results.setdefault(
        "during", submit_jobs(stack, key, args.jobs - args.jobs // 2, seed=43, retry_s=args.s3_down + 60)))
    thread.start()
    time.sleep(args.s3_down)
    stack.start_s3()
    thread.join(args.s3_down + 120)
    during = results.get("during", Flight())
    first.ids.update(during.ids)
    first.submit_errors += during.submit_errors
    return settle(stack, key, first, args.settle_s)


def fault_postgres(stack, key, args) -> dict:
    flight = submit_jobs(stack, key, args.jobs, seed=53)
    processing_started(stack, flight.ids)
    stack.stop_pg()
    time.sleep(5)
    stack.start_pg_again()
    return settle(stack, key, flight, args.settle_s)


class Receiver(BaseHTTPRequestHandler):
    mode = "down"
    seen: dict = {}          # webhook-id -> list of answered statuses
    lock = threading.Lock()

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        msg = self.headers.get("webhook-id")
        mode = Receiver.mode
        if mode == "slow":
            time.sleep(4)                     # beyond CLEARCUT_WEBHOOK_TIMEOUT_S=2
            status = 200
        else:
            status = 500 if mode == "500" else 200
        with Receiver.lock:
            Receiver.seen.setdefault(msg, []).append((status, json.loads(body or b"{}").get("data", {}).get("id")))
        try:
            self.send_response(status)
            self.end_headers()
        except OSError:
            pass

    def log_message(self, *a):
        pass


def fault_webhooks(stack, key, args) -> dict:
    port = free_port()
    requests.post(stack.url + "/v2/webhooks/secret/rotate", headers={"x-api-key": key}, timeout=10).raise_for_status()
    url = f"http://{LOCALHOST}:{port}/hook"
    Receiver.seen = {}
    flight = Flight()
    server = None
    phases = [("down", 8), ("slow", 10), ("500", 8), ("healthy", 0)]
    for index, (mode, seconds) in enumerate(phases):
        if mode != "down" and server is None:
            server = ThreadingHTTPServer((LOCALHOST, port), Receiver)
            threading.Thread(target=server.serve_forever, daemon=True).start()
        Receiver.mode = mode
        part = submit_jobs(stack, key, max(1, args.jobs // 4), seed=60 + index, extra={"webhook_url": url})
        flight.ids.update(part.ids)
        time.sleep(seconds)
    counts = settle(stack, key, flight, args.settle_s)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:   # retries every 2 s (short schedule) until each job has its 2xx
        with Receiver.lock:
            ok_jobs = {job for answers in Receiver.seen.values() for status, job in answers if status == 200}
        if set(flight.ids) <= ok_jobs:
            break
        time.sleep(1)
    with Receiver.lock:
        per_job_ok_messages = {}
        for msg, answers in Receiver.seen.items():
            for status, job in answers:
                if status == 200:
                    per_job_ok_messages.setdefault(job, set()).add(msg)
        attempts = sum(len(a) for a in Receiver.seen.values())
    server.shutdown()
    server.server_close()
    undelivered = sum(1 for j in flight.ids if j not in per_job_ok_messages)
    two_events = sum(1 for msgs in per_job_ok_messages.values() if len(msgs) > 1)
    counts.update({"webhook_undelivered": undelivered, "webhook_duplicate_events": two_events,
                   "webhook_attempts": attempts})
    counts["lost"] += undelivered
    counts["duplicated"] += two_events
    return counts


def fault_model_dir(stack, key, args) -> dict:
    """A worker whose model dir cannot be used: it must refuse clearly, not crash-loop or hang jobs."""
    blocker = stack.dir / "not-a-dir"
    blocker.write_text("a file where the model directory should be\n")
    proc = stack.start_worker({"CLEARCUT_MODEL_DIR": str(blocker / "models")}, name="rel-badmodels")
    time.sleep(20)
    text = Path(proc.log_path).read_text(errors="replace")
    exited = proc.poll() is not None
    pool_restarts = text.count("Process") and text.count("exited")
    clear = any(s in text for s in ("model_unavailable", "could not preload", "Not a directory", "model"))
    if proc.poll() is None:
        stop_process_group(proc, timeout=10)
    stack.workers.remove(proc)
    return {"jobs": 0, "lost": 0, "duplicated": 0, "stuck": 0, "wrong": 0, "worker_exited": exited,
            "clear_message": clear, "crash_loop": bool(pool_restarts and pool_restarts > 2),
            "survived": clear and not (pool_restarts and pool_restarts > 2)}


def fault_dev_supervisor(args, workdir: Path) -> dict:
    """``clearcut dev``: SIGKILL its worker with jobs in flight; the supervisor restarts it (backoff,
    logged reason) and the jobs finish."""
    data = workdir / "dev"
    api_port, redis_port = free_port(), free_port()
    s3_port = SeaweedPorts.free().s3
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARCUT_")}
    env.update({"CLEARCUT_DEFAULT_MODEL": "u2netp", "CLEARCUT_LOG_FORMAT": "text",
                "CLEARCUT_MODEL_DIR": str(config.get("CLEARCUT_MODEL_DIR")),
                **overrides(args),
                "CLEARCUT_ORT_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    out = workdir / "dev.out"
    proc = spawn([str(Path(sys.executable).parent / "clearcut"), "dev", "--data-dir", str(data), "--api-port", str(api_port),
                  "--redis-port", str(redis_port), "--s3-port", str(s3_port)], env=env, cwd=ROOT, log_path=out)
    url = f"http://{LOCALHOST}:{api_port}"
    try:
        def ready():
            text = out.read_text(errors="replace")
            if "demo key:" not in text:
                raise RuntimeError("not yet")
            return text.split("demo key:")[1].split()[0]
        key = wait_until(ready, timeout=180, what="clearcut dev", alive=lambda: proc.poll() is None, log_path=out)

        class DevStack:  # enough of Stack for submit_jobs/settle
            pass
        dev = DevStack()
        dev.url = url
        dev.pg = type("PG", (), {"url": f"sqlite:///{(data / 'clearcut.db').resolve()}"})()
        from clearcut.endpoints import database_url

        dev.pg.url = database_url({"CLEARCUT_DATA_DIR": str(data.resolve())})
        flight = submit_jobs(dev, key, args.jobs, seed=71)
        import psutil

        workers = [p for p in psutil.Process(proc.pid).children() if "celery" in " ".join(p.cmdline())]
        processing_started(dev, flight.ids)
        for w in workers:
            for p in [w, *w.children(recursive=True)]:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
        counts = settle(dev, key, flight, args.settle_s + 60)
        text = out.read_text(errors="replace")
        counts["supervisor_logged_restart"] = "worker: killed by SIGKILL" in text and "restarting in" in text
        return counts
    finally:
        stop_process_group(proc, timeout=30)


# --------------------------------------------------------------------------------------------
# load, soak, hostile


def run_load(stack, key, args) -> dict:
    images = [scene(9000 + i)[0] for i in range(8)]
    latencies = {"/v2": [], "/v2/jobs": []}
    statuses: dict = {}
    hung = 0
    retry_after_missing = 0
    stop_at = time.monotonic() + args.load_s
    lock = threading.Lock()

    def client(n: int):
        nonlocal hung, retry_after_missing
        session = requests.Session()
        i = 0
        while time.monotonic() < stop_at:
            path = "/v2" if (n + i) % 2 == 0 else "/v2/jobs"
            t0 = time.perf_counter()
            try:
                r = session.post(stack.url + path, headers={"x-api-key": key},
                                 files={"image_file": ("l.png", images[(n + i) % len(images)], "image/png")},
                                 timeout=(5, 90))
                code = r.status_code
                if code in (429, 503) and "Retry-After" not in r.headers:
                    with lock:
                        retry_after_missing += 1
            except requests.Timeout:
                code = "timeout"
                with lock:
                    hung += 1
            except requests.RequestException as exc:
                code = type(exc).__name__
            with lock:
                statuses[str(code)] = statuses.get(str(code), 0) + 1
                if code in (200, 202):
                    latencies[path].append(time.perf_counter() - t0)
            i += 1

    t0 = time.monotonic()
    with ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(client, range(args.clients)))
    elapsed = time.monotonic() - t0
    ok = sum(len(v) for v in latencies.values())
    fivexx = sum(n for c, n in statuses.items() if c.isdigit() and int(c) >= 500)
    return {"clients": args.clients, "seconds": round(elapsed, 1), "requests": sum(statuses.values()),
            "ok": ok, "throughput_rps": round(ok / elapsed, 2), "status_mix": statuses, "5xx": fivexx,
            "hung": hung, "overload_without_retry_after": retry_after_missing,
            **{f"{p}_{q}_ms": (round(1000 * percentile(v, q), 1) if v else None)
               for p, v in latencies.items() for q in (50, 95, 99)}}


def rss_mb(pids) -> float:
    import psutil

    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2 ** 20


def slope_per_1000(xs, ys) -> float | None:
    if len(xs) < 3:
        return None
    return round(float(np.polyfit(xs, ys, 1)[0]) * 1000, 2)


def run_soak(stack, key, args) -> dict:
    import psutil

    api_pids = lambda: [stack.api.pid, *[c.pid for c in psutil.Process(stack.api.pid).children(recursive=True)]]  # noqa: E731
    worker = stack.workers[-1]
    worker_pids = lambda: [worker.pid, *pool_children(worker)]  # noqa: E731
    samples, errors = [], 0
    session = requests.Session()
    t0 = time.monotonic()
    for i in range(args.soak):
        data, _ = scene(20000 + (i % 50))
        try:
            r = session.post(stack.url + "/v2", headers={"x-api-key": key},
                             files={"image_file": ("s.png", data, "image/png")},
                             data={"cache": "true" if i % 2 else "false"}, timeout=60)
            errors += r.status_code != 200
        except requests.RequestException:
            errors += 1
        if i % max(1, args.soak // 20) == 0 or i == args.soak - 1:
            samples.append((i, rss_mb(api_pids()), rss_mb(worker_pids())))
    half = [s for s in samples if s[0] >= args.soak // 2]
    return {"requests": args.soak, "errors": errors, "seconds": round(time.monotonic() - t0, 1),
            "api_rss_mb": [round(s[1], 1) for s in samples], "worker_rss_mb": [round(s[2], 1) for s in samples],
            "api_slope_mb_per_1000": slope_per_1000([s[0] for s in half], [s[1] for s in half]),
            "worker_slope_mb_per_1000": slope_per_1000([s[0] for s in half], [s[2] for s in half])}


def run_hostile(stack, key, args) -> dict:
    from tests.corpus import build as corpus
    from tests.corpus import hostile_requests

    tried = clean = fivexx = 0
    mismatches = []
    for case, data in corpus.cases():
        r = requests.post(stack.url + "/v2", headers={"x-api-key": key},
                          files={"image_file": (case.name, data)}, data={"cache": "false"}, timeout=120)
        tried += 1
        fivexx += r.status_code >= 500
        got = r.json()["error"]["code"] if r.status_code >= 400 else None
        if r.status_code == case.status and got == case.code:
            clean += 1
        else:
            mismatches.append((case.name, r.status_code, got))
    limit = 30 * 1024 * 1024
    for case in hostile_requests.build(limit):
        headers = {"x-api-key": key, **case.headers}
        if case.content_type:
            headers["Content-Type"] = case.content_type
        try:
            r = requests.post(stack.url + case.path, headers=headers, data=case.body, timeout=120)
            status, got = r.status_code, (r.json().get("error", {}).get("code") if r.status_code >= 400 else None)
        except requests.RequestException as exc:
            status, got = type(exc).__name__, None
        tried += 1
        fivexx += isinstance(status, int) and status >= 500
        if status == case.status and got == case.code:
            clean += 1
        else:
            mismatches.append((case.name, status, got))
    data, mask = scene(424242)
    after = requests.post(stack.url + "/v2", headers={"x-api-key": key}, files={"image_file": ("ok.png", data)},
                          data={"cache": "false"}, timeout=120)
    return {"tried": tried, "refused_cleanly": clean, "5xx": fivexx, "mismatches": mismatches,
            "normal_job_after": after.status_code == 200 and iou(after.content, mask) > 0.8}


# --------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="faults,load,soak,hostile")
    parser.add_argument("--jobs", type=int, default=8, help="jobs in flight per fault")
    parser.add_argument("--clients", type=int, default=32, help="concurrent load clients (full scale: 200)")
    parser.add_argument("--load-s", type=float, default=60, help="load duration (full scale: 120)")
    parser.add_argument("--soak", type=int, default=400, help="sequential soak requests (full scale: 5000)")
    parser.add_argument("--s3-down", type=float, default=30)
    parser.add_argument("--sweep-s", type=float, default=None, help="CLEARCUT_SWEEP_INTERVAL_S (default: the default)")
    parser.add_argument("--deadline-s", type=float, default=None, help="CLEARCUT_JOB_DEADLINE_S (default: the default)")
    parser.add_argument("--lease-s", type=float, default=None, help="CLEARCUT_JOB_LEASE_S (default: the default)")
    parser.add_argument("--settle-s", type=float, default=150, help="deadline for jobs to become terminal")
    parser.add_argument("--api-threads", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="smaller everything (a smoke run)")
    parser.add_argument("--skip", default="", help="comma-separated fault names to skip")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.clients, args.load_s, args.soak, args.s3_down = 4, 8, 20, 60, 10
    only = set(args.only.split(","))
    skip = set(filter(None, args.skip.split(",")))
    workdir = Path(tempfile.mkdtemp(prefix="clearcut-reliability-"))
    (workdir / "logs").mkdir()
    report: dict = {"config": {k: v for k, v in vars(args).items()}, "cpus": os.cpu_count(), "faults": {}}
    stack = Stack(workdir, args)
    started = time.monotonic()
    try:
        stack.start_services()
        stack.start_api()
        stack.start_beat()
        stack.wait_worker_ready(stack.start_worker())
        stack.wait_worker_ready(stack.start_worker(queues=BIG_QUEUE, name="rel-beside"))
        key = stack.key("reliability")
        log(f"stack ready at {stack.url} (work dir {workdir})")
        if "faults" in only:
            faults = [
                ("worker SIGKILL, every process, mid-inference",
                 lambda: fault_worker_signal(stack, key, args, signal.SIGKILL)),
                ("worker SIGKILL, whole process group (node lost)",
                 lambda: fault_worker_signal(stack, key, args, signal.SIGKILL, group=True)),
                ("worker SIGTERM (warm shutdown)", lambda: fault_worker_signal(stack, key, args, signal.SIGTERM)),
                ("Redis restart, persistence on", lambda: fault_redis(stack, key, args, True)),
                ("Redis restart, persistence off", lambda: fault_redis(stack, key, args, False)),
                ("Redis FLUSHDB, clients connected", lambda: fault_redis(stack, key, args, False, flush=True)),
                (f"S3 down {args.s3_down:g} s under load", lambda: fault_s3_threaded(stack, key, args)),
                ("PostgreSQL restart", lambda: fault_postgres(stack, key, args)),
                ("webhook receiver down/slow/500/healthy", lambda: fault_webhooks(stack, key, args)),
                ("unwritable model dir at worker start", lambda: fault_model_dir(stack, key, args)),
                ("clearcut dev restarts a SIGKILLed worker", lambda: fault_dev_supervisor(args, workdir)),
            ]
            for name, run in faults:
                if any(s in name for s in skip):
                    continue
                log(f"fault: {name}")
                t0 = time.monotonic()
                try:
                    result = run()
                except Exception as exc:  # noqa: BLE001 - a broken scenario is a failed scenario, not a crash
                    result = {"error": f"{type(exc).__name__}: {exc}", "jobs": 0, "lost": 0, "duplicated": 0,
                              "stuck": 0, "wrong": 0, "survived": False}
                result.setdefault("survived", result["lost"] == result["duplicated"] == result["stuck"]
                                  == result["wrong"] == 0 and result.get("supervisor_logged_restart", True))
                result["seconds"] = round(time.monotonic() - t0, 1)
                report["faults"][name] = result
                log(f"  -> {json.dumps(result, default=str)}")
        if "hostile" in only:
            log("hostile inputs")
            report["hostile"] = run_hostile(stack, key, args)
        if "load" in only:
            log(f"load: {args.clients} clients x {args.load_s:g} s")
            report["load"] = run_load(stack, key, args)
        if "soak" in only:
            log(f"soak: {args.soak} sequential requests")
            report["soak"] = run_soak(stack, key, args)
    finally:
        stack.stop()
    report["seconds"] = round(time.monotonic() - started, 1)
    print_table(report)
    out = ROOT / "benchmarks" / "results" / "reliability.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    log(f"wrote {out}")
    return 0


def print_table(report: dict) -> None:
    faults = report.get("faults", {})
    if faults:
        print("\n| fault | jobs | lost | dup | stuck | wrong | redelivered | recovery p50 / max (s) | 24 MP beside "
              "| sync POST /v2 | survived |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |")
        for name, r in faults.items():
            recovery = (f"{r['recovery_p50_s']} / {r['recovery_max_s']}" if r.get("recovery_max_s") is not None
                        else "-")
            big = r.get("beside_24mp")
            big = (f"{'unharmed' if big['unharmed'] else 'HARMED'} ({big['seconds']} s, {big['attempts']} attempt)"
                   if big else "-")
            sync = r.get("sync_request")
            sync = f"{sync.get('status')} after {sync.get('seconds')} s" if sync else "-"
            print(f"| {name} | {r.get('jobs', 0)} | {r['lost']} | {r['duplicated']} | {r['stuck']} | {r['wrong']} | "
                  f"{r.get('redelivered', '-')} | {recovery} | {big} | {sync} | {'yes' if r['survived'] else 'NO'} |")
    print()
    if faults:
        print(f"faults survived: {sum(r['survived'] for r in faults.values())}/{len(faults)} injected")
        print(f"jobs lost: {sum(r['lost'] for r in faults.values())} of {sum(r.get('jobs', 0) for r in faults.values())}"
              f" (duplicated {sum(r['duplicated'] for r in faults.values())}, stuck "
              f"{sum(r['stuck'] for r in faults.values())}, wrong {sum(r['wrong'] for r in faults.values())})")
    if "hostile" in report:
        h = report["hostile"]
        print(f"hostile inputs refused cleanly: {h['refused_cleanly']}/{h['tried']} tried "
              f"(normal job afterwards: {'ok' if h['normal_job_after'] else 'FAILED'})")
    fivexx = report.get("hostile", {}).get("5xx", 0) + report.get("load", {}).get("5xx", 0)
    print(f"5xx seen: {fivexx} (hostile + load)")
    if "load" in report:
        load = report["load"]
        print(f"load: {load['clients']} clients x {load['seconds']} s: {load['throughput_rps']} ok/s, "
              f"POST /v2 p50/p95/p99 {load['/v2_50_ms']}/{load['/v2_95_ms']}/{load['/v2_99_ms']} ms, "
              f"POST /v2/jobs p50/p95/p99 {load['/v2/jobs_50_ms']}/{load['/v2/jobs_95_ms']}/{load['/v2/jobs_99_ms']} ms, "
              f"hung {load['hung']}, mix {load['status_mix']}")
    if "soak" in report:
        soak = report["soak"]
        print(f"RSS slope (MB per 1000 requests, 2nd half of {soak['requests']}): API {soak['api_slope_mb_per_1000']}, "
              f"worker {soak['worker_slope_mb_per_1000']} (errors {soak['errors']})")


if __name__ == "__main__":
    sys.exit(main())
