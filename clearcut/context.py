"""What a domain operation needs (database sessions, object storage and settings), built once per process.

Flask and Celery each build one ``Context`` at start-up and pass it down; domain functions never reach
for globals, so tests can point them at any database or bucket. Domain code reads its
settings through ``ctx.setting(name)``: from ``environ`` when the context holds one, else from the
process environment at the time of the call (``from_env`` leaves it unset, so a changed variable
takes effect without a rebuild).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from sqlalchemy.orm import Session, sessionmaker

from clearcut import config
from clearcut.storage import Storage


@dataclass
class Context:
    db: sessionmaker[Session]
    storage: Storage
    database_url: str
    environ: Mapping[str, str] | None = None

    def setting(self, env: str):
        """The parsed value of the declared setting ``env`` (``clearcut.config.SETTINGS``)."""
        return config.get(env, self.environ)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Context":
        from clearcut import endpoints, storage
        from clearcut.db import sessionmaker_for

        url = endpoints.database_url(environ)
        return cls(db=sessionmaker_for(url), storage=storage.from_settings(environ), database_url=url)
