"""Hostile *requests* (as opposed to hostile image files): bad base64, data URLs, JSON bombs, wrong
content types, duplicate fields. Each is a plain (method, path, headers, body) so the Flask test
client (tests/test_hostile_inputs.py) and a live server (benchmarks/reliability.py) replay the same
bytes. ``expected`` is the (status, code) Clearcut must answer.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

from urllib3 import encode_multipart_formdata

from tests.corpus.build import _encode, _noisy, _scene


@dataclass(frozen=True)
class HostileRequest:
    name: str
    path: str
    body: bytes
    content_type: str | None
    status: int
    code: str | None
    headers: dict = field(default_factory=dict)


def _json(obj) -> bytes:
    return json.dumps(obj).encode()


def _multipart(fields: list[tuple[str, object]]) -> tuple[bytes, str]:
    return encode_multipart_formdata(fields)


def build(upload_limit_bytes: int) -> list[HostileRequest]:
    """``upload_limit_bytes``: the server's CLEARCUT_MAX_UPLOAD_MB in bytes (the 'huge' cases exceed it)."""
    png = _encode(_scene(), "PNG")
    noisy = _encode(_noisy(48, 36), "PNG")
    b64 = base64.b64encode(noisy).decode()
    assert "+" in b64 or "/" in b64, "the URL-safe case needs + or / in the standard encoding"
    unpadded = base64.b64encode(noisy + b"\x00" * ((1 - len(noisy)) % 3)).decode()
    while not unpadded.endswith("="):   # make sure stripping '=' really removes padding
        noisy += b"\x00"
        unpadded = base64.b64encode(noisy).decode()
    twice = base64.b64encode(base64.b64encode(png)).decode()
    wrapped = "\n".join(b64[i:i + 76] for i in range(0, len(b64), 76))   # MIME line breaks
    j = "application/json"
    cases = [
        HostileRequest("b64-whitespace", "/v2", _json({"image_base64": wrapped}), j, 400, "invalid_base64"),
        HostileRequest("b64-inner-space", "/v2", _json({"image_base64": b64[:40] + " " + b64[40:]}), j, 400,
                       "invalid_base64"),
        HostileRequest("b64-url-safe", "/v2", _json({"image_base64": base64.urlsafe_b64encode(noisy).decode()}), j,
                       400, "invalid_base64"),
        HostileRequest("b64-missing-padding", "/v2", _json({"image_base64": unpadded.rstrip("=")}), j, 400,
                       "invalid_base64"),
        HostileRequest("b64-double-encoded", "/v2", _json({"image_base64": twice}), j, 400, "invalid_base64"),
        HostileRequest("b64-not-a-string", "/v2", _json({"image_base64": list(range(1000))}), j, 400,
                       "invalid_base64"),
        HostileRequest("b64-non-ascii", "/v2", _json({"image_base64": "iVBORw0K\u00e9\u00e9=="}), j, 400,
                       "invalid_base64"),
        HostileRequest("b64-valid-not-image", "/v2", _json({"image_base64": base64.b64encode(b"%PDF-1.7\n" * 20)
                                                            .decode()}), j, 422, "invalid_image"),
        HostileRequest("data-url-text-mime", "/v2", _json({"image_base64": "data:text/plain;base64," + b64}), j,
                       400, "invalid_base64"),
        HostileRequest("data-url-html-mime", "/v2", _json({"image_base64": "data:text/html;base64," + b64}), j,
                       400, "invalid_base64"),
        HostileRequest("data-url-no-base64", "/v2", _json({"image_base64": "data:image/png," + b64}), j, 400,
                       "invalid_base64"),
        HostileRequest("json-invalid", "/v2", b'{"image_base64": ', j, 400, "invalid_json"),
        HostileRequest("json-array", "/v2", b"[1, 2, 3]", j, 400, "invalid_json"),
        HostileRequest("json-not-utf8", "/v2", b'{"format": "\xff\xfe"}', j, 400, "invalid_json"),
        HostileRequest("json-deeply-nested", "/v2", b'{"metadata": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", j,
                       400, "invalid_json"),
        HostileRequest("json-deeply-nested-objects", "/v2", b'{"a": ' * 50_000 + b"1" + b"}" * 50_000, j, 400,
                       "invalid_json"),
        HostileRequest("json-huge", "/v2", _json({"image_base64": "A" * (upload_limit_bytes * 2)}), j, 413,
                       "image_too_large"),
        HostileRequest("json-huge-unknown-field", "/v2", _json({"image_base64": b64, "junk": "x" * 2_000_000}), j,
                       400, "unknown_option"),
        HostileRequest("json-duplicate-keys", "/v2", b'{"image_base64": "%s", "format": "png", "format": "jpg"}'
                       % b64.encode(), j, 400, "duplicate_field"),
        HostileRequest("json-duplicate-case", "/v2", _json({"image_base64": b64, "format": "png", "FORMAT": "jpg"}), j,
                       400, "duplicate_field"),
        HostileRequest("content-type-text", "/v2", png, "text/plain", 415, "unsupported_media_type"),
        HostileRequest("content-type-xml", "/v2", b"<image/>", "application/xml", 415, "unsupported_media_type"),
        HostileRequest("content-type-json-with-png", "/v2", png, j, 400, "invalid_json"),
        HostileRequest("content-type-image-with-json", "/v2", _json({"image_base64": b64}), "image/png", 422,
                       "invalid_image"),
        HostileRequest("multipart-no-boundary", "/v2", b"--x\r\n\r\n", "multipart/form-data", 400, "missing_image"),
    ]
    body, ctype = _multipart([("image_file", ("a.png", png, "image/png")), ("format", "png"), ("format", "jpg")])
    cases.append(HostileRequest("multipart-duplicate-field", "/v2", body, ctype, 400, "duplicate_field"))
    body, ctype = _multipart([("image_file", ("a.png", png, "image/png")), ("image_file", ("b.png", png, "image/png"))])
    cases.append(HostileRequest("multipart-duplicate-file", "/v2", body, ctype, 400, "duplicate_field"))
    body, ctype = _multipart([("image_file", ("a.png", png, "image/png")), ("Format", "png"), ("format", "jpg")])
    cases.append(HostileRequest("multipart-duplicate-case", "/v2", body, ctype, 400, "duplicate_field"))
    body, ctype = _multipart([("image_file", ("a.png", png, "image/png")), ("image_base64", b64)])
    cases.append(HostileRequest("multipart-two-images", "/v2", body, ctype, 400, "multiple_images"))
    # The async route shares the intake: the same refusals, before any job exists.
    cases += [
        HostileRequest("jobs-b64-url-safe", "/v2/jobs", _json({"image_base64": base64.urlsafe_b64encode(noisy)
                                                               .decode()}), j, 400, "invalid_base64"),
        HostileRequest("jobs-json-deeply-nested", "/v2/jobs", b'{"metadata": ' + b"[" * 100_000 + b"]" * 100_000
                       + b"}", j, 400, "invalid_json"),
        HostileRequest("jobs-duplicate-keys", "/v2/jobs", b'{"image_base64": "%s", "priority": 1, "priority": 9}'
                       % b64.encode(), j, 400, "duplicate_field"),
        HostileRequest("jobs-metadata-not-object", "/v2/jobs", _json({"image_base64": b64, "metadata": [1, 2]}), j,
                       400, "invalid_metadata"),
        HostileRequest("jobs-content-type-text", "/v2/jobs", png, "text/plain", 415, "unsupported_media_type"),
        HostileRequest("batches-deeply-nested", "/v2/batches", b'{"items": ' + b"[" * 100_000 + b"]" * 100_000
                       + b"}", j, 400, "invalid_json"),
    ]
    return cases
