"""Do refined full-resolution mattes keep sharp edges? Boundary F on upscaled eval images.

    python benchmarks/upscale.py --set ../shared/eval/dev [--model fast] [--limit 20]
        [--scales 2 4] [--json out.json]

Each image and its mask are Lanczos-upscaled by 2x and 4x (the mask is re-binarised at 128), so the
true edge is known at a resolution well above the model's proxy. The matte is computed on the
upscaled image by the pipeline (``segment.predict`` on the proxy) and brought to full size two ways:

* ``bilinear``: the proxy matte bilinearly resized (what a plain remover does);
* ``refined``:  ``refine.guided_upsample`` + ``refine.clean_alpha`` (what the service does).

Reported per scale: boundary F at a tight tolerance (``--tight`` px of the upscaled image, default
3: a blurred or blocky edge misses it) and at the DAVIS tolerance (0.008 x diagonal, which grows with
the scale and so mostly measures shape, not sharpness), plus IoU and MAE, and the time of the
upsampling step. Network outputs come from the on-disk cache of benchmarks/quality.py.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import quality as q  # noqa: E402
from clearcut.pipeline import refine, segment  # noqa: E402


def upscale_pair(rgb: np.ndarray, mask: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = mask.shape
    size = (w * k, h * k)
    big = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))
    big_mask = np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.LANCZOS))
    return big, np.where(big_mask >= 128, 255, 0).astype(np.uint8)


def bilinear(matte_lo: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return cv2.resize(matte_lo, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def refined(matte_lo: np.ndarray, proxy: np.ndarray, rgb: np.ndarray, **kw) -> np.ndarray:
    return refine.clean_alpha(refine.guided_upsample(matte_lo, proxy, rgb, **kw))


def run(set_dir: Path, model: str, scales=(2, 4), limit: int | None = 20, tight: int = 3,
        infer=None, refine_kw: dict | None = None, methods=None) -> dict:
    infer = infer or q.CachedInfer()
    methods = methods or {"bilinear": lambda m, p, rgb: bilinear(m, rgb.shape[:2]),
                          "refined": lambda m, p, rgb: refined(m, p, rgb, **(refine_kw or {}))}
    models = segment.resolve_models(model)
    results = {}
    for k in scales:
        acc = {name: {"bf_tight": [], "bf_davis": [], "iou": [], "mae": [], "ms": []} for name in methods}
        for name, image_path, mask_path in q.load_set(set_dir, limit):
            big, big_mask = upscale_pair(q.read_rgb(image_path), q.read_mask(mask_path), k)
            matte_lo, proxy = segment.predict(big, models, infer=infer)
            gt = big_mask >= 128
            for method, fn in methods.items():
                start = time.perf_counter()
                alpha = fn(matte_lo, proxy, big)
                ms = (time.perf_counter() - start) * 1000
                m = q.metrics(alpha, big_mask)
                a = acc[method]
                a["bf_davis"].append(m["bf"])
                a["bf_tight"].append(q.boundary_f(alpha >= 0.5, gt, tolerance=tight))
                a["iou"].append(m["iou"])
                a["mae"].append(m["mae"])
                a["ms"].append(ms)
        results[f"{k}x"] = {method: {key: float(np.mean(v)) for key, v in a.items()} | {"n": len(a["iou"])}
                            for method, a in acc.items()}
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", required=True, type=Path)
    parser.add_argument("--model", default="fast", help="model name or preset (default: fast)")
    parser.add_argument("--limit", type=int, default=20,
                        help="images spread over the set (default 20: one per DAVIS sequence)")
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--tight", type=int, default=3, help="tight boundary tolerance in px")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results = run(args.set, args.model, tuple(args.scales), args.limit, args.tight)
    print(f"{args.model} on {args.set}, {args.limit} images; BF tight = {args.tight} px tolerance")
    print(f"{'scale':<7}{'method':<10}{'BF tight':>10}{'BF DAVIS':>10}{'IoU':>8}{'MAE':>8}{'ms':>8}")
    for scale, by_method in results.items():
        for method, r in by_method.items():
            print(f"{scale:<7}{method:<10}{r['bf_tight']:>10.4f}{r['bf_davis']:>10.4f}"
                  f"{r['iou']:>8.4f}{r['mae']:>8.4f}{r['ms']:>8.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": args.model, "tight_px": args.tight, "results": results},
                                        indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
