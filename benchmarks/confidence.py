"""How well ``clearcut.pipeline.confidence`` tells good cutouts from bad ones.

    python benchmarks/confidence.py [--eval ../shared/eval] [--threshold T] [--json out.json] [--fit]

For every image of eval/product, eval/highres, eval/dev and eval/matting it runs the service's code
path (``segment.predict`` with the configured default preset, then ``refine`` at the photo's own
resolution, as benchmarks/quality.py's ``pipeline_matte``; network outputs come from its on-disk
cache), scores the cutout's IoU against the human mask (matting: IoU of alpha >= 0.5 against the soft
GT at 0.5) and its confidence. Per set and pooled it prints:

* Spearman correlation between confidence and IoU;
* AUROC for telling cutouts with IoU < 0.9 from the rest;
* at the review threshold (default ``CLEARCUT_REVIEW_BELOW``): the share of photos flagged and the
  share of the cutouts below 0.9 IoU among them;
* the time ``confidence()`` takes per image.

``--fit`` refits the logistic parameters (INTERCEPT, SLOPE of clearcut/pipeline/confidence.py) on
these sets and prints them; the scores are then computed with the refitted values.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import quality  # noqa: E402
from clearcut import config  # noqa: E402
from clearcut.pipeline import confidence as conf  # noqa: E402
from clearcut.pipeline import refine, segment  # noqa: E402

SETS = ("product", "highres", "dev", "matting")
POOL = ("product", "highres", "matting")  # the AUROC pool
PRODUCT_LIKE = ("product",)  # catalog-like photos for the review-queue check
BAD = 0.9


def items(eval_dir: Path):
    for name in SETS[:3]:
        for stem, image, mask in quality.load_set(eval_dir / name):
            yield name, stem, image, mask
    for image in sorted((eval_dir / "matting" / "images").glob("*.png")):
        yield "matting", image.stem, image, eval_dir / "matting" / "alphas" / image.name


def iou_of(alpha: np.ndarray, mask: np.ndarray, soft: bool) -> float:
    if not soft:
        return quality.metrics(alpha, mask)["iou"]
    pred, gt = alpha >= 0.5, mask >= 128
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else np.count_nonzero(pred & gt) / union


def measure(eval_dir: Path) -> list[dict]:
    infer = quality.CachedInfer()
    models = segment.resolve_models(config.get("CLEARCUT_DEFAULT_MODEL"))
    rows = []
    for i, (set_name, stem, image, mask_path) in enumerate(items(eval_dir)):
        rgb, mask = quality.read_rgb(image), quality.read_mask(mask_path)
        matte_lo, proxy = segment.predict(rgb, models, None, infer=infer)
        alpha = refine.clean_alpha(refine.guided_upsample(matte_lo, proxy, rgb))
        started = time.perf_counter()
        features = conf.features(matte_lo)
        seconds = time.perf_counter() - started
        rows.append({"set": set_name, "name": stem, "iou": float(iou_of(alpha, mask, set_name == "matting")),
                     "confidence_ms": round(seconds * 1000, 3), **features})
        if (i + 1) % 50 == 0:
            print(f"  {i + 1} images", file=sys.stderr, flush=True)
    return rows


# ---------------------------------------------------------------- statistics (numpy only)

def ranks(values) -> np.ndarray:
    """Average ranks (ties share the mean rank)."""
    x = np.asarray(values, dtype=float)
    order = np.argsort(x, kind="mergesort")
    out = np.empty(len(x))
    out[order] = np.arange(len(x), dtype=float)
    for value in np.unique(x):
        same = x == value
        if same.sum() > 1:
            out[same] = out[same].mean()
    return out


def spearman(a, b) -> float:
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def auroc(scores, bad) -> float:
    """Probability that a bad cutout scores below a good one (Mann-Whitney U)."""
    bad = np.asarray(bad, dtype=bool)
    n_bad, n_good = int(bad.sum()), int((~bad).sum())
    if not n_bad or not n_good:
        return float("nan")
    r = ranks(-np.asarray(scores, dtype=float))
    return float((r[bad].sum() - n_bad * (n_bad - 1) / 2) / (n_bad * n_good))


def fit(rows: list[dict]) -> tuple[float, float]:
    """INTERCEPT, SLOPE: logistic regression of IoU / structure factor (soft label, cross-entropy) on
    log(u + EPS), every set weighted equally, weights scaled by the structure factor; Newton, L2 1e-3."""
    f = np.array([conf.structure_factor(r["competing"], r["area"]) for r in rows]).clip(0.05, 1)
    y = (np.array([r["iou"] for r in rows]) / f).clip(0, 1)
    x = np.log(np.array([r["uncertain"] for r in rows]) + conf.EPS)
    sets = np.array([r["set"] for r in rows])
    w = np.array([1 / np.count_nonzero(sets == s) for s in sets]) * f
    design = np.c_[np.ones(len(x)), x]
    beta = np.zeros(2)
    for _ in range(50):
        p = 1 / (1 + np.exp(-design @ beta))
        grad = design.T @ (w * (p - y)) + 1e-3 * beta
        hess = (design * (w * p * (1 - p))[:, None]).T @ design + 1e-3 * np.eye(2)
        beta -= np.linalg.solve(hess, grad)
    return round(float(beta[0]), 4), round(float(beta[1]), 4)


def summarise(rows: list[dict], threshold: float) -> dict:
    def block(subset: list[dict]) -> dict:
        iou = np.array([r["iou"] for r in subset])
        c = np.array([r["confidence"] for r in subset])
        bad, flagged = iou < BAD, c < threshold
        return {"n": len(subset), "bad": int(bad.sum()), "spearman": spearman(c, iou), "auroc": auroc(c, bad),
                "mean_iou": float(iou.mean()), "mean_confidence": float(c.mean()),
                "flagged_share": float(flagged.mean()),
                "bad_caught": float((flagged & bad).sum() / bad.sum()) if bad.any() else None,
                "flagged_bad_share": float((flagged & bad).sum() / flagged.sum()) if flagged.any() else None}

    out = {"threshold": threshold, "sets": {s: block([r for r in rows if r["set"] == s]) for s in SETS},
           "pooled": block([r for r in rows if r["set"] in POOL]),
           "product_like": block([r for r in rows if r["set"] in PRODUCT_LIKE]),
           "confidence_ms": {"mean": float(np.mean([r["confidence_ms"] for r in rows])),
                             "max": float(np.max([r["confidence_ms"] for r in rows]))}}
    return out


def _fmt(value, digits=3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def print_table(summary: dict) -> None:
    print(f"review threshold {summary['threshold']}")
    print(f"{'set':<22}{'n':>5}{'<0.9':>6}{'Spearman':>10}{'AUROC':>8}{'mIoU':>8}{'mConf':>8}{'flagged':>9}"
          f"{'caught':>8}")
    blocks = [*summary["sets"].items(), ("pooled (" + "+".join(POOL) + ")", summary["pooled"])]
    for name, s in blocks:
        print(f"{name:<22}{s['n']:>5}{s['bad']:>6}{_fmt(s['spearman']):>10}{_fmt(s['auroc']):>8}"
              f"{_fmt(s['mean_iou']):>8}{_fmt(s['mean_confidence']):>8}{_fmt(s['flagged_share']):>9}"
              f"{_fmt(s['bad_caught']):>8}")
    ms = summary["confidence_ms"]
    print(f"confidence() per image: {ms['mean']:.2f} ms mean, {ms['max']:.2f} ms max")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eval", type=Path, default=ROOT.parent / "shared" / "eval")
    parser.add_argument("--threshold", type=float, default=None, help="default: CLEARCUT_REVIEW_BELOW")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "confidence.json")
    parser.add_argument("--fit", action="store_true", help="refit INTERCEPT and SLOPE on these sets")
    args = parser.parse_args(argv)
    threshold = args.threshold if args.threshold is not None else config.get("CLEARCUT_REVIEW_BELOW")
    rows = measure(args.eval)
    if args.fit:
        conf.INTERCEPT, conf.SLOPE = fit(rows)
        print(f"fitted INTERCEPT = {conf.INTERCEPT}, SLOPE = {conf.SLOPE}")
    for row in rows:
        row["confidence"] = conf.from_features(row)
    summary = summarise(rows, threshold)
    summary["preset"] = config.get("CLEARCUT_DEFAULT_MODEL")
    print_table(summary)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"summary": summary, "images": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
