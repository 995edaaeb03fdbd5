"""p50/p95 latency of ``POST /v2`` for a 1 MP JPEG, and what the service adds over the bare pipeline.

Starts a private ``clearcut dev`` stack (SeaweedFS, Valkey, SQLite, one Celery worker, gunicorn) on free
ports, sends sequential requests with ``cache=false`` (so every request runs the model), and compares with
``clearcut.pipeline.process`` on the same bytes in this process.

    .venv/bin/python benchmarks/api_latency.py [--models u2netp,isnet-general] [--requests 20]
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def start_stack(data_dir: Path, settings: dict | None = None, timeout: float = 180):
    """A private ``clearcut dev`` stack on free ports: returns (process, base URL, demo key).

    The caller's CLEARCUT_* variables are dropped (but the model dir) and ``settings`` applied."""
    from clearcut.local.services import SeaweedPorts, free_port

    api_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARCUT_") or k == "CLEARCUT_MODEL_DIR"}
    env.update(settings or {})
    proc = subprocess.Popen([sys.executable, "-m", "clearcut.cli", "dev", "--data-dir", str(data_dir),
                             "--api-port", str(api_port), "--s3-port", str(SeaweedPorts.free().s3),
                             "--redis-port", str(free_port())], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    key, deadline = None, time.monotonic() + timeout
    while key is None and time.monotonic() < deadline:
        match = re.search(r"demo key: (\S+)", lines.get(timeout=timeout))
        key = match.group(1) if match else None
    url = f"http://127.0.0.1:{api_port}"
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/v2/health", timeout=5).status_code == 200:
                return proc, url, key
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError("the stack did not become healthy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="u2netp,isnet-general")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "api_latency.json"))
    args = parser.parse_args()

    from benchmarks.speed import make_input
    from clearcut.options import parse
    from clearcut.pipeline import process

    image = make_input(1.0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, key = start_stack(Path(tmp))
        try:
            for model in args.models.split(","):
                options = parse({"model": model})
                process(image, options)
                bare = []
                for _ in range(args.requests):
                    start = time.perf_counter()
                    process(image, options)
                    bare.append((time.perf_counter() - start) * 1000)
                session = requests.Session()
                fields = {"model": model, "cache": "false", "format": "png"}
                session.post(f"{url}/v2", headers={"x-api-key": key}, files={"image_file": ("a.jpg", image)},
                             data=fields, timeout=120).raise_for_status()  # warm the worker's session
                api = []
                for _ in range(args.requests):
                    start = time.perf_counter()
                    r = session.post(f"{url}/v2", headers={"x-api-key": key},
                                     files={"image_file": ("a.jpg", image, "image/jpeg")}, data=fields, timeout=120)
                    r.raise_for_status()
                    api.append((time.perf_counter() - start) * 1000)
                row = {"model": model, "requests": args.requests,
                       "api_p50_ms": round(statistics.median(api), 1), "api_p95_ms": round(percentile(api, 95), 1),
                       "bare_p50_ms": round(statistics.median(bare), 1),
                       "bare_p95_ms": round(percentile(bare, 95), 1)}
                row["overhead_p50_ms"] = round(row["api_p50_ms"] - row["bare_p50_ms"], 1)
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=60)
    print(f"\n{'model':15} {'API p50':>8} {'API p95':>8} {'bare p50':>9} {'overhead p50':>13}")
    for r in rows:
        print(f"{r['model']:15} {r['api_p50_ms']:>8.0f} {r['api_p95_ms']:>8.0f} {r['bare_p50_ms']:>9.0f} "
              f"{r['overhead_p50_ms']:>13.0f}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"cpu_count": os.cpu_count(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
