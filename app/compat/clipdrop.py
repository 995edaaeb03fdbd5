"""Clipdrop drop-in: ``POST /remove-background/v1``.

Multipart ``image_file``; the output type comes from the ``Accept`` header (image/png, the default,
image/jpeg or image/webp; anything else is 406). ``x-api-key`` auth. Responses carry
``x-credits-consumed`` and ``x-remaining-credits`` ("unlimited": self-hosted Clearcut has no balance).
Errors are ``{"error": message, "code": code}`` with Clipdrop's statuses: 400 for any input problem,
401 missing key, 403 invalid or revoked key, 406, 429, 5xx.
"""
from __future__ import annotations

from flask import Blueprint, Response, request

from app.compat import common
from app.compat.fields import foreign_field_error, map_fields
from app.inputs import BadRequest
from clearcut.errors import ClearcutError

bp = Blueprint("clipdrop", __name__)
ACCEPT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
_STATUS = {413: 400, 415: 400, 422: 400}


def _render(status: int, code: str, message: str):
    if code == "invalid_api_key":
        status = 403  # Clipdrop: 401 is a missing key, 403 an invalid or revoked one
    return {"error": message, "code": code}, _STATUS.get(status, status)


common.install_errors(bp, _render, {"x-credits-consumed": "0"})


def _output_format() -> str:
    accept = request.accept_mimetypes
    if not accept or accept.best in ("*/*", "image/*"):
        return "png"
    best = accept.best_match(list(ACCEPT))
    if best is None:
        raise ClearcutError(f"Accept must be one of {', '.join(ACCEPT)} (got {request.headers.get('Accept')!r})",
                            code="not_acceptable", status=406)
    return ACCEPT[best]


@bp.post("/remove-background/v1")
def remove_background():
    fields, files, upload = common.multipart_upload()
    if files or fields:
        raise foreign_field_error("clipdrop", next(iter({**files, **fields})))
    options = map_fields("clipdrop", {}).options.with_(format=_output_format())
    if upload is None:
        raise BadRequest("no image was sent: add the image_file field", code="missing_image")
    done = common.run("clipdrop", common.read_file(upload, "image_file", common.limit_bytes()), options)
    response = Response(done.data, mimetype=done.job.content_type)
    response.headers.update(done.headers)
    response.headers["x-credits-consumed"] = "1"
    response.headers["x-remaining-credits"] = "unlimited"
    return response
