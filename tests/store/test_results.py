"""``changed`` counts the rows an UPDATE or DELETE changed, on SQLite and PostgreSQL, and refuses a SELECT's result
rather than count it wrong."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select, update

from bot.store import schema
from bot.store.db import Database
from bot.store.models import Replica
from bot.store.results import changed

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database.from_url(database_url)
    schema.upgrade(database.engine)
    yield database
    database.dispose()


def test_counts_the_rows_a_statement_changed(db: Database) -> None:
    with db.transaction() as session:
        session.add_all(Replica(instance=name, started_at=NOW, seen_at=NOW) for name in ("a", "b", "c"))
    with db.transaction() as session:
        later = NOW + timedelta(minutes=1)
        assert changed(session.execute(update(Replica).where(Replica.instance != "c").values(seen_at=later))) == 2
        assert changed(session.execute(update(Replica).where(Replica.instance == "nobody").values(seen_at=later))) == 0
        assert changed(session.execute(delete(Replica).where(Replica.instance == "c"))) == 1


def test_a_select_is_refused_not_counted(db: Database) -> None:
    with db.transaction() as session, pytest.raises(TypeError, match="UPDATE, DELETE or INSERT"):
        changed(session.execute(select(Replica)))
