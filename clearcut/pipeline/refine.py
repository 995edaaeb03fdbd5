"""Bring a low-resolution matte to full resolution and estimate clean foreground colours.

* ``guided_upsample`` is the fast guided filter (He & Sun, 2015): the local linear model between the
  guide's brightness and the matte is fitted on the proxy, then applied to the full-resolution guide,
  so edges follow the real image instead of the blocky, blurred upsampled matte.
* ``estimate_foreground`` is blur-fusion foreground estimation (Forte & Pitié, 2021): at
  semi-transparent pixels, the colour is solved from the compositing equation using local means of
  foreground and background, removing the old background's tint (the "halo").
"""
from __future__ import annotations

import cv2
import numpy as np


def _box(x: np.ndarray, r: int) -> np.ndarray:
    return cv2.blur(x, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT)


def _grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) * (1.0 / 255.0)


def guided_upsample(matte: np.ndarray, guide_lo: np.ndarray, guide_hi: np.ndarray, *,
                    radius: int = 2, eps: float = 1e-3) -> np.ndarray:
    """Full-resolution matte (float32 0..1) at the size of ``guide_hi`` (uint8 RGB)."""
    h, w = guide_hi.shape[:2]
    if matte.shape == (h, w):
        return matte
    if guide_lo.shape[0] >= h:  # the input is smaller than the model's proxy: plain resize is exact enough
        return cv2.resize(matte, (w, h), interpolation=cv2.INTER_AREA)
    i_lo = _grey(guide_lo)
    mean_i = _box(i_lo, radius)
    mean_p = _box(matte, radius)
    cov_ip = _box(i_lo * matte, radius) - mean_i * mean_p
    var_i = _box(i_lo * i_lo, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    ab = cv2.merge([_box(a, radius), _box(b, radius)])
    ab_hi = cv2.resize(ab, (w, h), interpolation=cv2.INTER_LINEAR)
    alpha = ab_hi[:, :, 0] * _grey(guide_hi) + ab_hi[:, :, 1]
    return np.clip(alpha, 0.0, 1.0, out=alpha)


def clean_alpha(alpha: np.ndarray, low: float = 0.02, high: float = 0.98) -> np.ndarray:
    """Snap near-0 and near-1 values: removes faint background noise and speckle in the subject."""
    alpha = np.where(alpha < low, 0.0, alpha)
    alpha = np.where(alpha > high, 1.0, alpha)
    return alpha.astype(np.float32, copy=False)


def _blur_fusion(image, fg, bg, alpha, r):
    a3 = alpha[:, :, None]
    blurred_a = _box(alpha, r)[:, :, None]
    blurred_f = _box(fg * a3, r) / (blurred_a + 1e-5)
    blurred_b = _box(bg * (1.0 - a3), r) / ((1.0 - blurred_a) + 1e-5)
    fg = blurred_f + a3 * (image - a3 * blurred_f - (1.0 - a3) * blurred_b)
    return np.clip(fg, 0.0, 1.0, out=fg), blurred_b


def estimate_foreground(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Foreground colours (uint8 RGB) for a matte; unchanged where the matte is fully opaque."""
    image = rgb.astype(np.float32) * (1.0 / 255.0)
    fg, bg = _blur_fusion(image, image, image, alpha, 45)
    fg, _ = _blur_fusion(image, fg, bg, alpha, 3)
    out = (fg * 255.0 + 0.5).astype(np.uint8)
    opaque = alpha >= 1.0
    out[opaque] = rgb[opaque]
    return out
