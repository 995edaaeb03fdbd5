"""Batches: ``POST /v2/batches`` (202 at once), ``GET /v2/batches/<id>`` and ``POST …/replay``."""
from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, url_for

from app.auth import authenticate
from app.errors import request_id
from app.inputs import BadRequest, json_body
from app.jobs_api import (dispatch, dispatch_deliveries, job_detail, page_args, parse_metadata, parse_priority,
                          parse_webhook_url, status_filter)
from clearcut import jobs
from clearcut.jobs import batches

bp = Blueprint("batches_api", __name__)
FIELDS = ("items", "options", "webhook_url", "metadata", "priority", "api_key")


def _ctx():
    return current_app.extensions["clearcut_context"]


def batch_view(batch, *, items: bool = False) -> dict:
    view = {"id": batch.id, "object": "batch", "status": batch.status, "created_at": batch.created_at.isoformat(),
            "completed_at": batch.completed_at.isoformat() if batch.completed_at else None,
            "metadata": batch.meta, "options": batch.options, "webhook_url": batch.webhook_url,
            "status_url": url_for("batches_api.get_batch", batch_id=batch.id, _external=True),
            "jobs_url": url_for("jobs_api.list_jobs", batch=batch.id, _external=True),
            **batches.progress(_ctx(), batch)}
    if items:
        limit, cursor = page_args(default=100, maximum=1000)
        rows, next_cursor = jobs.list_jobs(_ctx(), batch.account_id, batch_id=batch.id, statuses=status_filter(),
                                           limit=limit, cursor=cursor)
        view["items"] = {"data": [job_detail(j) for j in rows], "has_more": next_cursor is not None,
                         "next_cursor": next_cursor}
    return view


@bp.post("/v2/batches")
def create_batch():
    body = json_body()
    authenticate(body)
    if body is None:
        raise BadRequest("send the batch as a JSON object: {\"items\": [{\"image_url\": ...}, ...]}",
                         code="invalid_json")
    unknown = [k for k in body if k not in FIELDS]
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(unknown)}; accepted: {', '.join(FIELDS[:-1])}",
                         code="unknown_field", fields=unknown)
    batch, queued = batches.create(
        _ctx(), g.account, g.key, body.get("items"), options=body.get("options"),
        webhook_url=parse_webhook_url(body.get("webhook_url"), g.account.id),
        metadata=parse_metadata(body.get("metadata")), priority=parse_priority(body.get("priority")),
        request_id=request_id())
    dispatch([(job_id, batches.QUEUE, priority) for job_id, priority in queued])
    response = jsonify(batch_view(batch))
    response.status_code = 202
    response.headers["Location"] = url_for("batches_api.get_batch", batch_id=batch.id, _external=True)
    return response


@bp.get("/v2/batches/<batch_id>")
def get_batch(batch_id: str):
    _, acct = authenticate()
    return jsonify(batch_view(batches.get(_ctx(), acct.id, batch_id), items=True))


@bp.post("/v2/batches/<batch_id>/replay")
def replay_batch(batch_id: str):
    _, acct = authenticate(json_body())
    replays, batch = batches.replay(_ctx(), acct.id, batch_id, status_filter(default=["failed"]))
    dispatch([(r.job.id, r.job.queue, r.job.priority) for r in replays if r.enqueue])
    dispatch_deliveries([d for r in replays for d in r.deliveries])
    view = batch_view(batch)
    view["replayed"] = len(replays)
    view["replayed_job_ids"] = [r.job.id for r in replays][:1000]
    response = jsonify(view)
    response.status_code = 202
    return response
