"""Segmentation quality of the pipeline's matte against human masks.

    python benchmarks/quality.py --set ../shared/eval/dev --model quality [--limit N]
        [--plain] [--json out.json] [--csv out.csv]

``--model`` is a model name (isnet-general, u2net, u2netp) or a preset (fast, quality). By default the
matte comes from the real pipeline code path: ``segment.predict`` -> ``pipeline.full_matte`` at the
image's full resolution (guided upsampling, cleaning). ``--plain`` instead measures what the usual
open-source remover does with one model: stretch the image to the network's square input (bilinear,
``segment.make_square``), predict, bilinear-resize the output back to full resolution (no refinement,
no cleaning). The network input is the same as the pipeline's, so the difference between the two
modes is exactly what the pipeline adds after (and around) the network.

Metrics, per image, then averaged overall and per sequence (DAVIS: the sequence name; product: the
prefix ccp / dis / grabcut; a sequence mean is the mean of its images, and the overall mean is over
all images):

* IoU of (alpha >= 0.5) with (mask >= 128);
* MAE of alpha (0..1) against mask (0..1), and ``far``: the part of it from pixels more than FAR px from
  the mask's edge (x 1000), where the mask is certain and any translucency is an error (within FAR px a
  fractional alpha may be the true coverage of an edge pixel that the mask could only call 0 or 1);
* boundary F (DAVIS-style, Perazzi et al. 2016): boundary pixels of both binary masks are matched
  within a tolerance of ``ceil(0.008 * image diagonal)`` px (8 px at 854x480); precision = share of
  predicted boundary pixels near a true one, recall = the converse, F = their harmonic mean;
* boundary F at 3 px (``bf3``), at the photo's own resolution: the DAVIS tolerance grows with the
  photo (48 px at 24 MP) and hides an edge that is off by several pixels.

Mask value 128 (GrabCut's "unknown" band) is excluded from IoU and MAE; for boundary F the band itself
is the true boundary (the real edge lies somewhere inside it).

Network outputs (logits on the network's own grid, ``predict_logits``) are cached on disk under
``var/cache/logits/<model>/<model file sha256, 12 hex>/<sha1 of the network input>.npy`` (float16), so re-running with another combination or refinement does not re-run
the networks; the key is the exact proxy handed to the network, so changing the resampling invalidates
it by itself, and a rebuilt int8 variant (same name, new file) gets its own folder.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clearcut.models import logits, quantize  # noqa: E402
from clearcut.models.registry import spec  # noqa: E402
from clearcut.models.session import get_session  # noqa: E402
from clearcut.models.store import ModelStore  # noqa: E402
from clearcut import pipeline  # noqa: E402
from clearcut.pipeline import segment  # noqa: E402

CACHE = ROOT / "var" / "cache" / "logits"
UNKNOWN = 128
TIGHT = 3  # px at the photo's own resolution: the DAVIS tolerance grows with the image and hides blur
FAR = 2  # px from the mask's edge beyond which the ``far`` error counts


# ---------------------------------------------------------------- cached inference

class CachedInfer:
    """``segment.Infer`` that memoises each network output on disk, keyed by model and input."""

    def __init__(self, store: ModelStore | None = None, cache: Path = CACHE, *, offline: bool = False):
        self.store, self.cache, self.offline = store, cache, offline
        self.hits = self.misses = 0
        self.model_seconds = 0.0
        self._digests: dict[str, str] = {}

    def file_digest(self, name: str) -> str:
        """sha256 of the model file that runs: an int8 variant is rebuilt in place under the same name,
        so its cached outputs are kept apart by the file's digest (from its recipe, read once per name)."""
        if name not in self._digests:
            self._digests[name] = ((self.store or ModelStore()).recipe(name)["sha256"]
                                   if name.endswith(quantize.INT8_SUFFIX) else spec(name).sha256 or "custom")
        return self._digests[name]

    def __call__(self, name: str, proxy: np.ndarray) -> np.ndarray:
        proxy = np.ascontiguousarray(proxy)
        name = get_session(name, self.store).model.name  # NAME-int8 when precision selection picks it
        key = hashlib.sha1(f"{proxy.shape}".encode() + proxy.tobytes()).hexdigest()
        path = self.cache / name / self.file_digest(name)[:12] / f"{key}.npy"
        if path.exists():
            self.hits += 1
            return np.load(path).astype(np.float32)
        if self.offline:
            raise LookupError(f"no cached {name} prediction for this input")
        self.misses += 1
        start = time.perf_counter()
        out = get_session(name, self.store).predict_logits(proxy).astype(np.float16)
        self.model_seconds += time.perf_counter() - start
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, out)
        tmp.replace(path)
        return out.astype(np.float32)  # same values as a later cache hit


# ---------------------------------------------------------------- data

def load_set(set_dir: Path, limit: int | None = None, sequences: set[str] | None = None,
             ) -> list[tuple[str, Path, Path]]:
    masks = sorted((set_dir / "masks").glob("*.png"))
    if sequences:
        masks = [m for m in masks if sequence_of(m.stem) in sequences]
    items = []
    for mask in masks:
        image = next((p for ext in (".jpg", ".png", ".jpeg")
                      if (p := set_dir / "images" / f"{mask.stem}{ext}").exists()), None)
        if image is not None:
            items.append((mask.stem, image, mask))
    if limit and limit < len(items):  # spread over the set (sequences) rather than the first N
        step = len(items) / limit
        items = [items[int(i * step)] for i in range(limit)]
    return items


def sequence_of(name: str) -> str:
    if name.startswith("davis"):  # davis16val_<sequence>_<frame>
        return name.split("_", 1)[1].rsplit("_", 1)[0]
    return name.split("_", 1)[0]


def read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def read_mask(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


# ---------------------------------------------------------------- mattes

def plain_matte(rgb: np.ndarray, model: str, infer) -> np.ndarray:
    """The usual remover: stretch to the square input (bilinear), predict, bilinear back. The network's
    output at its input size is the published graph's (its logits enlarged, then the sigmoid)."""
    size = get_session(model).size
    h, w = rgb.shape[:2]
    out = logits.to_size(infer(model, segment.make_square(rgb, size)), (size, size))
    return np.asarray(Image.fromarray(out).resize((w, h), Image.Resampling.BILINEAR))


def pipeline_matte(rgb: np.ndarray, model: str, infer, store: ModelStore | None = None) -> np.ndarray:
    """The service's matte at full resolution (same calls as clearcut.pipeline.process)."""
    matte_lo, proxy = segment.predict(rgb, segment.resolve_models(model), store, infer=infer)
    return pipeline.full_matte(matte_lo, proxy, rgb, model)


# ---------------------------------------------------------------- metrics

def boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of a binary mask that differ from their right or lower neighbour (1-px boundary)."""
    m = mask.astype(bool)
    b = np.zeros_like(m)
    b[:, :-1] |= m[:, :-1] != m[:, 1:]
    b[:-1, :] |= m[:-1, :] != m[1:, :]
    return b


def _disk(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def boundary_pr(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None,
                tolerance: int | None = None) -> tuple[float, float]:
    """Boundary precision and recall of two binary masks (DAVIS: tolerance 0.008 x diagonal by default):
    the share of predicted boundary pixels within ``tolerance`` of a true one, and the converse."""
    if tolerance is None:
        tolerance = math.ceil(0.008 * math.hypot(*gt.shape[:2]))
    bp = boundary(pred)
    # With an "unknown" band (GrabCut's value 128) the true edge lies somewhere inside the band, so the
    # band itself is the reference boundary; the binary mask's own edge would sit at the band's outer
    # rim and reward a prediction dilated by the band's width over one on the real edge.
    bg = ~valid if valid is not None else boundary(gt)
    np_, ng = int(bp.sum()), int(bg.sum())
    if np_ == 0 or ng == 0:
        return float(np_ == ng), float(np_ == ng)
    k = _disk(tolerance)
    near_g = cv2.dilate(bg.astype(np.uint8), k).astype(bool)
    near_p = cv2.dilate(bp.astype(np.uint8), k).astype(bool)
    return float((bp & near_g).sum() / np_), float((bg & near_p).sum() / ng)


def f_measure(precision: float, recall: float) -> float:
    """The harmonic mean of precision and recall (0 when both are 0)."""
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def boundary_f(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None,
               tolerance: int | None = None) -> float:
    """DAVIS boundary F-measure: the harmonic mean of ``boundary_pr``."""
    return f_measure(*boundary_pr(pred, gt, valid, tolerance))


def grid_tolerances(alpha: np.ndarray, mask: np.ndarray, units: list[float], grid: int) -> dict:
    """Boundary precision / recall at tolerances of ``units`` network output pixels (the network's
    ``grid`` px output stretched over the photo's longer side), e.g. 0.5, 1, 2 of ISNet's 512 px logits:
    how far the boundary error lies from where the network can place an edge."""
    valid = mask != UNKNOWN
    valid_mask = None if valid.all() else valid
    pitch = max(mask.shape) / grid
    out = {}
    for unit in units:
        precision, recall = boundary_pr(alpha >= 0.5, mask >= UNKNOWN, valid_mask, max(1, round(unit * pitch)))
        out[f"p@{unit:g}"], out[f"r@{unit:g}"] = precision, recall
    return out


def metrics(alpha: np.ndarray, mask: np.ndarray, bf_tolerance: int | None = None) -> dict:
    valid = mask != UNKNOWN
    gt = mask >= UNKNOWN
    pred = alpha >= 0.5
    if valid.all():
        inter, union = np.count_nonzero(pred & gt), np.count_nonzero(pred | gt)
        mae = float(np.abs(alpha - mask.astype(np.float32) / 255.0).mean())
        valid_mask = None
    else:
        inter, union = np.count_nonzero(pred & gt & valid), np.count_nonzero((pred | gt) & valid)
        mae = float(np.abs(alpha - mask.astype(np.float32) / 255.0)[valid].mean())
        valid_mask = valid
    iou = 1.0 if union == 0 else inter / union
    return {"iou": float(iou), "mae": mae, "far": far_error(alpha, gt, valid),
            "bf": boundary_f(pred, gt, valid_mask, bf_tolerance), "bf3": boundary_f(pred, gt, valid_mask, TIGHT)}


def far_error(alpha: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> float:
    """Sum of |alpha - mask| over the valid pixels more than FAR px from the mask's edge, per pixel of the
    photo, x 1000 (so that it is the far part of the MAE)."""
    inside = gt.astype(np.uint8)
    distance = np.maximum(cv2.distanceTransform(inside, cv2.DIST_L2, 3),
                          cv2.distanceTransform(1 - inside, cv2.DIST_L2, 3))
    far = (distance > FAR) & valid
    return float(np.abs(alpha[far] - gt[far]).sum() / alpha.size * 1000)


def summarise(rows: list[dict]) -> dict:
    keys = ("iou", "mae", "far", "bf", "bf3")
    out = {"overall": {k: float(np.mean([r[k] for r in rows])) for k in keys} | {"n": len(rows)},
           "sequences": {}}
    for seq in sorted({r["sequence"] for r in rows}):
        sub = [r for r in rows if r["sequence"] == seq]
        out["sequences"][seq] = {k: float(np.mean([r[k] for r in sub])) for k in keys} | {"n": len(sub)}
    out["min_sequence_iou"] = min(s["iou"] for s in out["sequences"].values())
    out["sequence_mean_iou"] = float(np.mean([s["iou"] for s in out["sequences"].values()]))
    return out


# ---------------------------------------------------------------- driver

def evaluate(set_dir: Path, model: str, *, plain: bool = False, limit: int | None = None,
             sequences: set[str] | None = None, infer=None, matte_fn=None, verbose: bool = True,
             grid_units: list[float] | None = None, grid: int = 512) -> tuple[list[dict], dict]:
    infer = infer or CachedInfer()
    rows = []
    for i, (name, image_path, mask_path) in enumerate(load_set(set_dir, limit, sequences)):
        rgb, mask = read_rgb(image_path), read_mask(mask_path)
        if rgb.shape[:2] != mask.shape:
            raise ValueError(f"{name}: image {rgb.shape[:2]} and mask {mask.shape} differ")
        if matte_fn is not None:
            alpha = matte_fn(rgb, infer)
        elif plain:
            alpha = plain_matte(rgb, model, infer)
        else:
            alpha = pipeline_matte(rgb, model, infer)
        row = {"name": name, "sequence": sequence_of(name)} | metrics(alpha, mask)
        rows.append(row | (grid_tolerances(alpha, mask, grid_units, grid) if grid_units else {}))
        if verbose and (i + 1) % 25 == 0:
            print(f"  {i + 1} images", file=sys.stderr, flush=True)
    return rows, summarise(rows)


def print_table(label: str, summary: dict) -> None:
    print(f"{label}")
    print(f"{'sequence':<22}{'n':>4}{'mIoU':>8}{'BF':>8}{'BF3px':>8}{'MAE':>8}{'far':>8}")
    for seq, s in summary["sequences"].items():
        print(f"{seq:<22}{s['n']:>4}{s['iou']:>8.4f}{s['bf']:>8.4f}{s['bf3']:>8.4f}{s['mae']:>8.4f}{s['far']:>8.3f}")
    o = summary["overall"]
    print(f"{'OVERALL':<22}{o['n']:>4}{o['iou']:>8.4f}{o['bf']:>8.4f}{o['bf3']:>8.4f}{o['mae']:>8.4f}{o['far']:>8.3f}")
    print(f"{'mean of sequence mIoUs':<34}{summary['sequence_mean_iou']:>8.4f}")
    print(f"{'min per-sequence mIoU':<34}{summary['min_sequence_iou']:>8.4f}")


def int8_check(args) -> int:
    import os

    os.environ["CLEARCUT_MODEL_PRECISION"] = "fp32"  # NAME is the float model; NAME-int8 is taken as asked
    name = quantize.base_name(args.model)
    sequences = set(args.sequences.split(",")) if args.sequences else None
    infer = segment.session_infer() if args.no_cache else CachedInfer()
    summaries = {}
    for model in (name, quantize.int8_name(name)):
        rows, summaries[model] = evaluate(args.set, model, plain=True, limit=args.limit, sequences=sequences,
                                          infer=infer)
        print_table(f"{model} (plain) on {args.set} ({len(rows)} images)", summaries[model])
    check = quantize.record_labelled_check(
        ModelStore(), name, label=f"{args.set.name} ({len(rows)} images spread over the set)", images=len(rows),
        fp32=summaries[name]["overall"], int8=summaries[quantize.int8_name(name)]["overall"])
    print(f"{quantize.int8_name(name)} quality check recorded: {json.dumps(check['labelled'])}, "
          f"{'passed' if check['passed'] else 'NOT passed'}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", required=True, type=Path, help="folder with images/ and masks/")
    parser.add_argument("--model", required=True, help="model name or preset (fast, quality)")
    parser.add_argument("--plain", action="store_true",
                        help="measure the model's plain output (stretch, predict, bilinear back)")
    parser.add_argument("--limit", type=int, help="evaluate N images spread over the set")
    parser.add_argument("--sequences", help="comma-separated sequence names to evaluate (default: all)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--csv", type=Path)
    parser.add_argument("--no-cache", action="store_true", help="always run the networks")
    parser.add_argument("--grid-tolerances", help="also boundary precision / recall within these numbers of the "
                        "network's output pixels, e.g. 0.5,1,2 (see --grid)")
    parser.add_argument("--grid", type=int, default=512, help="the network's output size for --grid-tolerances "
                        "(ISNet's logits: 512)")
    parser.add_argument("--int8-check", action="store_true",
                        help="with --plain and a model name: measure NAME and NAME-int8 on the same images and "
                             "record the result as NAME-int8's quality check (it passes within the tolerances "
                             "in clearcut/models/quantize.py; CLEARCUT_MODEL_PRECISION=auto then follows it)")
    args = parser.parse_args(argv)
    if args.int8_check:
        if not args.plain or args.model in segment.PRESETS:
            parser.error("--int8-check needs --plain and a model name")
        return int8_check(args)
    if args.plain and args.model in segment.PRESETS:
        parser.error("--plain measures one model, not a preset")
    infer = segment.session_infer() if args.no_cache else CachedInfer()
    start = time.perf_counter()
    sequences = set(args.sequences.split(",")) if args.sequences else None
    units = [float(u) for u in args.grid_tolerances.split(",")] if args.grid_tolerances else None
    rows, summary = evaluate(args.set, args.model, plain=args.plain, limit=args.limit,
                             sequences=sequences, infer=infer, grid_units=units, grid=args.grid)
    label = f"{args.model}{' (plain)' if args.plain else ''} on {args.set} ({len(rows)} images, " \
            f"{time.perf_counter() - start:.0f} s)"
    print_table(label, summary)
    for unit in units or []:
        pairs = [(row[f"p@{unit:g}"], row[f"r@{unit:g}"]) for row in rows]
        p, r = (float(np.mean(v)) for v in zip(*pairs))
        f = float(np.mean([f_measure(a, b) for a, b in pairs]))
        print(f"boundary within {unit:g} network px: precision {p:.4f} recall {r:.4f} F {f:.4f} (means over photos)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": args.model, "plain": args.plain, "set": str(args.set),
                                         "summary": summary, "images": rows}, indent=1))
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["name", "sequence", "iou", "mae", "far", "bf", "bf3"],
                                    extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
