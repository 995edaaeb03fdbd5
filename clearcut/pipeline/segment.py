"""Run the segmentation model(s) on a downscaled copy of the image and combine their predictions.

Each network sees the image *stretched* to its square input, the way ISNet (DIS) and U2-Net were
trained (both resize training images to a square, ignoring aspect ratio); padding a wide photo with
replicated edges instead puts streaks the networks never saw into up to half of their input, and
measured 0.04-0.06 IoU worse (benchmarks/QUALITY.md). The predictions are resized back to an
aspect-preserving proxy (longer side = the largest model's input), which guides the
full-resolution upsampling in ``refine``.

Presets: ``fast`` runs ISNet alone; ``quality`` also runs U2-Net and consults it where ISNet is unsure
(see ``combine``).
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np
from PIL import Image

from clearcut import config
from clearcut.models.session import get_session
from clearcut.models.store import ModelStore

PRESETS = {"quality": ("isnet-general", "u2net"), "fast": ("isnet-general",)}


def resolve_models(model: str | None) -> tuple[str, ...]:
    name = model or config.get("CLEARCUT_DEFAULT_MODEL")
    return PRESETS.get(name, (name,))


def make_proxy(rgb: np.ndarray, longer_side: int) -> np.ndarray:
    """Resample so the longer side equals ``longer_side``: pixel-area averaging when shrinking (the guide
    for refinement; 4x faster than Lanczos on a 4 MP photo, and equal on eval/product: same IoU, boundary
    F +0.0005), Lanczos when enlarging."""
    h, w = rgb.shape[:2]
    scale = longer_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return rgb
    if scale < 1:
        return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))


def make_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """The network input: the image stretched to ``size`` x ``size`` (antialiased bilinear)."""
    if rgb.shape[:2] == (size, size):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0))


def _resize(matte: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if matte.shape == shape[:2]:
        return matte
    return np.asarray(Image.fromarray(matte).resize((shape[1], shape[0]), Image.Resampling.BILINEAR))


CONFIDENT = 0.4  # |p - 0.5| above this (p < 0.1 or p > 0.9): the primary model is trusted alone
# Structures of the primary's matte narrower than this many pixels *of a secondary model's input* are
# below that model's Nyquist limit (it cannot resolve them), so it gets no say there.
RESOLVABLE = 2.0
PRESENT = 0.1  # primary probability that counts as "something is there" when finding thin structures


def thin_structures(primary: np.ndarray, pitch: tuple[float, float]) -> np.ndarray:
    """Pixels of the primary matte's structures (p > PRESENT) that a morphological opening with an
    ellipse of RESOLVABLE secondary pixels removes: wires, frames, legs, hair strands, spokes.
    ``pitch`` is the size (x, y) of one secondary-model input pixel in matte pixels (the secondary
    sees the image stretched to its square, so the two differ for a non-square photo)."""
    kx, ky = (max(3, int(round(RESOLVABLE * p)) | 1) for p in pitch)
    present = (primary > PRESENT).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kx, ky))
    return (present > 0) & (cv2.morphologyEx(present, cv2.MORPH_OPEN, kernel) == 0)


def combine(predictions: list[np.ndarray], pitch: tuple[float, float] | None = None) -> np.ndarray:
    """The first (primary) model where it is confident; the mean of all models where it is not, except
    on the primary's thin structures, which stay the primary's alone.

    ISNet, the primary of the ``quality`` preset, is the stronger model on every set we measured, and
    its confident pixels are rarely wrong; a plain average lets the weaker model drag those pixels
    (and whole regions it misses) towards 0.5. Where the primary is unsure, a second network trained
    on different data (U2-Net: DUTS saliency) is an independent opinion, and averaging the two there
    is what reduces the error. That opinion is only meaningful at scales the second network resolves:
    U2-Net sees 320x320, so a 1-2 px wire or strand of ISNet's 1024 px matte is below its resolution,
    and averaging there only erodes it (``pitch``: the coarsest secondary's pixel, in matte pixels;
    benchmarks/QUALITY.md, section 9).
    """
    if len(predictions) == 1:
        return predictions[0]
    primary = predictions[0]
    mean = np.mean(np.stack(predictions), axis=0, dtype=np.float32)
    trusted = np.abs(primary - 0.5) > CONFIDENT
    if pitch is not None:
        trusted |= thin_structures(primary, pitch)
    return np.where(trusted, primary, mean).astype(np.float32, copy=False)


# infer(model name, proxy) -> probability at the proxy's size. The default runs the ONNX session; the
# benchmarks pass a caching one so experiments do not re-run the networks.
Infer = Callable[[str, np.ndarray], np.ndarray]


def session_infer(store: ModelStore | None = None) -> Infer:
    return lambda name, proxy: get_session(name, store).predict(proxy)


def predict(rgb: np.ndarray, models: tuple[str, ...], store: ModelStore | None = None,
            *, infer: Infer | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (matte, proxy): the combined matte at the resolution of the largest model's proxy."""
    infer = infer or session_infer(store)
    sessions = [get_session(name, store) for name in models]
    guide = make_proxy(rgb, max(s.size for s in sessions))
    squares = {size: make_square(rgb, size) for size in {s.size for s in sessions}}
    predictions = [_resize(infer(s.model.name, squares[s.size]), guide.shape) for s in sessions]
    coarsest = min(s.size for s in sessions[1:]) if len(sessions) > 1 else None
    pitch = (guide.shape[1] / coarsest, guide.shape[0] / coarsest) if coarsest else None
    return combine(predictions, pitch), guide
