"""Bring a low-resolution matte to full resolution and estimate clean foreground colours.

* ``guided_upsample`` is the fast guided filter (He & Sun, 2015) with an offset that keeps the matte at
  each grid pixel: the local slope of the matte on the guide's brightness is fitted on the grid, then
  applied to the full-resolution guide, so edges follow the real image instead of the blocky, blurred
  upsampled matte.
* ``estimate_foreground`` is blur-fusion foreground estimation (Forte & Pitié, 2021): at
  semi-transparent pixels, the colour is solved from the compositing equation using local means of
  foreground and background, removing the old background's tint (the "halo").
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np


# Alpha strictly between 0 and 1, as the closed range OpenCV's inRange takes.
_SOFT_RANGE = (float(np.nextafter(np.float32(0), np.float32(1))), float(np.nextafter(np.float32(1), np.float32(0))))


def _soft_mask(alpha: np.ndarray) -> np.ndarray:
    return cv2.inRange(np.asarray(alpha, np.float32), *_SOFT_RANGE)


def soft_pixels(alpha: np.ndarray) -> np.ndarray:
    """Flat indices, in row-major order, of a matte's pixels with 0 < alpha < 1 (one OpenCV pass and a
    boolean scan: 3 ms at 4 MP against 12 ms for numpy's two comparisons and a byte scan)."""
    mask = _soft_mask(alpha)  # 0 / 255
    np.bitwise_and(mask, 1, out=mask)  # 0 / 1: a valid boolean, which numpy scans 6x faster than bytes
    return np.flatnonzero(mask.view(np.bool_))


def _box(x: np.ndarray, r: int) -> np.ndarray:
    return cv2.blur(x, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT)


_CHUNK = 200_000  # soft pixels per piece of per-pixel work on a thread, at least (4 MP's ~150 k gain nothing)
_DENSE_CHUNK = 4_000_000  # photo pixels per piece of the guided filter's full-resolution arithmetic, at least


def _split(n: int, minimum: int) -> list[slice]:
    """Slices splitting ``n`` items of elementwise work into one piece per core, each at least ``minimum``
    long (numpy and OpenCV release the GIL, and an elementwise result does not depend on the split)."""
    parts = min(os.cpu_count() or 1, max(1, n // minimum))
    bounds = np.linspace(0, n, parts + 1).astype(int)
    return [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]


def _on_cores(function, parts: list, *more: list) -> list:
    """``[function(part, ...) for each part]``, one thread per part when there are several."""
    if len(parts) == 1:
        return [function(parts[0], *(m[0] for m in more))]
    with ThreadPoolExecutor(len(parts)) as pool:
        return list(pool.map(function, parts, *more))


def _sample(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples of a C-channel image at float coordinates, channel-planar: a (C, n) array."""
    n = len(x)
    cols = 1024
    rows = -(-n // cols)
    mx = np.zeros(rows * cols, np.float32)
    my = np.zeros(rows * cols, np.float32)
    mx[:n], my[:n] = x, y
    out = cv2.remap(img, mx.reshape(rows, cols), my.reshape(rows, cols), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(out.reshape(-1, img.shape[2])[:n].T)


def gather(pixels: np.ndarray, idx: np.ndarray, scale: np.ndarray | float) -> np.ndarray:
    """``pixels`` ((m, 3), any dtype) at ``idx``, times ``scale``, as a float32 (3, n) array."""
    out = np.empty((3, len(idx)), np.float32)
    for c in range(3):
        np.multiply(pixels[:, c][idx], scale, out=out[c], dtype=np.float32)
    return out


def scatter(pixels: np.ndarray, idx: np.ndarray, planar: np.ndarray) -> None:
    """Write a (3, n) array into the (m, 3) ``pixels`` at ``idx``, rounding to uint8."""
    rounded = np.clip(planar + 0.5, 0, 255).astype(np.uint8)
    for c in range(3):
        pixels[:, c][idx] = rounded[c]


def _fuse(mean_f: np.ndarray, mean_b: np.ndarray, image: np.ndarray, a: np.ndarray) -> np.ndarray:
    """One blur-fusion update, F = mean_F + a (I - a mean_F - (1 - a) mean_B), clipped to 0..1, on
    channel-planar (3, n) arrays and per-pixel alpha ``a`` (n,) (rows of n values vectorise; the
    pixel-major layout made numpy loop over 3-element rows)."""
    out = mean_f * (1.0 - a * a)
    out += image * a
    out -= mean_b * (a - a * a)
    return np.clip(out, 0.0, 1.0, out=out)


def _grey(rgb: np.ndarray) -> np.ndarray:
    return np.multiply(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), np.float32(1.0 / 255.0), dtype=np.float32)


def _coefficients_grey(matte, guide_lo, radius, eps):
    """The guided filter's slope of the matte on the guide's brightness, box-averaged (a), and the offset
    that makes ``a x brightness + offset`` the matte itself at each grid pixel (see ``guided_upsample``)."""
    i_lo = _grey(guide_lo)
    mean_i = _box(i_lo, radius)
    mean_p = _box(matte, radius)
    cov_ip = _box(i_lo * matte, radius) - mean_i * mean_p
    var_i = _box(i_lo * i_lo, radius) - mean_i * mean_i
    a = _box(cov_ip / (var_i + eps), radius)
    return a[:, :, None], matte - a * i_lo


def _coefficients_colour(matte, guide_lo, radius, eps):
    """He et al.'s colour guided filter: per window, matte ~ a . rgb + b with a 3x3 covariance; the offset
    as in ``_coefficients_grey``."""
    img = guide_lo.astype(np.float32) * (1.0 / 255.0)
    mean_i = _box(img, radius)
    mean_p = _box(matte, radius)
    cov_ip = _box(img * matte[:, :, None], radius) - mean_i * mean_p[:, :, None]
    r, g, b = img[:, :, 0], img[:, :, 1], img[:, :, 2]
    mr, mg, mb = mean_i[:, :, 0], mean_i[:, :, 1], mean_i[:, :, 2]
    vrr = _box(r * r, radius) - mr * mr + eps
    vrg = _box(r * g, radius) - mr * mg
    vrb = _box(r * b, radius) - mr * mb
    vgg = _box(g * g, radius) - mg * mg + eps
    vgb = _box(g * b, radius) - mg * mb
    vbb = _box(b * b, radius) - mb * mb + eps
    # inverse of the symmetric 3x3 matrix via cofactors
    c_rr = vgg * vbb - vgb * vgb
    c_rg = vgb * vrb - vrg * vbb
    c_rb = vrg * vgb - vgg * vrb
    c_gg = vrr * vbb - vrb * vrb
    c_gb = vrb * vrg - vrr * vgb
    c_bb = vrr * vgg - vrg * vrg
    det = vrr * c_rr + vrg * c_rg + vrb * c_rb
    x, y, z = cov_ip[:, :, 0], cov_ip[:, :, 1], cov_ip[:, :, 2]
    a = np.stack([c_rr * x + c_rg * y + c_rb * z,
                  c_rg * x + c_gg * y + c_gb * z,
                  c_rb * x + c_gb * y + c_bb * z], axis=-1) / det[:, :, None]
    a = _box(a, radius)
    return a, matte - (a * img).sum(-1)


def guided_upsample(matte: np.ndarray, guide_lo: np.ndarray, guide_hi: np.ndarray, *,
                    radius: int = 1, eps: float = 1e-4, colour: bool = False) -> np.ndarray:
    """Full-resolution matte (float32 0..1) at the size of ``guide_hi`` (uint8 RGB).

    The fast guided filter's local linear model, with its own offset: the slope ``a`` of the matte on the
    guide is fitted on the grid in (2 ``radius`` + 1)-pixel windows and box-averaged, as in the fast guided
    filter, but the offset is ``matte - a x guide`` at each grid pixel instead of the box-averaged window
    mean. Upsampled bilinearly and applied to the full-resolution guide, the output is then the network's
    matte plus the photo's detail finer than the grid, scaled by the local slope. The filter's own offset
    is the matte box-filtered twice wherever the guide has no contrast (a ~ 0: a structure as bright as
    its background, a flat area), a blur over 5 grid pixels that eroded thin structures and filled narrow
    gaps the network had resolved (eval/highres, photos larger than the grid: mIoU / BF / BF at 3 px
    0.9187 / 0.9714 / 0.8439 -> 0.9191 / 0.9722 / 0.8460, dis unchanged; benchmarks/QUALITY.md section 18).
    """
    h, w = guide_hi.shape[:2]
    if matte.shape == (h, w):
        return matte
    if guide_lo.shape[0] >= h:  # the input is smaller than the model's proxy: plain resize is exact enough
        return cv2.resize(matte, (w, h), interpolation=cv2.INTER_AREA)
    matte = matte.astype(np.float32, copy=False)
    fit = _coefficients_colour if colour else _coefficients_grey
    a, b = fit(matte, guide_lo, radius, eps)
    if colour:
        ab_hi = cv2.resize(np.dstack([a, b]), (w, h), interpolation=cv2.INTER_LINEAR)
        pix = guide_hi.astype(np.float32) * (1.0 / 255.0)
        alpha = cv2.transform(ab_hi[:, :, :3] * pix, np.ones((1, 3), np.float32)) + ab_hi[:, :, 3]
    else:
        # a * grey + b, clipped, in row bands on the cores for large photos (elementwise, so the bands
        # do not change the result; 24 MP: 95 -> 74 ms).
        bands = _split(h, max(1, _DENSE_CHUNK // w))
        alpha = cv2.resize(a[:, :, 0], (w, h), interpolation=cv2.INTER_LINEAR)  # each plane contiguous
        grey = cv2.cvtColor(guide_hi, cv2.COLOR_RGB2GRAY)

        def times_grey(rows: slice) -> None:
            alpha[rows] *= np.multiply(grey[rows], np.float32(1.0 / 255.0), dtype=np.float32)  # as _grey

        _on_cores(times_grey, bands)
        offset = cv2.resize(b, (w, h), interpolation=cv2.INTER_LINEAR)

        def plus_offset(rows: slice) -> None:
            alpha[rows] += offset[rows]
            np.clip(alpha[rows], 0.0, 1.0, out=alpha[rows])

        _on_cores(plus_offset, bands)
        return alpha
    return np.clip(alpha, 0.0, 1.0, out=alpha)


def clean_alpha(alpha: np.ndarray, low: float = 0.02, high: float = 0.98, *, in_place: bool = False
                ) -> np.ndarray:
    """Snap near-0 and near-1 values: removes faint background noise and speckle in the subject.
    ``in_place`` overwrites a float32 ``alpha`` the caller owns (24 MP: 35 -> 23 ms, no new full-size
    arrays but one)."""
    alpha = np.asarray(alpha, np.float32)
    kept = cv2.threshold(alpha, low, 0.0, cv2.THRESH_TOZERO, dst=alpha if in_place else None)[1]  # <= low -> 0
    return cv2.max(kept, cv2.threshold(kept, high, 1.0, cv2.THRESH_BINARY)[1], dst=kept)  # > high -> 1


def _blur_fusion(image, fg, bg, alpha, r):
    """Reference blur-fusion step on dense float arrays (used for small images and in tests)."""
    a3 = alpha[:, :, None]
    blurred_a = _box(alpha, r)[:, :, None]
    blurred_f = _box(fg * a3, r) / (blurred_a + 1e-5)
    blurred_b = _box(bg * (1.0 - a3), r) / ((1.0 - blurred_a) + 1e-5)
    fg = blurred_f + a3 * (image - a3 * blurred_f - (1.0 - a3) * blurred_b)
    return np.clip(fg, 0.0, 1.0, out=fg), blurred_b


def estimate_foreground_dense(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Blur-fusion (radius 45, then 3) computed densely in float32: the reference implementation."""
    image = rgb.astype(np.float32) * (1.0 / 255.0)
    fg, bg = _blur_fusion(image, image, image, alpha, 45)
    fg, _ = _blur_fusion(image, fg, bg, alpha, 3)
    out = (fg * 255.0 + 0.5).astype(np.uint8)
    opaque = alpha >= 1.0
    out[opaque] = rgb[opaque]
    return out


_COARSE = 4  # the radius-45 pass runs at 1/4 resolution: a 45-px box mean is smooth, so this is ~exact


def estimate_foreground(rgb: np.ndarray, alpha: np.ndarray, soft: np.ndarray | None = None) -> np.ndarray:
    """Foreground colours (uint8 RGB) for a matte; unchanged where the matte is fully opaque.

    Same two blur-fusion steps as ``estimate_foreground_dense`` (radius 45, then 3), organised so
    that a 4 MP image costs tens of milliseconds instead of most of a second:

    * the first step's local means (radius 45) are computed on a 1/4-scale copy and sampled
      bilinearly where needed (a 45-px box mean of a 4x area-downsampled image is the same smooth
      field);
    * only semi-transparent pixels get a new colour (opaque pixels keep theirs; fully transparent
      ones are invisible), so the per-pixel algebra runs on those pixels only, and the radius-3
      means are box filters over 8-bit images (an error below 1/255 in what is finally visible),
      over the band's bounding box only (byte-identical to full-frame filters; 168 -> 107 ms at 4 MP);
    * the per-pixel algebra runs on channel-planar (3, n) arrays (``_fuse``): 79-100 -> 52-69 ms on
      ``benchmarks/throughput.py``'s 4 MP photos with 8-12 % semi-transparent pixels, with at most
      9 pixels of 4 million changing, by 1-3 levels (float rounding order);
    * a large band's per-pixel steps run in chunks on the cores (``_split``; identical output): 24 MP,
      0.9 M soft pixels, 285-320 -> 235-248 ms.
    """
    h, w = alpha.shape
    alpha = alpha.astype(np.float32, copy=False)
    idx = soft_pixels(alpha) if soft is None else soft  # ``soft``: the caller's soft_pixels(alpha)
    if not idx.size:
        return rgb.copy()
    if h * w < 250_000:
        return estimate_foreground_dense(rgb, alpha)

    # Step 1 (radius 45) at coarse scale: local means of foreground (image * alpha / mean alpha)
    # and background, sampled at the semi-transparent pixels and (for the background) densely.
    # The coarse copy is the photo's top-left multiple of s shrunk exactly s times (OpenCV's integer
    # pixel-area path: 3-5x faster than a fractional one); the last < s rows and columns read the
    # nearest coarse cell.
    s = _COARSE
    small = (max(1, w // s), max(1, h // s))
    whole = (slice(0, small[1] * s), slice(0, small[0] * s))
    img_lo = cv2.resize(rgb[whole], small, interpolation=cv2.INTER_AREA).astype(np.float32) * (1.0 / 255.0)
    a_lo = cv2.resize(alpha[whole], small, interpolation=cv2.INTER_AREA)
    r_lo = max(1, round(45 / s))
    ba_lo = _box(a_lo, r_lo)
    # Three-channel copies of the alpha planes: OpenCV's per-element arithmetic on them is the same
    # float32 arithmetic as numpy's broadcasting of an (h, w, 1) array, without its slow inner loop.
    a3, ba3 = cv2.merge([a_lo] * 3), cv2.merge([ba_lo] * 3)
    bf_lo = cv2.divide(_box(cv2.multiply(img_lo, a3), r_lo), ba3 + 1e-5)
    bb_lo = cv2.divide(_box(cv2.multiply(img_lo, 1.0 - a3), r_lo), (1.0 - ba3) + 1e-5)

    def step1(part: slice) -> dict:
        ys, xs = np.divmod(idx[part], w)
        a = alpha.reshape(-1)[idx[part]]
        image = gather(rgb.reshape(-1, 3), idx[part], np.float32(1.0 / 255.0))
        fx = (xs.astype(np.float32) + 0.5) * np.float32(1.0 / s) - 0.5
        fy = (ys.astype(np.float32) + 0.5) * np.float32(1.0 / s) - 0.5
        bf1, bb1 = _sample(bf_lo, fx, fy), _sample(bb_lo, fx, fy)
        return {"ys": ys, "xs": xs, "a": a, "image": image, "bb1": bb1, "fg1": _fuse(bf1, bb1, image, a)}

    # Step 2 (radius 3): the local mean of fg1 * alpha as an 8-bit box filter. Outside the
    # semi-transparent band fg1 * alpha is the image where opaque and 0 where clear. The mean is only
    # read at the band's pixels, so the full-resolution arrays cover the band's bounding box plus the
    # radius (and one pixel more, so the crop's reflected border never reaches a value that is read).
    # The background's mean is step 1's: bg1 is a 91-px box mean, constant to within a level over a
    # 7-px window, so its (1 - alpha)-weighted radius-3 mean is bg1 itself (the 8-bit full-resolution
    # copy this took moved colours by at most a level or two and cost a third of the function).
    r = 3
    parts = _split(idx.size, _CHUNK)
    pieces = _on_cores(step1, parts)
    y0 = max(0, int(min(p["ys"].min() for p in pieces)) - r - 1)
    y1 = min(h, int(max(p["ys"].max() for p in pieces)) + r + 2)
    x0 = max(0, int(min(p["xs"].min() for p in pieces)) - r - 1)
    x1 = min(w, int(max(p["xs"].max() for p in pieces)) + r + 2)
    a8 = cv2.convertScaleAbs(alpha[y0:y1, x0:x1], alpha=255.0)
    fa = cv2.multiply(rgb[y0:y1, x0:x1], cv2.merge([a8, a8, a8]), scale=1.0 / 255.0)

    def scatter_fg1(p: dict) -> None:
        p["band"] = (p["ys"] - y0) * (x1 - x0) + (p["xs"] - x0)
        scatter(fa.reshape(-1, 3), p["band"], p["fg1"] * (p["a"] * 255.0))

    _on_cores(scatter_fg1, pieces)
    mean_a8, mean_fa = _box(a8, r).reshape(-1), _box(fa, r).reshape(-1, 3)
    out = rgb.copy()

    def step2(part: slice, p: dict) -> None:
        mean_a = mean_a8[p["band"]].astype(np.float32) * np.float32(1.0 / 255.0)
        bf2 = gather(mean_fa, p["band"], np.float32(1.0 / 255.0) / (mean_a + 1e-5))
        scatter(out.reshape(-1, 3), idx[part], _fuse(bf2, p["bb1"], p["image"], p["a"]) * 255.0)

    _on_cores(step2, parts, pieces)
    return out


# Soft edges (the ``soft`` preset): alpha re-estimated from the photo's colours where the matte is
# neither definitely subject nor definitely background. Lengths are in pixels of the network's grid
# (multiplied by the photo's scale over it), so they mean the same at every photo size.
SURE_MARGIN = 3       # a pixel is definitely subject/background this far inside the matte's 0.98/0.02 area
REACH = (30, 90, 270)  # radii of the local colour means, smallest first: the first with samples is used
SAMPLES = 0.02        # share of a window that must be definite for its mean to count
SEPARABLE = (0.06, 0.2)  # |F - B| (0..1 RGB) below which the colours cannot tell, above which they fully do
FIT = 0.5             # a pixel whose colour lies further than FIT x |F - B| from the F-B line keeps its alpha
_SOFT_COARSE = 4      # the colour means are computed at 1/4 scale (smooth fields)
_BELOW_HALF = np.nextafter(np.float32(0.5), np.float32(0))


def _local_mean(image: np.ndarray, weight: np.ndarray, radii: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Mean colour of the weighted pixels around each pixel, from the smallest radius whose window holds
    at least SAMPLES of them, and the share of the window they fill."""
    mean = share = None
    for r in radii:
        k = (2 * r + 1, 2 * r + 1)
        s = cv2.blur(weight, k, borderType=cv2.BORDER_REFLECT)
        m = cv2.blur(image * weight[:, :, None], k, borderType=cv2.BORDER_REFLECT) / (s[:, :, None] + 1e-6)
        if mean is None:
            mean, share = m, s
        else:
            use = share <= SAMPLES
            mean[use], share[use] = m[use], s[use]
    return mean, share


def soft_edges(rgb: np.ndarray, alpha: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Alpha from the photo's own colours in the matte's unsure zone (hair, fur, leaves, lace).

    The matte gives a trimap: definite subject and background are its 0.98 / 0.02 areas shrunk by
    SURE_MARGIN; the rest is unknown. For each unknown pixel the local mean colours F of the definite
    subject and B of the definite background are found (the nearest scale in REACH with samples), and
    the pixel's alpha is its position on the line from B to F, alpha = (I - B).(F - B) / |F - B|^2
    (the compositing equation I = alpha F + (1 - alpha) B, solved with the local colours). It replaces
    the network's value in proportion to how well the colours separate (SEPARABLE) and how close the
    pixel lies to that line (FIT); elsewhere the network's alpha stands. A pixel never crosses 0.5: the
    network decides what is subject, the colours how opaque it is, since shading and texture near a hard
    edge are not a mix of two colours and the colour estimate alone moved whole edges.

    Measured (benchmarks/matting.py, benchmarks/QUALITY.md sections 12 and 20): on studio photos of
    hair, fur and plants the transition-band SAD falls 19 % and the halo 15 % against ISNet plain, and
    the subject's mask (alpha >= 0.5) is the default's on every photo. On hard-edged objects it still
    makes pixels the network was unsure of more translucent (mean error against product masks, more
    than 2 px from their edges, +14 % to +30 %), which is why it is a preset a caller chooses for such
    photos, not the default.
    """
    a0 = alpha.astype(np.float32, copy=False)
    h, w = a0.shape
    scale = max(1.0, scale)
    e = max(1, round(SURE_MARGIN * scale))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * e + 1, 2 * e + 1))
    sure_f = cv2.erode((a0 > 0.98).astype(np.uint8), k)
    sure_b = cv2.erode((a0 < 0.02).astype(np.uint8), k)
    ys, xs = np.nonzero((sure_f == 0) & (sure_b == 0))
    if not len(ys) or not sure_f.any() or not sure_b.any():
        return a0
    small = (max(1, w // _SOFT_COARSE), max(1, h // _SOFT_COARSE))
    image_lo = cv2.resize(rgb, small, interpolation=cv2.INTER_AREA).astype(np.float32) * (1.0 / 255.0)
    radii = [max(1, round(r * scale / _SOFT_COARSE)) for r in REACH]
    fields = []
    for sure in (sure_f, sure_b):
        mean, share = _local_mean(image_lo, cv2.resize(sure.astype(np.float32), small,
                                                       interpolation=cv2.INTER_AREA), radii)
        fields.append(_sample(np.dstack([mean, share]), (xs.astype(np.float32) + 0.5) * (small[0] / w) - 0.5,
                              (ys.astype(np.float32) + 0.5) * (small[1] / h) - 0.5))
    f, b = fields[0][:3], fields[1][:3]
    found = (fields[0][3] > SAMPLES * 0.1) & (fields[1][3] > SAMPLES * 0.1)
    pixel = rgb[ys, xs].T.astype(np.float32) * (1.0 / 255.0)
    d = f - b
    dd = (d * d).sum(0)
    estimate = np.clip(((pixel - b) * d).sum(0) / (dd + 1e-6), 0.0, 1.0)
    separation = np.sqrt(dd)
    lo, hi = SEPARABLE
    weight = np.clip((separation - lo) / (hi - lo), 0.0, 1.0) * found
    residual = np.sqrt(((pixel - (estimate * f + (1.0 - estimate) * b)) ** 2).sum(0))
    weight *= np.clip(1.0 - residual / (FIT * separation + 1e-6), 0.0, 1.0)
    out = a0.copy()
    network = out[ys, xs]
    moved = network + weight * (estimate - network)
    # The network says which side of 0.5 a pixel is on (subject or not); the colours only how opaque it is.
    out[ys, xs] = np.where(network >= 0.5, np.maximum(moved, 0.5), np.minimum(moved, _BELOW_HALF))
    return out
