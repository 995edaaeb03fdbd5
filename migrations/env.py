"""Alembic environment: the URL comes from ``clearcut.db.upgrade`` (or CLEARCUT_DATABASE_URL)."""
from alembic import context

from clearcut import endpoints
from clearcut.db import engine_for
from clearcut.db.models import Base

config = context.config
url = config.attributes.get("url") or endpoints.database_url()

with engine_for(url).begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()
