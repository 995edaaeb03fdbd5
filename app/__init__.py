"""Flask app factory. Importing this package has no side effects and never loads ONNX Runtime;
connections are made on first use (``create_app`` itself connects to nothing)."""
from __future__ import annotations

import os
from typing import Mapping

from flask import Flask


def create_app(settings: Mapping[str, str] | None = None) -> Flask:
    """Build the WSGI app. ``settings``: CLEARCUT_* values that override the environment."""
    from app.health import HealthChecks, bp as health_bp

    app = Flask(__name__)
    env = {**os.environ, **(settings or {})}
    app.config["CLEARCUT_SETTINGS"] = env
    app.extensions["clearcut_health"] = HealthChecks(env)
    app.register_blueprint(health_bp)
    return app
