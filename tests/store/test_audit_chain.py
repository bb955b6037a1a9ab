"""Sealing audit events into the hash chain as transactions commit, and checking the chain: on SQLite and
PostgreSQL, with replicas appending at once, across a key rotation, and against a head that was tampered with."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from bot.store import audit, schema
from bot.store.chain import GENESIS, HEAD_ALTERED, UNKEYED, AuditSeal, ChainError, check_head, key_id_of
from bot.store.db import Database
from bot.store.models import AuditEvent, Request
from bot.store.verify import Verdict, parse_checkpoint, verify
from tests.store.chain_tools import START, append, chained, edit, head, remove, set_head, simple
from tests.store.conftest import KEY, OLD_KEY


def checked(db: Database, seal: AuditSeal | None = None, expect: tuple[int, str] | None = None) -> Verdict:
    return verify(db.engine, seal or db.seal, expect, batch=3)  # small batches: the paging is exercised too


def test_events_are_chained_gaplessly_in_the_order_they_were_recorded(db: Database) -> None:
    append(db, *simple(3))
    append(db, *simple(2, START + timedelta(hours=1)))

    rows = chained(db.engine)
    assert [row.seq for row in rows] == [1, 2, 3, 4, 5]
    assert [row.detail["n"] for row in rows] == [0, 1, 2, 0, 1]
    assert [row.prev_hash for row in rows] == [GENESIS, *(row.hash for row in rows[:-1])]
    assert {row.key_id for row in rows} == {key_id_of(KEY)}
    assert (head(db.engine).seq, head(db.engine).hash) == (5, rows[-1].hash)
    verdict = checked(db)
    assert verdict.ok
    assert verdict.line() == f"OK: 5 events, seq 1..5 intact; head 5:{rows[-1].hash}"


def test_an_empty_chain_verifies(db: Database) -> None:
    assert checked(db).line() == f"OK: 0 events, nothing sealed yet; head 0:{GENESIS}"


def test_events_flushed_early_by_a_query_are_sealed_too_in_recorded_order(db: Database) -> None:
    with db.transaction() as session:
        audit.record(session, "first", at=START)
        assert session.scalar(select(AuditEvent.action).where(AuditEvent.action == "first")) == "first"  # autoflush
        audit.record(session, "second", at=START)
        session.add(AuditEvent(at=START, actor="someone", action="added_directly"))

    assert [(row.seq, row.action) for row in chained(db.engine)] == [(1, "first"), (2, "second"), (3, "added_directly")]
    assert checked(db).ok


def test_events_in_a_savepoint_are_sealed_with_the_transaction_and_only_if_it_keeps_them(db: Database) -> None:
    with db.transaction() as session:
        with session.begin_nested():
            audit.record(session, "kept", at=START)
        with pytest.raises(RuntimeError), session.begin_nested():
            audit.record(session, "dropped", at=START)
            raise RuntimeError("rolled back to the savepoint")
        audit.record(session, "after", at=START)

    assert [(row.seq, row.action) for row in chained(db.engine)] == [(1, "kept"), (2, "after")]
    assert checked(db).ok


def test_a_rolled_back_transaction_leaves_no_gap(db: Database) -> None:
    append(db, *simple(1))
    with pytest.raises(RuntimeError), db.transaction() as session:
        audit.record(session, "granted", at=START)
        raise RuntimeError("the change failed")
    append(db, *simple(1))

    assert [row.seq for row in chained(db.engine)] == [1, 2]
    assert checked(db).ok


def test_the_change_and_its_event_commit_together(db: Database) -> None:
    with db.transaction() as session:
        session.add(
            Request(
                uid="u-1",
                resource="orders-db",
                requester_id="U0BOB",
                reason="INC-1",
                duration_seconds=60,
                status="pending",
                created_at=START,
            )
        )
        session.flush()
        audit.record(session, "requested", at=START, request_id=1, resource="orders-db")
    with db.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM requests")).scalar_one() == 1
    assert [row.request_id for row in chained(db.engine)] == [1]


def test_detail_is_stored_exactly_as_it_was_hashed(db: Database) -> None:
    append(db, {"action": "odd", "at": START, "pair": (1, 2), "by_number": {7: "seven"}, "nothing": None})

    [row] = chained(db.engine)
    assert row.detail == {"pair": [1, 2], "by_number": {"7": "seven"}}
    assert checked(db).ok


def test_times_in_other_zones_are_sealed_as_utc(db: Database) -> None:
    from datetime import timezone

    append(db, {"action": "granted", "at": START.astimezone(timezone(timedelta(hours=-7, minutes=-30)))})

    assert chained(db.engine)[0].at == START
    assert checked(db).ok


@pytest.mark.parametrize("replicas", [1, 3], ids=["one-engine", "three-replicas"])
def test_concurrent_appends_keep_the_chain_gapless(database_url: str, seal: AuditSeal, replicas: int) -> None:
    """Threads appending at once through one engine, or through separate engines as separate replicas would."""
    databases = [Database.from_url(database_url, seal) for _ in range(replicas)]
    schema.upgrade(databases[0].engine)
    threads, rounds = 6, 15
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        database = databases[worker % replicas]
        start.wait()
        try:
            for n in range(rounds):
                with database.transaction() as session:
                    session.execute(select(AuditEvent.id).limit(1)).all()  # a read before the write, as handlers do
                    for part in range(1 + n % 2):
                        audit.record(session, "granted", at=START, actor=f"W{worker}", n=n, part=part)
        except BaseException as error:  # surfaced below: a thread's failure must fail the test
            errors.append(error)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    try:
        assert errors == []
        expected = threads * sum(1 + n % 2 for n in range(rounds))
        rows = chained(databases[0].engine)
        assert [row.seq for row in rows] == list(range(1, expected + 1))
        with databases[0].engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM audit_events")).scalar_one() == expected
        for worker in range(threads):  # each worker's events in its own order
            mine = [(row.detail["n"], row.detail["part"]) for row in rows if row.actor == f"W{worker}"]
            assert mine == sorted(mine)
        assert checked(databases[0]).ok
    finally:
        for database in databases:
            database.dispose()


def test_events_sealed_with_a_retired_key_verify_while_it_is_listed(database_url: str) -> None:
    old = Database.from_url(database_url, AuditSeal(OLD_KEY))
    schema.upgrade(old.engine)
    append(old, *simple(2))
    old.dispose()
    rotated = Database.from_url(database_url, AuditSeal(KEY, [OLD_KEY]))
    append(rotated, *simple(2))

    rows = chained(rotated.engine)
    assert [row.key_id for row in rows] == [key_id_of(OLD_KEY)] * 2 + [key_id_of(KEY)] * 2
    assert checked(rotated).ok

    forgotten = checked(rotated, AuditSeal(KEY))
    assert forgotten.broken is not None
    assert (forgotten.broken.kind, forgotten.broken.seq) == ("unknown_key", 1)
    assert key_id_of(OLD_KEY) in forgotten.line()
    assert "BREAKGLASS_AUDIT_PREVIOUS_KEYS" in forgotten.line()
    rotated.dispose()


def test_a_seal_without_the_heads_key_refuses_to_extend_the_chain(database_url: str) -> None:
    first = Database.from_url(database_url, AuditSeal(OLD_KEY))
    schema.upgrade(first.engine)
    append(first, *simple(1))
    first.dispose()
    wrong = Database.from_url(database_url, AuditSeal(KEY))

    with pytest.raises(ChainError, match=key_id_of(OLD_KEY)):
        check_head(wrong.engine, wrong.seal)
    with pytest.raises(ChainError, match="BREAKGLASS_AUDIT_PREVIOUS_KEYS"):
        append(wrong, *simple(1))
    assert len(chained(wrong.engine)) == 1  # the refused transaction left nothing behind
    wrong.dispose()


def test_an_append_onto_a_tampered_head_records_what_it_found_instead_of_resealing_it(db: Database) -> None:
    """Deleting the newest events and moving the head back must not be hidden by the next append; nor may the
    bot stop writing its trail (and revoking access) because of it."""
    append(db, *simple(3))
    kept = chained(db.engine)[1]
    remove(db.engine, 3)
    set_head(db.engine, seq=2, hash=kept.hash)  # without the key, the MAC cannot follow

    append(db, *simple(1, START + timedelta(days=1)))

    rows = chained(db.engine)
    assert [(row.seq, row.action) for row in rows] == [
        (1, "granted"),
        (2, "granted"),
        (3, HEAD_ALTERED),
        (4, "granted"),
    ]
    assert rows[2].detail == {
        "why": "the head row failed its MAC check", "head_seq": 2, "head_hash": kept.hash, "tail_seq": 2,
        "tail_hash": kept.hash,
    }  # fmt: skip
    verdict = checked(db)
    assert verdict.broken is not None
    assert (verdict.broken.kind, verdict.broken.seq, verdict.broken.id) == ("head", 3, rows[2].id)
    assert "the bot found the head altered: the head row failed its MAC check" in verdict.line()


@pytest.mark.parametrize(
    ("tampering", "kind"),
    [
        ({"seq": 2}, "head"),  # MAC no longer matches
        ({"mac": None}, "head"),
        ({"mac": "0" * 64}, "head"),
        ({"seq": 0, "hash": GENESIS, "key_id": None, "mac": None}, "head"),  # reset to look never sealed
        ({"key_id": "0123456789abcdef"}, "unknown_key"),
    ],
)
def test_a_tampered_head_fails_verify(db: Database, tampering: dict[str, object], kind: str) -> None:
    append(db, *simple(3))
    set_head(db.engine, **tampering)

    verdict = checked(db)
    assert verdict.broken is not None
    assert verdict.broken.kind == kind
    assert verdict.line().startswith("BROKEN")


@pytest.mark.parametrize(
    ("tampering", "why"),
    [
        ("DELETE FROM audit_chain_head", "the head row was missing"),
        (f"UPDATE audit_chain_head SET seq = 0, hash = '{GENESIS}', key_id = NULL, mac = NULL", "reset"),
        ("UPDATE audit_chain_head SET mac = NULL", "lost its MAC"),
    ],
)
def test_a_deleted_or_reset_head_fails_verify_and_is_recorded_by_the_next_append(
    db: Database, tampering: str, why: str
) -> None:
    append(db, *simple(2))
    with db.engine.begin() as connection:
        connection.exec_driver_sql(tampering)

    verdict = checked(db)
    assert verdict.broken is not None and verdict.broken.kind == "head"
    append(db, *simple(1, START + timedelta(days=1)))
    rows = chained(db.engine)
    assert [row.action for row in rows] == ["granted", "granted", HEAD_ALTERED, "granted"]
    assert why in rows[2].detail["why"]
    verdict = checked(db)
    assert verdict.broken is not None
    assert (verdict.broken.kind, verdict.broken.seq) == ("head", 3)
    assert head(db.engine).seq == 4


def test_a_restored_old_head_is_caught_only_by_a_checkpoint(db: Database) -> None:
    """The limit of a head kept in the database: someone who saved the head row can put it back after deleting
    the newest events. A head printed by an earlier verify and kept elsewhere catches it."""
    append(db, *simple(2))
    saved = head(db.engine)
    append(db, *simple(2))
    checkpoint = parse_checkpoint(checked(db).line().rsplit(" ", 1)[1])
    assert checkpoint[0] == 4

    for seq in (3, 4):
        remove(db.engine, seq)
    set_head(db.engine, seq=saved.seq, hash=saved.hash, key_id=saved.key_id, mac=saved.mac)

    assert checked(db).ok  # indistinguishable from a chain of two, without the checkpoint
    verdict = checked(db, expect=checkpoint)
    assert verdict.broken is not None
    assert (verdict.broken.kind, verdict.broken.seq) == ("checkpoint", 4)

    append(db, *simple(2, START + timedelta(days=1)))  # new events take seq 3 and 4: the checkpoint tells them apart
    verdict = checked(db, expect=checkpoint)
    assert verdict.broken is not None
    assert (verdict.broken.kind, verdict.broken.seq) == ("checkpoint", 4)


def test_a_wiped_trail_with_a_reset_head_is_caught_by_a_checkpoint(db: Database) -> None:
    append(db, *simple(3))
    checkpoint = (3, chained(db.engine)[-1].hash)
    with db.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_events"))
    set_head(db.engine, seq=0, hash=GENESIS, key_id=None, mac=None)  # as migration 0004 left it

    assert checked(db).ok  # an empty trail, as on the first day
    verdict = checked(db, expect=checkpoint)
    assert verdict.broken is not None
    assert (verdict.broken.kind, verdict.broken.seq) == ("checkpoint", 3)


def test_a_checkpoint_the_chain_still_holds_verifies(db: Database) -> None:
    append(db, *simple(2))
    checkpoint = (2, chained(db.engine)[1].hash)
    append(db, *simple(2))

    assert checked(db, expect=checkpoint).ok


def test_a_database_without_a_key_chains_with_plain_sha256_and_says_it_proves_nothing(database_url: str) -> None:
    plain = Database.from_url(database_url)
    schema.upgrade(plain.engine)
    append(plain, *simple(2))

    assert {row.key_id for row in chained(plain.engine)} == {UNKEYED}
    verdict = checked(plain)
    assert verdict.ok and not verdict.keyed
    assert verdict.line().startswith("UNKEYED OK: 2 events")
    assert "proves nothing" in verdict.line()

    keyed = checked(plain, AuditSeal(KEY))  # what `breakglass audit verify` would say: it always has a key
    assert keyed.broken is not None
    assert (keyed.broken.kind, keyed.broken.seq) == ("unknown_key", 1)
    assert "sealed without a key" in keyed.line()
    plain.dispose()


def test_an_event_written_around_the_bot_is_reported_as_outside_the_chain(db: Database) -> None:
    append(db, *simple(2))
    with db.engine.begin() as connection:
        connection.execute(
            text("INSERT INTO audit_events (at, actor, action, detail) VALUES (:at, 'U0X', 'approved', '{}')"),
            {"at": START.replace(tzinfo=None)},
        )
        forged = connection.execute(text("SELECT max(id) FROM audit_events")).scalar_one()

    verdict = checked(db)
    assert verdict.broken is not None
    assert (verdict.broken.kind, verdict.broken.seq, verdict.broken.id) == ("unchained", None, forged)


def test_edits_that_leave_the_meaning_unchanged_are_not_reported(db: Database) -> None:
    """The hash covers what the event says, not how the database spells its JSON."""
    append(db, {"action": "granted", "at": START, "b": 1, "a": [1, 2]})
    with db.engine.begin() as connection:
        connection.exec_driver_sql("""UPDATE audit_events SET detail = '{ "a" : [1,2], "b":1 }'""")

    assert checked(db).ok
    edit(db.engine, 1, detail={"a": [1, 2], "b": 2})
    assert not checked(db).ok


def test_the_seal_never_shows_a_key() -> None:
    seal = AuditSeal(KEY, [OLD_KEY])
    assert KEY not in repr(seal) and OLD_KEY not in repr(seal)
    assert key_id_of(KEY) in repr(seal)
    assert len(key_id_of(KEY)) == 16 and key_id_of(KEY) != key_id_of(OLD_KEY)
