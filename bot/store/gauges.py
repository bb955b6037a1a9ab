"""What /metrics reports from the database: counts that must be right across restarts and replicas, so they are
read where the truth is rather than kept in a process. A few indexed counts, one round trip each."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.domain.states import HOLDS_ACCESS, ReviewStatus, Status
from bot.store.models import Request, Review


@dataclass(frozen=True)
class Gauges:
    holding: dict[str, int]  # requests whose access may exist on the backend, by resource
    pending: int
    reviews_overdue: int


def read(session: Session, overdue_since: datetime) -> Gauges:
    """``overdue_since``: a review still missing its account that fell due before then is overdue (its first
    reminder, one ``remind_every`` after it fell due, has gone out)."""
    holding = session.execute(
        select(Request.resource, func.count())
        .where(Request.status.in_([status.value for status in HOLDS_ACCESS]))
        .group_by(Request.resource)
    ).all()
    pending = session.scalar(select(func.count()).select_from(Request).where(Request.status == Status.PENDING.value))
    overdue = session.scalar(
        select(func.count())
        .select_from(Review)
        .where(Review.status == ReviewStatus.DUE.value, Review.requested_at <= overdue_since)
    )
    return Gauges({resource: int(count) for resource, count in holding}, int(pending or 0), int(overdue or 0))
