"""Creating and upgrading the schema, always through the Alembic migrations."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    # No URL goes into the config: migrations run on the connection handed over, so a password never sits in
    # Alembic's config (whose parser would also choke on the '%' of an encoded password).
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


# Replicas starting together would otherwise race to create the same tables.
MIGRATION_LOCK = 0x42726B476C  # any constant that is ours: "BrkGl"


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
