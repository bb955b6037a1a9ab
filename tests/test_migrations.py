"""Schema changes go through the Alembic migrations: from an empty database, from the previous revision, down and up
again, on SQLite and PostgreSQL. The migrations must build exactly the tables the models describe."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, select, text

from bot.store import audit, schema
from bot.store.chain import ADOPTED, GENESIS, AuditSeal
from bot.store.db import Database, make_engine
from bot.store.models import AuditEvent, Base
from bot.store.verify import verify

TABLES = ("requests", "decisions", "reviews", "audit_events")
CLAIM_INDEXES = {"ix_requests_status_lease_until": ["status", "lease_until"], "ix_requests_claimed_by": ["claimed_by"]}


def migration_scripts() -> list[Script]:
    """Every migration, oldest first."""
    return list(reversed(list(ScriptDirectory.from_config(schema.alembic_config()).walk_revisions())))


REVISIONS = [script.revision for script in migration_scripts()]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def downgrade(engine: Engine, revision: str) -> None:
    """The counterpart of schema.upgrade: Alembic runs on the connection handed over, never on a URL."""
    config = schema.alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def schema_diff(engine: Engine) -> list[Any]:
    """What autogenerate would still have to do to make the database match the models."""
    with engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)


def layout(engine: Engine) -> dict[str, Any]:
    """Tables, their columns and their indexes, as the database reports them."""
    inspector = inspect(engine)
    return {
        table: (
            [column["name"] for column in inspector.get_columns(table)],
            sorted((index["name"], index["column_names"], index["unique"]) for index in inspector.get_indexes(table)),
        )
        for table in inspector.get_table_names()
    }


def request_indexes(engine: Engine) -> dict[str, list[str]]:
    return {index["name"]: index["column_names"] for index in inspect(engine).get_indexes("requests")}


def insert(connection: Connection, table: str, **values: Any) -> None:
    """Plain SQL, so that rows are stored as the old revision stores them, whatever the models say today."""
    columns = ", ".join(values)
    placeholders = ", ".join(f":{column}" for column in values)
    connection.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})"), values)


def record_a_granted_request(engine: Engine) -> None:
    """A granted request with its approval, the review it owes and its audit event. Times are written the way
    SQLAlchemy stores them in SQLite; PostgreSQL parses the same text."""
    with engine.begin() as connection:
        insert(
            connection,
            "requests",
            id=1,
            uid="6f1c2a9e-3b7d-4e52-9a40-1d2e3f4a5b6c",
            resource="orders-db",
            requester_id="U0BOB0001",
            requester_name="Bob",
            requester_email="bob@example.com",
            reason="INC-4211: orders stuck in pending",
            duration_seconds=3600,
            emergency=False,
            status="granted",
            created_at="2026-11-21 09:00:00.000000",
            decided_at="2026-11-21 09:02:00.000000",
            granted_at="2026-11-21 09:02:01.000000",
            expires_at="2026-11-21 10:02:01.000000",
            receipt='{"role": "orders-readonly", "grant": "g-81"}',
            revoke_attempts=0,
            claimed_by="replica-a",
            lease_until="2026-11-21 09:03:00.000000",
            approval_channel="C0APPROVALS",
            approval_ts="1763715600.000100",
        )
        insert(
            connection,
            "decisions",
            id=1,
            request_id=1,
            approver_id="U0ALICE01",
            approve=True,
            at="2026-11-21 09:02:00.000000",
        )
        insert(
            connection,
            "reviews",
            request_id=1,
            status="pending",
            requested_at="2026-11-21 10:02:01.000000",
            next_reminder_at="2026-11-22 10:02:01.000000",
            reminders_sent=0,
        )
        insert(
            connection,
            "audit_events",
            id=1,
            at="2026-11-21 09:02:01.000000",
            actor="U0ALICE01",
            action="granted",
            request_id=1,
            resource="orders-db",
            reason="INC-4211: orders stuck in pending",
            detail='{"approvers": ["U0ALICE01"]}',
        )


def stored_rows(engine: Engine, columns: dict[str, list[str]] | None = None) -> dict[str, list[tuple[Any, ...]]]:
    """Every row, as tuples of ``columns`` (by default every column the table has now)."""
    columns = columns or {table: [c["name"] for c in inspect(engine).get_columns(table)] for table in TABLES}
    with engine.connect() as connection:
        return {
            table: [
                tuple(row)
                for row in connection.execute(text(f"SELECT {', '.join(columns[table])} FROM {table} ORDER BY 1"))
            ]
            for table in TABLES
        }


def test_an_empty_database_upgrades_to_exactly_the_models(engine: Engine) -> None:
    schema.upgrade(engine)

    assert schema.current(engine) == schema.head()
    assert schema_diff(engine) == []


def test_upgrading_from_the_first_revision_keeps_every_row_and_adds_what_came_later(engine: Engine) -> None:
    schema.upgrade(engine, "0001")
    record_a_granted_request(engine)
    old_columns = {table: [c["name"] for c in inspect(engine).get_columns(table)] for table in TABLES}
    before = stored_rows(engine)
    assert all(len(rows) == 1 for rows in before.values())
    assert not CLAIM_INDEXES.keys() & request_indexes(engine).keys()

    schema.upgrade(engine)

    assert schema.current(engine) == schema.head()
    assert stored_rows(engine, old_columns) == before
    assert CLAIM_INDEXES.items() <= request_indexes(engine).items()
    with engine.connect() as connection:  # an old request has no stored principal: it is mapped when needed
        assert connection.execute(text("SELECT principal FROM requests")).scalar_one() is None


def test_events_from_before_the_chain_are_adopted_by_the_first_seal_and_verify(engine: Engine) -> None:
    """An existing deployment upgrades: its audit events were never chained. The first audited change chains them,
    oldest first, and records that it did; verify then says from where on they are proven."""
    schema.upgrade(engine, "0003")
    record_a_granted_request(engine)
    with engine.begin() as connection:
        insert(
            connection,
            "audit_events",
            id=2,
            at="2026-11-21 10:02:02.000000",
            actor="breakglass",
            action="expired",
            request_id=1,
            resource="orders-db",
            detail='{"note": "=1+1"}',
        )
        if connection.dialect.name == "postgresql":  # ids written by hand: move the sequence past them
            connection.execute(text("SELECT setval(pg_get_serial_sequence('audit_events', 'id'), 2)"))
    old_columns = {table: [c["name"] for c in inspect(engine).get_columns(table)] for table in TABLES}
    before = stored_rows(engine)
    schema.upgrade(engine)
    with engine.connect() as connection:
        head = connection.execute(text("SELECT seq, hash, key_id, mac FROM audit_chain_head")).one()
    assert tuple(head) == (0, GENESIS, None, None)
    seal = AuditSeal("migration-test-audit-key-0123456789abcdef")
    waiting = verify(engine, seal)
    assert waiting.ok and waiting.events == 0 and waiting.waiting == 2

    with Database(engine, seal).transaction() as session:
        audit.record(session, "reviewed", at=datetime(2026, 11, 22, 9, 0, tzinfo=UTC), actor="U0BOB", request_id=1)

    events = AuditEvent.__table__
    with engine.connect() as connection:
        chain = connection.execute(select(events).order_by(events.c.seq)).all()
    assert [(row.seq, row.id, row.action) for row in chain[:3]] == [
        (1, 1, "granted"),
        (2, 2, "expired"),
        (3, 3, ADOPTED),
    ]
    assert (chain[3].seq, chain[3].action) == (4, "reviewed")
    assert chain[2].detail == {"events": 2, "first_id": 1, "last_id": 2}
    after = stored_rows(engine, old_columns)
    assert after | {"audit_events": after["audit_events"][:2]} == before  # adopting changed nothing they held
    verdict = verify(engine, seal)
    assert verdict.ok, verdict.line()
    assert verdict.adopted == 2
    assert "seq 1..2 predate the chain" in verdict.line()

    with engine.begin() as connection:  # adopted events are proven from then on
        connection.execute(text("UPDATE audit_events SET reason = 'nothing happened' WHERE id = 1"))
    broken = verify(engine, seal).broken
    assert broken is not None and (broken.kind, broken.seq, broken.id) == ("edited", 1, 1)


def test_every_revision_steps_up_down_and_up_again(engine: Engine) -> None:
    layouts = {}
    for revision in REVISIONS:
        schema.upgrade(engine, revision)
        assert schema.current(engine) == revision
        layouts[revision] = layout(engine)

    for revision in reversed(REVISIONS[:-1]):
        downgrade(engine, revision)
        assert schema.current(engine) == revision
        assert layout(engine) == layouts[revision]

    for revision in REVISIONS[1:]:
        schema.upgrade(engine, revision)
        assert schema.current(engine) == revision
        assert layout(engine) == layouts[revision]
    assert schema_diff(engine) == []


def test_upgrading_a_current_database_changes_nothing(engine: Engine) -> None:
    schema.upgrade(engine)
    before = layout(engine)

    schema.upgrade(engine)

    assert schema.current(engine) == schema.head()
    assert layout(engine) == before


@pytest.mark.parametrize("script", migration_scripts(), ids=lambda script: script.revision)
def test_every_migration_says_what_it_does_and_can_be_undone(script: Script) -> None:
    # Alembic's template leaves "Revision ID: ..." as the first paragraph when the message is empty.
    assert script.doc and not script.doc.startswith("Revision ID"), f"{script.path} needs a docstring"
    module = ast.parse(Path(script.path).read_text())
    downgrades = [node for node in module.body if isinstance(node, ast.FunctionDef) and node.name == "downgrade"]
    assert downgrades, f"{script.path} has no downgrade()"
    assert not all(isinstance(statement, ast.Pass) for statement in downgrades[0].body), f"{script.path}: empty"


def test_the_revisions_form_a_single_line() -> None:
    scripts = migration_scripts()
    assert len(ScriptDirectory.from_config(schema.alembic_config()).get_heads()) == 1
    assert scripts[0].down_revision is None
    assert [script.down_revision for script in scripts[1:]] == REVISIONS[:-1]
