"""Shared fixtures. Service fixtures (S3, Redis, PostgreSQL, Celery) live in tests/service_fixtures.py."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from clearcut import config

pytest_plugins = ["tests.service_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
EVAL_DEV = SHARED / "eval" / "dev"
MODEL_DIR = config.get("CLEARCUT_MODEL_DIR").resolve()  # the per-user cache unless CLEARCUT_MODEL_DIR is set


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The model cache (the one the CLI uses), with u2netp fetched and verified (tests use the small model)."""
    from clearcut.models.store import ModelStore

    ModelStore(MODEL_DIR).fetch("u2netp")
    return MODEL_DIR

os.environ.setdefault("CLEARCUT_MODEL_DIR", str(MODEL_DIR))
# The suite runs the small u2netp model unless a test names another (workers inherit this too).
os.environ.setdefault("CLEARCUT_DEFAULT_MODEL", "u2netp")
# Float models unless a test asks otherwise, so a locally built int8 variant cannot change results
# between this machine and a clean CI clone.
os.environ.setdefault("CLEARCUT_MODEL_PRECISION", "fp32")


def encode_image(image, fmt: str = "PNG", **save) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def synthetic_scene(width: int = 640, height: int = 480, radius: int = 100):
    """A red disc (default radius 100) centred on a soft blue-grey gradient; returns (PIL image, true mask)."""
    import numpy as np
    from PIL import Image, ImageDraw

    yy, xx = np.mgrid[0:height, 0:width]
    bg = np.dstack([200 + 30 * xx / width, 210 + 20 * yy / height, 230 * np.ones_like(xx)]).astype(np.uint8)
    image = Image.fromarray(bg)
    cx, cy = width // 2, height // 2
    ImageDraw.Draw(image).ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=(200, 30, 40))
    mask = ((xx - cx) ** 2 + (yy - cy) ** 2) <= radius ** 2
    return image, mask


@pytest.fixture(scope="session")
def scene():
    return synthetic_scene()
