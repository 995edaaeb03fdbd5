"""``clearcut webhooks rotate-secret --account NAME``: a new signing secret, printed once (last line)."""
from __future__ import annotations


def _rotate(args) -> int:
    from clearcut import accounts, endpoints, webhooks
    from clearcut.db import sessionmaker_for

    with sessionmaker_for(endpoints.database_url()).begin() as session:
        account = accounts.account_by_name(session, args.account)
        secret = webhooks.rotate_secret(session, account.id)
        signing = len(webhooks.signing_secrets(session, account.id))
    print(f"new webhook secret for account {account.name} (shown once; store it now); "
          f"{signing} secret(s) sign messages during the overlap")
    print(secret)
    return 0


def register(sub) -> None:
    hooks = sub.add_parser("webhooks", help="webhook signing secrets").add_subparsers(dest="webhooks_command",
                                                                                     required=True)
    rotate = hooks.add_parser("rotate-secret", help="create a new signing secret (the old one keeps signing "
                              "for CLEARCUT_WEBHOOK_SECRET_OVERLAP_H); prints it last")
    rotate.add_argument("--account", required=True)
    rotate.set_defaults(func=_rotate)
