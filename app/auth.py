"""API key extraction and per-key rate limiting (a fixed one-minute window in Redis)."""
from __future__ import annotations

import logging
import time

from flask import current_app, g, request

from clearcut import accounts, config
from clearcut.errors import ClearcutError

log = logging.getLogger("clearcut.api")
_SCHEMES = ("bearer", "token", "api-key")


def presented_key(json_body: dict | None = None) -> str | None:
    """x-api-key, Authorization: Bearer|Token|Api-Key, then (legacy, logged) query string or JSON body."""
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() in _SCHEMES and value.strip():
        return value.strip()
    legacy = request.args.get("api_key") or (json_body or {}).get("api_key")
    if legacy:
        log.warning("API key sent in the %s (legacy); use the x-api-key header",
                    "query string" if request.args.get("api_key") else "JSON body")
        return str(legacy).strip()
    return None


def authenticate(json_body: dict | None = None):
    """Authenticate the request, count it against the key's rate limit; sets g.key and g.account."""
    ctx = current_app.extensions["clearcut_context"]
    with ctx.db.begin() as session:
        key, account = accounts.authenticate(session, presented_key(json_body))
        accounts.touch(session, key)
    g.key, g.account = key, account
    _rate_limit(key.id)
    return key, account


class RateLimited(ClearcutError):
    status = 429
    code = "rate_limited"
    retryable = True


def _rate_limit(key_id: str) -> None:
    limit = config.get("CLEARCUT_RATE_LIMIT_PER_MINUTE", current_app.config["CLEARCUT_SETTINGS"])
    if limit <= 0:
        return
    window = int(time.time() // 60)
    reset = (window + 1) * 60
    redis = current_app.extensions["clearcut_redis"]()
    bucket = f"clearcut:ratelimit:{key_id}:{window}"
    pipe = redis.pipeline()
    pipe.incr(bucket)
    pipe.expire(bucket, 120)
    count = pipe.execute()[0]
    g.rate_headers = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(max(0, limit - count)),
                      "X-RateLimit-Reset": str(reset)}
    if count > limit:
        retry_after = max(1, reset - int(time.time()))
        raise RateLimited(f"rate limit of {limit} requests per minute exceeded for this key; retry after "
                          f"{retry_after} s", retry_after=retry_after, limit=limit)


def authenticate_secret(secret: str | None):
    """``authenticate`` for a key found elsewhere (a vendor's own header, such as Slazzer's API-KEY)."""
    ctx = current_app.extensions["clearcut_context"]
    with ctx.db.begin() as session:
        key, account = accounts.authenticate(session, secret)
        accounts.touch(session, key)
    g.key, g.account = key, account
    _rate_limit(key.id)
    return key, account
