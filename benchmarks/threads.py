"""ONNX Runtime thread layout on this node: model throughput and latency for processes x intra-op threads.

The question it answers: with C cores, is it better to run one worker process whose session uses C
intra-op threads, or C processes with one thread each (Clearcut's default: intra-op threads = cores /
CLEARCUT_WORKER_CONCURRENCY, inter-op 1), or to oversubscribe (C processes with C threads each, what
happens when every process takes the default of one thread per core)?

Each layout runs ``--seconds`` of back-to-back ``session.run`` calls on a fixed input in every process
(sessions created and warmed before the clock starts) and reports images/s for the node and the p50
latency of one run.

    .venv/bin/python benchmarks/threads.py [--models u2netp,u2net,isnet-general] [--seconds 20]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _worker(model: str, threads: int, seconds: float, start_at: float, out) -> None:
    import numpy as np

    from clearcut.models.registry import spec
    from clearcut.models.session import SegmentationSession, preprocess
    from clearcut.models.store import ModelStore

    store = ModelStore()
    session = SegmentationSession(spec(model), store.path(model), threads=threads, requested="cpu")
    size = session.size
    square = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    batch = preprocess(session.model, square)
    for _ in range(2):
        session.run(batch)
    while time.time() < start_at:
        time.sleep(0.01)
    latencies = []
    end = start_at + seconds
    while time.time() < end:
        t = time.perf_counter()
        session.run(batch)
        latencies.append(time.perf_counter() - t)
    out.put(latencies)


def measure(model: str, processes: int, threads: int, seconds: float) -> dict:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 15 + 5 * processes  # every process loads its session before the clock
    procs = [ctx.Process(target=_worker, args=(model, threads, seconds, start_at, out)) for _ in range(processes)]
    for p in procs:
        p.start()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    runs = [x for r in results for x in r]
    return {"model": model, "processes": processes, "threads": threads,
            "images_per_s": round(len(runs) / seconds, 2),
            "p50_ms": round(statistics.median(runs) * 1000, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="u2netp,u2net,isnet-general")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--cores", type=int, default=None, help="default: the cores this process may use")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "threads.json"))
    args = parser.parse_args()
    from clearcut.models.session import available_cpus

    cores = args.cores or available_cpus()
    layouts = sorted({(1, cores), (cores, 1), (cores, cores), (1, 1)})
    rows = []
    print(f"{cores} cores; {args.seconds:g} s per layout")
    print(f"{'model':15} {'processes':>9} {'threads':>7} {'images/s':>9} {'p50 ms':>8}")
    for model in args.models.split(","):
        for processes, threads in layouts:
            row = measure(model, processes, threads, args.seconds)
            rows.append(row)
            print(f"{model:15} {processes:>9} {threads:>7} {row['images_per_s']:>9} {row['p50_ms']:>8}", flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"cores": cores, "cpu_count": os.cpu_count(), "seconds": args.seconds,
                                           "load_avg": os.getloadavg(), "rows": rows}, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
