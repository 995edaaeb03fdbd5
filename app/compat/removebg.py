"""remove.bg drop-in: ``POST /v1.0/removebg`` and ``GET /v1.0/account``.

Inputs ``image_file`` (multipart), ``image_file_b64`` or ``image_url`` (multipart, form or JSON). Options
go through ``fields.map_fields("removebg", ...)``. Responses carry remove.bg's headers (X-Width,
X-Height, X-Type, X-Credits-Charged, X-Foreground-*); ``Accept: application/json`` answers
``{"data": {"result_b64", "foreground_top", ...}}``. Errors are ``{"errors": [{"title", "code"}]}`` with
remove.bg's statuses: 400 for anything wrong with the input, 403 for authentication, 429, 5xx.
"""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from app.auth import authenticate
from app.compat import common, finish
from app.compat.fields import Extras, foreign_field_error, map_fields
from app.inputs import BadRequest, check_image, request_fields, to_base64
from clearcut.errors import ClearcutError, InvalidOption

bp = Blueprint("removebg", __name__)
INPUTS = ("image_file", "image_file_b64", "image_url")
DEFAULTS = {"size": "preview", "format": "auto"}
_STATUS = {401: 403, 413: 400, 415: 400, 422: 400}  # remove.bg: 400 input, 403 auth


def _render(status: int, code: str, message: str):
    return {"errors": [{"title": message, "code": code}]}, _STATUS.get(status, status)


common.install_errors(bp, _render, {"X-Credits-Charged": "0"})


def _wants_json() -> bool:
    accept = request.accept_mimetypes
    return accept["application/json"] > accept["image/png"]


def _plan(options, extras: Extras, has_bg_image: bool):
    """The job's options and the adapter's post-processing, refusing combinations that cannot be honoured."""
    post = extras.zip or extras.bg_rgba is not None or has_bg_image
    if sum((options.bg_color is not None, extras.bg_rgba is not None, has_bg_image)) > 1:
        raise InvalidOption("send one background: bg_color, bg_image_url or bg_image_file", code="invalid_bg",
                            option="bg_color")
    if post and options.channels == "alpha":
        raise InvalidOption("channels=alpha returns the matte alone; it cannot be combined with a background or "
                            "format=zip", code="invalid_channels", option="channels")
    if extras.zip and (options.bg_color is not None or extras.bg_rgba is not None or has_bg_image):
        raise InvalidOption("format=zip returns color.jpg + alpha.png without a background; drop the background "
                            "option or choose png/jpg/webp", code="invalid_format", option="format")
    if extras.auto_format:
        opaque = options.bg_color is not None or has_bg_image or (extras.bg_rgba or (0, 0, 0, 0))[3] == 255
        output_format = "jpg" if opaque and options.channels == "rgba" else "png"
    else:
        output_format = options.format
    if extras.bg_rgba is not None and output_format == "jpg":
        raise InvalidOption("a semi-transparent bg_color needs an output with alpha: use format=png, webp or auto",
                            code="invalid_format", option="format")
    job_options = (options.with_(format="png", channels="rgba", bg_color=None) if post
                   else options.with_(format=output_format))
    return job_options, output_format


@bp.post("/v1.0/removebg")
def remove_background():
    parsed = request_fields()
    if parsed is None:
        raise ClearcutError("send multipart/form-data, application/x-www-form-urlencoded or JSON",
                            code="unsupported_media_type", status=415)
    fields, files, body = parsed
    authenticate(body)
    fields.pop("api_key", None)
    limit = common.limit_bytes()
    stray = [name for name in files if name not in ("image_file", "bg_image_file")]
    if stray:
        raise foreign_field_error("removebg", stray[0])
    present = [n for n in INPUTS if n in files or fields.get(n) not in (None, "")]
    source = common.one_input(present, INPUTS)
    values = {name: fields.pop(name, None) for name in INPUTS}
    bg_upload = files.pop("bg_image_file", None)
    for name, default in DEFAULTS.items():  # remove.bg's defaults, not /v2's
        if fields.get(name) in (None, ""):
            fields[name] = default
    mapped = map_fields("removebg", fields)
    options, extras = mapped.options, mapped.extras
    if extras.bg_image_url and bg_upload is not None:
        raise InvalidOption("send either bg_image_url or bg_image_file, not both", code="invalid_bg",
                            option="bg_image_url")
    job_options, output_format = _plan(options, extras, bool(extras.bg_image_url or bg_upload))
    if source == "image_file" and "image_file" not in files:
        raise BadRequest("image_file must be a multipart file upload; send base64 as image_file_b64",
                         code="invalid_image_file", field="image_file")
    if source == "image_file":
        data = common.read_file(files["image_file"], "image_file", limit)
    elif source == "image_url":
        data = common.read_url(values["image_url"], "image_url", limit)
    else:
        data = common.read_base64(values["image_file_b64"], "image_file_b64", limit)
    background = None
    if bg_upload is not None:
        background = common.read_file(bg_upload, "bg_image_file", limit)
    elif extras.bg_image_url:
        background = common.read_url(extras.bg_image_url, "bg_image_url", limit)
    if background is not None:
        check_image(background)

    done = common.run("removebg", data, job_options)
    result, content_type = done.data, done.job.content_type
    if extras.zip:
        result, content_type = finish.zip_color_alpha(result), "application/zip"
    elif background is not None or extras.bg_rgba is not None:
        result = finish.composite(result, output_format, color=extras.bg_rgba, image=background)
        content_type = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}[output_format]

    headers = {**done.headers, "X-Type": extras.type_hint, "X-Credits-Charged": f"{extras.credits:g}"}
    if _wants_json():
        box = done.foreground()
        response = jsonify({"data": {"result_b64": to_base64(result), "foreground_top": box["top"],
                                     "foreground_left": box["left"], "foreground_width": box["width"],
                                     "foreground_height": box["height"]}})
    else:
        response = Response(result, mimetype=content_type)
    response.headers.update(headers)
    return response


@bp.get("/v1.0/account")
def account():
    key, acct = authenticate()
    used = common.usage(acct.id)
    # Self-hosted Clearcut has no credit balance: totals are null and "unlimited" says why.
    return jsonify({"data": {"attributes": {
        "credits": {"total": None, "subscription": None, "payg": None, "enterprise": None},
        "api": {"free_calls": None, "sizes": "all"},
        "unlimited": True,
        "usage": used,
        "account": {"id": acct.id, "name": acct.name, "key_fingerprint": key.fingerprint},
    }}})
