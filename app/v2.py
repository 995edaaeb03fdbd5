"""The BackgroundErase-compatible ``/v2`` routes: thin — parse, call ``clearcut.jobs``, render."""
from __future__ import annotations

import time

from flask import Blueprint, Response, current_app, g, jsonify, request, url_for
from redis.exceptions import RedisError
from sqlalchemy import func, select

from app.auth import authenticate
from app.errors import request_id
from app.inputs import Intake, json_body, parse_request, to_base64
from clearcut import config, jobs, notify
from clearcut.db.models import Job, Usage
from clearcut.errors import ClearcutError

bp = Blueprint("v2", __name__)
POLL_S = (0.01, 0.02, 0.05, 0.1)  # back-off while waiting for the worker when Redis cannot be reached


def _ctx():
    return current_app.extensions["clearcut_context"]


def enqueue(job: Job) -> None:
    celery = current_app.extensions["clearcut_celery"]()
    celery.send_task("clearcut.process_job", args=[job.id], queue=job.queue)


def wait_for(job_id: str, account_id: str, timeout: float) -> Job:
    """The job once it is terminal, or as it stands when ``timeout`` runs out. Between reads of the row
    it blocks on the worker's wake-up (``clearcut.notify``); without Redis it falls back to polling."""
    deadline = time.monotonic() + timeout
    settings = current_app.config["CLEARCUT_SETTINGS"]
    step = 0
    while True:
        job = jobs.get(_ctx(), account_id, job_id)
        remaining = deadline - time.monotonic()
        if job.status in jobs.TERMINAL or remaining <= 0:
            return job
        try:
            notify.wait(current_app.extensions["clearcut_redis"](), job_id, remaining, settings)
        except RedisError:
            time.sleep(min(remaining, POLL_S[min(step, len(POLL_S) - 1)]))
            step += 1


def job_view(job: Job) -> dict:
    view = {
        "id": job.id, "status": job.status, "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "attempts": job.attempts, "options": job.options, "cache_hit": job.cache_hit, "source": job.source,
        "request_id": job.request_id, "needs_review": job.needs_review,
        "accepted_at": job.accepted_at.isoformat() if job.accepted_at else None,
        "status_url": url_for("jobs_api.get_job", job_id=job.id, _external=True),
        "result_url": url_for("jobs_api.get_result", job_id=job.id, _external=True) if job.status == "succeeded" else None,
        "error": ({"code": job.error_code, "message": job.error_message, "status": job.error_status}
                  if job.status == "failed" else None),
    }
    if job.result:
        view["result"] = {k: job.result.get(k) for k in ("width", "height", "foreground_output",
                                                         "foreground_input", "models", "confidence",
                                                         "timings_ms")}
    return view


def result_headers(job: Job) -> dict:
    headers = {"X-Job-ID": job.id}
    meta = job.result or {}
    if meta:
        headers["X-Width"], headers["X-Height"] = str(meta["width"]), str(meta["height"])
        box = meta.get("foreground_output") or {"top": 0, "left": 0, "width": 0, "height": 0}
        headers.update({"X-Foreground-Top": str(box["top"]), "X-Foreground-Left": str(box["left"]),
                        "X-Foreground-Width": str(box["width"]), "X-Foreground-Height": str(box["height"])})
    if job.confidence is not None:
        headers["X-Confidence"] = f"{job.confidence:.4f}"
        headers["X-Needs-Review"] = "true" if job.needs_review else "false"
    return headers


def _failed(job: Job):
    raise ClearcutError(job.error_message or "processing failed", code=job.error_code or "processing_failed",
                        status=job.error_status or 500, job_id=job.id)


@bp.post("/v2")
def remove_background():
    authenticate(json_body())
    intake: Intake = parse_request()
    submission = jobs.submit(_ctx(), g.account, g.key, intake.data, intake.content_type, intake.options,
                             source="v2", request_id=request_id(), use_cache=intake.use_cache)
    job = submission.job
    if submission.enqueue:
        enqueue(job)
        job = wait_for(job.id, g.account.id, config.get("CLEARCUT_SYNC_TIMEOUT_S"))
    if job.status == "failed":
        _failed(job)
    if job.status != "succeeded":
        body = {**job_view(job), "message": "the job is still running; poll status_url, then fetch result_url"}
        response = jsonify(body)
        response.status_code = 202
        response.headers["X-Job-ID"] = job.id
        response.headers["Location"] = body["status_url"]
        return response
    data = _ctx().storage.get(job.result_key)
    headers = result_headers(job)
    if intake.json_mode and not _prefers_image():
        meta = job.result or {}
        if intake.legacy_mask:
            body = {"mask": to_base64(data), "width": meta.get("width"), "height": meta.get("height")}
        else:
            body = {"id": job.id, "status": job.status, "image_base64": to_base64(data),
                    "content_type": job.content_type, "width": meta.get("width"), "height": meta.get("height"),
                    "foreground": meta.get("foreground_output")}
        response = jsonify(body)
    else:
        response = Response(data, mimetype=job.content_type)
    response.headers.update(headers)
    return response


def _prefers_image() -> bool:
    best = request.accept_mimetypes.best_match(["application/json", "image/*"], default="application/json")
    return best == "image/*" and request.accept_mimetypes["image/*"] > request.accept_mimetypes["application/json"]


@bp.get("/v2/account")
def account():
    key, acct = authenticate()
    with _ctx().db() as session:
        images = session.scalar(select(func.coalesce(func.sum(Usage.units), 0)).where(Usage.account_id == acct.id))
        counts = dict(session.execute(select(Job.status, func.count()).where(Job.account_id == acct.id)
                                      .group_by(Job.status)).all())
    return jsonify({
        "status": "ok",
        "api_key": {"valid": True, "mode": key.mode, "fingerprint": key.fingerprint},
        "account": {"id": acct.id, "name": acct.name, "email": acct.email, "plan": acct.plan,
                    "subscription_status": acct.status, "billing_model": "self_hosted", "usage_unit": "image"},
        "usage": {"images": float(images or 0), "jobs": counts},
    })


# GET /v2/jobs/<id> and /v2/jobs/<id>/result live in app/jobs_api.py with the other job routes.
