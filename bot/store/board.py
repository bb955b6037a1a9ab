"""What an operator reads without Slack: the requests that hold or wait for access (a request's own record is read
with bot/store/reviews.py's ``timeline`` and bot/store/activity.py's ``kept``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.domain.states import Status
from bot.store.models import Request


def requests_in(
    session: Session, states: Iterable[Status], resource: str | None = None, limit: int = 1000
) -> Sequence[Request]:
    """Requests in ``states`` (of one resource, when given), oldest first."""
    statement = select(Request).where(Request.status.in_([s.value for s in states]))
    if resource is not None:
        statement = statement.where(Request.resource == resource)
    return session.scalars(statement.order_by(Request.id).limit(limit)).all()
