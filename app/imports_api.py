"""``GET /v2/imports``: a page of the objects in the caller's import area (``imports/{account}/…``)."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from app.auth import authenticate
from app.jobs_api import page_args
from clearcut import imports

bp = Blueprint("imports_api", __name__)


@bp.get("/v2/imports")
def list_imports():
    _, acct = authenticate()
    limit, cursor = page_args(default=1000, maximum=1000)
    return jsonify(imports.list_page(current_app.extensions["clearcut_context"], acct.id,
                                     request.args.get("prefix"), cursor=cursor, limit=limit))
