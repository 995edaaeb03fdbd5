"""Slazzer drop-in: ``POST /v2.0/remove_image_background``.

Multipart with exactly one of ``source_image_file``, ``source_image_url``, ``source_image_base64``;
options ``bg_color_code``, ``channel``, ``format``, ``crop`` (mapped in fields.py). Auth with Slazzer's
``API-KEY`` header (or any header /v2 accepts). Image bytes back. Errors are
``{"error": message, "code": code}`` with Clearcut's statuses (400, 401/403, 413, 415, 422, 429, 5xx).
"""
from __future__ import annotations

from flask import Blueprint, Response, request

from app.auth import authenticate, authenticate_secret
from app.compat import common
from app.compat.fields import foreign_field_error, map_fields
from app.inputs import BadRequest, request_fields

bp = Blueprint("slazzer", __name__)
INPUTS = ("source_image_file", "source_image_url", "source_image_base64")


def _render(status: int, code: str, message: str):
    return {"error": message, "code": code}, status


common.install_errors(bp, _render)


@bp.post("/v2.0/remove_image_background")
def remove_background():
    parsed = request_fields()
    if parsed is None:
        raise BadRequest("send multipart/form-data with source_image_file, source_image_url or "
                         "source_image_base64", code="invalid_request")
    fields, files, body = parsed
    secret = request.headers.get("API-KEY")
    if secret:
        authenticate_secret(secret.strip())
    else:
        authenticate(body)
    fields.pop("api_key", None)
    present = [n for n in INPUTS if n in files or fields.get(n) not in (None, "")]
    values = {name: fields.pop(name, None) for name in INPUTS}
    upload = files.pop("source_image_file", None)
    if files:
        raise foreign_field_error("slazzer", next(iter(files)))
    options = map_fields("slazzer", fields).options
    source = common.one_input(present, INPUTS)
    limit = common.limit_bytes()
    if source == "source_image_file":
        if upload is None:
            raise BadRequest("source_image_file must be a multipart file upload", code="invalid_image_file")
        data = common.read_file(upload, source, limit)
    elif source == "source_image_url":
        data = common.read_url(values[source], source, limit)
    else:
        data = common.read_base64(values[source], source, limit)
    done = common.run("slazzer", data, options)
    response = Response(done.data, mimetype=done.job.content_type)
    response.headers.update(done.headers)
    return response
