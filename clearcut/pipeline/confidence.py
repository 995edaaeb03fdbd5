"""How far to trust a cutout: an estimate of its IoU against a careful human mask, with no ground truth.

``confidence(matte)`` reads the combined network matte at proxy resolution (what ``segment.predict``
returns) and multiplies three factors, each in [0, 1]:

* **uncertainty**: ``sigmoid(INTERCEPT + SLOPE * log(u + EPS))``, where ``u`` is the share of
  uncertain pixels (0.1 < p < 0.9) relative to the foreground area (p > 0.5). A network that has
  found its subject draws it with a thin soft edge; one that is guessing leaves broad grey regions.
  This factor alone ranks the shared sets' cutouts at Spearman 0.80-0.87 (``quality`` preset).
* **competing subjects**: ``1 - COMPETING_WEIGHT * c``, where ``c`` is the share of the foreground
  in connected components (8-connectivity, p > 0.5) other than the largest whose own area is at
  least ``COMPETING_RELATIVE`` of the largest's. A second subject of comparable size is either
  wanted (IoU unaffected) or a bystander the human mask leaves out (IoU 1 - c); with no way to tell,
  the factor takes the mean of the two. Smaller fragments (gaps between legs, spokes, specks) do not
  count.
* **presence**: ``min(1, area / MIN_AREA)``: a matte with (almost) no foreground has found nothing a
  person would have marked (IoU 0 on every shared image whose foreground was under 0.5 % of the
  frame).

How it was fitted: INTERCEPT and SLOPE are a logistic regression of the IoU (as a soft label, with
cross-entropy loss) of the cutout the service returns on the uncertainty feature, divided by the other two factors, over
eval/product, eval/highres, eval/dev and eval/matting, each set weighted equally (Newton's method,
L2 1e-3); ``python benchmarks/confidence.py --fit`` reproduces them. COMPETING_WEIGHT,
COMPETING_RELATIVE, MIN_AREA and EPS are set by the reasoning above, not fitted (the shared sets
have too few photos with competing subjects or no subject to fit them). Figures: docs/benchmarks.md,
"Confidence".
"""
from __future__ import annotations

import math

import cv2
import numpy as np

INTERCEPT = 0.787
SLOPE = -0.9383
EPS = 0.005               # keeps log(u) finite for a crisp matte
UNCERTAIN = (0.1, 0.9)    # probabilities counted as uncertain
COMPETING_WEIGHT = 0.5
COMPETING_RELATIVE = 0.2  # a component counts as a competing subject from this share of the largest
MIN_AREA = 0.005          # foreground share of the frame below which presence falls linearly to 0


def features(matte: np.ndarray) -> dict[str, float]:
    """The three quantities the score is made of: ``uncertain`` (u), ``competing`` (c), ``area``."""
    matte = np.asarray(matte, dtype=np.float32)
    foreground = matte > 0.5
    fg_pixels = int(np.count_nonzero(foreground))
    uncertain = int(np.count_nonzero((matte > UNCERTAIN[0]) & (matte < UNCERTAIN[1])))
    competing = 0.0
    if fg_pixels:
        _, _, stats, _ = cv2.connectedComponentsWithStats(foreground.view(np.uint8), connectivity=8)
        areas = np.sort(stats[1:, cv2.CC_STAT_AREA])[::-1]
        others = areas[1:]
        competing = float(others[others >= COMPETING_RELATIVE * areas[0]].sum() / areas.sum())
    return {"uncertain": uncertain / max(fg_pixels, 1), "competing": competing,
            "area": fg_pixels / max(matte.size, 1)}


def uncertainty_factor(uncertain: float) -> float:
    return 1.0 / (1.0 + math.exp(-(INTERCEPT + SLOPE * math.log(uncertain + EPS))))


def structure_factor(competing: float, area: float) -> float:
    """The competing-subjects and presence factors together (not fitted)."""
    return (1.0 - COMPETING_WEIGHT * competing) * min(1.0, area / MIN_AREA)


def from_features(f: dict[str, float]) -> float:
    return round(uncertainty_factor(f["uncertain"]) * structure_factor(f["competing"], f["area"]), 4)


def confidence(matte: np.ndarray) -> float:
    """Estimated IoU (0..1) of the cutout made from ``matte`` against a careful human mask."""
    return from_features(features(matte))
