"""The handles a domain operation needs (database sessions and object storage), built once per process.

Flask and Celery each build one ``Context`` at start-up and pass it down; domain functions never reach
for globals, so tests can point them at any database or bucket.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from sqlalchemy.orm import Session, sessionmaker

from clearcut.storage import Storage


@dataclass
class Context:
    db: sessionmaker[Session]
    storage: Storage
    database_url: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Context":
        from clearcut import endpoints, storage
        from clearcut.db import sessionmaker_for

        url = endpoints.database_url(environ)
        return cls(db=sessionmaker_for(url), storage=storage.from_settings(environ), database_url=url)
