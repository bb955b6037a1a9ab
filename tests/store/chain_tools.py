"""Writing audit events the bot's way, and changing them the attacker's way: SQL straight to the tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Row, delete, insert, select, text, update

from bot.store import audit
from bot.store.chain import GENESIS
from bot.store.db import Database
from bot.store.models import AuditChainHead, AuditEvent

EVENTS = AuditEvent.__table__
HEAD = AuditChainHead.__table__
PAYLOAD = ("at", "actor", "action", "request_id", "resource", "reason", "detail")
START = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def append(db: Database, *events: dict[str, Any]) -> None:
    """One transaction recording ``events`` (keyword arguments of audit.record)."""
    with db.transaction() as session:
        for event in events:
            audit.record(session, **event)


def simple(n: int, start: datetime = START) -> list[dict[str, Any]]:
    return [{"action": "granted", "at": start + timedelta(minutes=i), "actor": f"U{i}", "n": i} for i in range(n)]


def chained(engine: Engine) -> list[Row[Any]]:
    with engine.connect() as connection:
        return list(connection.execute(select(EVENTS).where(EVENTS.c.seq.is_not(None)).order_by(EVENTS.c.seq)))


def change(engine: Engine, statement: Any, *params: dict[str, Any]) -> Any:
    with engine.begin() as connection:
        return connection.execute(text(statement) if isinstance(statement, str) else statement, *params)


def edit(engine: Engine, at_seq: int, **values: Any) -> None:
    change(engine, update(EVENTS).where(EVENTS.c.seq == at_seq).values(**values))


def remove(engine: Engine, seq: int) -> None:
    change(engine, delete(EVENTS).where(EVENTS.c.seq == seq))


def shift(engine: Engine, from_seq: int, by: int) -> None:
    """Renumber every event from ``from_seq`` on, in two steps so the unique index on seq never sees a clash."""
    change(engine, "UPDATE audit_events SET seq = seq + 1000000 WHERE seq >= :s", {"s": from_seq})
    change(engine, "UPDATE audit_events SET seq = seq - 1000000 + :by WHERE seq >= 1000000", {"by": by})


def forge(engine: Engine, seq: int | None, **values: Any) -> int:
    """Insert an event the bot never wrote; returns its id."""
    row = {
        "at": START,
        "actor": "U0MALLORY",
        "action": "approved",
        "request_id": 1,
        "resource": "orders-db",
        "reason": "nothing to see",
        "detail": {},
        "seq": seq,
        "prev_hash": GENESIS,
        "hash": "f" * 64,
        "key_id": None,
    } | values
    return int(change(engine, insert(EVENTS).values(**row)).inserted_primary_key[0])


def head(engine: Engine) -> Row[Any]:
    with engine.connect() as connection:
        return connection.execute(select(HEAD)).one()


def set_head(engine: Engine, **values: Any) -> None:
    change(engine, update(HEAD).where(HEAD.c.id == 1).values(**values))


def reset(engine: Engine) -> None:
    """An empty trail and a pristine head, as after migration 0004 on a new database."""
    change(engine, delete(EVENTS))
    set_head(engine, seq=0, hash=GENESIS, key_id=None, mac=None)
