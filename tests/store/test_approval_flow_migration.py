"""Revision 0014 gives pending requests the lapse time they were made under, and its downgrade keeps every request."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from bot.clock import as_utc
from bot.store import schema
from bot.store.db import make_engine
from tests.test_migrations import downgrade, insert, record_a_granted_request


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def pending_request(connection: object, request_id: int, created_at: str) -> None:
    insert(
        connection,  # type: ignore[arg-type]
        "requests",
        id=request_id,
        uid=f"00000000-0000-4000-8000-00000000000{request_id}",
        resource="orders-db",
        requester_id="U0DAVE0001",
        reason="INC-9",
        duration_seconds=600,
        emergency=False,
        status="pending",
        created_at=created_at,
        revoke_attempts=0,
    )


def test_a_request_pending_across_the_upgrade_lapses_when_it_always_would(engine: Engine) -> None:
    schema.upgrade(engine, "0013")
    record_a_granted_request(engine)  # request 1: granted, so it has no lapse time
    with engine.begin() as connection:
        pending_request(connection, 2, "2026-11-21 09:00:00.000000")

    schema.upgrade(engine)

    with engine.connect() as connection:
        rows = dict(connection.execute(text("SELECT id, lapses_at FROM requests ORDER BY id")).all())
    assert rows[1] is None
    lapses = rows[2] if isinstance(rows[2], datetime) else datetime.fromisoformat(str(rows[2]))
    assert as_utc(lapses) == as_utc(datetime(2026, 11, 21, 9)) + timedelta(hours=24)


def test_a_downgrade_keeps_requests_and_drops_only_extension_approvals(engine: Engine) -> None:
    schema.upgrade(engine)
    record_a_granted_request(engine)  # request 1, approved by U0ALICE01 in round 0
    with engine.begin() as connection:
        insert(
            connection,
            "decisions",
            id=2,
            request_id=1,
            approver_id="U0ALICE01",
            approve=True,
            at="2026-11-21 10:00:00.000000",
            step=0,
            round=1,
            comment="thirty more minutes",
        )

    downgrade(engine, "0013")

    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM requests")).scalar() == 1
        decided = connection.execute(text("SELECT approver_id FROM decisions")).all()
    assert [tuple(row) for row in decided] == [("U0ALICE01",)]  # the request's own approval stays
    schema.upgrade(engine)  # and back up again
