"""Lay the cutout out on a canvas: size, margin, padding, fit, scale, position, and a shadow from the matte.

Runs after compose's crop and size step and before the background is flattened, on the foreground
colours and the float matte. The subject is the box of pixels at least ``compose.SUBJECT_ALPHA``
opaque; fainter haze outside that box is dropped, so everything outside the subject (and its shadow)
is exactly the background. Shadows are black with a deterministic alpha (no generative model): the
subject is composited over them, so on a transparent canvas they stay semi-transparent and on a flat
background they darken it.

Geometry, outside in: the canvas; the ``margin`` band at its edges; the ``padding`` band inside that (its
% are of the area within the margin); the padded area, into which the reference box (the subject's box,
or the whole frame with ``reference=image``) is fitted (``fit=contain``) or made to cover it
(``fit=cover``), times ``scale``, and placed by ``position``. ``snap_edges`` drops the padding on sides
where the photo's frame cut the subject off and holds the subject against them; the margin always stays.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from clearcut.errors import InvalidOption
from clearcut.options import MAX_CANVAS_PIXELS, MAX_CANVAS_SIDE, Margin, Options
from clearcut.pipeline import compose

# Defaults per shadow type: opacity in % and the geometry as fractions of the subject's box.
OPACITY = {"drop": 50.0, "contact": 60.0, "floating": 35.0}
DEFAULT_SOFTNESS = 50.0


def canvas_size(canvas: str, width: int, height: int) -> tuple[int, int]:
    if canvas == "original":
        return width, height
    if canvas == "square":
        side = max(width, height)
        return side, side
    w, h = canvas.split("x")
    return int(w), int(h)


Box = tuple[int, int, int, int]  # (left, top, width, height)
SIDES = ("left", "top", "right", "bottom")


def _sides(margin: Margin, width: float, height: float) -> list[float]:
    """[left, top, right, bottom] in px of a Margin whose relative values are fractions of width x height."""
    sx, sy = (width, height) if margin.relative else (1, 1)
    return [margin.left * sx, margin.top * sy, margin.right * sx, margin.bottom * sy]


def cut_sides(box: Box | None, width: int, height: int) -> frozenset[str]:
    """The sides of a frame the subject's box reaches (within 1 px): where the photo cut it off."""
    if box is None:
        return frozenset()
    left, top, w, h = box
    reach = (left <= 1, top <= 1, left + w >= width - 1, top + h >= height - 1)
    return frozenset(side for side, touches in zip(SIDES, reach) if touches)


def snapped_sides(options: Options, cut: frozenset[str]) -> frozenset[str]:
    """The cut sides that ``snap_edges`` holds the subject against (their padding is dropped)."""
    axes = {"all": SIDES, "horizontal": ("left", "right"), "vertical": ("top", "bottom")}.get(options.snap_edges, ())
    return frozenset(side for side in cut if side in axes)


def _padding(options: Options, doc_w: float, doc_h: float, snapped: frozenset[str]) -> list[float]:
    return [0.0 if name in snapped else value for name, value in zip(SIDES, _sides(options.padding, doc_w, doc_h))]


def _around(ref_w: int, ref_h: int, options: Options, snapped: frozenset[str]) -> tuple[int, int]:
    """canvas=subject: the reference box at its own size with the padding, then the margin, around it."""
    pad, mar = _padding(options, 1, 1, snapped), _sides(options.margin, 1, 1)

    def grow(inner: float, low: int, high: int) -> int:
        for parts, relative in ((pad, options.padding.relative), (mar, options.margin.relative)):
            extra = parts[low] + parts[high]
            inner = inner / max(0.02, 1 - extra) if relative else inner + extra
        return max(1, round(inner))
    return grow(ref_w, 0, 2), grow(ref_h, 1, 3)


def _canvas(options: Options, ref: Box, width: int, height: int, snapped: frozenset[str]) -> tuple[int, int]:
    """The canvas size: the ``canvas`` option, shrunk (aspect kept) to fit max_width / max_height."""
    cw, ch = (_around(ref[2], ref[3], options, snapped) if options.canvas == "subject"
              else canvas_size(options.canvas, width, height))
    shrink = min(1.0, (options.max_width or cw) / cw, (options.max_height or ch) / ch)
    if shrink < 1:
        cw = min(options.max_width or cw, max(1, round(cw * shrink)))
        ch = min(options.max_height or ch, max(1, round(ch * shrink)))
    if max(cw, ch) > MAX_CANVAS_SIDE or cw * ch > MAX_CANVAS_PIXELS:
        raise InvalidOption(f"the canvas would be {cw}x{ch} px (the limits are {MAX_CANVAS_SIDE} px a side and "
                            f"{MAX_CANVAS_PIXELS // 1_000_000} MP): lower the padding or margin, or set max_width / "
                            "max_height", code="invalid_canvas", option="canvas")
    return cw, ch


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (image.shape[1], image.shape[0]) == size:
        return image
    shrinking = size[0] < image.shape[1]
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def _moves(options: Options) -> bool:
    """Whether the reference box is fitted into the padded area (otherwise the frame is only scaled with the
    canvas, so ``max_width`` / ``max_height`` alone shrink the picture as it is)."""
    return (options.canvas != "original" or sum(_sides(options.padding, 1, 1)) > 0
            or sum(_sides(options.margin, 1, 1)) > 0 or options.scale is not None or options.fit == "cover")


def crop_box(box: tuple[int, int, int, int], alpha: np.ndarray, subject, options: Options):
    """The crop rectangle (left, top, right, bottom) grown to hold the shadow, when the crop is the canvas
    (no canvas, margin, padding, scale or cover fit moves the subject): crop keeps what is not empty, and a
    shadow is not. ``alpha`` and ``subject`` are the uncropped matte and the subject's box in it."""
    if options.shadow == "none" or _moves(options):
        return box
    shadow, (x0, y0, _, _) = render_shadow(alpha, subject, options)
    reach = compose.bounding_box(shadow >= 0.5 / 255) if shadow.size else None  # what 8 bits keep
    if reach is None:
        return box
    left, top, width, height = reach
    left, top = left + x0, top + y0
    return min(box[0], left), min(box[1], top), max(box[2], left + width), max(box[3], top + height)


def _align(position: str, snapped: frozenset[str]) -> tuple[float, float]:
    """(x %, y %) in the padded area; a snapped side holds the subject against it on its axis."""
    px, py = (50.0, 50.0) if position == "center" else (float(v.rstrip("%")) for v in position.split())
    if ("left" in snapped) != ("right" in snapped):
        px = 0.0 if "left" in snapped else 100.0
    if ("top" in snapped) != ("bottom" in snapped):
        py = 0.0 if "top" in snapped else 100.0
    return px, py


def apply(fg: np.ndarray, alpha: np.ndarray, options: Options, cut: frozenset[str] = frozenset()):
    """(fg, alpha, subject box) on the canvas; the box is (left, top, width, height) or None.

    ``cut`` names the sides of the photo's frame that the subject reached (``cut_sides``, measured before
    any crop); with ``snap_edges`` those sides drop their padding and hold the subject."""
    if not options.laid_out:
        return fg, alpha, compose.bounding_box(alpha >= compose.SUBJECT_ALPHA)
    height, width = alpha.shape[:2]
    box = compose.bounding_box(alpha >= compose.SUBJECT_ALPHA)
    ref = (0, 0, width, height) if options.reference == "image" or box is None else box
    snapped = snapped_sides(options, cut)
    cw, ch = _canvas(options, ref, width, height, snapped)
    out_fg = np.zeros((ch, cw, 3), np.uint8)
    out_alpha = np.zeros((ch, cw), np.float32)
    if box is None:
        return out_fg, out_alpha, None
    ml, mt, mr, mb = _sides(options.margin, cw, ch)
    doc_w, doc_h = max(1.0, cw - ml - mr), max(1.0, ch - mt - mb)
    pl, pt, pr, pb = _padding(options, doc_w, doc_h, snapped)
    cl, ct = ml + pl, mt + pt
    cwid, chei = max(1.0, doc_w - pl - pr), max(1.0, doc_h - pt - pb)
    rl, rt, rw, rh = ref
    moves = _moves(options)
    factor = min(cw / width, ch / height)
    if moves:
        factor = (max if options.fit == "cover" else min)(cwid / rw, chei / rh)
        factor *= options.scale / 100 if options.scale is not None else 1.0
    ref_w, ref_h = max(1, round(rw * factor)), max(1, round(rh * factor))
    position = options.position or ("center" if moves else "original")
    if position == "original":  # the reference box's centre keeps its place relative to the frame
        x = (rl + rw / 2) / width * cw - ref_w / 2
        y = (rt + rh / 2) / height * ch - ref_h / 2
    else:
        px, py = _align(position, snapped)
        x = cl + (cwid - ref_w) * px / 100
        y = ct + (chei - ref_h) * py / 100
    left, top, bw, bh = box
    x, y = round(x + (left - rl) * factor), round(y + (top - rt) * factor)
    sw, sh = max(1, round(bw * factor)), max(1, round(bh * factor))
    sub_fg = _resize(np.ascontiguousarray(fg[top:top + bh, left:left + bw]), (sw, sh))
    sub_alpha = _resize(np.ascontiguousarray(alpha[top:top + bh, left:left + bw]), (sw, sh))
    if not options.semitransparency:  # resampling the subject softens its edge again
        sub_alpha = compose.harden(sub_alpha)
    # Paste, clipped to the canvas.
    x0, y0, x1, y1 = max(0, x), max(0, y), min(cw, x + sw), min(ch, y + sh)
    if x1 > x0 and y1 > y0:
        out_fg[y0:y1, x0:x1] = sub_fg[y0 - y:y1 - y, x0 - x:x1 - x]
        out_alpha[y0:y1, x0:x1] = sub_alpha[y0 - y:y1 - y, x0 - x:x1 - x]
    subject = compose.bounding_box(out_alpha >= compose.SUBJECT_ALPHA)
    if options.shadow != "none" and subject is not None:
        shadow, (wx0, wy0, wx1, wy1) = render_shadow(out_alpha, subject, options)
        if shadow.size:
            _over_shadow(out_fg, out_alpha, shadow, (wx0, wy0, wx1, wy1), (x0, y0, x1, y1))
    return out_fg, out_alpha, subject


def render_shadow(alpha: np.ndarray, subject, options: Options):
    """The shadow's alpha (0..1) and the window (x0, y0, x1, y1) of the canvas it covers.

    Only the window the blurred shadow can reach is computed (a listing canvas is mostly empty): the
    shadow is exactly 0 outside it.
    """
    left, top, bw, bh = subject
    height, width = alpha.shape
    opacity = (options.shadow_opacity if options.shadow_opacity is not None else OPACITY[options.shadow]) / 100
    softness = (options.shadow_softness if options.shadow_softness is not None else DEFAULT_SOFTNESS) / 100
    longer = max(bw, bh)
    if options.shadow == "drop":  # the silhouette, offset down and to the right, blurred
        dx, dy = round(0.02 * longer), round(0.03 * longer)
        sigma = max(0.5, softness * 0.04 * longer)
        reach = _reach(sigma)
        x0, y0, x1, y1 = _window(left + dx - reach, top + dy - reach, left + bw + dx + reach, top + bh + dy + reach,
                                 width, height)
        shadow = np.zeros((max(0, y1 - y0), max(0, x1 - x0)), np.float32)
        sx0, sy0, sx1, sy1 = max(0, x0 - dx), max(0, y0 - dy), min(width, x1 - dx), min(height, y1 - dy)
        if sx1 > sx0 and sy1 > sy0:
            shadow[sy0 + dy - y0:sy1 + dy - y0, sx0 + dx - x0:sx1 + dx - x0] = alpha[sy0:sy1, sx0:sx1]
    else:  # an ellipse under the base: touching it (contact) or below a gap (floating)
        floating = options.shadow == "floating"
        cx = left + bw / 2
        semi_x = bw * (0.35 if floating else 0.45)
        semi_y = max(1.0, bw * (0.05 if floating else 0.06))
        cy = top + bh + (0.06 * bh + semi_y if floating else 0.0)
        sigma = max(0.5, softness * (0.5 if floating else 0.35) * semi_y * 2)
        reach = _reach(sigma)
        x0, y0, x1, y1 = _window(math.floor(cx - semi_x) - reach, math.floor(cy - semi_y) - reach,
                                 math.ceil(cx + semi_x) + reach, math.ceil(cy + semi_y) + reach, width, height)
        shadow = np.zeros((max(0, y1 - y0), max(0, x1 - x0)), np.float32)
        cv2.ellipse(shadow, (round((cx - x0) * 4), round((cy - y0) * 4)), (round(semi_x * 4), round(semi_y * 4)),
                    0, 0, 360, 1.0, thickness=-1, lineType=cv2.LINE_AA, shift=2)
    if not shadow.size:
        return shadow, (x0, y0, x1, y1)
    return _blur(shadow, sigma, gain=opacity), (x0, y0, x1, y1)


def _window(x0: int, y0: int, x1: int, y1: int, width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0 = max(0, x0), max(0, y0)
    return x0, y0, max(x0, min(width, x1)), max(y0, min(height, y1))


def _reach(sigma: float) -> int:
    """How far (px) _blur spreads a pixel: its kernel radius on the coarse grid plus a grid step each side."""
    step = max(1, int(sigma // 3))
    return math.ceil(3 * sigma / step) * step + 2 * step + 2


def _blur(image: np.ndarray, sigma: float, gain: float = 1.0) -> np.ndarray:
    """Gaussian blur of a 0..1 image, times ``gain`` (0..1: the result stays in 0..1); wide ones run on a
    grid 1/step as fine (a 4 MP canvas stays within a few ms)."""
    step = max(1, int(sigma // 3))
    height, width = image.shape
    small = image if step == 1 else cv2.resize(image, (math.ceil(width / step), math.ceil(height / step)),
                                               interpolation=cv2.INTER_AREA)
    s = sigma / step
    ksize = 2 * math.ceil(3 * s) + 1
    small = cv2.GaussianBlur(small, (ksize, ksize), s, borderType=cv2.BORDER_CONSTANT)
    if gain != 1.0:
        small *= np.float32(gain)
    return small if step == 1 else cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _over_shadow(fg: np.ndarray, alpha: np.ndarray, shadow: np.ndarray, window, pasted) -> None:
    """The subject over a black shadow, in place: alpha a + s(1 - a), colour fg * a / that (black adds
    nothing). ``shadow`` covers ``window`` of the canvas; the subject was pasted into ``pasted`` (both
    (x0, y0, x1, y1)), and the canvas is black outside it, so the colour only changes in there: where the
    subject is absent (black) or partly transparent (scaled; its edge, a few pixels, in floats)."""
    wx0, wy0, wx1, wy1 = window
    px0, py0, px1, py1 = max(wx0, pasted[0]), max(wy0, pasted[1]), min(wx1, pasted[2]), min(wy1, pasted[3])
    edge = ()
    if px1 > px0 and py1 > py0:
        a, colour = alpha[py0:py1, px0:px1], fg[py0:py1, px0:px1]
        colour[:] = cv2.bitwise_and(colour, colour, mask=(a > 0).view(np.uint8))
        rows, cols = np.nonzero((a > 0) & (a < 1))
        edge = (rows, cols, a[rows, cols].copy())
    a = alpha[wy0:wy1, wx0:wx1]
    under = 1.0 - a
    under *= shadow
    a += under
    if edge:
        rows, cols, before = edge
        a = alpha[py0:py1, px0:px1]
        colour = fg[py0:py1, px0:px1]
        weight = before / a[rows, cols]
        colour[rows, cols] = np.clip(colour[rows, cols].astype(np.float32) * weight[:, None] + 0.5, 0,
                                     255).astype(np.uint8)
