"""The web console at ``/console``: static HTML/CSS/JS (ES modules, no build step, nothing from a CDN)
plus the small JSON endpoints it needs (``app/console/api.py``). The console talks to the public
``/v2`` API with the key the user typed (``x-api-key``, kept in sessionStorage, never in URLs)."""
from __future__ import annotations

from flask import Blueprint, redirect, send_from_directory, url_for

from app.console import api

bp = Blueprint("console", __name__, static_folder="static", static_url_path="/console/static")
bp.register_blueprint(api.bp)

# Same-origin only: no inline script or style, images from the API as blob: URLs.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


@bp.get("/console")
def index():
    response = send_from_directory(bp.static_folder, "index.html", max_age=0)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/console/")
def index_slash():
    return redirect(url_for("console.index"), code=308)
