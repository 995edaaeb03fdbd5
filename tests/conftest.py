"""Shared fixtures. Service fixtures (S3, Redis, PostgreSQL, Celery) live in tests/service_fixtures.py."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.service_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
EVAL_DEV = SHARED / "eval" / "dev"
MODEL_DIR = Path(os.environ.get("CLEARCUT_MODEL_DIR", ROOT / "var" / "models")).resolve()


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The project's model cache, with u2netp fetched and verified (tests use the small model)."""
    from clearcut.models.store import ModelStore

    ModelStore(MODEL_DIR).fetch("u2netp")
    return MODEL_DIR
