"""Where each audit sink has got to in the chain, and the events it has not confirmed yet.

What this module keeps true: a sink's cursor (``last_seq``, ``last_hash``) only moves forward (the one exception: a
trail rewritten below it, after which the sink is sent the whole trail again, ``rewind``), and only by the replica
that holds the sink, by compare-and-set on the cursor it read; so one replica at a time ships a sink, and a holder
that lost its hold (a long pause, a takeover) cannot move the cursor back or past what the new holder confirmed. A
hold lasts ``held_until`` and is renewed by every tick of its holder; a holder whose heartbeat stopped is taken over
at once, like the other claims (bot/services/heartbeat.py).

A sink seen for the first time starts at the beginning of the chain (seq 0): at-least-once means every event, and a
SIEM that already has the old ones can drop them by ``seq``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, literal, or_, select, update
from sqlalchemy.orm import Session

from bot.store import activity
from bot.store.audit import CHAIN, COLUMNS
from bot.store.chain import GENESIS, instant
from bot.store.models import AuditEvent, AuditSinkCursor, Replica
from bot.store.results import changed

ACTIVITY = "activity"  # as in `breakglass audit export`: the actions an ``activity_captured`` event vouches for


@dataclass(frozen=True)
class Cursor:
    name: str
    last_seq: int
    last_hash: str
    confirmed_at: datetime | None
    failing_since: datetime | None
    failures: int
    alerted_at: datetime | None
    holder: str | None
    held_until: datetime | None


def _cursor(row: AuditSinkCursor) -> Cursor:
    return Cursor(
        row.name,
        row.last_seq,
        row.last_hash,
        row.confirmed_at,
        row.failing_since,
        row.failures,
        row.alerted_at,
        row.holder,
        row.held_until,
    )


def _holdable(me: str, now: datetime, dead_before: datetime | None) -> ColumnElement[bool]:
    return or_(
        AuditSinkCursor.holder.is_(None),
        AuditSinkCursor.holder == me,
        AuditSinkCursor.held_until <= now,
        AuditSinkCursor.holder.in_(select(Replica.instance).where(Replica.seen_at <= dead_before))
        if dead_before is not None
        else AuditSinkCursor.holder.is_(None),
    )


def hold(
    session: Session, name: str, me: str, now: datetime, until: datetime, dead_before: datetime | None = None
) -> Cursor | None:
    """Take or renew the hold on sink ``name`` until ``until``; its cursor if ``me`` holds it now, else None. A sink
    seen for the first time gets its row here; of two replicas creating it at once, one raises IntegrityError."""
    taken = session.execute(
        update(AuditSinkCursor)
        .where(AuditSinkCursor.name == name, _holdable(me, now, dead_before))
        .values(holder=me, held_until=until)
        .execution_options(synchronize_session=False)
    )
    if changed(taken) == 0:
        if session.get(AuditSinkCursor, name) is not None:
            return None  # someone else ships it
        # Two replicas meeting a new sink at once collide on the key: the loser's transaction fails (IntegrityError)
        # and it tries again next tick, when the row is there.
        session.add(AuditSinkCursor(name=name, last_seq=0, last_hash=GENESIS, failures=0, holder=me, held_until=until))
        session.flush()
    row = session.get(AuditSinkCursor, name, populate_existing=True)
    return None if row is None or row.holder != me else _cursor(row)


def _at(when: datetime) -> ColumnElement[datetime]:
    """A moment as the column stores it (naive UTC on SQLite), for use inside an expression."""
    return literal(when, AuditSinkCursor.failing_since.type)


def read(session: Session, name: str) -> Cursor | None:
    row = session.get(AuditSinkCursor, name, populate_existing=True)
    return None if row is None else _cursor(row)


def advance(
    session: Session, name: str, me: str, from_seq: int, to_seq: int, to_hash: str, now: datetime, until: datetime
) -> bool:
    """The sink confirmed every event up to ``to_seq``: move its cursor there, if ``me`` still holds it and it is
    still at ``from_seq``; the hold is renewed to ``until``. A success ends a failure streak (an alert stays marked
    until the sink has caught up)."""
    moved = session.execute(
        update(AuditSinkCursor)
        .where(
            AuditSinkCursor.name == name,
            AuditSinkCursor.holder == me,
            AuditSinkCursor.last_seq == from_seq,
            AuditSinkCursor.last_seq < to_seq,
        )
        .values(last_seq=to_seq, last_hash=to_hash, confirmed_at=now, failing_since=None, failures=0, held_until=until)
        .execution_options(synchronize_session=False)
    )
    return changed(moved) == 1


def failed(session: Session, name: str, me: str, now: datetime) -> Cursor | None:
    """One more failed attempt; the cursor as it is now, or None if ``me`` no longer holds the sink."""
    counted = session.execute(
        update(AuditSinkCursor)
        .where(AuditSinkCursor.name == name, AuditSinkCursor.holder == me)
        .values(
            failures=AuditSinkCursor.failures + 1, failing_since=func.coalesce(AuditSinkCursor.failing_since, _at(now))
        )
        .execution_options(synchronize_session=False)
    )
    return read(session, name) if changed(counted) == 1 else None


def mark_alerted(session: Session, name: str, me: str, now: datetime) -> bool:
    """The audit channel is to hear of this outage: True for exactly one caller until ``clear_alert``."""
    marked = session.execute(
        update(AuditSinkCursor)
        .where(AuditSinkCursor.name == name, AuditSinkCursor.holder == me, AuditSinkCursor.alerted_at.is_(None))
        .values(alerted_at=now)
        .execution_options(synchronize_session=False)
    )
    return changed(marked) == 1


def clear_alert(session: Session, name: str, me: str) -> bool:
    """The sink has caught up after an alert: True for exactly one caller, who says it recovered."""
    cleared = session.execute(
        update(AuditSinkCursor)
        .where(AuditSinkCursor.name == name, AuditSinkCursor.holder == me, AuditSinkCursor.alerted_at.is_not(None))
        .values(alerted_at=None)
        .execution_options(synchronize_session=False)
    )
    return changed(cleared) == 1


def release(session: Session, me: str) -> int:
    """Hand back every sink ``me`` holds (a graceful stop), so another replica or our restart goes on at once."""
    released = session.execute(
        update(AuditSinkCursor)
        .where(AuditSinkCursor.holder == me)
        .values(holder=None, held_until=None)
        .execution_options(synchronize_session=False)
    )
    return changed(released)


def after(session: Session, seq: int, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` sealed events after ``seq``, in chain order and without a gap, each shaped as
    `breakglass audit export` writes it (``at`` as an instant, the chain fields, the activity it vouches for)."""
    table = AuditEvent.__table__
    columns = [table.c[name] for name in (*COLUMNS, *CHAIN)]
    rows = session.execute(select(*columns).where(table.c.seq > seq).order_by(table.c.seq).limit(limit)).all()
    events: list[dict[str, Any]] = []
    expected = seq + 1
    for row in rows:
        # Seqs are given out under the head's lock at commit, so a later one is never visible before an earlier one;
        # stopping at a gap all the same means a cursor can never move past an event that was not sent.
        if row.seq != expected:
            break
        values = dict(row._mapping)
        values["at"] = instant(values["at"])
        values[ACTIVITY] = _vouched(session, values)
        events.append(values)
        expected += 1
    return events


@dataclass(frozen=True)
class Interruption:
    """The trail does not go on from a sink's mark as the sink received it: why, and where streaming resumes."""

    why: str
    resume_seq: int  # the mark to go on from: past a hole, or 0 (the whole trail again) after a rewrite
    resume_hash: str


def interruption(session: Session, seq: int, last_hash: str, events: Sequence[dict[str, Any]]) -> Interruption | None:
    """Whether the trail goes on from a sink's mark (``seq``, ``last_hash``), given what ``after`` read there. Seqs are
    taken under the head's lock and committed with it, so a seq missing below a later one is gone for good (deleted),
    and an event that does not chain to the one the sink confirmed means the trail was rewritten below the mark (its
    head wound back without the key, so new events reused confirmed seqs). Stopping there would let one deleted row
    blind the receiver to everything after it; so the shipper alerts and goes on: past the hole, or from the start
    after a rewrite (the receiver then holds both versions, the evidence ``audit_head_altered`` among them)."""
    if events:
        if events[0]["prev_hash"] != last_hash:
            return Interruption(
                f"audit event {seq + 1} does not follow event {seq} as this sink received it: the trail was changed "
                "below the sink's mark; it is sent again from the start. Run `breakglass audit verify`",
                0,
                GENESIS,
            )
        return None
    following = session.execute(
        select(AuditEvent.seq, AuditEvent.prev_hash).where(AuditEvent.seq > seq).order_by(AuditEvent.seq).limit(1)
    ).first()
    if following is not None and following.seq > seq + 1:  # seq + 1 itself may have committed since `after` looked
        missing = f"{seq + 1}" if following.seq == seq + 2 else f"{seq + 1} to {following.seq - 1}"
        return Interruption(
            f"audit event {missing} is missing from the trail; streaming goes on from event {following.seq}. "
            "Run `breakglass audit verify`",
            following.seq - 1,
            following.prev_hash or GENESIS,
        )
    return None


def rewind(session: Session, name: str, me: str, from_seq: int, to_seq: int, to_hash: str) -> bool:
    """Move the cursor of a sink ``me`` holds from ``from_seq`` to where an interruption resumes (``to_seq`` may be
    behind it: the whole trail again after a rewrite). Compare-and-set, like ``advance``."""
    moved = session.execute(
        update(AuditSinkCursor)
        .where(AuditSinkCursor.name == name, AuditSinkCursor.holder == me, AuditSinkCursor.last_seq == from_seq)
        .values(last_seq=to_seq, last_hash=to_hash)
        .execution_options(synchronize_session=False)
    )
    return changed(moved) == 1


def _vouched(session: Session, values: dict[str, Any]) -> list[dict[str, Any]] | None:
    detail = values.get("detail") or {}
    if values["action"] != "activity_captured" or detail.get("first_id") is None:
        return None
    kept: Sequence[Any] = activity.batch(session, values["request_id"], int(detail["first_id"]), int(detail["last_id"]))
    return [activity.row_data(row) for row in kept]


def backlog(session: Session, seq: int) -> int:
    """How many sealed events come after ``seq``: what a sink still owes (the head's seq is the last one)."""
    last = session.scalar(select(AuditEvent.seq).where(AuditEvent.seq.is_not(None)).order_by(AuditEvent.seq.desc()))
    return max(int(last or 0) - seq, 0)
