"""What the bot's own records say about who should hold a resource, for reconciliation (bot/services/reconcile.py).

A grant is live from the moment it is asked for until its revoke is confirmed (``OPEN``: pending, approved,
granting, active, revoking, revoke_failed): access a backend holds for a principal with a live grant is never an
orphan, even while that grant is still being approved or granted.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.domain.actions import AuditAction
from bot.domain.states import OPEN, Status
from bot.store.models import AuditEvent, Request

# Ended grants that may once have made access on the backend: what a backend that can only be asked about one
# principal at a time is asked about.
ONCE_HELD = (Status.EXPIRED, Status.REVOKED, Status.GRANT_FAILED)


def live_principals(session: Session, resources: Collection[str]) -> set[str]:
    """Who has a live grant of any of ``resources`` (a resource and its twins: the same access on the same backend)."""
    statement = select(Request.principal).where(
        Request.resource.in_(list(resources)),
        Request.status.in_([s.value for s in OPEN]),
        Request.principal.is_not(None),
    )
    return {principal for principal in session.scalars(statement) if principal is not None}


def live_grants(session: Session, resources: Collection[str], principal: str) -> Sequence[Request]:
    statement = (
        select(Request)
        .where(
            Request.resource.in_(list(resources)),
            Request.principal == principal,
            Request.status.in_([s.value for s in OPEN]),
        )
        .order_by(Request.id)
        .execution_options(populate_existing=True)
    )
    return session.scalars(statement).all()


def reported(session: Session, request_id: int) -> bool:
    """Whether reconciliation already reported access left from this ended request (``reconcile_found``)."""
    found = select(AuditEvent.id).where(
        AuditEvent.action == AuditAction.RECONCILE_FOUND, AuditEvent.request_id == request_id
    )
    return session.scalar(found.limit(1)) is not None


def ended_grants(session: Session, resource: str, since: datetime) -> list[Request]:
    """The latest grant of ``resource`` to each principal that ended at or after ``since``."""
    statement = (
        select(Request)
        .where(
            Request.resource == resource,
            Request.status.in_([s.value for s in ONCE_HELD]),
            Request.ended_at >= since,
            Request.principal.is_not(None),
        )
        .order_by(Request.ended_at.desc(), Request.id.desc())
    )
    latest: dict[str, Request] = {}
    for request in session.scalars(statement):
        assert request.principal is not None
        latest.setdefault(request.principal, request)
    return list(latest.values())
