"""What grants' principals did on the backend (``ActivityRecord``), kept with their requests.

A batch is kept and the request's cursor moved past it in one statement pair that only one writer can win
(``store``), so no action is kept twice and none is skipped; every SQL statement about activity lives here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from bot.adapters.base import Activity
from bot.clock import as_utc
from bot.domain.states import Status
from bot.store.chain import instant
from bot.store.models import ActivityRecord, AuditEvent, Request
from bot.store.results import changed


def kept(session: Session, request_id: int, limit: int | None = None) -> Sequence[ActivityRecord]:
    """The actions kept for a request, oldest first (at most ``limit``)."""
    statement = select(ActivityRecord).where(ActivityRecord.request_id == request_id).order_by(ActivityRecord.id)
    if limit is not None:
        statement = statement.limit(limit)
    return session.scalars(statement).all()


def kept_count(session: Session, request_id: int) -> int:
    counted = select(func.count()).select_from(ActivityRecord).where(ActivityRecord.request_id == request_id)
    return int(session.scalar(counted) or 0)


# -- reading: which grants are due, and taking one for a period ------------------------------------------------------

LIVE = (Status.ACTIVE.value, Status.REVOKING.value, Status.REVOKE_FAILED.value)


@dataclass(frozen=True)
class Watched:
    """A watched request, as the reader needs it to decide whether a read is due."""

    request_id: int
    resource: str
    level: str | None
    status: str
    read_at: datetime | None


def watched(session: Session, limit: int) -> list[Watched]:
    """Watched requests: live ones, and ended ones whose last read and unwatch did not happen (a crash at revoke)."""
    statement = (
        select(Request.id, Request.resource, Request.level, Request.status, Request.activity_read_at)
        .where(Request.watching.is_(True))
        .order_by(Request.activity_read_at.is_not(None), Request.activity_read_at, Request.id)
        .limit(limit)
    )
    return [Watched(row[0], row[1], row[2], row[3], row[4]) for row in session.execute(statement)]


def take(session: Session, request_id: int, now: datetime, read_before: datetime) -> bool:
    """Take the read of one request for this period, by compare-and-set: whoever moves ``activity_read_at`` from
    before ``read_before`` (or from never) to ``now`` reads it; every other replica finds it moved and leaves it."""
    taken = session.execute(
        update(Request)
        .where(
            Request.id == request_id,
            Request.watching.is_(True),
            or_(Request.activity_read_at.is_(None), Request.activity_read_at < read_before),
        )
        .values(activity_read_at=now)
        .execution_options(synchronize_session=False)
    )
    return changed(taken) == 1


def store(
    session: Session,
    request_id: int,
    *,
    cursor_was: str | None,
    seen_was: int,
    cursor: str | None,
    items: Sequence[Activity],
    flagged: Sequence[str | None],
    kept_at_most: int,
    now: datetime,
) -> list[ActivityRecord] | None:
    """Keep a batch and move the cursor past it, both or neither. None if the cursor was moved meanwhile (someone else
    stored this batch: the read at revoke and a periodic one can overlap), so a batch is never kept twice. Only the
    first ``kept_at_most`` actions of a request are kept; all are counted in ``activity_seen``."""
    same_cursor = Request.activity_cursor.is_(None) if cursor_was is None else Request.activity_cursor == cursor_was
    moved = session.execute(
        update(Request)
        .where(Request.id == request_id, Request.activity_seen == seen_was, same_cursor)
        .values(activity_cursor=cursor, activity_seen=seen_was + len(items))
        .execution_options(synchronize_session=False)
    )
    if changed(moved) != 1:
        return None
    room = max(kept_at_most - kept_count(session, request_id), 0)
    rows = [
        ActivityRecord(
            request_id=request_id,
            at=item.at,
            principal=item.principal,
            action=item.action,
            detail=item.detail,
            flagged=pattern,
            captured_at=now,
        )
        for item, pattern in list(zip(items, flagged, strict=True))[:room]
    ]
    session.add_all(rows)
    session.flush()
    return rows


def stop(session: Session, request_id: int) -> bool:
    """Capture of this request is over (after its last read and the unwatch). True for the one caller that ends it."""
    stopped = session.execute(
        update(Request)
        .where(Request.id == request_id, Request.watching.is_(True))
        .values(watching=False)
        .execution_options(synchronize_session=False)
    )
    return changed(stopped) == 1


def last_event(session: Session, request_id: int, actions: Sequence[str]) -> AuditEvent | None:
    """The request's newest audit event among ``actions``: where its capture stands (read lately, or failing)."""
    statement = (
        select(AuditEvent)
        .where(AuditEvent.request_id == request_id, AuditEvent.action.in_(actions))
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
    return session.scalars(statement).first()


# -- tamper evidence -------------------------------------------------------------------------------------------------


def row_data(row: ActivityRecord) -> dict[str, Any]:
    """One kept action as plain JSON: what the export shows and what ``batch_hash`` covers (not the storage id)."""
    return {
        "at": instant(as_utc(row.at)),
        "principal": row.principal,
        "action": row.action,
        "detail": row.detail or {},
        "flagged": row.flagged,
    }


def batch_hash(rows: Iterable[dict[str, Any]]) -> str:
    """SHA-256 over a batch's kept rows (``row_data``), each as sorted, compact, ASCII JSON on its own line, in the
    order kept. The batch's ``activity_captured`` event carries it, so the chain vouches for the kept record."""
    digest = hashlib.sha256()
    for data in rows:
        digest.update(json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii"))
        digest.update(b"\n")
    return digest.hexdigest()


def batch(session: Session, request_id: int, first_id: int, last_id: int) -> Sequence[ActivityRecord]:
    """The rows one ``activity_captured`` event kept (its ``first_id``..``last_id``), in order."""
    statement = (
        select(ActivityRecord)
        .where(
            ActivityRecord.request_id == request_id,
            ActivityRecord.id >= first_id,
            ActivityRecord.id <= last_id,
        )
        .order_by(ActivityRecord.id)
    )
    return session.scalars(statement).all()
