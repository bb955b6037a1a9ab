"""The outbox: Slack messages owed, recorded in the transaction of the change that owes them.

A change and the messages it owes commit together or not at all, so a crash between the two cannot lose a message,
and a message is never sent for a change that rolled back. Delivery (bot/services/delivery.py) claims rows by
compare-and-set, with a lease, like the requests' own claims; the rows of one request are claimed strictly in ``id``
order, so nobody hears "approved" before "requested", whichever replica delivers. Whoever holds a request's first
row undone holds all of its rows (the others wait for it), so it takes the rest that are due in the same claim.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from itertools import takewhile
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, false, func, or_, select, tuple_, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, aliased

from bot.store.chain import events_kept_back
from bot.store.models import OutboxMessage, Replica
from bot.store.results import changed


class Kind(StrEnum):
    """What a row asks of Slack."""

    REQUEST = "request"  # post the request's message (with its buttons) to a channel; remember where it is
    ALERT = "alert"  # post an emergency's alert to the audit channel; remember where it is
    REFRESH = "refresh"  # edit the request's messages to show where it is now
    REQUESTER = "requester"  # a notice to the requester (a DM)
    CHANNEL = "channel"  # a notice in a channel
    REFUSALS = "refusals"  # the audit channel hears that someone keeps being refused
    RECONCILED = "reconciled"  # the audit channel hears of access reconciliation took back
    ACTIVITY = "activity"  # captured activity: a digest in the request's thread, or an alert in a channel
    THREAD = "thread"  # a reply in the thread of the request's approval message (or its emergency alert)
    DRILL = "drill"  # the audit channel hears how a drill went (bot/services/drills.py)
    SINK = "sink"  # the audit channel hears that an audit sink is failing, or recovered (bot/services/streaming.py)
    POLICY = "policy"  # the audit channel hears of a policy reload, done or refused (bot/services/policy_reload.py)


POSTS = frozenset(
    {
        Kind.REQUEST,
        Kind.ALERT,
        Kind.REQUESTER,
        Kind.CHANNEL,
        Kind.REFUSALS,
        Kind.RECONCILED,
        Kind.ACTIVITY,
        Kind.THREAD,
        Kind.DRILL,
        Kind.SINK,
        Kind.POLICY,
    }
)


class Outcome(StrEnum):
    SENT = "sent"
    FOUND = "found"  # a post whose answer was lost, found in the channel and adopted instead of posted again
    UNDELIVERABLE = "undeliverable"  # Slack refused it for good (a channel that no longer exists); given up
    SKIPPED = "skipped"  # nothing to do: a refresh of a message never posted, or posted in the same run as it stands


@dataclass(frozen=True)
class Owed:
    """A claimed row, as it was when claimed."""

    id: int
    uid: str
    request_id: int | None
    kind: Kind
    channel: str | None
    notice: str | None
    payload: dict[str, Any]
    created_at: datetime
    attempts: int  # before this one
    in_doubt: bool  # an earlier attempt may have reached Slack


def owe(
    session: Session,
    at: datetime,
    kind: Kind,
    *,
    request_id: int | None = None,
    channel: str | None = None,
    notice: str | None = None,
    payload: dict[str, Any] | None = None,
) -> None:
    row = OutboxMessage(
        uid=uuid.uuid4().hex,
        request_id=request_id,
        kind=kind.value,
        channel=channel,
        notice=notice,
        payload=payload or {},
        created_at=at,
        due_at=at,
        attempts=0,
        in_doubt=False,
    )
    session.add(row)
    session.info.setdefault(_OWED, []).append(row)


_OWED = "breakglass.outbox.owed"  # session.info: the rows this transaction owes, for ``hold``


def hold(session: Session, request_id: int, holder: str, lease_until: datetime) -> list[Owed]:
    """Claim what this transaction owes for a request it created, for the thread that commits it to send: the rows
    are written claimed, as ``claim_request_run`` would leave them, so nobody need find, read and claim them again
    after the commit. Only for a request made in this transaction: it has no earlier rows that these must wait for.
    If the holder dies before sending, its heartbeat (or the lease) frees them for anyone, as after any claim."""
    rows = [row for row in session.info.get(_OWED, []) if row.request_id == request_id and row.done_at is None]
    for row in rows:
        row.claimed_by, row.lease_until, row.attempts, row.in_doubt = holder, lease_until, 1, True
    with events_kept_back(session):
        session.flush()
    return [replace(_owed(row), attempts=0, in_doubt=False) for row in rows]  # as it was before this claim


def hold_run(
    session: Session, request_id: int, holder: str, now: datetime, lease_until: datetime, dead_before: datetime
) -> list[Owed]:
    """``claim_request_run`` in the transaction that owes the request's latest rows, for the thread that commits it
    to send: its earlier rows with them when they are free. Empty, with nothing claimed, when a live sender holds
    any of them (that sender takes the rest, as it would after the commit)."""
    try:
        with events_kept_back(session), session.begin_nested():  # this transaction's rows are flushed first
            return claim_request_run(session, request_id, holder, now, lease_until, dead_before, nowait=True)
    except Contended:  # the savepoint took back what was claimed
        return []
    except OperationalError as error:
        if not _locked_elsewhere(error):
            raise
        return []  # a sender is recording a row of the run: it is not ours to wait for (see claim_request_run)


def _locked_elsewhere(error: OperationalError) -> bool:
    """The database refused a NOWAIT lock: PostgreSQL's lock_not_available, MariaDB's and MySQL's lock errors."""
    cause = error.orig
    return getattr(cause, "sqlstate", None) == "55P03" or (getattr(cause, "args", None) or (None,))[0] in (1205, 3572)


_earlier = aliased(OutboxMessage, name="earlier")
_WAITS_FOR_EARLIER = exists().where(
    _earlier.request_id == OutboxMessage.request_id,
    _earlier.id < OutboxMessage.id,
    _earlier.done_at.is_(None),
)


def _free(now: datetime, dead_before: datetime | None) -> list[ColumnElement[bool]]:
    """Due, and held by nobody alive."""
    return [
        OutboxMessage.done_at.is_(None),
        OutboxMessage.due_at <= now,
        or_(
            OutboxMessage.lease_until.is_(None),
            OutboxMessage.lease_until <= now,
            # a sender whose heartbeat stopped is dead: its row need not wait for the lease
            OutboxMessage.claimed_by.in_(select(Replica.instance).where(Replica.seen_at <= dead_before))
            if dead_before is not None
            else false(),
        ),
    ]


def _claimable(now: datetime, dead_before: datetime | None) -> list[ColumnElement[bool]]:
    return [*_free(now, dead_before), or_(OutboxMessage.request_id.is_(None), ~_WAITS_FOR_EARLIER)]


ALL = -1  # due_ids: every request's rows, not one request's


def due_ids(
    session: Session, now: datetime, limit: int, request_id: int | None = ALL, dead_before: datetime | None = None
) -> list[int]:
    """Rows that can go now, oldest first: for each request only the first row not yet done. ``request_id`` limits
    them to one request's rows, or with None to the rows of no request (alerts about people)."""
    statement = select(OutboxMessage.id).where(*_claimable(now, dead_before))
    if request_id is None:
        statement = statement.where(OutboxMessage.request_id.is_(None))
    elif request_id != ALL:
        statement = statement.where(OutboxMessage.request_id == request_id)
    return list(session.scalars(statement.order_by(OutboxMessage.id).limit(limit)))


def claim(
    session: Session,
    message_id: int,
    holder: str,
    now: datetime,
    lease_until: datetime,
    dead_before: datetime | None = None,
) -> Owed | None:
    """Take one row for delivery if it can go now and nobody else has it. The claim marks it in doubt before the
    call is made: if this process dies mid-call, whoever delivers it next looks in Slack before posting again."""
    row = session.get(OutboxMessage, message_id, populate_existing=True)
    if row is None:
        return None
    claimed = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.attempts == row.attempts, *_claimable(now, dead_before))
        .values(claimed_by=holder, lease_until=lease_until, attempts=row.attempts + 1, in_doubt=True)
        .execution_options(synchronize_session=False)
    )
    if changed(claimed) != 1:
        return None
    return _owed(row)


def claim_run(
    session: Session,
    message_id: int,
    holder: str,
    now: datetime,
    lease_until: datetime,
    dead_before: datetime | None = None,
    limit: int = 20,
) -> list[Owed]:
    """``claim``, and with it the rows of the same request that follow it and are due, in order, up to the first
    that is not (a retry waiting for its time): one claim for what a request owes at once. Empty if the first row
    could not be had. Each row is marked in doubt, as ``claim`` marks it."""
    first = claim(session, message_id, holder, now, lease_until, dead_before)
    if first is None or first.request_id is None:
        return [first] if first is not None else []
    following = session.scalars(
        select(OutboxMessage)
        .where(
            OutboxMessage.request_id == first.request_id, OutboxMessage.id > first.id, OutboxMessage.done_at.is_(None)
        )
        .order_by(OutboxMessage.id)
        .limit(limit - 1)
        .execution_options(populate_existing=True)
    ).all()
    due = []
    for row in following:
        if row.due_at > now:
            break  # later rows wait for this one, as they would for the first
        due.append(row)
    if not due:
        return [first]
    # Nobody else can have claimed these while the first was undone (they wait for it): held by a live sender means
    # a sender from before a takeover of the first row, and the run stops short of its rows.
    with session.begin_nested() as taken:
        claimed = session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_([row.id for row in due]), *_free(now, dead_before))
            .values(claimed_by=holder, lease_until=lease_until, attempts=OutboxMessage.attempts + 1, in_doubt=True)
            .execution_options(synchronize_session=False)
        )
        if changed(claimed) != len(due):
            taken.rollback()
            return [first]
    return [first, *(_owed(row) for row in due)]


class Contended(Exception):
    """The rows changed between their reading and their claim, and only some were claimed: roll the transaction back
    and claim from ``first`` as ``claim_run`` does."""

    def __init__(self, first: int) -> None:
        super().__init__(f"outbox row {first} and those after it changed while being claimed")
        self.first = first


def claim_request_run(
    session: Session,
    request_id: int,
    holder: str,
    now: datetime,
    lease_until: datetime,
    dead_before: datetime | None = None,
    limit: int = 20,
    nowait: bool = False,
) -> list[Owed]:
    """What ``claim_run`` claims from the request's first row not yet done, found and claimed with one read and one
    compare-and-set instead of a search, a read, a claim and a claim of the rest. Empty when that row is not due or is
    held by a live sender. Raises Contended when only some of the rows could be had (a sender from before a
    takeover holds the later ones): nothing may be kept of this transaction then.

    ``nowait``: the rows are locked as they are read, and a row another transaction has locked fails the read at
    once (OperationalError) instead of waiting. For a transaction that already holds the request's row: a sender
    finishing a run locks its rows first and the request's row next, and waiting for it would close a cycle."""
    statement = (
        select(OutboxMessage)
        .where(OutboxMessage.request_id == request_id, OutboxMessage.done_at.is_(None))
        .order_by(OutboxMessage.id)
        .limit(limit)
        .execution_options(populate_existing=True)
    )
    undone = session.scalars(statement.with_for_update(nowait=True) if nowait else statement).all()
    run = list(takewhile(lambda row: row.due_at <= now, undone))  # later rows wait for a retry's time, as it does
    if not run:
        return []
    # As read, attempt for attempt: a row claimed, dropped and freed meanwhile would carry a doubt this read missed.
    claimed = session.execute(
        update(OutboxMessage)
        .where(tuple_(OutboxMessage.id, OutboxMessage.attempts).in_([(r.id, r.attempts) for r in run]))
        .where(*_free(now, dead_before))
        .values(claimed_by=holder, lease_until=lease_until, attempts=OutboxMessage.attempts + 1, in_doubt=True)
        .execution_options(synchronize_session=False)
    )
    count = changed(claimed)
    if count == len(run):
        return [_owed(row) for row in run]
    if count == 0:
        return []  # someone else has the first row, so all of them
    raise Contended(run[0].id)


def _owed(row: OutboxMessage) -> Owed:
    return Owed(
        id=row.id,
        uid=row.uid,
        request_id=row.request_id,
        kind=Kind(row.kind),
        channel=row.channel,
        notice=row.notice,
        payload=dict(row.payload or {}),
        created_at=row.created_at,
        attempts=row.attempts,
        in_doubt=row.in_doubt,
    )


def _mine(message_id: int, holder: str) -> ColumnElement[bool]:
    return and_(OutboxMessage.id == message_id, OutboxMessage.claimed_by == holder, OutboxMessage.done_at.is_(None))


def finish(
    session: Session,
    message_id: int,
    holder: str,
    now: datetime,
    outcome: Outcome,
    *,
    channel: str | None = None,
    ts: str | None = None,
    failure: str | None = None,
) -> bool:
    """The row is done. False if it was no longer ours (its lease ran out and someone else took it)."""
    done = session.execute(
        update(OutboxMessage)
        .where(_mine(message_id, holder))
        .values(
            done_at=now,
            outcome=outcome.value,
            sent_channel=channel,
            sent_ts=ts,
            failure=failure,
            in_doubt=False,
            claimed_by=None,
            lease_until=None,
        )
        .execution_options(synchronize_session=False)
    )
    return changed(done) == 1


def finish_run(
    session: Session, holder: str, now: datetime, sent: Sequence[tuple[int, Outcome, str | None, str | None]]
) -> set[int]:
    """``finish`` for each (row, outcome, channel, ts) of a run, in one statement. Returns the rows whose place in
    Slack is ours to record: all of them; or, when a lease ran out meanwhile and another sender took some, those
    that now carry the ts we sent (rows without one are left out: they have no place to record)."""
    if not sent:
        return set()
    ids = [message_id for message_id, *_ in sent]

    def by_row(values: list[str | None]) -> Any:
        return case(dict(zip(ids, values, strict=True)), value=OutboxMessage.id, else_=None)

    done = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids), OutboxMessage.claimed_by == holder, OutboxMessage.done_at.is_(None))
        .values(
            done_at=now,
            outcome=by_row([outcome.value for _, outcome, _, _ in sent]),
            sent_channel=by_row([channel for _, _, channel, _ in sent]),
            sent_ts=by_row([ts for _, _, _, ts in sent]),
            failure=None,
            in_doubt=False,
            claimed_by=None,
            lease_until=None,
        )
        .execution_options(synchronize_session=False)
    )
    if changed(done) == len(sent):
        return set(ids)
    # Some had been taken over: ours are those that now say what we sent (a post's ts is Slack's, unique to it).
    now_says = {
        row.id: row.sent_ts
        for row in session.execute(select(OutboxMessage.id, OutboxMessage.sent_ts).where(OutboxMessage.id.in_(ids)))
    }
    return {message_id for message_id, _, _, ts in sent if ts is not None and now_says.get(message_id) == ts}


def retry_at(session: Session, message_id: int, holder: str, due_at: datetime, *, in_doubt: bool, failure: str) -> bool:
    """Not delivered this time: try again at ``due_at``. ``in_doubt`` keeps the mark when Slack may have it."""
    later = session.execute(
        update(OutboxMessage)
        .where(_mine(message_id, holder))
        .values(due_at=due_at, in_doubt=in_doubt, failure=failure, claimed_by=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )
    return changed(later) == 1


def unclaim(session: Session, owed: Owed, holder: str) -> bool:
    """Hand back a row claimed with others and not tried (an earlier row of its run failed): as it was before."""
    back = session.execute(
        update(OutboxMessage)
        .where(_mine(owed.id, holder))
        .values(attempts=owed.attempts, in_doubt=owed.in_doubt, claimed_by=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )
    return changed(back) == 1


def next_due(session: Session, after: datetime) -> datetime | None:
    """When the next row waiting for a retry falls due, for an alarm."""
    return session.scalar(
        select(func.min(OutboxMessage.due_at)).where(OutboxMessage.done_at.is_(None), OutboxMessage.due_at > after)
    )


def pending(session: Session, request_id: int | None = None) -> int:
    """Rows not delivered yet (for health and tests)."""
    statement = select(func.count()).select_from(OutboxMessage).where(OutboxMessage.done_at.is_(None))
    if request_id is not None:
        statement = statement.where(OutboxMessage.request_id == request_id)
    return int(session.scalar(statement) or 0)


def release(session: Session, holder: str) -> int:
    """Hand back the rows ``holder`` has claimed (a graceful stop): still in doubt, so the next sender looks first."""
    released = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.claimed_by == holder, OutboxMessage.done_at.is_(None))
        .values(claimed_by=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )
    return changed(released)
