"""Whole-service throughput against the rembg server: images/s, p50/p95 latency and server RSS.

Clearcut: a private ``clearcut dev`` stack (what ``make run`` starts: SeaweedFS, Valkey, SQLite, one
Celery worker node, gunicorn) per precision (``CLEARCUT_MODEL_PRECISION``), measured through
``POST /v2`` (sync: request -> image) and ``POST /v2/jobs`` (async: submit -> ``GET /v2/jobs/{id}``
polled until ``succeeded``). Every request has ``cache=false``, ``format=png``, ``size=full``, so each
runs the model and returns a full-size RGBA PNG, like rembg.

rembg: ``rembg s`` from ``rembg[cpu,cli]==2.0.86`` with the onnxruntime version Clearcut runs, in its
own venv (``--rembg-venv``, default ``var/rembg-venv``; created when missing, needs only PyPI), without
the Gradio UI, ``POST /api/remove`` with ``model=`` per request. It gets Clearcut's model files (symlinks
in a private ``U2NET_HOME``, ``var/rembg-home``, named as rembg looks for them: ``u2netp.onnx``,
``u2net.onnx``, ``isnet-general-use.onnx``), ``MODEL_CHECKSUM_DISABLED=1``, and a dead HTTP(S) proxy, so
a model it did not find would fail loudly instead of being downloaded. rembg has no int8 models: every
Clearcut precision is compared with rembg running the float file of the same architecture (``fast`` =
ISNet alone; ``quality`` has no rembg counterpart).

The servers run one after the other in the same invocation (rembg first), never at the same time.
Workload: ``--requests`` requests per cell from each of ``--concurrency`` client counts (N threads, each
sending its next request when the previous one answered); images/s = successful requests / wall time.
Inputs: the DIS5K object photos in ``../shared/eval/product`` large enough not to be upscaled,
center-cropped to 25:16 (16:25 for portrait) and resized to exactly 1250x800 (1 MP) or 2500x1600 (4 MP),
JPEG quality 90; requests cycle through ``--images`` of them. Every answer is checked after the timed
window (status, decodes as an image with alpha at the input's size); failures are counted as errors.
CPU: seconds of CPU time per successful image (``cpu_s_per_image``), per role of the server's process
tree (worker, api, s3, broker; rembg is one process) and for this benchmark's own client threads, which
share the machine with the server, counted over the timed window (not the checks after it). On N cores, N / total is the most images/s the cell could reach
with perfect overlap, so it says whether a cell is bound by work or by waiting. The JSON's conditions
record the CPU's int8 kernel family (``clearcut.models.cpu.int8_kernels``), because int8 speed depends
on the CPU: ISNet's int8 speed-up was 3.2x with VNNI and 1.7x on AVX2 without it (docs/int8.md).
Memory: RSS (and PSS, which counts pages shared between forked processes once) of the Clearcut API +
worker and their children (not SeaweedFS/Valkey), and of rembg's process tree, after every model was
loaded by a warm-up request and at the end.

    .venv/bin/python benchmarks/throughput.py [--models u2netp,u2net,isnet-general] [--precisions fp32,int8]
        [--sizes 1,4] [--requests 20] [--concurrency 1,4] [--modes sync,async] [--skip-rembg] [--quick]

Writes ``benchmarks/results/throughput.json``. int8 cells need ``clearcut models quantize NAME`` first
(models without a built int8 variant are skipped and listed).
"""
from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.api_latency import percentile, start_stack  # noqa: E402 - after the sys.path line

REMBG_VERSION = "2.0.86"
PHOTOS = ROOT.parent / "shared" / "eval" / "product" / "images"
SIZES = {1: (1250, 800), 4: (2500, 1600)}        # exactly 1 and 4 MP, 25:16
REMBG_FILES = {"u2netp": "u2netp", "u2net": "u2net", "isnet-general": "isnet-general-use"}
ARCHITECTURE = {"fast": "isnet-general"}          # presets that are one architecture
GIB = 1024 ** 3


class Failure(Exception):
    pass


# ---------------------------------------------------------------- inputs and checks

def make_inputs(megapixels: int, count: int) -> list[tuple[bytes, tuple[int, int]]]:
    from PIL import Image

    width, height = SIZES[megapixels]
    out = []
    for path in sorted(PHOTOS.glob("dis_*.jpg")):
        image = Image.open(path).convert("RGB")
        w, h = (width, height) if image.width >= image.height else (height, width)
        scale = max(w / image.width, h / image.height)
        if scale > 1:
            continue                                  # never upscale
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
        left, top = (image.width - w) // 2, (image.height - h) // 2
        buffer = io.BytesIO()
        image.crop((left, top, left + w, top + h)).save(buffer, "JPEG", quality=90)
        out.append((buffer.getvalue(), (w, h)))
        if len(out) == count:
            return out
    if not out:
        raise SystemExit(f"no photo of at least {megapixels} MP under {PHOTOS}; cannot run")
    return out


def check_image(data: bytes, size: tuple[int, int]) -> None:
    from PIL import Image

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as exc:  # noqa: BLE001 - any decode failure is the finding
        raise Failure(f"answer does not decode: {exc}")
    if image.size != size or "A" not in image.getbands():
        raise Failure(f"answer is {image.mode} {image.size}, expected RGBA {size}")


# ---------------------------------------------------------------- load generator

def run_load(send, inputs, count: int, concurrency: int, window_end=None) -> dict:
    """``count`` requests from ``concurrency`` threads. ``send(session, data, size)`` returns a check to run
    after the timed window (so decoding answers does not take CPU from the server while it is measured).
    ``window_end()``, if given, is called as the window closes, before the checks."""
    counter = itertools.count()
    latencies: list[float] = []
    checks: list = []
    errors: list[str] = []

    def client() -> None:
        session = requests.Session()
        while (i := next(counter)) < count:
            data, size = inputs[i % len(inputs)]
            start = time.perf_counter()
            try:
                check = send(session, data, size)
            except (Failure, requests.RequestException, ValueError, KeyError) as exc:
                errors.append(str(exc)[:300])
                continue
            latencies.append(time.perf_counter() - start)
            checks.append(check)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    closed = window_end() if window_end else None
    for check in checks:
        try:
            check()
        except (Failure, requests.RequestException) as exc:
            errors.append(str(exc)[:300])
    ok = count - len(errors)
    row = {"requests": count, "concurrency": concurrency, "errors": len(errors), "error_samples": errors[:3],
            "wall_s": round(wall, 2), "images_per_s": round(ok / wall, 3),
            "p50_s": round(statistics.median(latencies), 3) if latencies else None,
            "p95_s": round(percentile(latencies, 95), 3) if latencies else None}
    if window_end:
        row["window_end"] = closed
    return row


def clearcut_sender(url: str, key: str, model: str, mode: str, poll_s: float, timings: list | None = None):
    """``timings`` collects each succeeded async job's ``timings_ms`` (server-side stages)."""
    headers = {"x-api-key": key}
    fields = {"model": model, "format": "png", "size": "full", "cache": "false"}

    def sync(session, data, size):
        r = session.post(f"{url}/v2", headers=headers, files={"image_file": ("photo.jpg", data, "image/jpeg")},
                         data=fields, timeout=600)
        if r.status_code != 200:
            raise Failure(f"POST /v2: {r.status_code} {r.text[:200]}")
        return lambda: check_image(r.content, size)

    def asynchronous(session, data, size):
        r = session.post(f"{url}/v2/jobs", headers=headers, files={"image_file": ("photo.jpg", data, "image/jpeg")},
                         data=fields, timeout=600)
        if r.status_code != 202:
            raise Failure(f"POST /v2/jobs: {r.status_code} {r.text[:200]}")
        job, deadline = r.json()["id"], time.monotonic() + 600
        while time.monotonic() < deadline:
            detail = session.get(f"{url}/v2/jobs/{job}", headers=headers, timeout=60).json()
            status = detail["status"]
            if status == "succeeded":
                if timings is not None:
                    timings.append(detail["timings_ms"])
                def check():
                    result = requests.get(f"{url}/v2/jobs/{job}/result", headers=headers, timeout=120)
                    if result.status_code != 200:
                        raise Failure(f"GET result: {result.status_code} {result.text[:200]}")
                    check_image(result.content, size)
                return check
            if status in ("failed", "canceled"):
                raise Failure(f"job {job} {status}")
            time.sleep(poll_s)
        raise Failure(f"job {job} not done after 600 s")

    return sync if mode == "sync" else asynchronous


def rembg_sender(url: str, model: str):
    def send(session, data, size):
        r = session.post(f"{url}/api/remove", files={"file": ("photo.jpg", data, "image/jpeg")},
                         data={"model": REMBG_FILES[model]}, timeout=600)
        if r.status_code != 200:
            raise Failure(f"POST /api/remove: {r.status_code} {r.text[:200]}")
        return lambda: check_image(r.content, size)
    return send


# ---------------------------------------------------------------- memory

def memory(processes: list[psutil.Process]) -> dict:
    rss = pss = 0
    for process in processes:
        try:
            info = process.memory_full_info()
        except psutil.Error:
            continue
        rss, pss = rss + info.rss, pss + info.pss
    return {"rss_gib": round(rss / GIB, 3), "pss_gib": round(pss / GIB, 3), "processes": len(processes)}


def clearcut_processes(dev: subprocess.Popen) -> list[psutil.Process]:
    """The API (gunicorn) and the worker (celery) that ``clearcut dev`` runs, with their children."""
    out = []
    for child in psutil.Process(dev.pid).children():
        cmdline = " ".join(child.cmdline())
        if " celery " in cmdline or " gunicorn " in cmdline:
            out += [child, *child.children(recursive=True)]
    return out


ROLES = (("celery", "worker"), ("gunicorn", "api"), ("weed", "s3"), ("valkey", "broker"), ("rembg", "rembg"))


def cpu_seconds(root: subprocess.Popen) -> dict[str, float]:
    """CPU time (user + system) used so far by ``root``'s process tree, summed per role (worker, api, s3,
    broker, other), plus this benchmark's own process (``client``: it builds requests and reads answers)."""
    totals: dict[str, float] = {}
    for process in tree(root):
        try:
            cmdline, times = " ".join(process.cmdline()), process.cpu_times()
        except psutil.Error:
            continue
        role = next((name for marker, name in ROLES if marker in cmdline), "other")
        totals[role] = totals.get(role, 0.0) + times.user + times.system
    own = psutil.Process().cpu_times()
    totals["client"] = own.user + own.system
    return totals


def cpu_per_image(before: dict[str, float], after: dict[str, float], images: int) -> dict[str, float]:
    """CPU seconds per successful image and role between two ``cpu_seconds`` snapshots (a process that
    exited in between is not counted)."""
    spent = {role: after[role] - before.get(role, 0.0) for role in after}
    spent["total"] = sum(spent.values())
    return {role: round(seconds / max(images, 1), 3) for role, seconds in spent.items()}


def measured_load(root: subprocess.Popen, send, inputs, count: int, concurrency: int) -> dict:
    """``run_load`` with the server tree's CPU seconds per image (``cpu_s_per_image``) added."""
    before = cpu_seconds(root)
    row = run_load(send, inputs, count, concurrency, window_end=lambda: cpu_seconds(root))
    row["cpu_s_per_image"] = cpu_per_image(before, row.pop("window_end"), count - row["errors"])
    return row


def tree(process: subprocess.Popen) -> list[psutil.Process]:
    root = psutil.Process(process.pid)
    return [root, *root.children(recursive=True)]


# ---------------------------------------------------------------- rembg server

def ensure_rembg(venv: Path) -> dict:
    """The rembg venv, created or repaired with the pinned rembg and Clearcut's onnxruntime version."""
    from importlib.metadata import version

    ort = version("onnxruntime")
    python = venv / "bin" / "python"
    probe = "import importlib.metadata as m; print(m.version('rembg'), m.version('onnxruntime'))"

    def installed():
        if not python.exists():
            return None
        r = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
        return r.stdout.split() if r.returncode == 0 else None

    if installed() != [REMBG_VERSION, ort]:
        if not python.exists():
            subprocess.run([shutil.which("python3.11") or sys.executable, "-m", "venv", str(venv)], check=True)
        print(f"installing rembg[cpu,cli]=={REMBG_VERSION} onnxruntime=={ort} into {venv}", flush=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"rembg[cpu,cli]=={REMBG_VERSION}",
                        f"onnxruntime=={ort}"], check=True)
        if installed() != [REMBG_VERSION, ort]:
            raise SystemExit(f"{venv}: could not install rembg {REMBG_VERSION} with onnxruntime {ort}")
    return {"rembg": REMBG_VERSION, "onnxruntime": ort}


def rembg_home(model_dir: Path, models: list[str]) -> tuple[Path, list[str]]:
    """A private U2NET_HOME with Clearcut's files under rembg's names; returns it and the architectures
    placed (``fast`` counts as isnet-general)."""
    home = ROOT / "var" / "rembg-home"
    shutil.rmtree(home / "models", ignore_errors=True)   # rembg prefers <home>/models/<name>/ to the flat files
    home.mkdir(parents=True, exist_ok=True)
    placed = []
    for arch in dict.fromkeys(ARCHITECTURE.get(model, model) for model in models):
        source = model_dir / f"{arch}.onnx"
        if arch not in REMBG_FILES or not source.exists():
            continue
        link = home / f"{REMBG_FILES[arch]}.onnx"
        link.unlink(missing_ok=True)
        link.symlink_to(source.resolve())
        placed.append(arch)
    return home, placed


def start_rembg(venv: Path, home: Path, timeout: float = 180) -> tuple[subprocess.Popen, str]:
    from clearcut.local.services import free_port

    port = free_port()
    dead = "http://127.0.0.1:9"   # nothing listens: a download attempt fails instead of fetching weights
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update({"U2NET_HOME": str(home), "MODEL_CHECKSUM_DISABLED": "1", "HTTP_PROXY": dead, "HTTPS_PROXY": dead,
                "http_proxy": dead, "https_proxy": dead})
    proc = subprocess.Popen([str(venv / "bin" / "rembg"), "s", "--host", "127.0.0.1", "--port", str(port),
                             "--no-ui", "--log_level", "warning"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"rembg s exited with {proc.returncode}")
        try:
            if requests.get(f"{url}/api", timeout=5).status_code == 200:
                return proc, url
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError("rembg s did not answer")


# ---------------------------------------------------------------- runs

def measure_rembg(args, inputs, models: list[str]) -> tuple[list[dict], dict]:
    venv = Path(args.rembg_venv)
    versions = ensure_rembg(venv)
    home, placed = rembg_home(args.model_dir, models)
    skipped = sorted(m for m in models if ARCHITECTURE.get(m, m) not in placed)
    if skipped:
        print(f"rembg: no counterpart or file for {', '.join(skipped)}", flush=True)
    proc, url = start_rembg(venv, home)
    rows, mem = [], {"server": "rembg", "precision": "fp32", **versions}
    try:
        warm = requests.Session()
        for model in placed:         # one at a time: rembg's session cache has no lock
            for size in args.sizes:
                rembg_sender(url, model)(warm, *inputs[size][0])()
        mem["loaded"] = memory(tree(proc))
        for model, size, concurrency in itertools.product(placed, args.sizes, args.concurrency):
            row = {"server": "rembg", "precision": "fp32", "model": model, "megapixels": size, "mode": "sync",
                   **measured_load(proc, rembg_sender(url, model), inputs[size], args.requests, concurrency)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        mem["end"] = memory(tree(proc))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    downloaded = [p for p in (home / "models").rglob("*") if p.is_file()]
    if downloaded:
        raise SystemExit(f"rembg tried to fetch models into {home / 'models'}: {downloaded}")
    return rows, mem


def measure_clearcut(args, inputs, precision: str, models: list[str]) -> tuple[list[dict], dict]:
    settings = {"CLEARCUT_MODEL_PRECISION": precision, "CLEARCUT_DEFAULT_MODEL": models[0],
                "CLEARCUT_WORKER_CONCURRENCY": str(args.worker_concurrency),
                "CLEARCUT_RATE_LIMIT_PER_MINUTE": "0", "CLEARCUT_SYNC_TIMEOUT_S": "600"}
    rows, mem = [], {"server": "clearcut", "precision": precision, "worker_concurrency": args.worker_concurrency}
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, key = start_stack(Path(tmp), settings, timeout=240)
        try:
            for model, size in itertools.product(models, args.sizes):   # every pool process loads every model
                warm = run_load(clearcut_sender(url, key, model, "sync", args.poll), inputs[size],
                                2 * args.worker_concurrency, args.worker_concurrency)
                if warm["errors"]:
                    raise SystemExit(f"clearcut {precision} {model}: warm-up failed: {warm['error_samples']}")
            mem["loaded"] = memory(clearcut_processes(proc))
            for model, size, mode, concurrency in itertools.product(models, args.sizes, args.modes, args.concurrency):
                timings: list[dict] = []
                row = {"server": "clearcut", "precision": precision, "model": model, "megapixels": size, "mode": mode,
                       **measured_load(proc, clearcut_sender(url, key, model, mode, args.poll, timings),
                                       inputs[size], args.requests, concurrency)}
                if timings:
                    row["server_ms_p50"] = median_stages(timings)
                rows.append(row)
                print(json.dumps(row), flush=True)
            mem["end"] = memory(clearcut_processes(proc))
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=60)
    return rows, mem


def median_stages(timings: list[dict]) -> dict:
    """Median of every numeric stage in the jobs' ``timings_ms`` (the pipeline's own stages flattened)."""
    flat: dict[str, list[float]] = {}
    for entry in timings:
        for name, value in {**entry, **(entry.get("pipeline") or {})}.items():
            if isinstance(value, (int, float)):
                flat.setdefault(name, []).append(value)
    return {name: round(statistics.median(values), 1) for name, values in flat.items()}


def compare(rows: list[dict], memories: list[dict]) -> None:
    """Add ``vs_rembg`` (images/s ratio, same architecture, size and client count) to every Clearcut row."""
    rembg = {(r["model"], r["megapixels"], r["concurrency"]): r for r in rows if r["server"] == "rembg"}
    for row in rows:
        if row["server"] != "clearcut":
            continue
        other = rembg.get((ARCHITECTURE.get(row["model"], row["model"]), row["megapixels"], row["concurrency"]))
        if other and other["images_per_s"]:
            row["vs_rembg"] = round(row["images_per_s"] / other["images_per_s"], 2)
            row["target_3x_met"] = row["vs_rembg"] >= 3
    reference = next((m for m in memories if m["server"] == "rembg"), None)
    for mem in memories:
        if mem["server"] == "clearcut" and reference:
            mem["rss_below_rembg"] = mem["loaded"]["rss_gib"] < reference["loaded"]["rss_gib"]


def print_tables(rows: list[dict], memories: list[dict]) -> None:
    print(f"\n{'server':9} {'prec':5} {'model':14} {'MP':>2} {'mode':5} {'conc':>4} {'n':>4} {'err':>3} "
          f"{'img/s':>7} {'p50 s':>7} {'p95 s':>7} {'vs rembg':>8} {'CPU s/img':>9}")
    for r in rows:
        ratio = f"{r['vs_rembg']:.2f}x" if "vs_rembg" in r else ""
        p50 = f"{r['p50_s']:.3f}" if r["p50_s"] is not None else "-"
        p95 = f"{r['p95_s']:.3f}" if r["p95_s"] is not None else "-"
        print(f"{r['server']:9} {r['precision']:5} {r['model']:14} {r['megapixels']:>2} {r['mode']:5} "
              f"{r['concurrency']:>4} {r['requests']:>4} {r['errors']:>3} {r['images_per_s']:>7.2f} "
              f"{p50:>7} {p95:>7} {ratio:>8} {r.get('cpu_s_per_image', {}).get('total', float('nan')):>9.3f}")
    print(f"\n{'server':9} {'prec':5} {'RSS loaded GiB':>15} {'RSS end GiB':>12} {'PSS loaded':>11} {'PSS end':>8}")
    for m in memories:
        if "loaded" in m:
            end = m.get("end", {"rss_gib": float("nan"), "pss_gib": float("nan")})
            print(f"{m['server']:9} {m['precision']:5} {m['loaded']['rss_gib']:>15.2f} {end['rss_gib']:>12.2f} "
                  f"{m['loaded']['pss_gib']:>11.2f} {end['pss_gib']:>8.2f}")


def int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="u2netp,u2net,isnet-general",
                        help="Clearcut model names or presets (fast, quality)")
    parser.add_argument("--precisions", default="fp32,int8", help="CLEARCUT_MODEL_PRECISION values: fp32, int8, auto")
    parser.add_argument("--sizes", type=int_list, default=[1, 4], help="megapixels: 1 and/or 4")
    parser.add_argument("--requests", type=int, default=20, help="timed requests per cell")
    parser.add_argument("--concurrency", type=int_list, default=[1, 4], help="client counts")
    parser.add_argument("--modes", default="sync,async", help="Clearcut: sync (POST /v2), async (POST /v2/jobs)")
    parser.add_argument("--worker-concurrency", type=int, default=1,
                        help="Clearcut worker processes (CLEARCUT_WORKER_CONCURRENCY; make run uses 1)")
    parser.add_argument("--images", type=int, default=8, help="distinct photos per size")
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between GET /v2/jobs/{id} polls")
    parser.add_argument("--skip-rembg", action="store_true")
    parser.add_argument("--rembg-venv", default=str(ROOT / "var" / "rembg-venv"))
    parser.add_argument("--quick", action="store_true", help="u2netp, 1 MP, 6 requests: a smoke run")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "throughput.json"))
    args = parser.parse_args()
    if args.quick:
        args.models, args.sizes, args.requests = "u2netp", [1], 6
    if set(args.sizes) - set(SIZES):
        parser.error(f"--sizes: only {sorted(SIZES)}")

    from clearcut import config
    from clearcut.models.cpu import int8_kernels
    from clearcut.models.store import ModelStore
    from clearcut.pipeline.segment import resolve_models

    model_dir = Path(config.get("CLEARCUT_MODEL_DIR"))
    args.model_dir = model_dir if model_dir.is_absolute() else ROOT / model_dir
    models = args.models.split(",")
    args.modes = args.modes.split(",")
    inputs = {size: make_inputs(size, args.images) for size in args.sizes}
    conditions = {"cpu_count": os.cpu_count(), "int8_kernels": int8_kernels(), "loadavg_start": os.getloadavg(),
                  "quick": args.quick, "requests": args.requests, "worker_concurrency": args.worker_concurrency,
                  "poll_s": args.poll,
                  "inputs": {f"{s}mp": {"photos": len(v), "size": v[0][1]} for s, v in inputs.items()}}
    rows: list[dict] = []
    memories: list[dict] = []
    skipped: dict[str, list[str]] = {}
    if not args.skip_rembg:
        rembg_rows, mem = measure_rembg(args, inputs, models)
        rows += rembg_rows
        memories.append(mem)
    store = ModelStore(args.model_dir)
    for precision in args.precisions.split(","):
        usable = [m for m in models if precision != "int8"
                  or all(store.has_int8(n, checked=False) for n in resolve_models(m))]
        skipped[precision] = sorted(set(models) - set(usable))
        if skipped[precision]:
            print(f"clearcut {precision}: skipping {', '.join(skipped[precision])} "
                  f"(build with `clearcut models quantize NAME`)", flush=True)
        if usable:
            clearcut_rows, mem = measure_clearcut(args, inputs, precision, usable)
            rows += clearcut_rows
            memories.append(mem)
    conditions["loadavg_end"] = os.getloadavg()
    compare(rows, memories)
    print_tables(rows, memories)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"conditions": conditions, "skipped": skipped, "rows": rows,
                                           "memory": memories}, indent=2))
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
