"""Claiming backend work: the row moves to ``granting`` or ``revoking`` under this process's name and a lease, in
the same transaction that decides the work is due, so that exactly one process calls the backend for it.

A claim whose holder died (its lease ran out, or its heartbeat stopped) is taken over and audited as such; the new
holder repeats the call, which adapters make safe by being idempotent (``services/access.py`` grants,
``services/revoking.py`` revokes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from bot.adapters.base import GrantContext, Receipt
from bot.domain.actions import AuditAction
from bot.domain.durations import format_duration
from bot.domain.states import CLAIMS, EndReason, Status
from bot.services import heartbeat, tell
from bot.services.common import grant_context, view
from bot.services.deps import Deps
from bot.services.ports import Notice
from bot.store import audit, queries, replicas
from bot.store.models import Request

log = logging.getLogger("breakglass.claims")


class Step(StrEnum):
    GRANT = "grant"
    REVOKE = "revoke"


@dataclass(frozen=True)
class Under:
    resource: str
    level: str | None
    policy_version: str | None


@dataclass(frozen=True)
class Prepared:
    """What a revoke's backend call needs, read in the transaction that claimed it, so that the call can go out
    without another transaction first while the claim is certainly still ours (``trusted``)."""

    ctx: GrantContext
    receipt: Receipt
    attempts_before: int
    made_under: Under
    lease_until: datetime
    hand_backs: int  # the replica's hand-backs when claimed (``Heartbeat.hand_backs``)

    def trusted(self, deps: Deps, now: datetime) -> bool:
        """Whether the claim is still ours without asking the database. Another replica takes a claim over only once
        its lease ran out or its holder's heartbeat died; we stop calling a beat before the latter (the fence), and
        the lease renewal runs every third of a lease, so a call started in the first third of it is covered by our
        lease until the renewal that follows. A hand-back since the claim voids all that."""
        return (
            now < self.lease_until - deps.tuning.lease * 2 / 3
            and deps.heartbeat.hand_backs == self.hand_backs
            and not deps.heartbeat.fenced(now, deps.tuning)
        )


@dataclass(frozen=True)
class Claimed:
    """Backend work this process has claimed and must now finish."""

    request_id: int
    resource: str
    step: Step
    prepared: Prepared | None = None


def request_duration(request: Request) -> timedelta:
    return timedelta(seconds=request.duration_seconds)


def claim(
    deps: Deps,
    session: Session,
    request: Request,
    now: datetime,
    *,
    end_reason: str | None = None,
    actor: str | None = None,
    words: str | None = None,
) -> Claimed | None:
    """Claim the backend work ``request`` needs now, if nobody else did first. Called inside a transaction.
    ``words``: why an early revoke was asked for (an operator's ``--reason``), kept in its audit event."""
    me = deps.tuning.instance
    lease: dict[str, Any] = {"claimed_by": me, "lease_until": now + deps.tuning.lease}
    status = Status(request.status)
    step = Step.REVOKE
    if status is Status.APPROVED:
        step = Step.GRANT
        expires_at = now + request_duration(request)
        won = queries.move(session, request.id, Status.APPROVED, Status.GRANTING, expires_at=expires_at, **lease)
    elif status is Status.ACTIVE:
        ending: dict[str, Any] = {"end_reason": end_reason or EndReason.EXPIRED, "ended_by": actor}
        # Expiry is checked again in the move itself: an extension that committed after this row was read as due
        # keeps its grant.
        expired = [Request.expires_at <= now] if ending["end_reason"] == EndReason.EXPIRED else []
        # Never while an extension holds the row: its backend call and ours must not interleave.
        when = [queries.not_held(now), *expired]
        asked = request.extension_seconds  # an extension still waiting ends with the access it would extend
        dropped = {"extension_seconds": None, "extension_by": None, "extension_asked_at": None} if asked else {}
        won = queries.move(session, request.id, Status.ACTIVE, Status.REVOKING, when=when, **lease, **ending, **dropped)
        if won:
            action = AuditAction.REVOKE_REQUESTED if end_reason == EndReason.REVOKED else AuditAction.EXPIRING
            audit.record(
                session, action, at=now, actor=actor or audit.SYSTEM, request=request, replica=me, comment=words
            )
            if asked:
                _drop_extension(deps, session, request.id, asked, now)
    elif status is Status.REVOKE_FAILED and request.next_attempt_at and request.next_attempt_at <= now:
        when = [Request.next_attempt_at <= now]
        won = queries.move(session, request.id, Status.REVOKE_FAILED, Status.REVOKING, when=when, **lease)
    elif status in CLAIMS and (why := _takeover_reason(deps, session, request, now)) is not None:
        step = Step.GRANT if status is Status.GRANTING else Step.REVOKE
        holder = request.claimed_by
        dead_before = heartbeat.dead_before(deps, now)
        won = queries.move_claim(session, request.id, status, holder, now, dead_before=dead_before, **lease)
        if won and holder != me:
            taken: dict[str, Any] = {"step": step.value, "previous": holder, "replica": me, **why}
            audit.record(session, AuditAction.CLAIM_TAKEN_OVER, at=now, request=request, **taken)
    else:
        return None
    return Claimed(request.id, request.resource, step) if won else None


def _drop_extension(deps: Deps, session: Session, request_id: int, seconds: int, now: datetime) -> None:
    """The holder hears that the more time they asked for will not come: the access it was for has ended."""
    ended = queries.get(session, request_id)
    assert ended is not None
    by = timedelta(seconds=seconds)
    audit.record(session, AuditAction.EXTENSION_DROPPED, at=now, request=ended, by=format_duration(by))
    tell.requester(deps, session, view(deps, session, ended), Notice.EXTENSION_DROPPED)


def _takeover_reason(deps: Deps, session: Session, request: Request, now: datetime) -> dict[str, str] | None:
    """Why a claim may be taken over now: its lease ran out, or its holder's heartbeat stopped; None if neither."""
    if request.lease_until is None:
        return None
    seen = replicas.last_seen(session, request.claimed_by)
    last_seen = {"last_seen": seen.isoformat()} if seen is not None else {}
    if request.lease_until <= now:
        return {"because": "lease", **last_seen}
    if seen is not None and seen <= heartbeat.dead_before(deps, now):
        return {"because": "heartbeat", **last_seen}
    return None


def claim_due(deps: Deps, limit: int) -> list[Claimed]:
    """Claim a batch of due backend work: expiries, retries, and the claims of processes that died."""
    now = deps.now()
    if deps.heartbeat.fenced(now, deps.tuning):
        return []  # we would not start it (see _held); better left for a replica that may
    with deps.db.transaction() as session:
        dead_before = heartbeat.dead_before(deps, now)
        rows = queries.lock_due(session, now, now - deps.tuning.lease, limit, dead_before=dead_before)
        plain = [r for r in rows if _plain_expiry(r, now)]
        claimed = _claim_expiries(deps, session, plain, now)
        claimed += [claim(deps, session, request, now) for request in rows if request not in plain]
    return [c for c in claimed if c is not None]


def _plain_expiry(request: Request, now: datetime) -> bool:
    """Access whose time is up, that no extension holds or waits on: what a wave of expiries is made of."""
    return (
        request.status == Status.ACTIVE
        and request.expires_at is not None
        and request.expires_at <= now
        and (request.claimed_by is None or (request.lease_until is not None and request.lease_until <= now))
        and not request.extension_seconds
    )


def _claim_expiries(deps: Deps, session: Session, rows: list[Request], now: datetime) -> list[Claimed | None]:
    """``claim`` for many plain expiries in one statement: the move checks each row again as ``claim`` does (an
    extension that committed after it was read keeps its grant), and only the rows it moved are audited."""
    if not rows:
        return []
    me = deps.tuning.instance
    won = queries.move_many(
        session,
        [r.id for r in rows],
        Status.ACTIVE,
        Status.REVOKING,
        when=[queries.not_held(now), Request.expires_at <= now, Request.extension_seconds.is_(None)],
        claimed_by=me,
        lease_until=now + deps.tuning.lease,
        end_reason=EndReason.EXPIRED,
        ended_by=None,
    )
    claimed: list[Claimed | None] = []
    for request in rows:
        if request.id in won:
            audit.record(session, AuditAction.EXPIRING, at=now, request=request, replica=me)
            claimed.append(Claimed(request.id, request.resource, Step.REVOKE, prepare(deps, request, now)))
    return claimed


def prepare(deps: Deps, request: Request, now: datetime) -> Prepared:
    """What the revoke's call needs, read from a row claimed (or its claim renewed) at ``now``."""
    assert request.expires_at is not None
    return Prepared(
        ctx=grant_context(deps, request, request.expires_at),
        receipt=Receipt(data=dict(request.receipt or {}), instructions=request.instructions),
        attempts_before=request.revoke_attempts,
        made_under=Under(request.resource, request.level, request.policy_version),
        lease_until=now + deps.tuning.lease,
        hand_backs=deps.heartbeat.hand_backs,
    )


def claim_revoke(deps: Deps, request_id: int, *, end_reason: str | None = None, actor: str | None = None) -> bool:
    """Claim the revoke of one request now (an early revoke). Exactly one claimant wins."""
    with deps.db.transaction() as session:
        request = queries.get(session, request_id)
        if request is None or request.status not in (Status.ACTIVE, Status.REVOKE_FAILED, Status.REVOKING):
            return False
        return claim(deps, session, request, deps.now(), end_reason=end_reason, actor=actor) is not None


def held(deps: Deps, session: Session, request_id: int, status: Status) -> Request | None:
    """The request, if it is in ``status`` under a claim this process holds, with its lease renewed.

    Renewed in the same statement that checks the lease has not run out: work that waited in a lane past its
    lease may already be another replica's (``move_claim`` takes lapsed claims with the mirror condition), and
    exactly one of the two statements can win.

    Nothing is started while this replica is fenced: its heartbeat is so old that others may already count it dead
    and be taking this very claim over (``heartbeat.Heartbeat.fenced``).
    """
    now = deps.now()
    if deps.heartbeat.fenced(now, deps.tuning):
        log.warning("request %s waits: this replica's heartbeat could not be written lately", request_id)
        return None
    if not queries.refresh_claim(session, request_id, status, deps.tuning.instance, now, now + deps.tuning.lease):
        return None
    return queries.get(session, request_id)
