"""Batch throughput versus the bare pipeline, and interactive ``POST /v2`` latency while a batch drains.

Starts a private ``clearcut dev`` stack (SeaweedFS, Valkey, SQLite, one Celery worker node with two
processes consuming ``cpu,batch,webhooks``, gunicorn) with u2netp, serves real product photos from a
local HTTP server, and:

1. measures sync ``POST /v2`` latency on the idle stack;
2. submits one batch of ``--items`` image URLs (``cache=false``, so every item runs the model) and,
   while it drains, keeps sending sync ``POST /v2`` requests one after another;
3. runs the bare pipeline (``clearcut.pipeline.process``) on the same images in two processes.

Throughput counts every image the workers processed during the batch (items + sync requests).
With ``--max-drain-s`` the measurement stops after that many seconds even if the batch has not
finished (the stack is then torn down): this is how a 10,000-item batch is shown on a 2-core machine
without waiting the ~50 minutes it takes to drain; throughput then counts the items finished so far.

    .venv/bin/python benchmarks/batch.py [--items 1000] [--megapixels 0.3] [--workers 2]
    .venv/bin/python benchmarks/batch.py --items 10000 --max-drain-s 300

``--mode import`` compares ``clearcut import`` with the stack's own batch throughput on the same stack:
first one batch of ``--items`` image URLs (``cache=false``, no sync requests beside it), then
``clearcut import`` of a folder of ``--items`` local photos (each file distinct, so no result comes from
the cache: uploads, polling and downloads included), and reports the import's rate relative to the
batch's and the client's CPU time per image (user + system of the ``clearcut import`` process).

    .venv/bin/python benchmarks/batch.py --mode import --items 1000
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SOURCES = [ROOT.parent / "shared" / "eval" / "product" / "images", ROOT.parent / "shared" / "eval" / "dev" / "images"]


from benchmarks.api_latency import percentile  # noqa: E402 - after the sys.path line


def photos(count: int, megapixels: float) -> list[bytes]:
    from PIL import Image

    paths = sorted(p for src in SOURCES if src.exists() for p in src.iterdir()
                   if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))[:count]
    out = []
    for path in paths:
        image = Image.open(path).convert("RGB")
        scale = (megapixels * 1e6 / (image.width * image.height)) ** 0.5
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    if not out:
        raise SystemExit("no images under ../shared/eval; cannot run")
    return out


def serve(images: list[bytes]):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            data = images[int(self.path.strip("/").split(".")[0]) % len(images)]
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def start_stack(data_dir: Path, workers: int):
    from benchmarks.api_latency import start_stack as start_dev_stack

    return start_dev_stack(data_dir, {
        "CLEARCUT_DEFAULT_MODEL": "u2netp", "CLEARCUT_WORKER_CONCURRENCY": str(workers),
        "CLEARCUT_URL_ALLOWLIST": "127.0.0.1", "CLEARCUT_RATE_LIMIT_PER_MINUTE": "0",
        "CLEARCUT_SYNC_TIMEOUT_S": "600"}, timeout=240)


def _bare_one(data: bytes) -> None:
    from clearcut.options import parse
    from clearcut.pipeline import process

    process(data, parse({"model": "u2netp", "format": "png"}))


def _bare_init() -> None:
    os.environ.setdefault("CLEARCUT_ORT_THREADS", "1")
    _bare_one(photos(1, 0.1)[0])  # load the model before the clock starts


def bare_throughput(images: list[bytes], count: int, workers: int) -> float:
    with ProcessPoolExecutor(workers, initializer=_bare_init) as pool:
        list(pool.map(_bare_one, images[:workers] * 2))  # every process warm
        start = time.perf_counter()
        list(pool.map(_bare_one, [images[i % len(images)] for i in range(count)], chunksize=4))
        return count / (time.perf_counter() - start)


def sync_request(session, url, key, image) -> float:
    start = time.perf_counter()
    r = session.post(f"{url}/v2", headers={"x-api-key": key}, files={"image_file": ("a.jpg", image, "image/jpeg")},
                     data={"cache": "false", "format": "png"}, timeout=600)
    r.raise_for_status()
    return (time.perf_counter() - start) * 1000


def wait_batch(session, url: str, key: str, batch_id: str, start: float, max_drain_s: float | None) -> dict:
    while True:
        status = session.get(f"{url}/v2/batches/{batch_id}?limit=1", headers={"x-api-key": key}, timeout=60).json()
        if status["status"] == "completed" or (max_drain_s and time.perf_counter() - start >= max_drain_s):
            return status
        time.sleep(1.0)


def import_mode(args, session, url: str, key: str, images: list[bytes], image_base: str, tmp: Path) -> dict:
    """One batch of URLs, then ``clearcut import`` of as many distinct local files, on the same stack."""
    items = [{"image_url": f"{image_base}/{i}.jpg", "external_id": f"B-{i}"} for i in range(args.items)]
    start = time.perf_counter()
    r = session.post(f"{url}/v2/batches", headers={"x-api-key": key}, timeout=600,
                     json={"items": items, "options": {"format": "png", "cache": False}})
    r.raise_for_status()
    status = wait_batch(session, url, key, r.json()["id"], start, args.max_drain_s)
    batch_s = time.perf_counter() - start
    finished = sum(status["counts"][s] for s in ("succeeded", "failed", "canceled"))
    folder = tmp / "catalog"
    folder.mkdir()
    for i in range(args.items):  # bytes after the JPEG end marker make every original distinct
        (folder / f"{i:05d}.jpg").write_bytes(images[i % len(images)] + f"clearcut-benchmark-{i}".encode())
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "clearcut.cli", "import", str(folder), "-o", str(tmp / "out"),
                          "--server", url, "--key", key, "--format", "png", "--yes", "--poll-interval", "0.5"],
                         cwd=ROOT, env={**os.environ, "CLEARCUT_BATCH_MAX_ITEMS": "10000"},
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import_s = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    with (tmp / "out" / "report.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    succeeded = sum(row["status"] == "succeeded" for row in rows)
    batch_rate, import_rate = finished / batch_s, succeeded / import_s
    return {"mode": "import", "import_exit_code": run.returncode, "batch_items_finished": finished,
            "batch_elapsed_s": round(batch_s, 1), "batch_items_per_s": round(batch_rate, 2),
            "import_items_succeeded": succeeded, "import_elapsed_s": round(import_s, 1),
            "import_items_per_s": round(import_rate, 2), "import_vs_batch": round(import_rate / batch_rate, 3),
            "client_cpu_ms_per_image": round(cpu_s * 1000 / max(1, len(rows)), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["batch", "import"], default="batch")
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--megapixels", type=float, default=0.3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--idle-requests", type=int, default=20)
    parser.add_argument("--max-drain-s", type=float, default=None,
                        help="stop measuring after this many seconds even if the batch is still draining")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "batch.json"))
    args = parser.parse_args()

    images = photos(50, args.megapixels)
    server, image_base = serve(images)
    result: dict = {"items": args.items, "workers": args.workers, "megapixels": args.megapixels,
                    "distinct_images": len(images), "cpu_count": os.cpu_count(), "model": "u2netp"}
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, key = start_stack(Path(tmp), args.workers)
        try:
            session = requests.Session()
            for image in images[:3]:
                sync_request(session, url, key, image)  # warm both worker processes
            if args.mode == "import":
                result.update(import_mode(args, session, url, key, images, image_base, Path(tmp)))
                return report_import(result, args)
            idle = [sync_request(session, url, key, images[i % len(images)]) for i in range(args.idle_requests)]
            items = [{"image_url": f"{image_base}/{i}.jpg", "external_id": f"SKU-{i}"} for i in range(args.items)]
            start = time.perf_counter()
            r = session.post(f"{url}/v2/batches", headers={"x-api-key": key}, timeout=600,
                             json={"items": items, "options": {"format": "png", "cache": False}})
            r.raise_for_status()
            submit_s = time.perf_counter() - start
            batch_id = r.json()["id"]
            during, done = [], threading.Event()

            def probe():
                probe_session = requests.Session()
                i = 0
                while not done.is_set():
                    during.append(sync_request(probe_session, url, key, images[(i * 7) % len(images)]))
                    i += 1
                    done.wait(0.5)
            prober = threading.Thread(target=probe, daemon=True)
            prober.start()
            status = wait_batch(session, url, key, batch_id, start, args.max_drain_s)
            elapsed = time.perf_counter() - start
            done.set()
            prober.join(timeout=600)
            finished = sum(status["counts"][s] for s in ("succeeded", "failed", "canceled"))
            processed = finished + len(during)
            result.update({
                "batch_submit_s": round(submit_s, 2), "batch_elapsed_s": round(elapsed, 1),
                "batch_completed": status["status"] == "completed", "batch_items_finished": finished,
                "batch_counts": status["counts"], "sync_requests_during_batch": len(during),
                "service_images_per_s": round(processed / elapsed, 2),
                "batch_items_per_s": round(finished / elapsed, 2),
                "sync_idle_p50_ms": round(statistics.median(idle), 1),
                "sync_idle_p95_ms": round(percentile(idle, 95), 1),
                "sync_during_batch_p50_ms": round(statistics.median(during), 1) if during else None,
                "sync_during_batch_p95_ms": round(percentile(during, 95), 1) if during else None,
            })
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=60)
    server.shutdown()
    result["bare_images_per_s"] = round(bare_throughput(images, min(args.items, 300), args.workers), 2)
    result["throughput_vs_bare"] = round(result["service_images_per_s"] / result["bare_images_per_s"], 3)
    print(json.dumps(result, indent=2))
    print(f"\n{'metric':34} {'value':>10}")
    for name in ("items", "batch_submit_s", "batch_items_finished", "batch_elapsed_s", "batch_items_per_s", "service_images_per_s", "bare_images_per_s",
                 "throughput_vs_bare", "sync_idle_p50_ms", "sync_idle_p95_ms", "sync_during_batch_p50_ms",
                 "sync_during_batch_p95_ms", "sync_requests_during_batch"):
        print(f"{name:34} {result[name]!s:>10}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def report_import(result: dict, args) -> int:
    print(json.dumps(result, indent=2))
    json_path = Path(args.json).with_name("batch_import.json") if args.json.endswith("batch.json") else Path(args.json)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
