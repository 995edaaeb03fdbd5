"""The cutout's confidence: its parts on known mattes, and real pipeline runs (the calibrated ``quality``
preset) on synthetic scenes and shared photos."""
import numpy as np
import pytest
from PIL import Image, ImageDraw

from clearcut import config
from clearcut.options import parse
from clearcut.pipeline import confidence as conf
from clearcut.pipeline import process
from tests.conftest import SHARED, encode_image, synthetic_scene

EVAL = SHARED / "eval"


def disc(shape=(600, 800), centre=(400, 300), radius=120, edge=0.5) -> np.ndarray:
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    distance = np.hypot(xx - centre[0], yy - centre[1]) - radius
    return (1 / (1 + np.exp(np.clip(distance / edge, -50, 50)))).astype(np.float32)


def test_parts_of_the_score_on_known_mattes():
    crisp = conf.features(disc())
    assert crisp["uncertain"] < 0.05 and crisp["competing"] == 0 and 0.09 < crisp["area"] < 0.1
    two = conf.features(np.maximum(disc(centre=(200, 300)), disc(centre=(600, 300))))
    assert two["competing"] == pytest.approx(0.5, abs=0.01)
    specks = conf.features(np.maximum(disc(), disc(centre=(700, 80), radius=10)))
    assert specks["competing"] == 0  # a fragment far smaller than the subject is no competitor
    assert conf.confidence(np.zeros((600, 800), np.float32)) == 0
    # A broad grey region (a network that is guessing) costs far more than a crisp edge
    assert conf.confidence(disc(edge=40.0)) < 0.6 < 0.9 < conf.confidence(disc())
    assert 0.5 < conf.confidence(np.maximum(disc(centre=(200, 300)), disc(centre=(600, 300)))) < 0.8


def _score(image: Image.Image) -> tuple[float, dict]:
    result = process(encode_image(image, "PNG"), parse({"model": "quality", "size": "preview"}))
    return result.metadata["confidence"], result.metadata


def test_a_clean_subject_scores_high_and_competing_subjects_or_none_score_low(model_dir):
    threshold = config.get("CLEARCUT_REVIEW_BELOW")
    image, _ = synthetic_scene(800, 600, radius=150)
    clean, meta = _score(image)
    assert clean > 0.9 and clean >= threshold
    assert "confidence" in meta["timings_ms"]

    two = Image.new("RGB", (800, 600), (235, 235, 235))
    draw = ImageDraw.Draw(two)
    draw.ellipse((90, 170, 350, 430), fill=(200, 40, 40))
    draw.rectangle((470, 170, 730, 430), fill=(40, 60, 200))
    competing, _ = _score(two)
    assert competing < threshold and competing < clean - 0.15

    empty, _ = _score(Image.new("RGB", (800, 600), (235, 235, 235)))
    assert empty < 0.1


@pytest.mark.skipif(not (EVAL / "highres" / "images").is_dir(), reason="shared eval sets not available")
def test_shared_photos_rank_by_their_cutouts_quality(model_dir):
    """A product photo the service cuts out well (IoU 0.998) against one where it does poorly (IoU 0.70:
    a scaffold's thin bars, partly missed and partly merged with the sky between them)."""
    good, _ = _score(Image.open(EVAL / "product" / "images" / "grabcut_book.png").convert("RGB"))
    bad, _ = _score(Image.open(EVAL / "highres" / "images" / "hr_te4_scaffold_29128730448.jpg").convert("RGB"))
    threshold = config.get("CLEARCUT_REVIEW_BELOW")
    assert good >= threshold and bad < threshold - 0.2
