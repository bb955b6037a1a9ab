"""Appending to the audit trail, and reading it back. Events are written in the same transaction as the change they
record, and sealed into the hash chain when it commits (bot/store/chain.py)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Row, func, select
from sqlalchemy.orm import Session

from bot.store.models import AuditEvent, Request

SYSTEM = "breakglass"
COLUMNS = ("seq", "id", "at", "actor", "action", "request_id", "resource", "reason", "detail")
CHAIN = ("prev_hash", "hash", "key_id")


def record(
    session: Session,
    action: str,
    *,
    at: datetime,
    actor: str = SYSTEM,
    request: Request | None = None,
    request_id: int | None = None,
    resource: str | None = None,
    reason: str | None = None,
    **detail: Any,
) -> AuditEvent:
    event = AuditEvent(
        at=at,
        actor=actor,
        action=action,
        request_id=request.id if request else request_id,
        resource=request.resource if request else resource,
        reason=reason if reason is not None else (request.reason if request else None),
        detail={key: value for key, value in detail.items() if value is not None},
    )
    if request is not None and request.level is not None and "level" not in event.detail:
        event.detail = {"level": request.level, **event.detail}  # every event of a request names its level
    if request is not None and request.drill:  # a drill's events say so wherever they are read (no review owed)
        event.detail = {**event.detail, "drill": True}
    session.add(event)
    return event


def rank_among(session: Session, actor: str, actions: Iterable[str], since: datetime, event_id: int) -> int:
    """Where event ``event_id`` falls among this actor's events of ``actions`` after ``since``: 1 for the first."""
    count = session.scalar(
        select(func.count()).where(
            AuditEvent.actor == actor,
            AuditEvent.action.in_(list(actions)),
            AuditEvent.at > since,
            AuditEvent.id <= event_id,
        )
    )
    return count or 0


def stream(
    engine: Engine, since: datetime | None = None, until: datetime | None = None, batch: int = 1000
) -> Iterator[Row[Any]]:
    """Every event with ``since <= at < until``: the chain in seq order, then any event not (yet) in it, by id.
    Reads in batches, so memory stays flat however long the trail."""
    table = AuditEvent.__table__
    columns = [table.c[name] for name in (*COLUMNS, *CHAIN)]
    window = []
    if since is not None:
        window.append(table.c.at >= since)
    if until is not None:
        window.append(table.c.at < until)
    for order, filled in ((table.c.seq, table.c.seq.is_not(None)), (table.c.id, table.c.seq.is_(None))):
        after = None
        while True:
            statement = select(*columns).where(filled, *window).order_by(order).limit(batch)
            if after is not None:
                statement = statement.where(order > after)
            with engine.connect() as connection:
                rows = connection.execute(statement).all()
            yield from rows
            if len(rows) < batch:
                break
            after = rows[-1]._mapping[order.name]
