"""``GET /v2/openapi.json``: an OpenAPI 3.0 description of the routes this app serves.

Written by hand from the routes (the contract is the BackgroundErase spec, not a schema generator's
guess), and checked two ways by the tests: every documented path exists in the URL map, and
schemathesis fuzzes each operation against the app (tests/test_openapi_schemathesis.py).
"""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from clearcut.layouts import PRESETS

bp = Blueprint("openapi", __name__)

OPTION_PROPS = {
    "format": {"type": "string", "enum": ["png", "jpg", "jpeg", "webp", "bmp", "tiff", "tif", "gif"],
               "default": "png"},
    "channels": {"type": "string", "enum": ["rgba", "alpha"], "default": "rgba"},
    "size": {"type": "string", "enum": ["preview", "medium", "hd", "full", "auto"], "default": "full"},
    "crop": {"type": "string", "description": "boolean: true/false/1/0/yes/no"},
    "crop_margin": {"type": "string", "example": "10px"},
    "bg_color": {"type": "string", "description": "CSS colour name, #rgb or #rrggbb", "example": "#ffffff"},
    "despill": {"type": "string", "description": "boolean"},
    "model": {"type": "string", "example": "fast"},
    "cache": {"type": "string", "description": "boolean; false recomputes"},
    "review_below": {"type": "string", "description": "number 0-1: needs_review below this confidence "
                                                      "(default CLEARCUT_REVIEW_BELOW)", "example": "0.9"},
    "canvas": {"type": "string", "description": "original, square, subject or WxH pixels (docs/layout.md)",
               "example": "800x800"},
    "margin": {"type": "string", "description": "px or % of the canvas, 1/2/4 values, outside the padding",
               "example": "2%"},
    "padding": {"type": "string", "description": "px or % of the canvas inside the margin, 1/2/4 values",
                "example": "5%"},
    "position": {"type": "string", "description": "center, original or 'X% Y%'", "example": "50% 100%"},
    "scale": {"type": "string", "description": "the subject's box as a % (1-100) of the padded canvas",
              "example": "85"},
    "shadow": {"type": "string", "enum": ["none", "drop", "contact", "floating"], "default": "none"},
    "shadow_opacity": {"type": "string", "description": "0-100", "example": "40"},
    "shadow_softness": {"type": "string", "description": "0-100", "example": "50"},
    "fit": {"type": "string", "enum": ["contain", "cover"], "default": "contain"},
    "reference": {"type": "string", "enum": ["subject", "image"], "default": "subject"},
    "snap_edges": {"type": "string", "enum": ["none", "all", "horizontal", "vertical"], "default": "none"},
    "max_width": {"type": "string", "description": "1-10000: the canvas shrinks to fit", "example": "1200"},
    "max_height": {"type": "string", "description": "1-10000: the canvas shrinks to fit", "example": "1200"},
    "remove_background": {"type": "string", "description": "boolean; false keeps the whole photo"},
    "dpi": {"type": "string", "description": "1-2400, written into the file's metadata", "example": "300"},
    "layout": {"type": "string", "enum": sorted(PRESETS),
               "description": "marketplace preset; explicit options override it"},
    "roi": {"type": "string", "description": "region of interest 'x1 y1 x2 y2' in px or % of the image: only it is "
                                             "segmented, everything outside is transparent", "example": "10% 10% 90% 90%"},
    "semitransparency": {"type": "string", "description": "boolean; false gives a hard matte (alpha 0 or 255)"},
}
IMAGE_PROPS = {
    "image_url": {"type": "string", "format": "uri"},
    "image_base64": {"type": "string", "description": "standard base64, padded; data:image/...;base64, accepted"},
    "image_file_b64": {"type": "string"},
}
ASYNC_PROPS = {
    "webhook_url": {"type": "string", "format": "uri"},
    "metadata": {"type": "object", "additionalProperties": True},
    "priority": {"type": "integer", "minimum": 0, "maximum": 9},
    "external_id": {"type": "string", "maxLength": 200},
    "s3_key": {"type": "string", "description": "instead of an image: an object under imports/{account}/"},
    "output": {"type": "object", "properties": {"prefix": {"type": "string"}, "bucket": {"type": "string"}},
               "required": ["prefix"]},
}
ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message", "status", "request_id"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "status": {"type": "integer"},
                   "request_id": {"type": "string"}, "details": {"type": "object"}}}}}
JOB = {"type": "object", "required": ["id", "status"], "properties": {
    "id": {"type": "string"}, "object": {"type": "string"},
    "status": {"type": "string", "enum": ["queued", "processing", "succeeded", "failed", "canceled"]},
    "attempts": {"type": "integer"}, "status_url": {"type": "string"}, "result_url": {"type": "string", "nullable": True},
    "download_url": {"type": "string", "nullable": True}, "metadata": {"type": "object", "nullable": True},
    "error": {"type": "object", "nullable": True}, "needs_review": {"type": "boolean"},
    "accepted_at": {"type": "string", "nullable": True}}}
BATCH = {"type": "object", "required": ["id", "status", "counts"], "properties": {
    "id": {"type": "string"}, "status": {"type": "string"}, "counts": {"type": "object"},
    "progress": {"type": "number"}, "eta_s": {"type": "number", "nullable": True}}}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _errors(*statuses: int) -> dict:
    return {str(s): {"$ref": "#/components/responses/Error"} for s in statuses}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


IMAGE_OUT = {"description": "the cutout", "content": {f"image/{t}": {"schema": {"type": "string", "format": "binary"}}
                                                       for t in ("png", "jpeg", "webp", "bmp", "tiff", "gif")}}
STD_ERRORS = (400, 401, 403, 413, 415, 422, 429)


def _image_body(extra: dict | None = None) -> dict:
    props = {**IMAGE_PROPS, **OPTION_PROPS, **(extra or {})}
    form = {**props, "image_file": {"type": "string", "format": "binary"}}
    form = {k: ({"type": "string"} if v.get("type") in ("object", "integer") else v) for k, v in form.items()}
    return {"content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": form}},
        "application/json": {"schema": {"type": "object", "properties": props}},
        "image/*": {"schema": {"type": "string", "format": "binary"}},
    }}


def _path_param(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, schema: dict) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema}


PAGE = [_query("limit", {"type": "integer", "minimum": 1, "maximum": 500}), _query("cursor", {"type": "string"})]
IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": False,
               "schema": {"type": "string", "maxLength": 255}}


def _vendor_upload(field: str, summary: str) -> dict:
    return {"post": {"tags": ["compat"], "summary": summary, "requestBody": {"content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            field: {"type": "string", "format": "binary"}}}}}},
        "responses": {"200": IMAGE_OUT, **_errors(*STD_ERRORS)}}}


PHOTOROOM_EDIT_FIELDS = {
    "outputSize": {"type": "string", "description": "auto, originalImage, croppedSubject or WxH",
                   "example": "1000x1000"},
    "padding": {"type": "string", "description": "0-0.49, 0%-49% or px", "example": "0.1"},
    "margin": {"type": "string", "description": "0-0.49, 0%-49% or px", "example": "20px"},
    "background.color": {"type": "string", "description": "hex (no #), CSS name or transparent", "example": "FFFFFF"},
    "shadow.mode": {"type": "string", "enum": ["ai.soft", "ai.hard", "ai.floating"]},
    "export.format": {"type": "string", "enum": ["png", "jpeg", "jpg", "webp"], "default": "png"},
    "removeBackground": {"type": "string", "description": "boolean", "default": "true"},
}
PHOTOROOM_EDIT_ERRORS = {str(s): _json({"type": "object", "properties": {"error": {"type": "object", "properties": {
    "message": {"type": "string"}, "code": {"type": "string"}, "status": {"type": "integer"},
    "request_id": {"type": "string"}}, "required": ["message", "code"]}}}, "Photoroom's error shape")
    for s in (400, 403, 429)}


def _photoroom_edit() -> dict:
    """GET (imageUrl in the query) and POST (multipart imageFile) /v2/edit; docs/compat.md has every field."""
    summary = "Photoroom Image Editing drop-in (docs/compat.md)"
    query = [{**_query(name, schema), "required": name == "imageUrl"}
             for name, schema in {"imageUrl": {"type": "string"}, **PHOTOROOM_EDIT_FIELDS}.items()]
    form = {"imageFile": {"type": "string", "format": "binary"}, "imageUrl": {"type": "string"},
            **PHOTOROOM_EDIT_FIELDS}
    responses = {"200": IMAGE_OUT, **PHOTOROOM_EDIT_ERRORS}
    return {"get": {"tags": ["compat"], "summary": summary, "parameters": query, "responses": responses},
            "post": {"tags": ["compat"], "summary": summary, "responses": responses, "requestBody": {"content": {
                "multipart/form-data": {"schema": {"type": "object", "properties": form}}}}}}


def document(server_url: str) -> dict:
    job_id, batch_id = _path_param("job_id"), _path_param("batch_id")
    paths = {
        "/v2": {"post": {"tags": ["v2"], "summary": "Remove the background synchronously",
                         "parameters": [IDEMPOTENCY], "requestBody": _image_body(),
                         "responses": {"200": IMAGE_OUT, "202": _json(_ref("Job"), "still running"),
                                       **_errors(*STD_ERRORS, 409, 503)}}},
        "/v2/account": {"get": {"tags": ["v2"], "summary": "Key validity, account fields and usage",
                                "responses": {"200": _json({"type": "object"}), **_errors(401, 403, 429)}}},
        "/v2/health": {"get": {"tags": ["ops"], "summary": "Readiness per dependency", "security": [],
                               "responses": {"200": _json({"type": "object"}), "503": _json({"type": "object"})}}},
        "/v2/openapi.json": {"get": {"tags": ["ops"], "summary": "This document", "security": [],
                                     "responses": {"200": _json({"type": "object"})}}},
        "/v2/jobs": {
            "post": {"tags": ["jobs"], "summary": "Submit a job (202 at once)", "parameters": [IDEMPOTENCY],
                     "requestBody": _image_body(ASYNC_PROPS),
                     "responses": {"202": _json(_ref("Job")), **_errors(*STD_ERRORS, 409)}},
            "get": {"tags": ["jobs"], "summary": "List jobs", "parameters": [
                *PAGE, _query("status", {"type": "string"}), _query("batch", {"type": "string"}),
                _query("created_after", {"type": "string", "format": "date-time"}),
                _query("created_before", {"type": "string", "format": "date-time"}),
                _query("finished_after", {"type": "string", "format": "date-time"}),
                _query("needs_review", {"type": "string", "description": "boolean"}),
                _query("confidence_below", {"type": "number", "minimum": 0, "maximum": 1})],
                "responses": {"200": _json({"type": "object", "properties": {"data": {"type": "array",
                                                                                      "items": _ref("Job")}}}),
                              **_errors(400, 401, 403, 429)}}},
        "/v2/jobs/{job_id}": {
            "parameters": [job_id],
            "get": {"tags": ["jobs"], "summary": "A job", "responses": {"200": _json(_ref("Job")),
                                                                       **_errors(401, 403, 404, 429)}},
            "delete": {"tags": ["jobs"], "summary": "Cancel a queued job",
                       "responses": {"200": _json(_ref("Job")), **_errors(401, 403, 404, 409, 429)}}},
        "/v2/jobs/{job_id}/result": {
            "parameters": [job_id],
            "get": {"tags": ["jobs"], "summary": "The result bytes (or 303 with ?redirect=1)",
                    "parameters": [_query("redirect", {"type": "string"})],
                    "responses": {"200": IMAGE_OUT, "303": {"description": "to the presigned URL"},
                                  **_errors(401, 403, 404, 409, 422, 429)}}},
        "/v2/jobs/{job_id}/accept": {
            "parameters": [job_id],
            "post": {"tags": ["jobs"], "summary": "Accept a flagged cutout (clears needs_review)",
                     "parameters": [IDEMPOTENCY],
                     "responses": {"200": _json(_ref("Job")), **_errors(401, 403, 404, 409, 429)}}},
        "/v2/jobs/{job_id}/replay": {
            "parameters": [job_id],
            "post": {"tags": ["jobs"], "summary": "Replay with the stored original", "parameters": [IDEMPOTENCY],
                     "requestBody": {"required": False, "content": {"application/json": {"schema": {
                         "type": "object", "properties": {"options": {"type": "object"}, "cache": {"type": "boolean"}}}}}},
                     "responses": {"202": _json(_ref("Job")), **_errors(400, 401, 403, 404, 409, 410, 429)}}},
        "/v2/jobs/{job_id}/webhooks": {
            "parameters": [job_id],
            "get": {"tags": ["webhooks"], "summary": "Webhook deliveries and attempts of a job",
                    "responses": {"200": _json({"type": "object"}), **_errors(401, 403, 404, 429)}}},
        "/v2/jobs/{job_id}/webhooks/{delivery_id}/resend": {
            "parameters": [job_id, _path_param("delivery_id")],
            "post": {"tags": ["webhooks"], "summary": "Resend a webhook message", "parameters": [IDEMPOTENCY],
                     "responses": {"202": _json({"type": "object"}), **_errors(401, 403, 404, 429)}}},
        "/v2/batches": {
            "post": {"tags": ["batches"], "summary": "Submit a batch (202 at once)", "parameters": [IDEMPOTENCY],
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {
                         "type": "object", "required": ["items"], "properties": {
                             "items": {"type": "array", "maxItems": 10000, "items": {"type": "object", "properties": {
                                 "image_url": {"type": "string"}, "s3_key": {"type": "string"},
                                 "asset_id": {"type": "string"}, "external_id": {"type": "string"},
                                 "options": {"type": "object"}}}},
                             "options": {"type": "object"}, "webhook_url": {"type": "string"},
                             "metadata": {"type": "object"}, "priority": {"type": "integer"}}}}}},
                     "responses": {"202": _json(_ref("Batch")), **_errors(400, 401, 403, 409, 413, 429)}},
            "get": {"tags": ["batches"], "summary": "List batches", "parameters": [
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}), _query("cursor", {"type": "string"}),
                _query("status", {"type": "string", "enum": ["processing", "completed"]})],
                "responses": {"200": _json({"type": "object"}), **_errors(400, 401, 403, 429)}}},
        "/v2/batches/{batch_id}": {
            "parameters": [batch_id],
            "get": {"tags": ["batches"], "summary": "Counts, progress and a page of items",
                    "parameters": [_query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                                   _query("cursor", {"type": "string"}), _query("status", {"type": "string"})],
                    "responses": {"200": _json(_ref("Batch")), **_errors(400, 401, 403, 404, 429)}}},
        "/v2/batches/{batch_id}/replay": {
            "parameters": [batch_id],
            "post": {"tags": ["batches"], "summary": "Replay failed (or ?status=) items",
                     "parameters": [IDEMPOTENCY, _query("status", {"type": "string"})],
                     "responses": {"202": _json(_ref("Batch")), **_errors(400, 401, 403, 404, 429)}}},
        "/v2/imports": {
            "get": {"tags": ["batches"], "summary": "Objects in this account's import area (imports/{account}/)",
                    "parameters": [_query("prefix", {"type": "string"}),
                                   _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                                   _query("cursor", {"type": "string"})],
                    "responses": {"200": _json({"type": "object", "properties": {
                        "prefix": {"type": "string"}, "has_more": {"type": "boolean"},
                        "next_cursor": {"type": "string", "nullable": True},
                        "data": {"type": "array", "items": {"type": "object", "properties": {
                            "key": {"type": "string"}, "relative_key": {"type": "string"},
                            "size": {"type": "integer"}, "etag": {"type": "string"},
                            "last_modified": {"type": "string", "nullable": True}}}}}}),
                        **_errors(400, 401, 403, 429)}}},
        "/v2/webhooks/secret/rotate": {
            "post": {"tags": ["webhooks"], "summary": "New signing secret, shown once", "parameters": [IDEMPOTENCY],
                     "responses": {"201": _json({"type": "object", "properties": {"secret": {"type": "string"}}}),
                                   **_errors(401, 403, 429)}}},
        "/v2/webhooks/endpoints": {
            "get": {"tags": ["webhooks"], "summary": "Receiver URLs and whether they are enabled",
                    "responses": {"200": _json({"type": "object"}), **_errors(401, 403, 429)}}},
        "/v2/usage": {
            "get": {"tags": ["v2"], "summary": "Charged images by day and option",
                    "parameters": [_query("days", {"type": "integer", "minimum": 1, "maximum": 366}),
                                   _query("tz_offset_min", {"type": "integer", "minimum": -840, "maximum": 840})],
                    "responses": {"200": _json({"type": "object"}), **_errors(400, 401, 403, 429)}}},
        "/v2/layouts": {
            "get": {"tags": ["v2"], "summary": "Marketplace presets of the layout option",
                    "responses": {"200": _json({"type": "object"}), **_errors(401, 403, 429)}}},
        # vendor drop-ins (app/compat): each speaks its vendor's request and error shapes
        "/v1.0/removebg": _vendor_upload("image_file", "remove.bg drop-in"),
        "/v1.0/account": {"get": {"tags": ["compat"], "summary": "remove.bg account drop-in",
                                  "responses": {"200": _json({"type": "object"}), **_errors(401, 403)}}},
        "/v1/segment": _vendor_upload("image_file", "Photoroom drop-in"),
        "/v2/edit": _photoroom_edit(),
        "/remove-background/v1": _vendor_upload("image_file", "Clipdrop drop-in"),
        "/v2.0/remove_image_background": _vendor_upload("source_image_file", "Slazzer drop-in"),
        "/v1.0/image-without-background": _vendor_upload("file", "withoutbg drop-in (binary)"),
        "/v1.0/alpha-channel": _vendor_upload("file", "withoutbg drop-in (binary matte)"),
        "/v1.0/image-without-background-base64": {"post": {
            "tags": ["compat"], "summary": "withoutbg drop-in (base64)",
            "requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {
                "image_base64": {"type": "string"}}}}}},
            "responses": {"200": _json({"type": "object"}), **_errors(*STD_ERRORS)}}},
        "/v1.0/alpha-channel-base64": {"post": {
            "tags": ["compat"], "summary": "withoutbg drop-in (base64 matte)",
            "requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {
                "image_base64": {"type": "string"}}}}}},
            "responses": {"200": _json({"type": "object"}), **_errors(*STD_ERRORS)}}},
        "/available-credit": {"get": {"tags": ["compat"], "summary": "withoutbg credit drop-in",
                                      "responses": {"200": _json({"type": "object"}), **_errors(401, 403)}}},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "Clearcut", "version": "2",
                 "description": "Self-hosted background removal: the BackgroundErase-compatible /v2 API, async "
                                "jobs, batches, signed webhooks and vendor drop-in routes. Errors are "
                                "{\"error\": {code, message, status, request_id, details}}."},
        "servers": [{"url": server_url}],
        "security": [{"ApiKey": []}, {"Bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                                "Bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR, "Job": JOB, "Batch": BATCH},
            "responses": {"Error": _json(_ref("Error"), "an error in the standard envelope")},
        },
    }


@bp.get("/v2/openapi.json")
def openapi_json():
    return jsonify(document(request.host_url.rstrip("/")))
