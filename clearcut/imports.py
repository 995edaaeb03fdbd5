"""The account's import area in the bucket: ``imports/{account}/…`` (``CLEARCUT_S3_INPUT_PREFIXES``), where
an account's own photos are dropped by its tooling. Listing it (``GET /v2/imports``) is confined to the
caller's prefixes, as reading it through ``s3_key`` is (``clearcut.jobs.batches.check_key``)."""
from __future__ import annotations

import base64
import json

from clearcut.context import Context
from clearcut.errors import ClearcutError
from clearcut.jobs.batches import allowed_prefixes, is_relative_key
from clearcut.storage import StoredObject

SETTING = "CLEARCUT_S3_INPUT_PREFIXES"


def prefixes(ctx: Context, account_id: str) -> list[str]:
    return allowed_prefixes(ctx.setting(SETTING), account_id)


def check_prefix(ctx: Context, prefix, account_id: str) -> str:
    """``prefix`` (default: the account's first import prefix) if it lies within one of the account's
    import prefixes; 400 ``invalid_import_prefix`` when malformed, 403 ``import_prefix_not_allowed``."""
    allowed = prefixes(ctx, account_id)
    if prefix in (None, ""):
        if not allowed:
            raise ClearcutError(f"no import prefix is configured for this account (see {SETTING})",
                                code="import_prefix_not_allowed", status=403, allowed_prefixes=[])
        return allowed[0]
    if not is_relative_key(prefix):
        raise ClearcutError("prefix must be a relative key prefix such as imports/<account id>/catalog/, "
                            "without '..' or a leading '/'", code="invalid_import_prefix", status=400)
    if not any(prefix.startswith(p) for p in allowed):
        raise ClearcutError(f"prefix {prefix!r} is outside this account's import area; it must start with "
                            f"{' or '.join(allowed) or 'a prefix of ' + SETTING}", code="import_prefix_not_allowed",
                            status=403, allowed_prefixes=allowed)
    return prefix


def encode_cursor(prefix: str, last_key: str) -> str:
    raw = json.dumps([prefix, last_key]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, prefix: str) -> str:
    """The key a page starts after; the cursor must come from a listing of the same prefix."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        listed, last_key = json.loads(raw)
    except (ValueError, TypeError, UnicodeDecodeError):
        listed = last_key = None
    if listed != prefix or not isinstance(last_key, str) or not last_key.startswith(prefix):
        raise ClearcutError("cursor is not valid for this prefix; pass the next_cursor of the previous page "
                            "unchanged, with the same prefix", code="invalid_cursor", status=400)
    return last_key


def view(obj: StoredObject, prefix: str) -> dict:
    return {"object": "import", "key": obj.key, "relative_key": obj.key[len(prefix):], "size": obj.size,
            "etag": obj.etag, "last_modified": obj.last_modified.isoformat() if obj.last_modified else None}


def list_page(ctx: Context, account_id: str, prefix, *, cursor: str | None = None, limit: int = 1000) -> dict:
    """One page of the objects under ``prefix`` (nested keys included, in key order)."""
    prefix = check_prefix(ctx, prefix, account_id)
    start_after = decode_cursor(cursor, prefix) if cursor else None
    found, more = ctx.storage.list(prefix, start_after=start_after, limit=limit)
    return {"object": "list", "prefix": prefix, "data": [view(o, prefix) for o in found], "has_more": more,
            "next_cursor": encode_cursor(prefix, found[-1].key) if more and found else None}
