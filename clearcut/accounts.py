"""Accounts and API keys.

Keys are ``cc_live_<43 url-safe chars>`` (``cc_test_`` for synthetic keys), shown once, stored only as
their sha256 (keys carry 256 random bits, so a slow password hash adds nothing), and identified in
listings and logs by a non-secret fingerprint.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from clearcut.db.models import Account, ApiKey, utcnow
from clearcut.errors import AuthError, NotFound

MODES = ("live", "admin", "synthetic")
PREFIXES = {"live": "cc_live_", "admin": "cc_live_", "synthetic": "cc_test_"}


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def fingerprint_of(secret: str) -> str:
    return "fp_" + hashlib.sha256(b"clearcut-fingerprint:" + secret.encode()).hexdigest()[:16]


def get_or_create_account(session: Session, name: str, email: str | None = None) -> Account:
    account = session.scalar(select(Account).where(Account.name == name))
    if account is None:
        account = Account(name=name, email=email)
        session.add(account)
        session.flush()
    return account


def account_by_name(session: Session, name: str) -> Account:
    account = session.scalar(select(Account).where(Account.name == name))
    if account is None:
        raise NotFound(f"no account named {name!r}", code="account_not_found")
    return account


def create_key(session: Session, account: Account, *, mode: str = "live", label: str | None = None,
               ) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret (the only time the secret exists outside the caller)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    secret = PREFIXES[mode] + secrets.token_urlsafe(32)
    key = ApiKey(account_id=account.id, key_hash=hash_key(secret), fingerprint=fingerprint_of(secret),
                 prefix=PREFIXES[mode], mode=mode, label=label)
    session.add(key)
    session.flush()
    return key, secret


def authenticate(session: Session, secret: str | None) -> tuple[ApiKey, Account]:
    if not secret:
        raise AuthError("an API key is required: send it in the x-api-key header", code="missing_api_key")
    digest = hash_key(secret.strip())
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if key is None or not hmac.compare_digest(key.key_hash, digest):
        raise AuthError("the API key is not valid; check for typos or create a new key",
                        code="invalid_api_key")
    if key.revoked_at is not None:
        raise AuthError("this API key has been revoked; create a new key", code="revoked_api_key", status=403)
    account = session.get(Account, key.account_id)
    if account is None or account.status != "active":
        raise AuthError("the account for this key is not active", code="account_inactive", status=403)
    return key, account


def touch(session: Session, key: ApiKey, now: datetime | None = None) -> None:
    key.last_used_at = now or utcnow()


def find_key(session: Session, ident: str) -> ApiKey:
    """A key by id or fingerprint."""
    key = session.scalar(select(ApiKey).where((ApiKey.id == ident) | (ApiKey.fingerprint == ident)))
    if key is None:
        raise NotFound(f"no API key with id or fingerprint {ident!r}", code="key_not_found")
    return key


def revoke(session: Session, ident: str) -> ApiKey:
    key = find_key(session, ident)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    return key


def list_keys(session: Session, account_name: str | None = None) -> list[tuple[ApiKey, Account]]:
    query = select(ApiKey, Account).join(Account, Account.id == ApiKey.account_id).order_by(ApiKey.created_at)
    if account_name:
        query = query.where(Account.name == account_name)
    return [tuple(row) for row in session.execute(query).all()]
