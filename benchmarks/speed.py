"""Per-stage pipeline time and peak RSS for 1, 4, 12 and 24 MP JPEG inputs, PNG and JPG output.

Each (size, format, layout) case runs in a fresh subprocess so peak RSS is that case's own. The models'
own time is the time each run spends in the networks' calls (``SegmentationSession.predict_logits``:
normalisation and ``session.run``), so the work outside them — decode, the networks' inputs and grid,
refinement, compositing, layout, encoding — is stated as a share of the models' time in the same run.
``--layouts`` adds listing-image cases (docs/layout.md); their cost is the layout stage's time and the
total's difference from the case without layout, as a share of the cutout without layout.

    .venv/bin/python benchmarks/speed.py [--model quality|fast|NAME] [--sizes 1,4,12,24] [--repeat 2]
        [--layouts none,amazon,drop,contact,floating]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT.parent / "shared" / "eval" / "product" / "images"
# Layout cases: a marketplace preset, and each shadow on a square white listing canvas.
LAYOUTS = {
    "none": {},
    "amazon": {"layout": "amazon"},
    **{shadow: {"canvas": "2000x2000", "scale": "85", "bg_color": "white", "shadow": shadow}
       for shadow in ("drop", "contact", "floating")},
}


def make_input(megapixels: float) -> bytes:
    """A real photo Lanczos-resampled to the requested size, saved as a quality-90 JPEG."""
    from PIL import Image

    candidates = sorted(SOURCE.glob("dis_*")) or sorted((ROOT.parent / "shared/eval/dev/images").glob("*.jpg"))
    image = Image.open(max(candidates, key=lambda p: p.stat().st_size)).convert("RGB")
    scale = (megapixels * 1e6 / (image.width * image.height)) ** 0.5
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _time_model_calls() -> list[float]:
    """Wrap the networks' own call (``SegmentationSession.predict_logits``: normalisation and ``session.run``) so
    each process() run can tell its model time from the rest; returns the list the durations go to."""
    from clearcut.models.session import SegmentationSession

    durations: list[float] = []
    predict = SegmentationSession.predict_logits

    def timed(self, proxy):
        start = time.perf_counter()
        try:
            return predict(self, proxy)
        finally:
            durations.append(time.perf_counter() - start)

    SegmentationSession.predict_logits = timed
    return durations


def run_case(megapixels: float, fmt: str, model: str, repeat: int, layout: str = "none") -> dict:
    """Runs inside the child process."""
    import numpy as np

    from clearcut.memory import retain_freed_memory
    from clearcut.options import parse
    from clearcut.pipeline import process

    retain_freed_memory()  # as a worker process does (CLEARCUT_MALLOC_RETAIN_MB)
    in_models = _time_model_calls()
    data = make_input(megapixels)
    options = parse({"format": fmt, "model": model, **LAYOUTS[layout]})
    process(data, options)  # warm-up: sessions created, caches filled
    runs, model_runs = [], []
    for _ in range(repeat):
        in_models.clear()
        start = time.perf_counter()
        result = process(data, options)
        runs.append((time.perf_counter() - start) * 1000)
        model_runs.append(sum(in_models) * 1000)
        timings = result.metadata["timings_ms"]
    models = result.metadata["models"]
    # Medians of the runs; the share outside the models is taken per run (the models' time on a shared
    # CPU varies by tens of percent between runs, the rest much less).
    total, model_ms = float(np.median(runs)), float(np.median(model_runs))
    outside = float(np.median([t - m for t, m in zip(runs, model_runs)]))
    return {
        "megapixels": megapixels, "width": result.metadata["input_width"], "height": result.metadata["input_height"],
        "format": fmt, "layout": layout, "model": model, "models_run": [m["name"] for m in models],
        "total_ms": round(total, 1), "model_ms": round(model_ms, 1), "overhead_ms": round(outside, 1),
        "overhead_pct": round(float(np.median([100 * (t - m) / m for t, m in zip(runs, model_runs)])), 1),
        "stages_ms": timings, "output_bytes": len(result.data),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="quality")
    parser.add_argument("--sizes", default="1,4,12,24")
    parser.add_argument("--formats", default="png,jpg")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--layouts", default="none", help=f"comma-separated, of: {', '.join(LAYOUTS)}")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "speed.json"))
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        mp, fmt, layout = args.case.split(":")
        print(json.dumps(run_case(float(mp), fmt, args.model, args.repeat, layout)))
        return 0
    layouts = args.layouts.split(",")
    unknown = set(layouts) - set(LAYOUTS)
    if unknown:
        parser.error(f"unknown layout case(s) {sorted(unknown)}; choose from {', '.join(LAYOUTS)}")
    rows = []
    print(f"{'MP':>4} {'fmt':4} {'layout':8} {'total ms':>9} {'model ms':>9} {'overhead':>9} {'decode':>7} "
          f"{'infer':>7} {'refine':>7} {'compose':>7} {'layout':>7} {'encode':>7} {'added':>6} {'RSS MiB':>8}")
    for mp, fmt, layout in ((mp, fmt, layout) for mp in args.sizes.split(",") for fmt in args.formats.split(",")
                            for layout in layouts):
        out = subprocess.run([sys.executable, __file__, "--case", f"{mp}:{fmt}:{layout}", "--model", args.model,
                              "--repeat", str(args.repeat)], capture_output=True, text=True, cwd=ROOT,
                             env={**os.environ, "CLEARCUT_MAX_MEGAPIXELS": "50"})
        if out.returncode:
            print(out.stderr[-2000:], file=sys.stderr)
            return 1
        row = json.loads(out.stdout.strip().splitlines()[-1])
        base = next((r for r in rows if r["megapixels"] == row["megapixels"] and r["format"] == fmt
                     and r["layout"] == "none"), None)
        if base is not None and layout != "none":  # what the layout adds to the same cutout without it
            row["layout_added_pct"] = round(100 * (row["total_ms"] - base["total_ms"]) / base["total_ms"], 1)
            row["layout_stage_pct"] = round(100 * row["stages_ms"]["layout"] / base["total_ms"], 1)
        rows.append(row)
        s = row["stages_ms"]
        added = f"{row['layout_added_pct']:>5.1f}%" if "layout_added_pct" in row else f"{'':>6}"
        print(f"{row['megapixels']:>4g} {fmt:4} {layout:8} {row['total_ms']:>9.0f} {row['model_ms']:>9.0f} "
              f"{row['overhead_pct']:>8.1f}% {s['decode']:>7.0f} {s['infer']:>7.0f} {s['refine']:>7.0f} "
              f"{s['compose'] + s['finish']:>7.0f} {s['layout']:>7.0f} {s['encode']:>7.0f} {added} "
              f"{row['peak_rss_mib']:>8.0f}", flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"model": args.model, "cpu_count": os.cpu_count(), "rows": rows}, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
