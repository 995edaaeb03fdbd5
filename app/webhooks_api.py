"""Webhook settings: rotate the signing secret (shown once), list the account's endpoints."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from sqlalchemy import select

from app.auth import authenticate
from app.inputs import json_body
from clearcut import webhooks
from clearcut.db.models import WebhookEndpoint

bp = Blueprint("webhooks_api", __name__)


def _ctx():
    return current_app.extensions["clearcut_context"]


@bp.post("/v2/webhooks/secret/rotate")
def rotate_secret():
    _, acct = authenticate(json_body())
    with _ctx().db.begin() as session:
        secret = webhooks.rotate_secret(session, acct.id)
        active = len(webhooks.signing_secrets(session, acct.id))
    return jsonify({"secret": secret, "signing_secrets": active,
                    "message": "store this secret now; it is not shown again. Until the overlap ends "
                               "(CLEARCUT_WEBHOOK_SECRET_OVERLAP_H) messages carry a signature from the "
                               "previous secret too."}), 201


@bp.get("/v2/webhooks/endpoints")
def endpoints():
    _, acct = authenticate()
    with _ctx().db() as session:
        rows = session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.account_id == acct.id)
                               .order_by(WebhookEndpoint.created_at)).all()
    return jsonify({"object": "list", "data": [
        {"url": r.url, "enabled": r.disabled_at is None,
         "disabled_at": r.disabled_at.isoformat() if r.disabled_at else None,
         "disabled_reason": r.disabled_reason} for r in rows]})
