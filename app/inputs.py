"""Turn a /v2 request into (image bytes, options, response mode) — or a specific 4xx.

Accepted inputs, exactly one per request: multipart ``image_file``; ``image_url`` (multipart, form or
JSON); ``image_base64`` (multipart, form or JSON; a data-URL prefix is accepted); ``image_file_b64``
(multipart alias); legacy JSON ``image``; or a raw image body when the request is not multipart,
form or JSON. Field names are case-insensitive. Everything is validated before any job exists.
"""
from __future__ import annotations

import base64
import binascii
import io
import json
import re
from dataclasses import dataclass

from flask import request

from clearcut import config, netguard
from clearcut.errors import ClearcutError, ImageTooLarge, InvalidImage
from clearcut.options import Options, parse, parse_bool

IMAGE_FIELDS = ("image_file", "image_url", "image_base64", "image_file_b64", "image")
CONTROL_FIELDS = ("api_key", "cache")
_DATA_URL = re.compile(r"data:([^;,]*)(;[^,]*)?,", re.IGNORECASE)
_B64_ALPHABET = re.compile(rb"[A-Za-z0-9+/]+={0,2}")
RAW_TYPES = ("image/", "application/octet-stream")


class BadRequest(ClearcutError):
    status = 400
    code = "bad_request"


@dataclass
class Intake:
    data: bytes
    content_type: str
    options: Options
    use_cache: bool
    json_mode: bool          # answer with JSON (base64) instead of image bytes
    legacy_mask: bool        # legacy JSON "image" field: answer with a base64 alpha mask
    json_body: dict | None


def max_bytes() -> int:
    return int(config.get("CLEARCUT_MAX_UPLOAD_MB") * 1024 * 1024)


def json_body() -> dict | None:
    if not request.is_json:
        return None
    raw = request.get_data(cache=True)
    try:
        body = json.loads(raw or b"null", object_pairs_hook=_unique_keys)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the request body is not valid JSON ({exc}); send a JSON object",
                         code="invalid_json")
    except RecursionError:  # e.g. 100,000 nested brackets: refused, not a 500
        raise BadRequest("the JSON body is nested too deeply; send a flat JSON object", code="invalid_json")
    if not isinstance(body, dict):
        raise BadRequest("the JSON body must be an object such as {\"image_base64\": \"...\"}",
                         code="invalid_json")
    return body


def _unique_keys(pairs) -> dict:
    """JSON objects with a repeated key are refused (json.loads would silently keep the last one)."""
    out: dict = {}
    for name, value in pairs:
        if name in out:
            raise BadRequest(f"field {name!r} was sent more than once", code="duplicate_field", field=name)
        out[name] = value
    return out


def decode_base64(value, field: str) -> bytes:
    """Strict base64 (standard alphabet, padding required, no whitespace); a data-URL prefix is allowed."""
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{field} must be a non-empty base64 string", code="invalid_base64", field=field)
    text = value
    match = _DATA_URL.match(text)
    if match:
        mime, params = match.group(1).lower(), (match.group(2) or "").lower()
        if ";base64" not in params:
            raise BadRequest(f"{field} is a data URL without ';base64'", code="invalid_base64", field=field)
        if mime and not mime.startswith("image/") and mime != "application/octet-stream":
            raise BadRequest(f"{field} is a data URL of type {mime!r}; it must be an image/* data URL",
                             code="invalid_base64", field=field)
        text = text[match.end():]
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise BadRequest(f"{field} is not valid base64: send the standard alphabet with padding and no "
                         "whitespace or line breaks (a data:image/...;base64, prefix is accepted)",
                         code="invalid_base64", field=field)
    if not data:
        raise BadRequest(f"{field} decodes to nothing", code="invalid_base64", field=field)
    if len(data) >= 8 and _B64_ALPHABET.fullmatch(data.strip()) and _decodes_to_image(data.strip()):
        raise BadRequest(f"{field} appears to be base64-encoded twice; encode the image bytes once",
                         code="invalid_base64", field=field)
    return data


def _decodes_to_image(data: bytes) -> bool:
    try:
        inner = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return False
    return sniff(inner) is not None


SIGNATURES = [(b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"GIF87a", "image/gif"),
              (b"GIF89a", "image/gif"), (b"BM", "image/bmp"), (b"II*\x00", "image/tiff"),
              (b"MM\x00*", "image/tiff")]


def sniff(data: bytes) -> str | None:
    """The image type from the bytes themselves (declared content types are not trusted)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for magic, kind in SIGNATURES:
        if data.startswith(magic):
            return kind
    return None


def check_image(data: bytes) -> str:
    """Cheap checks before a job exists: it is an image we decode, and its header is within limits."""
    from clearcut.pipeline.decode import SUPPORTED, _open

    if len(data) > max_bytes():
        raise ImageTooLarge(f"the image is larger than {config.get('CLEARCUT_MAX_UPLOAD_MB'):g} MB")
    image = _open(data)  # raises invalid_image / image_too_large (Pillow's bomb guard)
    if image.format not in SUPPORTED:
        from clearcut.errors import UnsupportedFormat

        raise UnsupportedFormat(f"{image.format} images are not supported; send JPEG, PNG, WebP, TIFF, BMP or GIF")
    width, height = image.size
    limit = config.get("CLEARCUT_MAX_MEGAPIXELS")
    if width * height > limit * 1e6:
        raise ImageTooLarge(f"the image is {width}x{height} ({width * height / 1e6:.1f} MP); the limit is "
                            f"{limit:g} MP — downscale it before sending", width=width, height=height)
    return sniff(data) or _mime_for(image.format)


def _mime_for(fmt: str) -> str:
    return {"JPEG": "image/jpeg", "MPO": "image/jpeg"}.get(fmt, f"image/{fmt.lower()}")


def _lower_keys(items) -> dict:
    out: dict = {}
    for name, value in items:
        if not isinstance(name, str):  # e.g. a multipart part whose Content-Disposition has no parsable name
            raise BadRequest("a form field has no valid name; check the multipart Content-Disposition headers",
                             code="unknown_field")
        key = name.strip().lower()
        if key in out:
            raise BadRequest(f"field {key!r} was sent more than once", code="duplicate_field", field=key)
        out[key] = value
    return out


def parse_request() -> Intake:
    content_type = (request.mimetype or "").lower()
    body = json_body()
    legacy_mask = False
    if body is not None:
        fields = _lower_keys(body.items())
        files = {}
    elif content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        fields = _lower_keys((k, v) for k in request.form for v in request.form.getlist(k))
        files = _lower_keys((k, f) for k in request.files for f in request.files.getlist(k))
    elif not content_type or content_type.startswith(RAW_TYPES):
        data = request.get_data(cache=False)
        if not data:
            raise BadRequest("no image was sent: use multipart image_file, image_url, image_base64, or a raw "
                             "image body", code="missing_image")
        fields = _lower_keys(request.args.items())
        fields.pop("api_key", None)
        options, use_cache = _options(fields)
        return Intake(data, check_image(data), options, use_cache, False, False, None)
    else:
        raise ClearcutError(f"unsupported Content-Type {content_type!r}: send multipart/form-data, JSON, or raw "
                            "image bytes (image/*)", code="unsupported_media_type", status=415)

    present = [name for name in IMAGE_FIELDS if (name in files or fields.get(name) not in (None, ""))]
    if "image" in present and body is None:
        present.remove("image")  # "image" is a JSON-only legacy field
        raise BadRequest("the 'image' field is accepted only in JSON bodies; use image_file or image_base64",
                         code="unknown_field", field="image")
    if not present:
        raise BadRequest("no image was sent: add image_file, image_url or image_base64", code="missing_image")
    if len(present) > 1:
        raise BadRequest(f"send exactly one image input; got {', '.join(present)}", code="multiple_images",
                         fields=present)
    source = present[0]
    if source == "image_file":
        upload = files["image_file"]
        data = upload.read(max_bytes() + 1)
        if not data:
            raise BadRequest("image_file is empty (0 bytes)", code="missing_image")
    elif source == "image_url":
        url = fields["image_url"]
        if not isinstance(url, str):
            raise BadRequest("image_url must be a string", code="invalid_image_url")
        data = netguard.fetch(url.strip(), max_bytes=max_bytes()).data
    else:
        data = decode_base64(fields[source], source)
        legacy_mask = source == "image"
    for name in (*IMAGE_FIELDS, "api_key"):
        fields.pop(name, None)
    stray_files = [name for name in files if name != "image_file"]
    if stray_files:
        raise BadRequest(f"unexpected file field(s) {', '.join(stray_files)}; send the image as image_file",
                         code="unknown_field", fields=stray_files)
    options, use_cache = _options(fields)
    if legacy_mask and "channels" not in fields:
        options = options.with_(channels="alpha", format="png")
    return Intake(data, check_image(data), options, use_cache, body is not None, legacy_mask, body)


def _options(fields: dict) -> tuple[Options, bool]:
    use_cache = parse_bool("cache", fields.pop("cache")) if "cache" in fields else True
    return parse(fields), use_cache


def to_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def image_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    return Image.open(io.BytesIO(data)).size


def request_fields() -> tuple[dict, dict, dict | None] | None:
    """(fields, files, JSON body) of a JSON, multipart or form request with lower-cased names and
    duplicates refused; None when the request is none of those (for routes with their own inputs)."""
    body = json_body()
    if body is not None:
        return _lower_keys(body.items()), {}, body
    if (request.mimetype or "").lower() in ("multipart/form-data", "application/x-www-form-urlencoded"):
        fields = _lower_keys((k, v) for k in request.form for v in request.form.getlist(k))
        files = _lower_keys((k, f) for k in request.files for f in request.files.getlist(k))
        return fields, files, None
    return None
