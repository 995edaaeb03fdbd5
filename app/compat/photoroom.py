"""Photoroom drop-in: ``POST /v1/segment`` (the basic remove-background endpoint).

Multipart ``image_file`` plus ``format``, ``channels``, ``bg_color``, ``size``, ``crop``, ``despill`` (the
same names and values as /v2, mapped in fields.py); ``x-api-key`` auth; image bytes back. Errors are
``{"detail", "status_code", "type"}`` with Clearcut's statuses (400, 401/403, 413, 415, 422, 429, 5xx).
"""
from __future__ import annotations

from flask import Blueprint, Response

from app.compat import common
from app.compat.fields import foreign_field_error, map_fields
from app.inputs import BadRequest

bp = Blueprint("photoroom", __name__)


def _render(status: int, code: str, message: str):
    return {"detail": message, "status_code": status, "type": code}, status


common.install_errors(bp, _render)


@bp.post("/v1/segment")
def segment():
    fields, files, upload = common.multipart_upload()
    if files:
        raise foreign_field_error("photoroom", next(iter(files)))
    if "image_file" in fields:
        raise BadRequest("image_file must be a multipart file upload", code="invalid_image_file")
    options = map_fields("photoroom", fields).options
    if upload is None:
        raise BadRequest("no image was sent: add the image_file field", code="missing_image")
    done = common.run("photoroom", common.read_file(upload, "image_file", common.limit_bytes()), options)
    response = Response(done.data, mimetype=done.job.content_type)
    response.headers.update(done.headers)
    return response
