"""The ``soft`` preset's colour-based edges (refine.soft_edges): synthetic edges with a known alpha and
floors on real soft mattes (eval/matting) with the small u2netp model."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from clearcut.pipeline import refine, segment
from tests.conftest import ROOT

MATTING = ROOT.parent / "shared" / "eval" / "matting"
ORANGE = np.array([230, 120, 20], np.float32)
BLUE = np.array([40, 60, 200], np.float32)


def _ramp_photo(h=600, w=800, start=390, width=20):
    """Orange subject on the left, blue backdrop on the right, a linear soft edge of ``width`` px."""
    x = np.arange(w, dtype=np.float32)
    alpha = np.clip((start + width - x) / width, 0.0, 1.0)
    alpha = np.repeat(alpha[None, :], h, axis=0)
    rgb = alpha[:, :, None] * ORANGE + (1.0 - alpha[:, :, None]) * BLUE
    return np.round(rgb).astype(np.uint8), alpha


def _network_guess(truth: np.ndarray, mid: float = 400.0, spread: float = 3.0) -> np.ndarray:
    """A network's opinion of the edge: unsure across it, but with the wrong profile (a sigmoid)."""
    x = np.arange(truth.shape[1], dtype=np.float32)
    return np.repeat((1.0 / (1.0 + np.exp(np.minimum((x - mid) / spread, 80.0))))[None, :], truth.shape[0], axis=0)


def test_a_soft_edge_between_two_colours_gets_its_true_alpha():
    rgb, truth = _ramp_photo()
    guess = _network_guess(truth)
    soft = refine.soft_edges(rgb, guess)
    ramp = (truth > 0.0) & (truth < 1.0)
    assert np.abs(guess - truth)[ramp].mean() > 0.05
    assert np.abs(soft - truth)[ramp].mean() < 0.3 * np.abs(guess - truth)[ramp].mean()
    # definite areas keep the network's values
    assert (soft[:, :300] == guess[:, :300]).all() and (soft[:, 500:] == guess[:, 500:]).all()


def test_colours_that_do_not_separate_keep_the_network_alpha():
    rgb, truth = _ramp_photo()
    grey = np.full_like(rgb, 128)                        # subject and backdrop the same colour
    guess = _network_guess(truth)
    assert (refine.soft_edges(grey, guess) == guess).all()


def test_texture_far_from_the_two_colours_keeps_the_network_alpha():
    rgb, truth = _ramp_photo()
    guess = _network_guess(truth)
    rgb[:, 395:405] = (20, 230, 40)                      # a green seam: neither subject nor backdrop
    soft = refine.soft_edges(rgb, guess)
    assert np.abs(soft - guess)[:, 397:403].max() < 0.05


@pytest.mark.skipif(not (MATTING / "images").is_dir(), reason="eval/matting not available")
@pytest.mark.parametrize("name, floor", [("GT03", 0.85), ("GT09", 0.75)])
def test_soft_preset_lowers_band_error_on_real_hair(model_dir, name, floor):
    """u2netp on two studio photos (measured: band SAD 14.7 -> 11.5 and 11.2 -> 7.5, halo 17.8 -> 13.9
    and 13.5 -> 9.5); the floor is the measured ratio plus a margin."""
    from benchmarks import matting
    from clearcut.models.store import ModelStore

    rgb = np.asarray(Image.open(MATTING / "images" / f"{name}.png").convert("RGB"))
    gt = np.asarray(Image.open(MATTING / "alphas" / f"{name}.png").convert("L")).astype(np.float32) / 255.0
    trimap = np.asarray(Image.open(MATTING / "trimaps" / f"{name}.png").convert("L"))
    matte, guide = segment.predict(rgb, ("u2netp",), ModelStore(model_dir))
    upsampled = refine.guided_upsample(matte, guide, rgb)
    scores = {}
    for label, alpha in (("plain", upsampled), ("soft", refine.soft_edges(rgb, upsampled, rgb.shape[1] / guide.shape[1]))):
        alpha = refine.clean_alpha(alpha)
        scores[label] = matting.scores(rgb, alpha, refine.estimate_foreground(rgb, alpha), gt, trimap)
    assert scores["soft"]["band_sad"] < floor * scores["plain"]["band_sad"], scores
    assert scores["soft"]["halo"] < scores["plain"]["halo"], scores
    assert scores["soft"]["sad"] <= scores["plain"]["sad"], scores


def test_colours_change_opacity_but_never_which_side_of_half_a_pixel_is_on():
    """The network puts the edge 10 px too far right; the colours say those pixels are mostly backdrop."""
    rgb, truth = _ramp_photo()
    guess = _network_guess(truth, mid=410.0)
    soft = refine.soft_edges(rgb, guess)
    assert ((soft >= 0.5) == (guess >= 0.5)).all()
    wrong_side = (truth < 0.45) & (guess >= 0.5)           # columns ~401-409
    assert wrong_side.any() and np.allclose(soft[wrong_side], 0.5, atol=1e-6)
    unsure = (guess > 0.02) & (guess < 0.98)                # the network's own soft pixels
    agree = unsure & ((truth >= 0.5) == (guess >= 0.5)) & (np.abs(guess - truth) > 0.1)
    assert agree.any() and (np.abs(soft - truth)[agree] < np.abs(guess - truth)[agree]).all()
