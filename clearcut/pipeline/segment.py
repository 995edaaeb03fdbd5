"""Run the segmentation model(s) on a downscaled copy of the image and combine their predictions.

Each network sees the image *stretched* to its square input, the way ISNet (DIS) and U2-Net were
trained (both resize training images to a square, ignoring aspect ratio); padding a wide photo with
replicated edges instead puts streaks the networks never saw into up to half of their input, and
measured 0.04-0.06 IoU worse (benchmarks/QUALITY.md). Each network returns its logits on its own output
grid (ISNet: 512 x 512 for its 1024 px input; ``clearcut.models.logits``); they are enlarged to the grid
of the photo (``make_guide``) before the sigmoid (``to_grid``), and the resulting matte and the photo at
the grid's size guide the full-resolution upsampling in ``refine``.

Presets: ``fast`` runs ISNet alone; ``quality`` (the default) also runs U2-Net on photos ISNet sees
whole and consults it where ISNet is unsure (``models_for``, ``combine``), and on larger photos runs ISNet
a second time on the mirrored photo instead; ``soft`` is ``quality`` with
the edges re-estimated from the photo's colours (``refine.soft_edges``: hair, fur, plants).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import cv2
import numpy as np
from PIL import Image

from clearcut import config
from clearcut.models import logits
from clearcut.models.session import get_session, make_square  # noqa: F401 (make_square: re-exported)
from clearcut.models.store import ModelStore

PRESETS = {"quality": ("isnet-general", "u2net"), "fast": ("isnet-general",),
           "soft": ("isnet-general", "u2net")}
# Presets whose matte is refined from the photo's colours in its unsure zone (refine.soft_edges).
SOFT_EDGES = frozenset({"soft"})


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


def make_guide(rgb: np.ndarray, size: int) -> np.ndarray:
    """The grid the networks' outputs are brought to before the full-resolution upsampling.

    * A photo no larger than the network input (longer side <= ``size``): enlarged until its longer
      side is ``size`` (the networks' outputs are fused at their own pixel pitch).
    * A larger photo: shrunk until its shorter side is ``size``, or kept as it is if that side is
      already shorter. No row or column of the ``size`` x ``size`` output is lost on the way: a grid
      whose *longer* side is ``size`` squeezes the shorter axis of a 4:3 photo's output by a quarter,
      and of a 16:9 one by 44 %, before upsampling it again (eval/highres: +0.002 mIoU, +0.005 BF at
      3 px)."""
    h, w = rgb.shape[:2]
    if max(h, w) <= size:
        return make_proxy(rgb, size)
    if min(h, w) <= size:
        return rgb
    return make_proxy(rgb, round(max(h, w) * size / min(h, w)))


def _resize(matte: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A probability map brought to the grid. Where no axis shrinks, OpenCV's bilinear interpolation is
    Pillow's to within 1e-7 and 30x faster on a float matte (1024 -> 1536 columns: 25 -> 0.8 ms); a
    shrinking axis keeps Pillow's antialiased (triangle) filter."""
    if matte.shape == shape[:2]:
        return matte
    if shape[0] >= matte.shape[0] and shape[1] >= matte.shape[1]:
        return cv2.resize(matte, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.asarray(Image.fromarray(matte).resize((shape[1], shape[0]), Image.Resampling.BILINEAR))


def to_grid(net_logits: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A network's output (logits on its own grid) as a probability at the grid's size: the logits
    enlarged, then the sigmoid (``logits.to_size``: sub-pixel structures and edges stay where the
    network put them; eval/product dis BF at 3 px +0.005, benchmarks/QUALITY.md section 23). A grid
    smaller than the network's output on an axis takes the probability, antialiased (``_resize``)."""
    if logits.grows(net_logits, shape):
        return logits.to_size(net_logits, shape)
    return _resize(logits.sigmoid(net_logits), shape)


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


SAME_SUBJECT = 0.1  # IoU of two models' masks below which they are not looking at the same subject


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two models' masks (p >= 0.5); 1.0 when both are empty."""
    fa, fb = a >= 0.5, b >= 0.5
    union = np.count_nonzero(fa | fb)
    return 1.0 if union == 0 else np.count_nonzero(fa & fb) / union


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
    benchmarks/QUALITY.md, section 9). A secondary whose mask shares less than SAME_SUBJECT (IoU) with
    the primary's is looking at another subject, or at none, and gets no vote at all (section 12).
    """
    primary = predictions[0]
    predictions = [primary, *(p for p in predictions[1:] if agreement(primary, p) >= SAME_SUBJECT)]
    if len(predictions) == 1:
        return primary
    mean = np.mean(np.stack(predictions), axis=0, dtype=np.float32)
    trusted = np.abs(primary - 0.5) > CONFIDENT
    if pitch is not None:
        trusted |= thin_structures(primary, pitch)
    return np.where(trusted, primary, mean).astype(np.float32, copy=False)


# infer(model name, square) -> the network's logits on its own output grid (``predict_logits``). The default
# runs the ONNX session; the benchmarks pass a caching one so experiments do not re-run the networks.
Infer = Callable[[str, np.ndarray], np.ndarray]


def session_infer(store: ModelStore | None = None) -> Infer:
    return lambda name, square: get_session(name, store).predict_logits(square)


def models_for(models: tuple[str, ...], width: int, height: int, store: ModelStore | None = None
               ) -> tuple[str, ...]:
    """The network runs for a photo of this size: the secondaries while the photo fits in the primary's
    input (longer side at most its size); on a larger photo, the primary twice, the second run on the
    mirrored photo (``predict`` averages the two).

    A secondary's vote is averaged into the primary's unsure pixels, which are mostly the ramp along
    every edge. On a photo the primary sees whole, that ramp and one pixel of U2-Net's 320 px input
    span a few photo pixels, and the vote mends whole regions at little cost to the edges (eval/dev
    +0.013 mIoU, eval/product ccp and grabcut ahead of both networks). On a larger photo the same vote
    moves every edge by a secondary pixel, 3-18 photo pixels at 1-6 k px, and erodes structures that
    the primary resolves and the secondary cannot: it lost on 10 of 11 eval/product dis photos and 40 of
    44 eval/highres photos, whatever the two networks' agreement (benchmarks/QUALITY.md, section 12).
    There the second run goes to the primary on the mirror image instead: the network is not
    mirror-symmetric, so the two runs err partly independently, and their mean is a second opinion at
    the primary's own resolution (eval/highres photos above 1024 px: mIoU / BF / BF at 3 px 0.919 /
    0.972 / 0.846 -> 0.926 / 0.981 / 0.861, section 19)."""
    if len(models) == 1:
        return models
    primary = get_session(models[0], store)
    return models if max(width, height) <= primary.size else (models[0], models[0])


def predict(rgb: np.ndarray, models: tuple[str, ...], store: ModelStore | None = None,
            *, infer: Infer | None = None, picture: Image.Image | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (matte, guide): the combined matte of the network runs for this photo (``models_for``; a
    network listed twice runs a second time on the mirrored photo, and its two outputs are averaged)
    and the RGB image at the matte's resolution (``make_guide``). ``picture``: ``rgb`` as a Pillow
    image, if the caller has it (``make_square``)."""
    infer = infer or session_infer(store)
    runs = models_for(models, rgb.shape[1], rgb.shape[0], store)
    names = list(dict.fromkeys(runs))  # as asked: a session's own name may be NAME-int8
    sessions = [get_session(name, store) for name in names]
    # The grid (OpenCV) is resampled on a second thread while Pillow, on one core, resamples the
    # squares; both release the GIL (4 MP: 50-62 -> 40-45 ms, benchmarks/QUALITY.md section 14).
    with ThreadPoolExecutor(1) as pool:
        guide_job = pool.submit(make_guide, rgb, max(s.size for s in sessions))
        squares = {size: make_square(rgb, size, picture) for size in {s.size for s in sessions}}
        guide = guide_job.result()
    predictions = [to_grid(_run(infer, s.model.name, squares[s.size], runs.count(name) > 1), guide.shape)
                   for name, s in zip(names, sessions)]
    coarsest = min(s.size for s in sessions[1:]) if len(sessions) > 1 else None
    pitch = (guide.shape[1] / coarsest, guide.shape[0] / coarsest) if coarsest else None
    return combine(predictions, pitch), guide


def _run(infer: Infer, name: str, square: np.ndarray, mirrored: bool) -> np.ndarray:
    """One network's logits on its square; with ``mirrored``, the mean of them and of the logits on the
    mirrored square, flipped back (a grid of pixel centres is its own mirror image, so the two align)."""
    out = infer(name, square)
    if not mirrored:
        return out
    # cv2.flip, not a reversed numpy view: the same pixels, 0.1 ms against 6 ms for the copy of the square
    flipped = cv2.flip(np.asarray(infer(name, cv2.flip(square, 1)), np.float32), 1)
    flipped += out
    flipped *= np.float32(0.5)
    return flipped
