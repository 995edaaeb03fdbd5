"""Photoroom Image Editing drop-in: ``GET /v2/edit`` (query parameters, ``imageUrl``) and ``POST /v2/edit``
(multipart ``imageFile`` or ``imageUrl``, or a JSON object, flat dotted names or nested objects).

Fields are mapped in ``photoroom_edit_fields``; one ordinary job runs synchronously (source
``photoroom``); a background image or a colour with alpha is composited here on the job's RGBA result.
Errors are Photoroom's ``{"error": {"message"}}``, with Clearcut's stable ``code``, the ``status`` and the
``request_id`` beside the message; statuses as Photoroom's: 400 for anything wrong with the request or
its images, 403 for the API key, 429, 5xx (503 ``still_processing``).
"""
from __future__ import annotations

from flask import Blueprint, Response, request

from app.auth import authenticate
from app.compat import common, finish
from app.compat.photoroom_edit_fields import Edit, classify, plan
from app.errors import request_id
from app.inputs import BadRequest, _lower_keys, check_image, request_fields

bp = Blueprint("photoroom_edit", __name__)
VENDOR_LIMIT_MB = 30  # Photoroom's documented maximum per image
FILE_FIELDS = ("imagefile", "background.imagefile")
_STATUS = {401: 403, 413: 400, 415: 400, 422: 400}
CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}


def _render(status: int, code: str, message: str):
    final = _STATUS.get(status, status)
    return {"error": {"message": message, "code": code, "status": final, "request_id": request_id()}}, final


common.install_errors(bp, _render)


def _flatten(body: dict, prefix: str = "") -> list[tuple[str, object]]:
    """A JSON body's nested objects as dotted names: {"export": {"format": "png"}} -> export.format."""
    items: list[tuple[str, object]] = []
    for name, value in body.items():
        if isinstance(value, dict) and value:
            items += _flatten(value, f"{prefix}{name}.")
        else:
            items.append((f"{prefix}{name}", value))
    return items


def _read_request() -> tuple[dict, dict]:
    """(lower-cased fields, lower-cased file uploads), authenticated."""
    if request.method == "GET":
        authenticate()
        return _lower_keys((k, v) for k in request.args for v in request.args.getlist(k)), {}
    parsed = request_fields()
    if parsed is None:
        raise BadRequest("send multipart/form-data (imageFile or imageUrl) or a JSON object (imageUrl)",
                         code="invalid_request")
    fields, files, body = parsed
    authenticate(body)
    query = [name for name in request.args if name.lower() != "api_key"]
    if query:
        raise BadRequest(f"POST /v2/edit takes its parameters in the body, not the query string (got "
                         f"{', '.join(query)}); send them as form fields, or use GET", code="invalid_request")
    if body is not None:
        fields = _lower_keys(_flatten(body))
    return fields, files


def _image(fields: dict, files: dict, limit: int) -> bytes:
    present = [name for name, key in (("imageFile", "imagefile"), ("imageUrl", "imageurl"))
               if key in files or fields.get(key) not in (None, "")]
    source = common.one_input(present, ("imageFile", "imageUrl") if request.method == "POST" else ("imageUrl",))
    if source == "imageFile":
        if "imagefile" not in files:
            raise BadRequest("imageFile must be a multipart file upload; send a URL as imageUrl",
                             code="invalid_image_file", field="imageFile")
        return common.read_file(files["imagefile"], "imageFile", limit)
    return common.read_url(fields["imageurl"], "imageUrl", limit)


def _background(edit: Edit, files: dict, limit: int) -> bytes | None:
    if edit.background_file:
        data = common.read_file(files["background.imagefile"], "background.imageFile", limit)
    elif edit.background_url:
        data = common.read_url(edit.background_url, "background.imageUrl", limit)
    else:
        return None
    check_image(data)
    return data


@bp.route("/v2/edit", methods=["GET", "POST"])
def edit():
    fields, files = _read_request()
    fields.pop("api_key", None)
    stray = [name for name in files if name not in FILE_FIELDS]
    if stray:
        raise BadRequest(f"unexpected file field {stray[0]!r}: /v2/edit takes files only as imageFile and "
                         "background.imageFile", code="unknown_field", field=stray[0])
    for name in FILE_FIELDS:
        if name in fields:
            raise BadRequest(f"{'imageFile' if name == 'imagefile' else 'background.imageFile'} must be a multipart "
                             "file upload (use POST multipart, or the matching ...Url field)",
                             code="invalid_image_file", field=name)
    values = classify(fields)
    edit_plan = plan(values, background_file="background.imagefile" in files)
    limit = common.limit_bytes(VENDOR_LIMIT_MB)
    data = _image(fields, files, limit)
    background = _background(edit_plan, files, limit)

    done = common.run("photoroom", data, edit_plan.options)
    result, content_type = done.data, done.job.content_type
    if edit_plan.composites:
        result = finish.composite(result, edit_plan.output_format, color=edit_plan.composite_color,
                                  image=background, image_fit=edit_plan.background_fit, dpi=edit_plan.dpi)
        content_type = CONTENT_TYPES[edit_plan.output_format]
    response = Response(result, mimetype=content_type)
    response.headers.update(done.headers)
    if done.job.confidence is not None:  # Photoroom's 0 (sure) .. 1 (unsure); Clearcut's estimated IoU turned round
        response.headers["x-uncertainty-score"] = f"{1 - done.job.confidence:.4f}"
    return response
