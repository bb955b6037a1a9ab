"""Queries and compare-and-set moves.

Every state change is ``UPDATE ... WHERE id = :id AND status = :expected``; the row count says who won. That one
rule makes double clicks, Slack retries, racing replicas and late approvals harmless.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, or_, select, update
from sqlalchemy.orm import Session

from bot.domain.states import CLAIMS, FINAL, HOLDS_ACCESS, OPEN, OPEN_REVIEWS, ReviewStatus, Status, can_move
from bot.store import outbox, replicas
from bot.store.models import Decision, Request, Review
from bot.store.results import changed


def move(
    session: Session,
    request_id: int,
    expected: Status | Iterable[Status],
    target: Status,
    *,
    when: Sequence[ColumnElement[bool]] = (),
    held_by: str | None = None,
    **values: Any,
) -> bool:
    """Move a request from one of ``expected`` to ``target`` if nobody else did first.

    ``when`` adds conditions that must also still hold; ``held_by`` that this process still holds the claim. A move
    to a final status gives up the request's ``live_key`` in the same statement, so the next request of the same
    principal and resource can be stored the moment this one has ended, and not before.
    """
    sources = [expected] if isinstance(expected, Status) else list(expected)
    for source in sources:
        assert can_move(source, target), f"{source} -> {target} is not a transition"
    if target in FINAL:
        values["live_key"] = None
    statement = (
        update(Request)
        .where(Request.id == request_id, Request.status.in_([s.value for s in sources]))
        .values(status=target.value, **values)
        .execution_options(synchronize_session=False)
    )
    if held_by is not None:
        statement = statement.where(Request.claimed_by == held_by)
    if when:
        statement = statement.where(*when)
    return changed(session.execute(statement)) == 1


def move_many(
    session: Session,
    request_ids: Sequence[int],
    expected: Status,
    target: Status,
    *,
    when: Sequence[ColumnElement[bool]] = (),
    **values: Any,
) -> set[int]:
    """``move`` for many requests in one statement: the ids of those it moved. Never to a final status (that would
    give up live keys one by one, which ``move`` does)."""
    assert can_move(expected, target) and target not in FINAL, f"{expected} -> {target} is not a move for many"
    statement = (
        update(Request)
        .where(Request.id.in_(request_ids), Request.status == expected.value, *when)
        .values(status=target.value, **values)
        .returning(Request.id)
        .execution_options(synchronize_session=False)
    )
    return set(session.scalars(statement).all())


def requests_since(session: Session, requester_id: str, since: datetime) -> int:
    """How many requests this person made after ``since`` (on ix_requests_requester_id)."""
    count = session.scalar(select(func.count()).where(Request.requester_id == requester_id, Request.created_at > since))
    return count or 0


def live_request(session: Session, key: str) -> Request | None:
    """The live request holding ``key`` (bot/domain/live.py), if any."""
    return session.scalars(
        select(Request).where(Request.live_key == key), execution_options={"populate_existing": True}
    ).first()


def set_fields(session: Session, request_id: int, **values: Any) -> None:
    session.execute(
        update(Request).where(Request.id == request_id).values(**values).execution_options(synchronize_session=False)
    )


def get(session: Session, request_id: int) -> Request | None:
    return session.get(Request, request_id, populate_existing=True)


def decisions(session: Session, request_id: int) -> Sequence[Decision]:
    return session.scalars(select(Decision).where(Decision.request_id == request_id).order_by(Decision.id)).all()


def take_pending(session: Session, request_id: int, now: datetime) -> bool:
    """The deciding step: lock a request that is still pending and not yet lapsed, or say it is not.

    A no-op UPDATE, so it takes the row lock on PostgreSQL and the write lock on SQLite as the transaction's first
    statement: every decision, withdrawal and lapse on the request takes its turn behind it, and whatever it reads
    afterwards in the same transaction cannot change under it.
    """
    statement = (
        update(Request)
        .where(Request.id == request_id, Request.status == Status.PENDING.value, not_lapsed(now))
        .values(status=Request.status)
        .execution_options(synchronize_session=False)
    )
    return changed(session.execute(statement)) == 1


def review(session: Session, request_id: int) -> Review | None:
    return session.get(Review, request_id, populate_existing=True)


def claim_reminder(session: Session, request_id: int, status: ReviewStatus, due: datetime, next_at: datetime) -> bool:
    """Take the reminder due at ``due`` for a review in ``status``: moves the next one on, so each reminder is sent
    once across replicas, and a reminder read before the account was written is not sent as if it were not."""
    statement = (
        update(Review)
        .where(Review.request_id == request_id, Review.status == status, Review.next_reminder_at == due)
        .values(next_reminder_at=next_at, reminders_sent=Review.reminders_sent + 1)
        .execution_options(synchronize_session=False)
    )
    return changed(session.execute(statement)) == 1


def open_for_user(session: Session, user_id: str) -> Sequence[Request]:
    return session.scalars(
        select(Request)
        .where(Request.requester_id == user_id, Request.status.in_([s.value for s in OPEN]))
        .order_by(Request.id)
    ).all()


def reviews_due_for(session: Session, user_id: str) -> Sequence[Request]:
    return session.scalars(
        select(Request)
        .join(Review, Review.request_id == Request.id)
        .where(Request.requester_id == user_id, Review.status == ReviewStatus.DUE.value)
        .order_by(Request.id)
    ).all()


def waiting_for(
    session: Session, user_id: str, resources: Sequence[str], limit: int = 50
) -> tuple[Sequence[Request], int]:
    """What waits for ``user_id``'s decision on ``resources`` (those they approve) and they have not decided yet:
    other people's pending requests and asks for more time: the first ``limit`` of them, and how many in all."""
    decided = select(Decision.request_id).where(Decision.approver_id == user_id, Decision.round == 0)
    this_round = exists().where(
        Decision.request_id == Request.id, Decision.round == Request.extension_round, Decision.approver_id == user_id
    )
    where = (  # each arm by an index of its own (ix_requests_status, ix_requests_extension_asked), not all live grants
        Request.resource.in_(list(resources)),
        Request.requester_id != user_id,
        or_(
            and_(Request.status == Status.PENDING.value, Request.id.not_in(decided)),
            and_(Request.extension_seconds.is_not(None), Request.status == Status.ACTIVE.value, ~this_round),
        ),
    )
    total = session.scalar(select(func.count()).select_from(Request).where(*where)) or 0
    rows = session.scalars(select(Request).where(*where).order_by(Request.id).limit(limit)).all() if total else []
    return rows, total


def ids(statement: Any, session: Session, limit: int) -> list[int]:
    return list(session.scalars(statement.limit(limit)))


def overdue_ids(session: Session, now: datetime) -> list[int]:
    """Requests that may still hold access after their expiry: what must always come back empty soon enough."""
    statement = select(Request.id).where(Request.status.in_(list(HOLDS_ACCESS)), Request.expires_at <= now)
    return list(session.scalars(statement.order_by(Request.id)))


def warning_due_ids(session: Session, warn_at_or_before: datetime, limit: int = 100) -> list[int]:
    statement = select(Request.id).where(
        Request.status == Status.ACTIVE,
        Request.warned_at.is_(None),
        Request.expires_at <= warn_at_or_before,
    )
    return ids(statement.order_by(Request.expires_at), session, limit)


def reminder_due_ids(session: Session, now: datetime, limit: int = 100) -> list[int]:
    open_reviews = [s.value for s in OPEN_REVIEWS]
    statement = select(Review.request_id).where(Review.status.in_(open_reviews), Review.next_reminder_at <= now)
    return ids(statement.order_by(Review.next_reminder_at), session, limit)


def upcoming_times(session: Session, after: datetime, until: datetime | None = None) -> list[datetime]:
    """Every future moment something falls due (up to ``until``, when given): the alarms to set."""

    def within(column: Any) -> list[ColumnElement[bool]]:
        return [column > after] if until is None else [column > after, column <= until]

    owed = outbox.next_due(session, after)
    times = [owed] if owed is not None and (until is None or owed <= until) else []
    times += list(
        session.scalars(select(Request.expires_at).where(Request.status == Status.ACTIVE, *within(Request.expires_at)))
    )
    times += session.scalars(
        select(Review.next_reminder_at).where(
            Review.status.in_([s.value for s in OPEN_REVIEWS]), *within(Review.next_reminder_at)
        )
    )
    times += session.scalars(
        select(Request.next_attempt_at).where(Request.status == Status.REVOKE_FAILED, *within(Request.next_attempt_at))
    )
    for waiting in (Request.remind_at, Request.escalate_at, Request.lapses_at):  # a pending request's moments
        times += session.scalars(select(waiting).where(Request.status == Status.PENDING, *within(waiting)))
    return [t for t in times if t is not None]


def move_claim(
    session: Session,
    request_id: int,
    status: Status,
    holder: str | None,
    now: datetime,
    *,
    dead_before: datetime | None = None,
    **values: Any,
) -> bool:
    """Take over a claim (``granting`` or ``revoking``) whose holder's lease has run out, or whose holder was last
    seen (its heartbeat) at or before ``dead_before``."""
    lapsed = Request.lease_until <= now
    statement = (
        update(Request)
        .where(
            Request.id == request_id,
            Request.status == status,
            Request.claimed_by == holder if holder is not None else Request.claimed_by.is_(None),
            lapsed if dead_before is None else or_(lapsed, replicas.dead(dead_before)),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return changed(session.execute(statement)) == 1


def refresh_claim(
    session: Session, request_id: int, status: Status, holder: str, now: datetime, until: datetime
) -> bool:
    """Renew ``holder``'s claim on a request in ``status`` if its lease has not run out; False if it is not ours."""
    statement = (
        update(Request)
        .where(
            Request.id == request_id,
            Request.status == status,
            Request.claimed_by == holder,
            Request.lease_until > now,
        )
        .values(lease_until=until)
        .execution_options(synchronize_session=False)
    )
    return changed(session.execute(statement)) == 1


def lock_due(
    session: Session, now: datetime, orphaned_before: datetime, limit: int, *, dead_before: datetime | None = None
) -> Sequence[Request]:
    """Rows whose backend work is due, locked for this transaction; rows another replica has locked are skipped
    (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite has one writer at a time anyway).

    Due means: expired access, a failed revoke whose backoff is over, a claim whose lease ran out or whose holder
    was last seen at or before ``dead_before``, and an approval nobody started granting (approvals are claimed in
    the same transaction now; older versions left a gap).
    """
    lapsed = Request.lease_until <= now
    due = or_(
        (Request.status == Status.ACTIVE) & (Request.expires_at <= now),
        (Request.status == Status.REVOKE_FAILED) & (Request.next_attempt_at <= now),
        Request.status.in_([Status.GRANTING, Status.REVOKING])
        & (lapsed if dead_before is None else or_(lapsed, replicas.dead(dead_before))),
        (Request.status == Status.APPROVED) & (Request.decided_at <= orphaned_before),
    )
    statement = select(Request).where(due).order_by(Request.id).limit(limit).with_for_update(skip_locked=True)
    return session.scalars(statement, execution_options={"populate_existing": True}).all()


def renew_claims(session: Session, holder: str, request_ids: Sequence[int], until: datetime) -> int:
    """Move the leases of ``holder``'s claims among ``request_ids`` on. Rows another transaction has locked are left
    for the next renewal rather than waited for: the one holding them is most often our own recorder, about to end
    the claims, and a renewal that waited for it let every other claim's lease run out meanwhile."""
    mine = (
        select(Request.id)
        .where(Request.id.in_(request_ids), Request.claimed_by == holder, Request.status.in_(list(CLAIMS)))
        .with_for_update(skip_locked=True)
    )
    statement = (
        update(Request)
        .where(Request.id.in_(mine.scalar_subquery()))
        .values(lease_until=until)
        .execution_options(synchronize_session=False)
    )
    return changed(session.execute(statement))


def release_claims(session: Session, holder: str, now: datetime) -> int:
    """End the leases of ``holder``'s claims now. The holder's name stays on the row, for the record."""
    statement = (
        update(Request)
        .where(Request.claimed_by == holder, Request.status.in_(list(CLAIMS)), Request.lease_until > now)
        .values(lease_until=now)
        .execution_options(synchronize_session=False)
    )
    return changed(session.execute(statement))


def not_held(now: datetime) -> ColumnElement[bool]:
    """An active row that no extension holds (or whose holder's lease ran out): one a revoke may start on."""
    return or_(Request.claimed_by.is_(None), Request.lease_until <= now)


def hold_for_extension(
    session: Session, request_id: int, before: datetime, after: datetime, now: datetime, holder: str, until: datetime
) -> bool:
    """Move an active grant's end from the one read to a later one, and hold the row while the backend follows.

    Only from the end read and only while it is still ahead, so of two extensions one wins and ended access stays
    ended; and only if no other extension holds the row. While held, no revoke starts (``not_held``), so a backend's
    extend and revoke never interleave (a re-written policy cannot outlive the revoke that deleted it).
    """
    statement = (
        update(Request)
        .where(
            Request.id == request_id,
            Request.status == Status.ACTIVE.value,
            Request.expires_at == before,
            Request.expires_at > now,
            not_held(now),
        )
        .values(expires_at=after, warned_at=None, claimed_by=holder, lease_until=until)
        .execution_options(synchronize_session=False)
    )
    return changed(session.execute(statement)) == 1


def release_extension(
    session: Session, request_id: int, holder: str, until: datetime, expires_at: datetime, **values: Any
) -> bool:
    """Let go of one extension's hold (the one whose lease ends at ``until``), leaving the grant to end at
    ``expires_at``; False if that hold was lost."""
    statement = (
        update(Request)
        .where(
            Request.id == request_id,
            Request.status == Status.ACTIVE.value,
            Request.claimed_by == holder,
            Request.lease_until == until,
        )
        .values(expires_at=expires_at, claimed_by=None, lease_until=None, **values)
        .execution_options(synchronize_session=False)
    )
    return changed(session.execute(statement)) == 1


# Requests from before revision 0014 that reached us without a lapse time (none should) lapse as they always did.
LEGACY_PENDING_TIMEOUT = timedelta(hours=24)


def not_lapsed(now: datetime) -> ColumnElement[bool]:
    return or_(
        Request.lapses_at > now,
        and_(Request.lapses_at.is_(None), Request.created_at > now - LEGACY_PENDING_TIMEOUT),
    )


def lapsed_ids(session: Session, now: datetime, limit: int = 100) -> list[int]:
    """Pending requests whose time to be decided is up."""
    statement = select(Request.id).where(Request.status == Status.PENDING, ~not_lapsed(now))
    return ids(statement.order_by(Request.id), session, limit)


def lock_active(session: Session, request_id: int, now: datetime) -> bool:
    """Lock an active grant that has not yet ended, as the transaction's first statement (see ``take_pending``): the
    approvals of one extension are counted one at a time."""
    statement = (
        update(Request)
        .where(Request.id == request_id, Request.status == Status.ACTIVE.value, Request.expires_at > now)
        .values(status=Request.status)
        .execution_options(synchronize_session=False)
    )
    return changed(session.execute(statement)) == 1


def approver_reminders_due_ids(session: Session, now: datetime, limit: int = 100) -> list[int]:
    statement = select(Request.id).where(Request.status == Status.PENDING, Request.remind_at <= now)
    return ids(statement.order_by(Request.remind_at), session, limit)


def escalations_due_ids(session: Session, now: datetime, limit: int = 100) -> list[int]:
    statement = select(Request.id).where(Request.status == Status.PENDING, Request.escalate_at <= now)
    return ids(statement.order_by(Request.escalate_at), session, limit)


def claim_approver_reminder(session: Session, request_id: int, due: datetime, next_at: datetime) -> bool:
    """Take the approvers' reminder due at ``due``, moving the next one on: sent once across replicas, and never for a
    request decided meanwhile."""
    statement = (
        update(Request)
        .where(Request.id == request_id, Request.status == Status.PENDING.value, Request.remind_at == due)
        .values(remind_at=next_at, reminders_sent=Request.reminders_sent + 1)
        .execution_options(synchronize_session=False)
    )
    return changed(session.execute(statement)) == 1


def claim_escalation(session: Session, request_id: int, due: datetime, now: datetime) -> bool:
    """Take the escalation due at ``due``: once across replicas, and never for a request decided meanwhile."""
    statement = (
        update(Request)
        .where(Request.id == request_id, Request.status == Status.PENDING.value, Request.escalate_at == due)
        .values(escalate_at=None, escalated_at=now)
        .execution_options(synchronize_session=False)
    )
    return changed(session.execute(statement)) == 1


def set_once(session: Session, request_id: int, status: Status, **values: Any) -> bool:
    """Set columns that are still NULL, on a request still in ``status``; True for the one caller that did."""
    statement = update(Request).where(Request.id == request_id, Request.status == status)
    for column in values:
        statement = statement.where(getattr(Request, column).is_(None))
    return changed(session.execute(statement.values(**values).execution_options(synchronize_session=False))) == 1
