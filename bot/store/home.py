"""What a person's Home tab lists, and who has opened theirs.

Each list is read as a count and its most urgent first few, so a page costs the same with 5 items or 5,000. Every
query starts from an index (named beside it), never from a scan of all requests.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.orm import Session

from bot.domain.states import HOLDS_ACCESS, ReviewStatus, Status
from bot.store.models import Decision, HomeTab, Request, Review
from bot.store.results import changed

# A grant's statuses from approval to the end of access: what "your access" lists, with its buttons where they fit.
GRANTED = [s.value for s in (Status.APPROVED, *sorted(HOLDS_ACCESS))]

Listed = tuple[Sequence[Request], int]

# Where a person may decide: (resource, level) pairs; level None also stands for a resource without levels.
Places = Collection[tuple[str, str | None]]


def _listed(session: Session, statement: Any, where: Sequence[ColumnElement[bool]], order: Any, limit: int) -> Listed:
    total = session.scalar(select(func.count()).select_from(statement.where(*where).subquery())) or 0
    rows = session.scalars(statement.where(*where).order_by(*order).limit(limit)).all() if total else []
    return rows, total


def grants(session: Session, user_id: str, limit: int) -> Listed:
    """The person's access, from approval to its confirmed end, the soonest to expire first
    (ix_requests_requester_id)."""
    where = [Request.requester_id == user_id, Request.status.in_(GRANTED)]
    # NULLs (not granted yet) last on every dialect: PostgreSQL would put them first when ascending.
    order = (Request.expires_at.is_(None), Request.expires_at, Request.id)
    return _listed(session, select(Request), where, order, limit)


def pending(session: Session, user_id: str, limit: int) -> Listed:
    """The person's requests that wait for approvers, oldest first (ix_requests_requester_id)."""
    where = [Request.requester_id == user_id, Request.status == Status.PENDING.value]
    return _listed(session, select(Request), where, (Request.created_at, Request.id), limit)


def reviews_owed(session: Session, user_id: str, limit: int) -> Listed:
    """Reviews whose account the person owes, the longest overdue first (ix_requests_requester_id, then each
    review by its primary key)."""
    statement = select(Request).join(Review, Review.request_id == Request.id)
    where = [Request.requester_id == user_id, Review.status == ReviewStatus.DUE.value]
    return _listed(session, statement, where, (Review.requested_at, Request.id), limit)


def _at(places: Places) -> ColumnElement[bool] | None:
    """Requests on any of ``places``."""
    conditions = [
        and_(Request.resource == resource, Request.level.is_(None) if level is None else Request.level == level)
        for resource, level in places
    ]
    return or_(*conditions) if conditions else None


def to_decide(session: Session, user_id: str, places: Places, escalated: Places, limit: int) -> Listed:
    """What waits for ``user_id``'s decision, oldest first (ix_requests_status, ix_requests_extension_asked): other
    people's pending requests they may decide and have not (on ``places``, or on ``escalated`` once the request was
    escalated), and the extensions asked for on ``places`` whose round they have not decided (an extension is
    approved like its request, without escalation)."""
    anywhere = _at(places)
    backup = _at(escalated)
    if backup is not None:
        backup = and_(Request.escalated_at.is_not(None), backup)
    where_any = [c for c in (anywhere, backup) if c is not None]
    if not where_any:
        return [], 0
    decided = select(Decision.request_id).where(Decision.approver_id == user_id, Decision.round == 0)
    request = and_(Request.status == Status.PENDING.value, Request.id.not_in(decided), or_(*where_any))
    waiting = [request]
    if anywhere is not None:
        this_round = exists().where(
            Decision.request_id == Request.id,
            Decision.round == Request.extension_round,
            Decision.approver_id == user_id,
        )
        waiting.append(
            and_(Request.status == Status.ACTIVE.value, Request.extension_seconds.is_not(None), ~this_round, anywhere)
        )
    # Each arm finds its own rows by an index (the pending by status, the asks by ix_requests_extension_asked): a
    # status test around both would have PostgreSQL read every live grant.
    where = [Request.requester_id != user_id, or_(*waiting)]
    asked = func.coalesce(Request.extension_asked_at, Request.created_at)  # an extension waits from its asking
    return _listed(session, select(Request), where, (asked, Request.id), limit)


def to_sign_off(session: Session, user_id: str, places: Places | None, limit: int) -> Listed:
    """Written reviews of other people's requests that wait for a sign-off, on ``places`` (None: anywhere, for a
    listed reviewer), the longest waiting first (ix_reviews_status)."""
    statement = select(Request).join(Review, Review.request_id == Request.id)
    where = [Review.status == ReviewStatus.WRITTEN.value, Request.requester_id != user_id]
    if places is not None:
        at = _at(places)
        if at is None:
            return [], 0
        where.append(at)
    return _listed(session, statement, where, (Review.written_at, Request.id), limit)


# -- who has opened the Home tab ------------------------------------------------------------------------------


def opened(session: Session, user_id: str, at: datetime) -> bool:
    """Record a visit; True for a first one (or the first since the last was forgotten). Two replicas recording the
    same first visit at once: one insert fails on the primary key, and the caller tries again."""
    seen = update(HomeTab).where(HomeTab.user_id == user_id).values(opened_at=at)
    if changed(session.execute(seen.execution_options(synchronize_session=False))) == 0:
        session.execute(insert(HomeTab).values(user_id=user_id, opened_at=at))
        return True
    return False


def watching(session: Session, since: datetime) -> set[str]:
    """Everyone who opened their Home tab since ``since`` (ix_home_tabs_opened_at): at most one row a person."""
    return set(session.scalars(select(HomeTab.user_id).where(HomeTab.opened_at >= since)))


def forget(session: Session, before: datetime) -> int:
    """Forget visits older than ``before`` (ix_home_tabs_opened_at)."""
    return changed(session.execute(delete(HomeTab).where(HomeTab.opened_at < before)))
