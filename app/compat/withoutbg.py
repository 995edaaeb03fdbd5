"""withoutbg drop-in (shared/spec/withoutbg-base64-endpoint.txt).

``POST /v1.0/image-without-background-base64`` (JSON ``image_base64``, a data-URL prefix tolerated) and
``POST /v1.0/alpha-channel-base64`` (``alpha_base64``, the field withoutbg's own client reads), their
multipart binary variants (field ``file``), and ``GET /available-credit``. ``X-API-Key`` auth, a 10 MB
image limit, and errors as ``{"detail": ...}`` with withoutbg's statuses: 400 missing field or bad JSON,
401 key, 403 revoked key or inactive account, 413, 415 image type, 422 invalid base64 or corrupt
image, 429. withoutbg's 402 (insufficient credit) never occurs: self-hosted Clearcut has no balance.
"""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from app.auth import authenticate
from app.compat import common
from app.compat.fields import map_fields
from app.inputs import BadRequest, json_body, request_fields, to_base64
from clearcut.options import Options

bp = Blueprint("withoutbg", __name__)
MAX_MB = 10.0  # withoutbg's documented limit (before base64 encoding)
_STATUS = {"invalid_base64": 422}


def _render(status: int, code: str, message: str):
    return {"detail": message}, _STATUS.get(code, status)


common.install_errors(bp, _render)

CUTOUT = Options(format="png", channels="rgba")
MATTE = Options(format="png", channels="alpha")


def _base64_route(options: Options, answer_field: str):
    body = json_body()
    if body is None:
        raise BadRequest('send Content-Type: application/json with a body like {"image_base64": "<base64>"}',
                         code="invalid_json")
    authenticate(body)
    fields, _, _ = request_fields()
    fields.pop("api_key", None)
    value = fields.pop("image_base64", None)
    map_fields("withoutbg", fields)  # withoutbg has no options: any other field is refused
    if value in (None, ""):
        raise BadRequest("the image_base64 field is required (raw base64 of a JPEG, PNG, WebP, TIFF, BMP or GIF)",
                         code="missing_image", field="image_base64")
    data = common.read_base64(value, "image_base64", common.limit_bytes(MAX_MB))
    done = common.run("withoutbg", data, options)
    response = jsonify({answer_field: to_base64(done.data)})
    response.headers.update(done.headers)
    return response


def _binary_route(options: Options):
    parsed = request_fields() if request.mimetype == "multipart/form-data" else None
    if parsed is None:
        raise BadRequest("send multipart/form-data with the image in the 'file' field", code="invalid_request")
    fields, files, _ = parsed
    authenticate()
    fields.pop("api_key", None)
    upload = files.pop("file", None)
    map_fields("withoutbg", {**fields, **files})
    if upload is None:
        raise BadRequest("the file field is required (multipart upload of the image)", code="missing_image",
                         field="file")
    done = common.run("withoutbg", common.read_file(upload, "file", common.limit_bytes(MAX_MB)), options)
    response = Response(done.data, mimetype=done.job.content_type)
    response.headers.update(done.headers)
    return response


@bp.post("/v1.0/image-without-background-base64")
def cutout_base64():
    return _base64_route(CUTOUT, "img_without_background_base64")


@bp.post("/v1.0/alpha-channel-base64")
def alpha_base64():
    return _base64_route(MATTE, "alpha_base64")


@bp.post("/v1.0/image-without-background")
def cutout_binary():
    return _binary_route(CUTOUT)


@bp.post("/v1.0/alpha-channel")
def alpha_binary():
    return _binary_route(MATTE)


@bp.get("/available-credit")
def available_credit():
    _, acct = authenticate()
    # No balance to report on a self-hosted server: credit is null, "unlimited" says why.
    return jsonify({"credit": None, "expiration_date": None, "unlimited": True,
                    "used": common.usage(acct.id)["images"]})
