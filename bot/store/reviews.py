"""The two steps of a review, as compare-and-set moves, and what people owe or wait to sign off.

The account moves a review ``due -> written`` and the sign-off ``written -> done``, each ``UPDATE ... WHERE status =
:expected``: of two people writing or signing off at once, exactly one wins and the other is told who did.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from bot.domain.states import ReviewStatus
from bot.store.models import AuditEvent, Request, Review
from bot.store.results import changed


def write(
    session: Session, request_id: int, *, author: str, account: str, at: datetime, next_reminder_at: datetime
) -> bool:
    """The holder's account: ``due -> written``. The reminder clock starts again for the sign-off side."""
    statement = (
        update(Review)
        .where(Review.request_id == request_id, Review.status == ReviewStatus.DUE.value)
        .values(
            status=ReviewStatus.WRITTEN.value,
            author_id=author,
            account=account,
            written_at=at,
            next_reminder_at=next_reminder_at,
        )
        .execution_options(synchronize_session=False)
    )
    return changed(session.execute(statement)) == 1


def sign_off(session: Session, request_id: int, *, reviewer: str, notes: str, at: datetime) -> bool:
    """Someone else's sign-off: ``written -> done``; nothing is chased any more."""
    statement = (
        update(Review)
        .where(Review.request_id == request_id, Review.status == ReviewStatus.WRITTEN.value)
        .values(status=ReviewStatus.DONE.value, reviewer_id=reviewer, notes=notes, done_at=at, next_reminder_at=None)
        .execution_options(synchronize_session=False)
    )
    return changed(session.execute(statement)) == 1


def overdue_account(
    session: Session,
    user_id: str,
    due_before: datetime,
    identity: tuple[Sequence[str], str] | None = None,
) -> Request | None:
    """The oldest request of ``user_id`` whose account was due before ``due_before`` and is still not written; with
    ``identity`` (resources and a backend principal), also one made by another Slack account as that same principal
    on those resources: to the backend, and so here, they are one person."""
    whose = Request.requester_id == user_id
    if identity is not None:
        resources, principal = identity
        whose = or_(whose, and_(Request.principal == principal, Request.resource.in_(list(resources))))
    statement = (
        select(Request)
        .join(Review, Review.request_id == Request.id)
        .where(
            whose,
            Review.status == ReviewStatus.DUE.value,
            Review.requested_at < due_before,
        )
        .order_by(Review.requested_at, Request.id)
        .limit(1)
    )
    return session.scalars(statement).first()


def awaiting_sign_off(
    session: Session, user_id: str, resources: Sequence[str] | None, limit: int = 100
) -> Sequence[Request]:
    """Written reviews of other people's requests, on ``resources`` (None: on any), oldest first."""
    statement = (
        select(Request)
        .join(Review, Review.request_id == Request.id)
        .where(Review.status == ReviewStatus.WRITTEN.value, Request.requester_id != user_id)
    )
    if resources is not None:
        statement = statement.where(Request.resource.in_(list(resources)))
    return session.scalars(statement.order_by(Review.written_at, Request.id).limit(limit)).all()


def timeline(session: Session, request_id: int) -> Sequence[AuditEvent]:
    """The request's audit events in the order they were appended."""
    return session.scalars(select(AuditEvent).where(AuditEvent.request_id == request_id).order_by(AuditEvent.id)).all()
