"""Revision 0013 splits a review into the holder's account and a sign-off, without reopening what was finished."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from bot.store import schema
from bot.store.db import make_engine
from tests.test_migrations import downgrade, insert, record_a_granted_request


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def reviews(engine: Engine, columns: str) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(f"SELECT {columns} FROM reviews ORDER BY request_id"))]


def test_a_review_done_in_one_step_stays_done_and_its_notes_become_the_account(engine: Engine) -> None:
    schema.upgrade(engine, "0012")
    record_a_granted_request(engine)  # request 1, whose review is still owed
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM reviews"))
        insert(
            connection,
            "reviews",
            request_id=1,
            status="done",
            reminders_sent=2,
            reviewer_id="U0ALICE01",
            notes="rolled back the migration",
            done_at="2026-11-22 09:00:00.000000",
        )

    schema.upgrade(engine)

    [(status, author, account, reviewer, notes, written)] = reviews(
        engine, "status, author_id, account, reviewer_id, notes, written_at"
    )
    assert (status, author, account, reviewer, notes) == (
        "done",
        "U0ALICE01",
        "rolled back the migration",
        "U0ALICE01",
        None,
    )
    assert written is not None


def test_a_downgrade_folds_both_steps_back_into_one(engine: Engine) -> None:
    schema.upgrade(engine)
    record_a_granted_request(engine)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM reviews"))
        insert(
            connection,
            "requests",
            id=2,
            uid="00000000-0000-4000-8000-000000000002",
            resource="orders-db",
            requester_id="U0BOB0001",
            reason="INC-2",
            duration_seconds=600,
            emergency=True,
            status="expired",
            created_at="2026-11-21 09:00:00.000000",
            revoke_attempts=0,
        )
        insert(
            connection,
            "reviews",
            request_id=1,
            status="done",
            reminders_sent=0,
            author_id="U0BOB0001",
            account="what happened",
            written_at="2026-11-22 08:00:00.000000",
            reviewer_id="U0ALICE01",
            notes="agreed",
            done_at="2026-11-22 09:00:00.000000",
        )
        insert(
            connection,
            "reviews",
            request_id=2,
            status="written",
            reminders_sent=1,
            author_id="U0BOB0001",
            account="only written",
            written_at="2026-11-22 08:00:00.000000",
            next_reminder_at="2026-11-23 08:00:00.000000",
        )

    downgrade(engine, "0012")

    assert reviews(engine, "status, reviewer_id, notes, next_reminder_at") == [
        ("done", "U0ALICE01", "what happened / sign-off: agreed", None),
        ("done", "U0BOB0001", "only written", None),
    ]
    schema.upgrade(engine)
    assert reviews(engine, "status, author_id, account") == [
        ("done", "U0ALICE01", "what happened / sign-off: agreed"),
        ("done", "U0BOB0001", "only written"),
    ]
