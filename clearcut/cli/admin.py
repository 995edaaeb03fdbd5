"""``clearcut db|accounts|keys``: schema migrations and account/key management."""
from __future__ import annotations

import json


def _db():
    from clearcut import endpoints
    from clearcut.db import sessionmaker_for

    return sessionmaker_for(endpoints.database_url())


def _upgrade(args) -> int:
    from clearcut import endpoints
    from clearcut.db import upgrade

    url = endpoints.database_url()
    upgrade(url)
    print(f"database at revision head ({url.split('@')[-1]})")
    return 0


def _accounts_create(args) -> int:
    from clearcut import accounts

    with _db().begin() as session:
        account = accounts.get_or_create_account(session, args.name, args.email)
        print(account.id)
    return 0


def _keys_create(args) -> int:
    """Prints the new key alone on the last stdout line so scripts can capture it with ``tail -1``."""
    from clearcut import accounts

    with _db().begin() as session:
        account = accounts.get_or_create_account(session, args.account)
        key, secret = accounts.create_key(session, account, mode=args.mode, label=args.label)
        print(f"created {key.mode} key {key.fingerprint} for account {account.name} (shown once; store it now)")
    print(secret)
    return 0


def _keys_list(args) -> int:
    from clearcut import accounts

    with _db()() as session:
        rows = accounts.list_keys(session, args.account)
        listing = [{"id": k.id, "fingerprint": k.fingerprint, "account": a.name, "mode": k.mode, "label": k.label,
                    "created_at": k.created_at.isoformat(),
                    "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
                    "last_used_at": k.last_used_at.isoformat() if k.last_used_at else None} for k, a in rows]
    if args.json:
        print(json.dumps(listing, indent=2))
    else:
        for row in listing:
            state = "revoked" if row["revoked_at"] else "active"
            print(f"{row['fingerprint']}  {row['account']:20} {row['mode']:9} {state:8} {row['label'] or ''}")
    return 0


def _keys_revoke(args) -> int:
    from clearcut import accounts

    with _db().begin() as session:
        key = accounts.revoke(session, args.key)
        print(f"revoked {key.fingerprint}")
    return 0


def register(sub) -> None:
    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="apply migrations (CLEARCUT_DATABASE_URL)").set_defaults(func=_upgrade)

    acc = sub.add_parser("accounts", help="manage accounts").add_subparsers(dest="accounts_command", required=True)
    create = acc.add_parser("create", help="create an account (no-op if it exists)")
    create.add_argument("name")
    create.add_argument("--email")
    create.set_defaults(func=_accounts_create)

    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="keys_command", required=True)
    kc = keys.add_parser("create", help="create a key (and the account if needed); prints the key last")
    kc.add_argument("--account", required=True)
    kc.add_argument("--mode", default="live", choices=["live", "admin", "synthetic"])
    kc.add_argument("--label")
    kc.set_defaults(func=_keys_create)
    kl = keys.add_parser("list", help="list keys (fingerprints only)")
    kl.add_argument("--account")
    kl.add_argument("--json", action="store_true")
    kl.set_defaults(func=_keys_list)
    kr = keys.add_parser("revoke", help="revoke a key by id or fingerprint")
    kr.add_argument("key")
    kr.set_defaults(func=_keys_revoke)
