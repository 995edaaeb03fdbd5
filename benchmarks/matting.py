"""Soft edges against real alpha mattes (hair, fur, plants), and whether the cutout's colours carry a halo.

    python benchmarks/matting.py [--set ../shared/eval/matting] [--model quality] [--plain] [--json out.json]

The set holds ``images/NAME.png``, ``alphas/NAME.png`` (8-bit ground-truth alpha) and ``trimaps/NAME.png``
(0 / 128 / 255, used for the metrics only: the service never gets a trimap). Per image, as matting papers
report them:

* **SAD**: sum of |alpha - GT| over the image, in thousands; **MSE**: mean squared error (x 1000);
* **band SAD / band MSE**: the same over the trimap's unknown band, where the soft edge is;
* **halo** (0..255 levels): the cutout composited on black, against what a perfect cutout would show
  there. A perfect cutout on black shows ``GT alpha x true foreground = photo - (1 - GT alpha) x old
  background``; the old background is estimated as the mean photo colour of the nearby pixels that the
  ground truth calls background (GT alpha below 0.02, within 15 px). The mean absolute difference over
  the band pixels with GT alpha between 0.05 and 0.95 grows when the cutout's soft pixels carry the
  old background's colour (a grey-white fringe around hair shot against a grey sky) or have the wrong
  opacity. ``opaque`` is the same difference where GT alpha >= 0.98 (the cutout should equal the photo).
* **colour** (0..255 levels): the halo of the cutout's colours alone: the same comparison with the
  cutout's foreground colours composited at the *ground-truth* alpha, so opacity errors drop out. A cutout
  that keeps the photo's colours scores what the old background adds to them; a foreground estimate that
  removes it scores lower.

``--plain`` measures the network's plain output (stretch, predict, bilinear back) with the photo's
own colours as foreground, which is what the usual open-source remover returns.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import quality  # noqa: E402
from clearcut.pipeline import refine  # noqa: E402


def _old_background(rgb: np.ndarray, gt: np.ndarray, radius: int = 15) -> np.ndarray:
    weight = (gt < 0.02).astype(np.float32)
    k = (2 * radius + 1, 2 * radius + 1)
    mean = cv2.blur(rgb * weight[:, :, None], k) / (cv2.blur(weight, k)[:, :, None] + 1e-6)
    return mean


def scores(rgb: np.ndarray, alpha: np.ndarray, fg: np.ndarray, gt: np.ndarray, trimap: np.ndarray) -> dict:
    """Matting metrics of one cutout (alpha 0..1, fg uint8 RGB) against GT alpha (0..1) and the trimap."""
    err = alpha - gt
    band = trimap == 128
    image = rgb.astype(np.float32)
    reference = np.clip(image - (1.0 - gt[:, :, None]) * _old_background(image, gt), 0, 255)
    composite = alpha[:, :, None] * fg.astype(np.float32)
    diff = np.abs(composite - reference).mean(-1)
    colour = np.abs(gt[:, :, None] * fg.astype(np.float32) - reference).mean(-1)
    soft = band & (gt > 0.05) & (gt < 0.95)
    opaque = gt >= 0.98
    return {
        "sad": float(np.abs(err).sum() / 1000), "mse": float((err ** 2).mean() * 1000),
        "band_sad": float(np.abs(err[band]).sum() / 1000), "band_mse": float((err[band] ** 2).mean() * 1000),
        "halo": float(diff[soft].mean()) if soft.any() else 0.0,
        "colour": float(colour[soft].mean()) if soft.any() else 0.0,
        "opaque": float(diff[opaque].mean()) if opaque.any() else 0.0,
        "iou": quality.metrics(alpha, (gt * 255).astype(np.uint8))["iou"],
    }


KEYS = ("sad", "mse", "band_sad", "band_mse", "halo", "colour", "opaque", "iou")


def evaluate(set_dir: Path, model: str, *, plain: bool = False, infer=None, matte_fn=None) -> list[dict]:
    infer = infer or quality.CachedInfer()
    rows = []
    for path in sorted((set_dir / "images").glob("*.png")):
        rgb = quality.read_rgb(path)
        gt = quality.read_mask(set_dir / "alphas" / path.name).astype(np.float32) / 255.0
        trimap = quality.read_mask(set_dir / "trimaps" / path.name)
        if matte_fn is not None:
            alpha = matte_fn(rgb, infer)
        elif plain:
            alpha = quality.plain_matte(rgb, model, infer)
        else:
            alpha = quality.pipeline_matte(rgb, model, infer)
        fg = rgb if plain else refine.estimate_foreground(rgb, alpha)
        rows.append({"name": path.stem} | scores(rgb, alpha, fg, gt, trimap))
    return rows


def summary(rows: list[dict]) -> dict:
    return {k: float(np.mean([r[k] for r in rows])) for k in KEYS} | {"n": len(rows)}


def print_table(label: str, rows: list[dict]) -> None:
    print(label)
    print(f"{'image':<8}" + "".join(f"{k:>10}" for k in KEYS))
    for r in rows + [{"name": "MEAN"} | summary(rows)]:
        print(f"{r['name']:<8}" + "".join(f"{r[k]:>10.3f}" for k in KEYS))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", type=Path, default=ROOT.parent / "shared" / "eval" / "matting")
    parser.add_argument("--model", default="quality", help="model name or preset")
    parser.add_argument("--plain", action="store_true", help="the model's plain output, photo colours")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = evaluate(args.set, args.model, plain=args.plain)
    print_table(f"{args.model}{' (plain)' if args.plain else ''} on {args.set} ({len(rows)} images)", rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": args.model, "plain": args.plain, "summary": summary(rows),
                                         "images": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
