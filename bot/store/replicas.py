"""Replica heartbeats: who is alive, and whose claims may be taken over without waiting for their leases.

Each replica writes its own row every few seconds. A claim's holder counts as dead once its row is older than the
"dead after" time; a holder with no row at all (a replica of an older version, or one pruned long after it died) is
left to its lease, as before heartbeats existed.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import ColumnElement, delete, insert, select, update
from sqlalchemy.orm import Session

from bot.domain.states import CLAIMS
from bot.store.models import Replica, Request
from bot.store.results import changed


def beat(session: Session, instance: str, now: datetime) -> None:
    """Say ``instance`` is alive at ``now``; the first beat registers it."""
    seen = update(Replica).where(Replica.instance == instance).values(seen_at=now)
    if changed(session.execute(seen.execution_options(synchronize_session=False))) == 0:
        session.execute(insert(Replica).values(instance=instance, started_at=now, seen_at=now))


def forget(session: Session, instance: str) -> int:
    """Remove ``instance``'s row: a replica stopping cleanly, whose claims are already handed back."""
    return changed(session.execute(delete(Replica).where(Replica.instance == instance)))


def prune(session: Session, seen_before: datetime) -> int:
    """Remove the rows of replicas not seen since ``seen_before``, long dead."""
    return changed(session.execute(delete(Replica).where(Replica.seen_at <= seen_before)))


def dead(seen_before: datetime) -> ColumnElement[bool]:
    """A row whose claim holder was last seen at or before ``seen_before``: it counts as dead."""
    return Request.claimed_by.in_(select(Replica.instance).where(Replica.seen_at <= seen_before))


def last_seen(session: Session, instance: str | None) -> datetime | None:
    if instance is None:
        return None
    return session.scalar(select(Replica.seen_at).where(Replica.instance == instance))


def holders(session: Session, other_than: str) -> list[tuple[str, datetime]]:
    """Replicas other than ``other_than`` that hold claims, with when each was last seen."""
    statement = (
        select(Replica.instance, Replica.seen_at)
        .join(Request, Request.claimed_by == Replica.instance)
        .where(Request.status.in_(list(CLAIMS)), Replica.instance != other_than)
        .distinct()
    )
    return [(instance, seen_at) for instance, seen_at in session.execute(statement)]


def release_idle(session: Session, holder: str, now: datetime, in_hand: Collection[int]) -> int:
    """End the leases of ``holder``'s claims that no worker has in hand, so the next sweep takes them up again."""
    statement = update(Request).where(
        Request.claimed_by == holder, Request.status.in_(list(CLAIMS)), Request.lease_until > now
    )
    if in_hand:
        statement = statement.where(Request.id.not_in(list(in_hand)))
    return changed(session.execute(statement.values(lease_until=now).execution_options(synchronize_session=False)))
