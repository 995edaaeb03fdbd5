"""Typed errors: a stable code, an HTTP status and a public message that tells the caller the fix.

The API renders these as ``{"error": {code, message, status, request_id, details}}``; the CLI prints
the code and message. Anything that is not a ``ClearcutError`` is an internal fault (500) and its
text is never shown to callers.
"""
from __future__ import annotations


class ClearcutError(Exception):
    code = "internal_error"
    status = 500
    retryable = False

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None, **details):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status
        self.details = details

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "status": self.status, "details": self.details}


class InvalidOption(ClearcutError):
    """A request option has a value outside its allowed set (400, code invalid_<option>)."""
    status = 400


class InvalidImage(ClearcutError):
    """The bytes cannot be used as an image (422 unless a subclass says otherwise)."""
    status = 422
    code = "invalid_image"


class UnsupportedFormat(InvalidImage):
    status = 415
    code = "unsupported_image_format"


class CorruptImage(InvalidImage):
    code = "corrupt_image"


class ImageTooLarge(InvalidImage):
    status = 413
    code = "image_too_large"


class ModelError(ClearcutError):
    """The model store cannot provide a verified model (500, not retryable without an operator)."""
    code = "model_unavailable"
    status = 500


class ChecksumMismatch(ModelError):
    code = "model_checksum_mismatch"


class AuthError(ClearcutError):
    """Missing or invalid key (401); revoked key or inactive account (403)."""
    status = 401
    code = "invalid_api_key"


class NotFound(ClearcutError):
    status = 404
    code = "not_found"
