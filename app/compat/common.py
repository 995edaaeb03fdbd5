"""What every vendor route shares: reading image inputs, running one job through ``clearcut.jobs``
exactly as ``/v2`` does (same validation, storage, job row, worker and cache), usage counts, and
rendering any error in the vendor's own shape."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from flask import Blueprint, current_app, g, jsonify, request
from sqlalchemy import func, select
from werkzeug.exceptions import HTTPException

from app.errors import HTTP_CODES, request_id
from app.inputs import BadRequest, check_image, decode_base64, max_bytes
from app.v2 import enqueue, result_headers, wait_for
from clearcut import config, jobs, netguard
from clearcut.db.models import Job, Usage
from clearcut.errors import ClearcutError, ImageTooLarge
from clearcut.options import Options

log = logging.getLogger("clearcut.api")


class StillProcessing(ClearcutError):
    """The worker has not finished within CLEARCUT_SYNC_TIMEOUT_S (vendor clients cannot take a 202)."""
    status = 503
    code = "still_processing"
    retryable = True


@dataclass
class Done:
    job: Job
    data: bytes

    @property
    def meta(self) -> dict:
        return self.job.result or {}

    @property
    def headers(self) -> dict:
        return result_headers(self.job)

    def foreground(self) -> dict:
        return self.meta.get("foreground_output") or {"top": 0, "left": 0, "width": 0, "height": 0}


def context():
    return current_app.extensions["clearcut_context"]


def limit_bytes(vendor_mb: float | None = None) -> int:
    """The upload cap: CLEARCUT_MAX_UPLOAD_MB, lowered to a vendor's own documented limit if smaller."""
    cap = max_bytes()
    return min(cap, int(vendor_mb * 1024 * 1024)) if vendor_mb else cap


def _too_large(limit: int) -> ImageTooLarge:
    return ImageTooLarge(f"File size too large. Maximum file size is {limit / 1024 / 1024:.1f} MB; compress or "
                         "downscale the image", limit_bytes=limit)


def read_file(upload, field: str, limit: int) -> bytes:
    data = upload.read(limit + 1)
    if not data:
        raise BadRequest(f"{field} is empty (0 bytes)", code="missing_image", field=field)
    if len(data) > limit:
        raise _too_large(limit)
    return data


def read_base64(value, field: str, limit: int) -> bytes:
    data = decode_base64(value, field)
    if len(data) > limit:
        raise _too_large(limit)
    return data


def read_url(value, field: str, limit: int) -> bytes:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{field} must be an http(s) URL string", code="invalid_image_url", field=field)
    return netguard.fetch(value.strip(), max_bytes=limit).data


def one_input(present: list[str], accepted: tuple[str, ...]) -> str:
    if not present:
        raise BadRequest(f"no image was sent: add one of {', '.join(accepted)}", code="missing_image")
    if len(present) > 1:
        raise BadRequest(f"send exactly one image input; got {', '.join(present)}", code="multiple_images",
                         fields=present)
    return present[0]


def run(source: str, data: bytes, options: Options, *, use_cache: bool = True) -> Done:
    """One recorded job, the same path as POST /v2: validate the image, submit, wait for the worker."""
    content_type = check_image(data)
    submission = jobs.submit(context(), g.account, g.key, data, content_type, options, source=source,
                             request_id=request_id(), use_cache=use_cache)
    job = submission.job
    if submission.enqueue:
        enqueue(job)
        job = wait_for(job.id, g.account.id, config.get("CLEARCUT_SYNC_TIMEOUT_S"))
    if job.status == "failed":
        raise ClearcutError(job.error_message or "processing failed", code=job.error_code or "processing_failed",
                            status=job.error_status or 500, job_id=job.id)
    if job.status != "succeeded":
        raise StillProcessing(f"the image is still being processed (job {job.id}); fetch "
                              f"/v2/jobs/{job.id}/result when it has finished", job_id=job.id, retry_after=5)
    return Done(job, context().storage.get(job.result_key))


def usage(account_id: str) -> dict:
    with context().db() as session:
        images = session.scalar(select(func.coalesce(func.sum(Usage.units), 0)).where(Usage.account_id == account_id))
        counts = dict(session.execute(select(Job.status, func.count()).where(Job.account_id == account_id)
                                      .group_by(Job.status)).all())
    return {"images": float(images or 0), "jobs": counts}


Render = Callable[[int, str, str], tuple[dict, int]]


def install_errors(bp: Blueprint, render: Render, extra_headers: dict | None = None) -> None:
    """Render every error raised in ``bp`` with ``render(status, code, message) -> (body, status)``."""
    def respond(status: int, code: str, message: str, details: dict):
        body, final = render(status, code, message)
        response = jsonify(body)
        response.status_code = final
        if "retry_after" in details:
            response.headers["Retry-After"] = str(details["retry_after"])
        if details.get("job_id"):
            response.headers["X-Job-ID"] = details["job_id"]
        response.headers.update(extra_headers or {})
        return response

    @bp.errorhandler(ClearcutError)
    def _domain(exc: ClearcutError):
        return respond(exc.status, exc.code, exc.message, exc.details)

    @bp.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        status = exc.code or 500
        if status == 413:
            return respond(413, "image_too_large", str(_too_large(limit_bytes()).message), {})
        return respond(status, HTTP_CODES.get(status, f"http_{status}"), exc.description or exc.name, {})

    @bp.errorhandler(Exception)
    def _internal(exc: Exception):
        log.exception("unhandled error", extra={"request_id": request_id()})
        return respond(500, "internal_error", "an internal error occurred; retry with backoff and report the "
                       f"request id {request_id()} if it persists", {})


def is_multipart() -> bool:
    return (request.mimetype or "").lower() == "multipart/form-data"


def multipart_upload() -> tuple[dict, dict, object]:
    """(fields, other files, image_file upload or None) of an authenticated multipart request.

    Photoroom and Clipdrop accept only multipart bodies; the legacy ``api_key`` field is dropped."""
    from app.auth import authenticate
    from app.inputs import request_fields

    parsed = request_fields() if is_multipart() else None
    if parsed is None:
        raise BadRequest("send multipart/form-data with the image in image_file", code="invalid_request")
    fields, files, _ = parsed
    authenticate()
    fields.pop("api_key", None)
    return fields, files, files.pop("image_file", None)
