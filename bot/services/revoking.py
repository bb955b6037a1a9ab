"""Revoking access through the resource's adapter, under a claim this process holds (``services/claims.py``).

A revoke is believed only once the backend confirms it: where the adapter ``Verifies``, it is asked afterwards, and
access still there (or an answer that cannot tell) is a failed revoke, retried and shown (``services/backend.py``).
Only the adapter's answer moves the request on; a process that dies mid-call leaves the claim to be taken over, and
the call repeated, which adapters make safe by being idempotent. The sweep's lanes hand a confirmed revoke to the
recorder (``services/recorder.py``), so the lane is free for its next call at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from bot.adapters.base import AdapterError
from bot.domain.actions import AuditAction
from bot.domain.states import Status
from bot.services import activity, tell
from bot.services.backend import adapter_error, revoke_confirmed, scrubbed
from bot.services.claims import Prepared, held, prepare
from bot.services.common import view
from bot.services.deps import Deps
from bot.services.ports import Notice
from bot.services.snapshots import RequestView
from bot.store import audit, queries
from bot.store.models import Request, Review

log = logging.getLogger("breakglass.access")

GRANT_FAILED = "grant_failed"  # the end_reason of a revoke that undoes a failed grant


def finish_revoke(deps: Deps, request_id: int) -> RequestView | None:
    """Revoke a request this process has claimed; record the outcome only as the adapter reports it."""
    with deps.leases.holding(request_id):
        outcome = _revoke_call(deps, request_id)
        if not isinstance(outcome, Confirmed):
            return outcome
        with deps.db.transaction() as session:
            ended = record_revoked(deps, session, request_id, outcome.attempts_before, deps.now())
    return after_revoked(deps, ended)


def revoke_then(
    deps: Deps, request_id: int, record: Record, prepared: Prepared | None = None
) -> RequestView | Future[Ended | None] | None:
    """``finish_revoke`` for the sweep's lanes: a confirmed revoke is handed to ``record`` (which batches) and its
    future returned, so the lane is free for the next backend call at once. The claim stays held meanwhile. With
    what the claim ``prepared``, the call goes out without a transaction first while the claim is trusted."""
    with deps.leases.holding(request_id):
        outcome = _revoke_call(deps, request_id, prepared)
        return record(request_id, outcome.attempts_before) if isinstance(outcome, Confirmed) else outcome


@dataclass(frozen=True)
class Confirmed:
    attempts_before: int  # the failed attempts before this one: a recovery after an alert is announced


def _revoke_call(deps: Deps, request_id: int, prepared: Prepared | None = None) -> Confirmed | RequestView | None:
    """The backend call of a revoke this process has claimed: Confirmed, or the failure recorded (or None: the
    claim is no longer ours)."""
    if prepared is None or not prepared.trusted(deps, deps.now()):
        with deps.db.transaction() as session:
            request = held(deps, session, request_id, Status.REVOKING)
            if request is None:
                return None
            prepared = prepare(deps, request, deps.now())
    adapter = deps.adapter_for(prepared.made_under)  # the backend and params it was granted with, whatever a reload did
    try:
        if adapter is None:
            missing = f"{prepared.ctx.label} is no longer in the policy; cannot reach its backend"
            raise AdapterError(missing, retryable=True)
        revoke_confirmed(deps, adapter, prepared.ctx, prepared.receipt)  # verified where the backend can be asked
    except Exception as raised:
        return _revoke_failed(deps, request_id, adapter_error(raised))
    return Confirmed(prepared.attempts_before)


@dataclass(frozen=True)
class Ended:
    """A confirmed revoke, recorded: what is owed once its transaction has committed."""

    current: RequestView
    final: Status
    review_asked: bool
    late_by: timedelta | None
    at: datetime


Record = Callable[[int, int], "Future[Ended | None]"]  # (request id, revoke attempts before): the outcome, recorded


def record_revoked(deps: Deps, session: Session, request_id: int, attempts_before: int, now: datetime) -> Ended | None:
    """Record a revoke the backend confirmed, in ``session``; None if the request was no longer ours to record."""
    request = queries.get(session, request_id)
    assert request is not None
    final = _final_status(request.end_reason)
    done = queries.move(
        session,
        request_id,
        Status.REVOKING,
        final,
        held_by=deps.tuning.instance,
        ended_at=now,
        claimed_by=None,
        lease_until=None,
        next_attempt_at=None,
    )
    if not done:
        return None
    request = queries.get(session, request_id)
    assert request is not None
    action = AuditAction.GRANT_UNDONE if final is Status.GRANT_FAILED else AuditAction(final.value)
    audit.record(session, action, at=now, actor=request.ended_by or audit.SYSTEM, request=request)
    review_asked = final is not Status.GRANT_FAILED and _ask_for_review(deps, session, request, now)
    current = view(deps, session, request)
    tell.refresh(deps, session, current)
    if final is not Status.GRANT_FAILED:
        tell.announce(deps, session, current, Notice.REVOKED if final is Status.REVOKED else Notice.EXPIRED)
    if attempts_before >= deps.tuning.revoke_alert_after:
        tell.audit_channel(deps, session, current, Notice.REVOKE_RECOVERED)
    if review_asked:
        tell.announce(deps, session, current, Notice.REVIEW_DUE)
    late_by = now - request.expires_at if final is Status.EXPIRED and request.expires_at is not None else None
    return Ended(current, final, review_asked, late_by, now)


def after_revoked(deps: Deps, ended: Ended | None) -> RequestView | None:
    """What a recorded revoke owes once committed: its metrics, its messages, the review's reminder, the last read
    of its activity."""
    if ended is None:
        return None
    current = ended.current
    if ended.final is not Status.GRANT_FAILED:
        deps.metrics.revoked(current.resource, ended.late_by)
    deps.courier.deliver(current.id)
    if ended.review_asked:
        deps.alarms.wake_at(ended.at + deps.policy.review.remind_every)
    activity.finish(deps, current.id)  # the last read and the unwatch; never fails the revoke, already recorded
    return current


def _final_status(end_reason: str | None) -> Status:
    if end_reason == GRANT_FAILED:
        return Status.GRANT_FAILED
    return Status.REVOKED if end_reason == "revoked" else Status.EXPIRED


def _ask_for_review(deps: Deps, session: Session, request: Request, now: datetime) -> bool:
    if request.granted_at is None:  # access was never given (a grant taken over too late): nothing to review
        return False
    if request.drill:  # the bot held it, for a drill: there is nobody to account for it
        return False
    # Owed as the policy it was granted under said: a reload does not waive (or add) a review for access given.
    if not deps.policy_for(request).needs_review(request.emergency) or queries.review(session, request.id) is not None:
        return False
    session.add(
        Review(
            request_id=request.id,
            status="due",
            requested_at=now,
            next_reminder_at=now + deps.policy.review.remind_every,
            reminders_sent=0,
        )
    )
    audit.record(session, AuditAction.REVIEW_DUE, at=now, request=request)
    return True


def _revoke_failed(deps: Deps, request_id: int, error: AdapterError) -> RequestView | None:
    error = scrubbed(deps, error)
    now = deps.now()
    with deps.db.transaction() as session:
        request = queries.get(session, request_id)
        assert request is not None
        attempts = request.revoke_attempts + 1
        retry_at = now + deps.tuning.retry_wait(attempts)
        moved = queries.move(
            session,
            request_id,
            Status.REVOKING,
            Status.REVOKE_FAILED,
            held_by=deps.tuning.instance,
            revoke_attempts=attempts,
            next_attempt_at=retry_at,
            failure=str(error),
            claimed_by=None,
            lease_until=None,
        )
        if not moved:
            return None
        audit.record(session, AuditAction.REVOKE_FAILED, at=now, request=request, error=str(error), attempt=attempts)
        request = queries.get(session, request_id)
        assert request is not None
        current = view(deps, session, request)
        tell.refresh(deps, session, current)
        if attempts == deps.tuning.revoke_alert_after:
            tell.audit_channel(deps, session, current, Notice.REVOKE_FAILED)
    deps.metrics.revoke_failed(current.resource)
    log.warning("revoke of request %s failed (attempt %s): %s", request_id, attempts, error)
    deps.alarms.wake_at(retry_at)
    deps.courier.deliver(request_id)
    return current
