"""Checking the captured activity against the chain: every kept row of the ``activity`` table is vouched for by
exactly one chained ``activity_captured`` event whose ``sha256`` still matches the rows it names.

Run after the chain itself verified, and only over events it verified (``seq <= upto``), so a hash is trusted only
once its event is. Per request, events are taken in ``seq`` order, which is also the order of their rows' ids (a
request's batches are kept one at a time, by compare-and-set on its cursor). A row changed, deleted or inserted
inside an event's ``first_id..last_id`` breaks that event's hash; a row before, between or after the ranges is
vouched for by nothing. Events and rows are read in batches: memory stays flat.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, inspect, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from bot.store.activity import batch as kept_batch
from bot.store.activity import batch_hash, row_data
from bot.store.models import ActivityRecord, AuditEvent
from bot.store.verify import Break

CAPTURED = "activity_captured"

_EVENTS = AuditEvent.__table__
_ROWS = ActivityRecord.__table__


@dataclass(frozen=True)
class _Vouched:
    """What the request's events checked so far vouch for: rows up to ``last_id``, by events up to ``seq``."""

    request_id: int
    seq: int
    last_id: int | None  # None: none of its events kept a row yet


def check(connection: Connection, upto: int, batch: int = 2000) -> tuple[int, Break | None]:
    """The number of batches whose rows match their hash, and the first thing that does not hold."""
    if not inspect(connection).has_table(_ROWS.name):
        return 0, None
    matched = 0
    vouched: _Vouched | None = None
    with Session(bind=connection) as session:
        for event in _captured(connection, upto, batch):
            if vouched is not None and vouched.request_id != event.request_id:
                broken = _after(connection, vouched)
                if broken:
                    return matched, broken
                vouched = None
            detail = event.detail or {}
            if not detail.get("sha256") or detail.get("first_id") is None or detail.get("last_id") is None:
                # nothing kept (the request's cap was reached): it vouches for no row
                last_id = vouched.last_id if vouched else None
                vouched = _Vouched(event.request_id, event.seq, last_id)
                continue
            first, last = int(detail["first_id"]), int(detail["last_id"])
            broken = _between(connection, event, vouched.last_id if vouched else None, first)
            if broken is None:
                broken = _matches(session, event, first, last)
            if broken:
                return matched, broken
            matched += 1
            vouched = _Vouched(event.request_id, event.seq, last)
    if vouched is not None:
        broken = _after(connection, vouched)
        if broken:
            return matched, broken
    return matched, _unclaimed(connection)


def _captured(connection: Connection, upto: int, batch: int) -> Iterator[Any]:
    """The chained ``activity_captured`` events up to ``upto``, by request then seq, a batch at a time."""
    after: tuple[int, int] | None = None
    while True:
        statement = (
            select(_EVENTS.c.id, _EVENTS.c.seq, _EVENTS.c.request_id, _EVENTS.c.detail)
            .where(
                _EVENTS.c.action == CAPTURED,
                _EVENTS.c.seq.is_not(None),
                _EVENTS.c.seq <= upto,
                _EVENTS.c.request_id.is_not(None),
            )
            .order_by(_EVENTS.c.request_id, _EVENTS.c.seq)
            .limit(batch)
        )
        if after is not None:
            request_id, seq = after
            statement = statement.where(
                or_(_EVENTS.c.request_id > request_id, and_(_EVENTS.c.request_id == request_id, _EVENTS.c.seq > seq))
            )
        rows = connection.execute(statement).all()
        yield from rows
        if len(rows) < batch:
            return
        after = (rows[-1].request_id, rows[-1].seq)


def _matches(session: Session, event: Any, first: int, last: int) -> Break | None:
    """The rows ``first..last`` of the event's request, hashed as they were when it was written."""
    rows = kept_batch(session, event.request_id, first, last)
    found = batch_hash(row_data(row) for row in rows)
    session.expunge_all()  # the identity map would otherwise hold every row checked
    if found == event.detail["sha256"]:
        return None
    kept = event.detail.get("kept")
    if isinstance(kept, int) and len(rows) < kept:
        what = f"{kept - len(rows)} of its {kept} rows are gone: deleted"
    elif isinstance(kept, int) and len(rows) > kept:
        what = f"{len(rows)} rows where it kept {kept}: inserted"
    else:
        what = "a row no longer reads as it was kept: edited"
    return Break(
        "activity",
        event.seq,
        event.id,
        f"request #{event.request_id}'s activity rows {first}..{last} no longer match this event's sha256: {what}",
    )


def _stray(connection: Connection, request_id: int, *where: ColumnElement[bool]) -> tuple[int, int | None]:
    counted = select(func.count(), func.min(_ROWS.c.id)).where(_ROWS.c.request_id == request_id, *where)
    count, first = connection.execute(counted).one()
    return int(count or 0), first


def _between(connection: Connection, event: Any, after: int | None, first: int) -> Break | None:
    """Rows of the request before this event's range and after the previous event's: kept by no event."""
    where = [_ROWS.c.id < first] if after is None else [_ROWS.c.id > after, _ROWS.c.id < first]
    count, stray = _stray(connection, event.request_id, *where)
    if not count:
        return None
    return _unvouched(event.request_id, count, stray)


def _after(connection: Connection, vouched: _Vouched) -> Break | None:
    """Rows of the request after its last checked event's range. A batch kept since its events were read commits
    its rows and its event together, so a later event of the request, if there is one now, vouches for them."""
    where = [] if vouched.last_id is None else [_ROWS.c.id > vouched.last_id]
    count, stray = _stray(connection, vouched.request_id, *where)
    if not count:
        return None
    newer = select(_EVENTS.c.id).where(
        _EVENTS.c.action == CAPTURED, _EVENTS.c.request_id == vouched.request_id, _EVENTS.c.seq > vouched.seq
    )
    if connection.execute(newer.limit(1)).first() is not None:
        return None
    return _unvouched(vouched.request_id, count, stray)


def _unclaimed(connection: Connection) -> Break | None:
    """Rows of requests that no chained event of capture names at all. One statement, so a batch and its event
    (committed together) are seen both or neither."""
    claimed = exists().where(
        _EVENTS.c.action == CAPTURED, _EVENTS.c.request_id == _ROWS.c.request_id, _EVENTS.c.seq.is_not(None)
    )
    first = connection.execute(
        select(_ROWS.c.request_id, _ROWS.c.id).where(~claimed).order_by(_ROWS.c.id).limit(1)
    ).first()
    if first is None:
        return None
    count, _ = _stray(connection, first.request_id)
    return _unvouched(first.request_id, count, first.id)


def _unvouched(request_id: int, count: int, first: int | None) -> Break:
    rows = f"activity row {first}" if count == 1 else f"{count} activity rows from id {first}"
    return Break(
        "activity", None, None, f"{rows} of request #{request_id}: vouched for by no activity_captured event: inserted"
    )
