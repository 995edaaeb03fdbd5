"""Request ids and the one JSON error envelope: {"error": {code, message, status, request_id, details}}.

Every ClearcutError renders with its own status and code; werkzeug's HTTP errors get a stable code;
anything else is logged with its traceback and answered as a bare 500 — no internals leak.
"""
from __future__ import annotations

import logging
import re
import secrets

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from clearcut.errors import ClearcutError

log = logging.getLogger("clearcut.api")
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{8,64}")
HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "image_too_large",
              415: "unsupported_media_type", 429: "rate_limited"}


def request_id() -> str:
    if "request_id" not in g:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _SAFE_ID.fullmatch(incoming) else f"req_{secrets.token_hex(12)}"
    return g.request_id


def error_response(status: int, code: str, message: str, details: dict | None = None, headers=None):
    body = {"error": {"code": code, "message": message, "status": status, "request_id": request_id(),
                      "details": details or {}}}
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def install(app: Flask) -> None:
    @app.errorhandler(ClearcutError)
    def _domain(exc: ClearcutError):
        headers = {"Retry-After": str(exc.details.pop("retry_after"))} if "retry_after" in exc.details else None
        return error_response(exc.status, exc.code, exc.message, exc.details, headers)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            from clearcut import config

            message = (f"the request body is larger than {config.get('CLEARCUT_MAX_UPLOAD_MB'):g} MB; compress "
                       "the image, downscale it, or send image_url")
        return error_response(status, HTTP_CODES.get(status, f"http_{status}"), message)

    @app.errorhandler(Exception)
    def _internal(exc: Exception):
        log.exception("unhandled error", extra={"request_id": request_id()})
        return error_response(500, "internal_error", "an internal error occurred; retry with backoff and "
                              "report the request_id if it persists", {"retryable": True})

    @app.after_request
    def _stamp(response):
        response.headers["X-Request-ID"] = request_id()
        return response
