"""`breakglass audit verify` vouches for the captured activity too, on SQLite and PostgreSQL: an untouched record
verifies; a kept row changed, deleted, inserted inside a batch, or kept outside every batch (no event vouches for it)
fails, naming the event and the request."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, update

from bot.store import audit
from bot.store.activity import batch_hash, row_data
from bot.store.db import Database
from bot.store.models import ActivityRecord, AuditEvent, Request
from bot.store.verify import Verdict, verify
from bot.store.verify_activity import check
from tests.store.chain_tools import START, change

ROWS = ActivityRecord.__table__


def checked(db: Database) -> Verdict:
    return verify(db.engine, db.seal, batch=2)  # small batches: the paging over requests and events is exercised


def ask(db: Database, n: int) -> int:
    with db.transaction() as session:
        request = Request(
            uid=f"u-{n}",
            resource="orders-db",
            requester_id="U0BOB",
            reason=f"INC-{n}",
            duration_seconds=600,
            status="active",
            created_at=START,
        )
        session.add(request)
        session.flush()
        return request.id


def keep(db: Database, request_id: int, ids: list[int], cap_reached: bool = False) -> None:
    """One batch kept the way the reader keeps it: the rows and an event chaining their hash, in one transaction.
    Ids are given, as a shared sequence hands them out (another request's batch may take the ids between)."""
    at = START + timedelta(minutes=ids[0] if ids else 0)
    with db.transaction() as session:
        request = session.get(Request, request_id)
        assert request is not None
        rows = [
            ActivityRecord(
                id=row_id,
                request_id=request_id,
                at=at + timedelta(seconds=i),
                principal="bg_bob",
                action=f"UPDATE orders SET state = 'x' WHERE id = {row_id}",
                detail={"pid": 40 + i},
                flagged="UPDATE" if i == 0 else None,
                captured_at=at + timedelta(seconds=5),
            )
            for i, row_id in enumerate([] if cap_reached else ids)
        ]
        session.add_all(rows)
        session.flush()
        audit.record(
            session,
            "activity_captured",
            at=at + timedelta(seconds=5),
            request=request,
            count=len(ids),
            kept=len(rows),
            first_id=rows[0].id if rows else None,
            last_id=rows[-1].id if rows else None,
            sha256=batch_hash(row_data(row) for row in rows) if rows else None,
        )


def seq_of(db: Database, request_id: int, first_id: int) -> int:
    with db.engine.connect() as connection:
        events = connection.execute(
            select(AuditEvent.seq, AuditEvent.detail).where(
                AuditEvent.action == "activity_captured", AuditEvent.request_id == request_id
            )
        )
        return next(seq for seq, detail in events if detail.get("first_id") == first_id)


@pytest.fixture
def record(db: Database) -> tuple[int, int]:
    """Two requests whose batches interleave in id order, one batch past the cap, and events of other kinds."""
    a, b = ask(db, 1), ask(db, 2)
    with db.transaction() as session:  # events that vouch for no row: not about activity, or nothing kept
        audit.record(session, "granted", at=START, request_id=a, resource="orders-db")
        audit.record(session, "activity_captured", at=START, request_id=a, resource="orders-db", count=0, kept=0)
    keep(db, a, [1, 2, 4])  # 3 went to b's batch meanwhile
    keep(db, b, [3])
    keep(db, a, [6, 7])  # 5 was taken by a transaction that rolled back
    keep(db, b, [8, 9, 10])
    keep(db, b, [11], cap_reached=True)
    return a, b


def test_an_untouched_record_verifies_and_says_how_many_batches_it_checked(db: Database, record: Any) -> None:
    verdict = checked(db)
    assert verdict.ok, verdict.line()
    assert verdict.activity == 4
    assert verdict.line().endswith("; 4 batches of captured activity match their hashes")


def test_a_chain_without_any_captured_activity_verifies_as_before(db: Database) -> None:
    a = ask(db, 1)
    with db.transaction() as session:
        audit.record(session, "activity_captured", at=START, request_id=a, resource="orders-db", count=3, kept=0)
    verdict = checked(db)
    assert verdict.ok and verdict.activity == 0
    assert "captured activity" not in verdict.line()


@pytest.mark.parametrize(
    "field,value",
    [
        ("action", "SELECT 1"),
        ("principal", "bg_mallory"),
        ("detail", {"pid": 1}),
        ("flagged", None),
        ("at", START + timedelta(days=1)),
    ],
)
def test_a_changed_row_is_caught_naming_its_event_and_request(
    db: Database, record: tuple[int, int], field: str, value: Any
) -> None:
    a, _ = record
    change(db.engine, update(ROWS).where(ROWS.c.id == 1).values({field: value}))
    verdict = checked(db)
    assert verdict.broken is not None
    assert (verdict.broken.kind, verdict.broken.seq) == ("activity", seq_of(db, a, 1))
    assert f"request #{a}'s activity rows 1..4" in verdict.line()
    assert verdict.line().endswith("edited")


def test_a_deleted_row_is_caught(db: Database, record: tuple[int, int]) -> None:
    _, b = record
    change(db.engine, delete(ROWS).where(ROWS.c.id == 9))
    verdict = checked(db)
    assert verdict.broken is not None and verdict.broken.seq == seq_of(db, b, 8)
    assert verdict.line().endswith(
        f"request #{b}'s activity rows 8..10 no longer match this event's sha256: 1 of its 3 rows are gone: deleted"
    )


def test_a_row_inserted_inside_a_batch_is_caught(db: Database, record: tuple[int, int]) -> None:
    a, _ = record
    change(db.engine, update(ROWS).where(ROWS.c.id == 3).values(request_id=a))  # b's row moved into a's batch
    verdict = checked(db)
    assert verdict.broken is not None and verdict.broken.seq == seq_of(db, a, 1)
    assert verdict.line().endswith("4 rows where it kept 3: inserted")


def forge(db: Database, row_id: int, request_id: int) -> None:
    values = {"id": row_id, "request_id": request_id, "at": START, "principal": "x", "action": "y"}
    change(db.engine, insert(ROWS).values(captured_at=START, **values))


@pytest.mark.parametrize("row_id,which", [(0, 1), (5, 0), (12, 1)], ids=["before", "between", "after"])
def test_a_row_outside_every_batch_of_its_request_is_caught(
    db: Database, record: tuple[int, int], row_id: int, which: int
) -> None:
    request_id = record[which]
    forge(db, row_id, request_id)
    verdict = checked(db)
    assert verdict.broken is not None and verdict.broken.kind == "activity"
    assert verdict.line() == (
        f"BROKEN: activity: activity row {row_id} of request #{request_id}: "
        "vouched for by no activity_captured event: inserted"
    )


def test_rows_moved_to_another_request_are_caught(db: Database, record: tuple[int, int]) -> None:
    a, _ = record
    change(db.engine, update(ROWS).where(ROWS.c.id.in_([8, 9, 10])).values(request_id=a))
    verdict = checked(db)
    assert verdict.line().endswith(
        f"3 activity rows from id 8 of request #{a}: vouched for by no activity_captured event: inserted"
    )


def test_rows_of_a_request_no_event_names_are_caught(db: Database, record: tuple[int, int]) -> None:
    c = ask(db, 3)
    forge(db, 20, c)
    verdict = checked(db)
    assert verdict.line().endswith(
        f"activity row 20 of request #{c}: vouched for by no activity_captured event: inserted"
    )


def test_rows_kept_after_the_checked_events_are_left_to_the_event_that_vouches_for_them(
    db: Database, record: tuple[int, int]
) -> None:
    """A batch kept while verify runs: its rows are seen, its event is past the seq verify checked up to."""
    _, b = record
    newest = seq_of(db, b, 8)
    with db.engine.connect() as connection:
        assert check(connection, upto=newest - 1, batch=2) == (3, None)
        change(db.engine, delete(AuditEvent.__table__).where(AuditEvent.seq == newest + 1))  # b's cap-reached event
        change(db.engine, delete(AuditEvent.__table__).where(AuditEvent.seq == newest))
        matched, broken = check(connection, upto=newest - 1, batch=2)
    assert matched == 3
    assert broken is not None and broken.message.startswith(f"3 activity rows from id 8 of request #{b}")
