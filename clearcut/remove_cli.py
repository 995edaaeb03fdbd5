"""``clearcut remove``: batch cutouts of files, folders and stdin (filled in below)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("remove", help="remove backgrounds from files, folders or stdin")
    p.set_defaults(func=lambda args: 0)
