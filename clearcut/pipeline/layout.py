"""Lay the cutout out on a canvas: size, padding, scale, position, and a shadow rendered from the matte.

Runs after compose's crop and size step and before the background is flattened, on the foreground
colours and the float matte. The subject is the box of pixels at least ``compose.SUBJECT_ALPHA``
opaque; fainter haze outside that box is dropped, so everything outside the subject (and its shadow)
is exactly the background. Shadows are black with a deterministic alpha (no generative model): the
subject is composited over them, so on a transparent canvas they stay semi-transparent and on a flat
background they darken it.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from clearcut.options import Margin, Options
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


def _content_box(options: Options, width: int, height: int) -> tuple[float, float, float, float]:
    """(left, top, width, height) of the canvas inside the padding (at least 1 px each way)."""
    p = options.padding
    sx, sy = (width, height) if p.relative else (1, 1)
    left, right, top, bottom = p.left * sx, p.right * sx, p.top * sy, p.bottom * sy
    return left, top, max(1.0, width - left - right), max(1.0, height - top - bottom)


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (image.shape[1], image.shape[0]) == size:
        return image
    shrinking = size[0] < image.shape[1]
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def crop_box(box: tuple[int, int, int, int], alpha: np.ndarray, subject, options: Options):
    """The crop rectangle (left, top, right, bottom) grown to hold the shadow, when the crop is the canvas
    (canvas original, no scale or padding): crop keeps what is not empty, and a shadow is not. ``alpha``
    and ``subject`` are the uncropped matte and the subject's box in it."""
    if (options.shadow == "none" or options.canvas != "original" or options.scale is not None
            or options.padding != Margin()):
        return box
    shadow = compose.bounding_box(render_shadow(alpha, subject, options) >= 0.5 / 255)  # what 8 bits keep
    if shadow is None:
        return box
    left, top, width, height = shadow
    return min(box[0], left), min(box[1], top), max(box[2], left + width), max(box[3], top + height)


def apply(fg: np.ndarray, alpha: np.ndarray, options: Options):
    """(fg, alpha, subject box) on the canvas; the box is (left, top, width, height) or None."""
    if not options.laid_out:
        return fg, alpha, compose.bounding_box(alpha >= compose.SUBJECT_ALPHA)
    height, width = alpha.shape[:2]
    cw, ch = canvas_size(options.canvas, width, height)
    out_fg = np.zeros((ch, cw, 3), np.uint8)
    out_alpha = np.zeros((ch, cw), np.float32)
    box = compose.bounding_box(alpha >= compose.SUBJECT_ALPHA)
    if box is None:
        return out_fg, out_alpha, None
    left, top, bw, bh = box
    cl, ct, cwid, chei = _content_box(options, cw, ch)
    moves = options.canvas != "original" or options.padding.top + options.padding.right + \
        options.padding.bottom + options.padding.left > 0 or options.scale is not None
    if options.scale is not None:
        factor = options.scale / 100 * min(cwid / bw, chei / bh)
    elif moves:
        factor = min(cwid / bw, chei / bh)
    else:
        factor = 1.0
    sw, sh = max(1, round(bw * factor)), max(1, round(bh * factor))
    position = options.position or ("center" if moves else "original")
    if position == "original":  # the subject's centre keeps its place relative to the frame
        x = (left + bw / 2) / width * cw - sw / 2
        y = (top + bh / 2) / height * ch - sh / 2
    else:
        px, py = (50.0, 50.0) if position == "center" else (float(v.rstrip("%")) for v in position.split())
        x = cl + (cwid - sw) * px / 100
        y = ct + (chei - sh) * py / 100
    x, y = round(x), round(y)
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
        shadow = render_shadow(out_alpha, subject, options)
        out_fg, out_alpha = _over_shadow(out_fg, out_alpha, shadow)
    return out_fg, out_alpha, subject


def render_shadow(alpha: np.ndarray, subject, options: Options) -> np.ndarray:
    """The shadow's alpha (0..1) on the canvas, from the subject's matte and box."""
    left, top, bw, bh = subject
    height, width = alpha.shape
    opacity = (options.shadow_opacity if options.shadow_opacity is not None else OPACITY[options.shadow]) / 100
    softness = (options.shadow_softness if options.shadow_softness is not None else DEFAULT_SOFTNESS) / 100
    longer = max(bw, bh)
    shadow = np.zeros_like(alpha)
    if options.shadow == "drop":  # the silhouette, offset down and to the right, blurred
        dx, dy = round(0.02 * longer), round(0.03 * longer)
        matrix = np.float32([[1, 0, dx], [0, 1, dy]])
        shadow = cv2.warpAffine(alpha, matrix, (width, height), flags=cv2.INTER_NEAREST,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        sigma = max(0.5, softness * 0.04 * longer)
    else:  # an ellipse under the base: touching it (contact) or below a gap (floating)
        floating = options.shadow == "floating"
        cx = left + bw / 2
        semi_x = bw * (0.35 if floating else 0.45)
        semi_y = max(1.0, bw * (0.05 if floating else 0.06))
        cy = top + bh + (0.06 * bh + semi_y if floating else 0.0)
        shadow = np.zeros_like(alpha)
        cv2.ellipse(shadow, (round(cx * 4), round(cy * 4)), (round(semi_x * 4), round(semi_y * 4)), 0, 0, 360, 1.0,
                    thickness=-1, lineType=cv2.LINE_AA, shift=2)
        sigma = max(0.5, softness * (0.5 if floating else 0.35) * semi_y * 2)
    return np.clip(_blur(shadow, sigma) * opacity, 0.0, 1.0)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; wide ones run on a grid 1/step as fine (a 4 MP canvas stays within a few ms)."""
    step = max(1, int(sigma // 3))
    height, width = image.shape
    small = image if step == 1 else cv2.resize(image, (math.ceil(width / step), math.ceil(height / step)),
                                               interpolation=cv2.INTER_AREA)
    s = sigma / step
    ksize = 2 * math.ceil(3 * s) + 1
    small = cv2.GaussianBlur(small, (ksize, ksize), s, borderType=cv2.BORDER_CONSTANT)
    return small if step == 1 else cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _over_shadow(fg: np.ndarray, alpha: np.ndarray, shadow: np.ndarray):
    """The subject over a black shadow: alpha a + s(1 - a), colour fg * a / that (black adds nothing)."""
    combined = alpha + shadow * (1.0 - alpha)
    weight = np.divide(alpha, combined, out=np.zeros_like(alpha), where=combined > 0)
    colour = np.clip(fg.astype(np.float32) * weight[:, :, None] + 0.5, 0, 255).astype(np.uint8)
    return colour, combined.astype(np.float32)
