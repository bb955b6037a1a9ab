"""Alembic environment. Runs on the connection the caller hands over (bot.store.schema), or on a URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from bot.store.models import Base

config = context.config
target_metadata = Base.metadata


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `breakglass db upgrade`, which hands Alembic a connection")
run(connection)
