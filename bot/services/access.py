"""Granting and revoking access through the resource's adapter.

The database records the intent first (a claim), the adapter acts, and only the adapter's confirmation moves the
request on. A failed revoke is retried with backoff and announced; it is never marked done on hope.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from bot.adapters.base import AdapterError, GrantContext, Receipt
from bot.domain.states import Status
from bot.services.common import announce, grant_context, view
from bot.services.deps import Deps
from bot.services.ports import Notice
from bot.services.views import RequestView
from bot.store import audit, queries
from bot.store.models import Request, Review

log = logging.getLogger("breakglass.access")


def _adapter_error(error: Exception) -> AdapterError:
    if isinstance(error, AdapterError):
        return error
    # An adapter bug: keep the type, not the text, which may carry connection strings or secrets.
    log.exception("adapter raised %s", type(error).__name__)
    return AdapterError(f"adapter failed unexpectedly ({type(error).__name__})", retryable=True)


def grant(deps: Deps, request_id: int) -> RequestView | None:
    """Make an approved request's access real. Returns the new state, or None if it was not ours to grant."""
    now = deps.now()
    with deps.db.transaction() as session:
        request = queries.get(session, request_id)
        if request is None or request.status != Status.APPROVED:
            return None
        expires_at = now + request_duration(request)
        ctx = grant_context(request, expires_at)
    adapter = deps.adapters.get(ctx.resource)
    try:
        if adapter is None:
            raise AdapterError(f"{ctx.resource} is no longer in the policy", retryable=False)
        receipt = _grant_with_retries(deps, adapter.grant, ctx)
    except Exception as raised:
        return _grant_failed(deps, request_id, _adapter_error(raised))

    warned_at = now if request_duration(request) <= deps.tuning.expiry_warning * 2 else None
    with deps.db.transaction() as session:
        moved = queries.move(
            session,
            request_id,
            Status.APPROVED,
            Status.ACTIVE,
            granted_at=now,
            expires_at=expires_at,
            warned_at=warned_at,
            receipt=receipt.data,
            instructions=receipt.instructions,
        )
        request = queries.get(session, request_id)
        assert request is not None
        if moved:
            audit.record(session, "granted", at=now, request=request, expires_at=expires_at.isoformat())
        current = view(deps, session, request)
    if not moved:
        return None
    deps.alarms.wake_at(expires_at)
    if warned_at is None:
        deps.alarms.wake_at(expires_at - deps.tuning.expiry_warning)
    deps.notifier.refresh(current)
    announce(deps, current, Notice.EMERGENCY if current.emergency else Notice.ACTIVE)
    return current


def _grant_with_retries(deps: Deps, call: Callable[[GrantContext], Receipt], ctx: GrantContext) -> Receipt:
    attempts = max(deps.tuning.grant_attempts, 1)
    for attempt in range(1, attempts + 1):
        try:
            return call(ctx)
        except AdapterError as error:
            if not error.retryable or attempt == attempts:
                raise
            deps.tuning.pause(deps.tuning.grant_retry_pause * attempt)
    raise AssertionError("unreachable")


def _grant_failed(deps: Deps, request_id: int, error: AdapterError) -> RequestView | None:
    now = deps.now()
    with deps.db.transaction() as session:
        moved = queries.move(session, request_id, Status.APPROVED, Status.GRANT_FAILED, failure=str(error))
        request = queries.get(session, request_id)
        assert request is not None
        if moved:
            audit.record(session, "grant_failed", at=now, request=request, error=str(error))
        current = view(deps, session, request)
    if moved:
        log.warning("grant of request %s failed: %s", request_id, error)
        deps.notifier.refresh(current)
        announce(deps, current, Notice.GRANT_FAILED)
        deps.notifier.tell_channel(deps.policy.channels.audit, current, Notice.GRANT_FAILED)
    return current


def request_duration(request: Request) -> timedelta:
    return timedelta(seconds=request.duration_seconds)


def claim_revoke(deps: Deps, request_id: int, *, end_reason: str | None = None, actor: str | None = None) -> bool:
    """Take the revoke of one request for this process: from active, a failed revoke due for retry, or a claim
    whose holder's lease ran out. Exactly one claimant wins."""
    now = deps.now()
    lease = {"claimed_by": deps.tuning.instance, "lease_until": now + deps.tuning.lease}
    with deps.db.transaction() as session:
        request = queries.get(session, request_id)
        if request is None:
            return False
        status = Status(request.status)
        if status is Status.ACTIVE:
            ending = {"end_reason": end_reason or "expired", "ended_by": actor}
            won = queries.move(session, request_id, Status.ACTIVE, Status.REVOKING, **lease, **ending)
        elif status is Status.REVOKE_FAILED and request.next_attempt_at and request.next_attempt_at <= now:
            won = queries.move(
                session,
                request_id,
                Status.REVOKE_FAILED,
                Status.REVOKING,
                when=[Request.next_attempt_at <= now],
                **lease,
            )
        elif status is Status.REVOKING and request.lease_until and request.lease_until <= now:
            won = queries.move_claim(session, request_id, request.claimed_by, now, **lease)
        else:
            return False
        if won and status is Status.ACTIVE:
            action = "revoke_requested" if end_reason == "revoked" else "expiring"
            audit.record(session, action, at=now, actor=actor or audit.SYSTEM, request=request)
        return won


def finish_revoke(deps: Deps, request_id: int) -> RequestView | None:
    """Revoke a request this process has claimed; record the outcome only as the adapter reports it."""
    me = deps.tuning.instance
    with deps.db.transaction() as session:
        request = queries.get(session, request_id)
        if request is None or request.status != Status.REVOKING or request.claimed_by != me:
            return None
        assert request.expires_at is not None
        ctx = grant_context(request, request.expires_at)
        receipt = Receipt(data=dict(request.receipt or {}), instructions=request.instructions)
        attempts_before = request.revoke_attempts
    adapter = deps.adapters.get(ctx.resource)
    try:
        if adapter is None:
            raise AdapterError(f"{ctx.resource} is no longer in the policy; cannot reach its backend", retryable=True)
        adapter.revoke(ctx, receipt)
    except Exception as raised:
        return _revoke_failed(deps, request_id, _adapter_error(raised))

    now = deps.now()
    with deps.db.transaction() as session:
        request = queries.get(session, request_id)
        assert request is not None
        final = Status.REVOKED if request.end_reason == "revoked" else Status.EXPIRED
        done = queries.move(
            session,
            request_id,
            Status.REVOKING,
            final,
            when=[Request.claimed_by == me],
            ended_at=now,
            claimed_by=None,
            lease_until=None,
            next_attempt_at=None,
        )
        if not done:
            return None
        request = queries.get(session, request_id)
        assert request is not None
        audit.record(session, final.value, at=now, actor=request.ended_by or audit.SYSTEM, request=request)
        review_asked = _ask_for_review(deps, session, request, now)
        current = view(deps, session, request)
    deps.notifier.refresh(current)
    announce(deps, current, Notice.REVOKED if final is Status.REVOKED else Notice.EXPIRED)
    if attempts_before >= deps.tuning.revoke_alert_after:
        deps.notifier.tell_channel(deps.policy.channels.audit, current, Notice.REVOKE_RECOVERED)
    if review_asked:
        deps.notifier.tell_requester(current, Notice.REVIEW_DUE)
        deps.alarms.wake_at(now + deps.policy.review.remind_every)
    return current


def _ask_for_review(deps: Deps, session: Session, request: Request, now: datetime) -> bool:
    if not deps.policy.needs_review(request.emergency) or queries.review(session, request.id) is not None:
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
    audit.record(session, "review_due", at=now, request=request)
    return True


def _revoke_failed(deps: Deps, request_id: int, error: AdapterError) -> RequestView | None:
    now = deps.now()
    with deps.db.transaction() as session:
        request = queries.get(session, request_id)
        assert request is not None
        attempts = request.revoke_attempts + 1
        retry_at = now + deps.tuning.backoff(attempts)
        moved = queries.move(
            session,
            request_id,
            Status.REVOKING,
            Status.REVOKE_FAILED,
            when=[Request.claimed_by == deps.tuning.instance],
            revoke_attempts=attempts,
            next_attempt_at=retry_at,
            failure=str(error),
            claimed_by=None,
            lease_until=None,
        )
        if not moved:
            return None
        audit.record(session, "revoke_failed", at=now, request=request, error=str(error), attempt=attempts)
        request = queries.get(session, request_id)
        assert request is not None
        current = view(deps, session, request)
    log.warning("revoke of request %s failed (attempt %s): %s", request_id, attempts, error)
    deps.alarms.wake_at(retry_at)
    deps.notifier.refresh(current)
    if attempts == deps.tuning.revoke_alert_after:
        deps.notifier.tell_channel(deps.policy.channels.audit, current, Notice.REVOKE_FAILED)
    return current
