"""One live request per principal and resource, held by the database itself (revision 0007, bot/domain/live.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from bot.domain.live import live_key
from bot.domain.states import Status
from bot.store import queries, schema
from bot.store.db import Database, make_engine
from bot.store.models import Request
from tests.test_migrations import downgrade, insert

NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def old_row(connection: Any, request_id: int, status: str, principal: str | None, resource: str = "orders-db") -> None:
    insert(
        connection,
        "requests",
        id=request_id,
        uid=f"00000000-0000-0000-0000-{request_id:012d}",
        resource=resource,
        requester_id="U0BOB0001",
        principal=principal,
        reason="INC-1",
        duration_seconds=3600,
        emergency=False,
        status=status,
        created_at="2026-11-21 09:00:00.000000",
        revoke_attempts=0,
    )


def live_keys(engine: Engine) -> dict[int, str | None]:
    with engine.connect() as connection:
        return dict(connection.execute(text("SELECT id, live_key FROM requests ORDER BY id")).all())  # type: ignore[arg-type]


def test_the_migration_keys_only_the_newest_live_request_of_each_principal_and_resource(engine: Engine) -> None:
    schema.upgrade(engine, "0006")
    with engine.begin() as connection:
        old_row(connection, 1, "active", "bob")  # the overlapping pair the bug made: the older one
        old_row(connection, 2, "active", "bob")  # and the newer one
        old_row(connection, 3, "revoke_failed", "bob", resource="payments")
        old_row(connection, 4, "expired", "carol")
        old_row(connection, 5, "pending", None)  # from before revision 0003: no principal, no key
        old_row(connection, 6, "pending", None)
    schema.upgrade(engine, "0007")

    assert live_keys(engine) == {1: None, 2: "orders-db\nbob", 3: "payments\nbob", 4: None, 5: None, 6: None}
    with pytest.raises(IntegrityError), engine.begin() as connection:
        old_row(connection, 7, "pending", "bob")
        connection.execute(text("UPDATE requests SET live_key = :key WHERE id = 7"), {"key": "orders-db\nbob"})

    downgrade(engine, "0006")
    schema.upgrade(engine, "0007")
    assert live_keys(engine)[2] == "orders-db\nbob"


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database.from_url(database_url)
    schema.upgrade(database.engine)
    yield database
    database.dispose()


def store(db: Database, principal: str = "bob", status: Status = Status.PENDING) -> int:
    with db.transaction() as session:
        request = Request(
            uid=str(uuid.uuid4()),
            resource="orders-db",
            requester_id="U0BOB0001",
            principal=principal,
            reason="INC-1",
            duration_seconds=3600,
            status=status.value,
            created_at=NOW,
            live_key=live_key("orders-db", principal),
        )
        session.add(request)
        session.flush()
        return request.id


@pytest.mark.parametrize("final", [Status.CANCELLED, Status.DENIED, Status.TIMED_OUT])
def test_a_second_live_request_is_refused_until_the_first_ends(db: Database, final: Status) -> None:
    first = store(db)
    with pytest.raises(IntegrityError):
        store(db)
    store(db, principal="carol")  # another principal is another key

    with db.transaction() as session:
        assert queries.move(session, first, Status.PENDING, final, decided_at=NOW)
    second = store(db)
    with db.transaction() as session:
        assert queries.live_request(session, "orders-db\nbob").id == second  # type: ignore[union-attr]
        assert queries.get(session, first).live_key is None  # type: ignore[union-attr]


def test_access_being_removed_still_holds_the_key_until_the_revoke_is_confirmed(db: Database) -> None:
    first = store(db, status=Status.ACTIVE)
    with db.transaction() as session:
        assert queries.move(session, first, Status.ACTIVE, Status.REVOKING)
        assert queries.move(session, first, Status.REVOKING, Status.REVOKE_FAILED)
    with pytest.raises(IntegrityError):
        store(db)
    with db.transaction() as session:
        assert queries.move(session, first, Status.REVOKE_FAILED, Status.REVOKING)
        assert queries.move(session, first, Status.REVOKING, Status.REVOKED)
    assert store(db) > first
