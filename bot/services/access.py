"""Granting and revoking access through the resource's adapter.

Every backend call happens under a claim: the request moves to ``granting`` or ``revoking`` with this process's
name and a lease, in the database, before the adapter is called. Only the adapter's answer moves it on. If the
process dies mid-call, the lease runs out and whoever takes the claim over repeats the call; adapters are
idempotent, so repeating is safe where forgetting would not be.

A grant that fails in a way that leaves doubt (a timeout, a 5xx, an adapter bug) is undone with a revoke before
the request settles at ``grant_failed``, so access the backend made but never confirmed cannot linger.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from bot.adapters.base import AdapterError, GrantContext, Receipt
from bot.domain.rules import Refused, check_still_requester
from bot.domain.states import CLAIMS, Status
from bot.services.common import announce, grant_context, view
from bot.services.deadline import Overdue, call_within
from bot.services.deps import Deps
from bot.services.ports import MembershipUnknown, Notice
from bot.services.views import RequestView
from bot.store import audit, queries
from bot.store.models import Request, Review

log = logging.getLogger("breakglass.access")

GRANT_FAILED = "grant_failed"  # the end_reason of a revoke that undoes a failed grant


class Step(StrEnum):
    GRANT = "grant"
    REVOKE = "revoke"


@dataclass(frozen=True)
class Claimed:
    """Backend work this process has claimed and must now finish."""

    request_id: int
    resource: str
    step: Step


def request_duration(request: Request) -> timedelta:
    return timedelta(seconds=request.duration_seconds)


# -- claims ------------------------------------------------------------------------------------------------------


def claim(
    deps: Deps,
    session: Session,
    request: Request,
    now: datetime,
    *,
    end_reason: str | None = None,
    actor: str | None = None,
) -> Claimed | None:
    """Claim the backend work ``request`` needs now, if nobody else did first. Called inside a transaction."""
    me = deps.tuning.instance
    lease = {"claimed_by": me, "lease_until": now + deps.tuning.lease}
    status = Status(request.status)
    step = Step.REVOKE
    if status is Status.APPROVED:
        step = Step.GRANT
        expires_at = now + request_duration(request)
        won = queries.move(session, request.id, Status.APPROVED, Status.GRANTING, expires_at=expires_at, **lease)
    elif status is Status.ACTIVE:
        ending = {"end_reason": end_reason or "expired", "ended_by": actor}
        # Expiry is checked again in the move itself: an extension that committed after this row was read as due
        # keeps its grant.
        expired = [Request.expires_at <= now] if ending["end_reason"] == "expired" else []
        # Never while an extension holds the row: its backend call and ours must not interleave.
        when = [queries.not_held(now), *expired]
        won = queries.move(session, request.id, Status.ACTIVE, Status.REVOKING, when=when, **lease, **ending)
        if won:
            action = "revoke_requested" if end_reason == "revoked" else "expiring"
            audit.record(session, action, at=now, actor=actor or audit.SYSTEM, request=request, replica=me)
    elif status is Status.REVOKE_FAILED and request.next_attempt_at and request.next_attempt_at <= now:
        when = [Request.next_attempt_at <= now]
        won = queries.move(session, request.id, Status.REVOKE_FAILED, Status.REVOKING, when=when, **lease)
    elif status in CLAIMS and request.lease_until and request.lease_until <= now:
        step = Step.GRANT if status is Status.GRANTING else Step.REVOKE
        holder = request.claimed_by
        won = queries.move_claim(session, request.id, status, holder, now, **lease)
        if won and holder != me:
            taken = {"step": step.value, "previous": holder, "replica": me}
            audit.record(session, "claim_taken_over", at=now, request=request, **taken)
    else:
        return None
    return Claimed(request.id, request.resource, step) if won else None


def claim_due(deps: Deps, limit: int) -> list[Claimed]:
    """Claim a batch of due backend work: expiries, retries, and the claims of processes that died."""
    now = deps.now()
    with deps.db.transaction() as session:
        rows = queries.lock_due(session, now, now - deps.tuning.lease, limit)
        claimed = [claim(deps, session, request, now) for request in rows]
    return [c for c in claimed if c is not None]


def claim_revoke(deps: Deps, request_id: int, *, end_reason: str | None = None, actor: str | None = None) -> bool:
    """Claim the revoke of one request now (an early revoke). Exactly one claimant wins."""
    with deps.db.transaction() as session:
        request = queries.get(session, request_id)
        if request is None or request.status not in (Status.ACTIVE, Status.REVOKE_FAILED, Status.REVOKING):
            return False
        return claim(deps, session, request, deps.now(), end_reason=end_reason, actor=actor) is not None


def finish(deps: Deps, claimed: Claimed) -> RequestView | None:
    return (finish_grant if claimed.step is Step.GRANT else finish_revoke)(deps, claimed.request_id)


def _held(deps: Deps, session: Session, request_id: int, status: Status) -> Request | None:
    """The request, if it is in ``status`` under a claim this process holds, with its lease renewed.

    Renewed in the same statement that checks the lease has not run out: work that waited in a lane past its
    lease may already be another replica's (``move_claim`` takes lapsed claims with the mirror condition), and
    exactly one of the two statements can win.
    """
    now = deps.now()
    if not queries.refresh_claim(session, request_id, status, deps.tuning.instance, now, now + deps.tuning.lease):
        return None
    return queries.get(session, request_id)


def _expiry(request: Request) -> datetime:
    assert request.expires_at is not None, "a claimed request always has its expiry fixed"
    return request.expires_at


# -- granting ----------------------------------------------------------------------------------------------------


def finish_grant(deps: Deps, request_id: int) -> RequestView | None:
    me = deps.tuning.instance
    with deps.leases.holding(request_id):
        with deps.db.transaction() as session:
            request = _held(deps, session, request_id, Status.GRANTING)
            if request is None:
                return None
            ctx = grant_context(deps, request, _expiry(request))
            duration = request_duration(request)
        if deps.now() >= ctx.expires_at:
            # Taken over too late to be of use: finish by making sure nothing the dead holder did is left.
            return _undo(
                deps,
                request_id,
                AdapterError("the grant was interrupted and its time ran out", retryable=True),
                "expired",
            )
        adapter = deps.adapters.get(ctx.resource)
        try:
            if adapter is None:
                raise AdapterError(f"{ctx.resource} is no longer in the policy", retryable=False)
            _check_still_allowed(deps, ctx)
            receipt = _grant_with_retries(deps, adapter.grant, ctx)
        except Exception as raised:
            return _grant_failed(deps, request_id, adapter_error(raised))

        now = deps.now()
        warned_at = now if duration <= deps.tuning.expiry_warning * 2 else None
        with deps.db.transaction() as session:
            moved = queries.move(
                session,
                request_id,
                Status.GRANTING,
                Status.ACTIVE,
                held_by=me,
                granted_at=now,
                warned_at=warned_at,
                receipt=deps.redactor.scrub_data(receipt.data),  # no secrets by contract; made sure of
                instructions=deps.redactor.scrub(receipt.instructions) if receipt.instructions else None,
                claimed_by=None,
                lease_until=None,
            )
            request = queries.get(session, request_id)
            assert request is not None
            if moved:
                audit.record(session, "granted", at=now, request=request, expires_at=ctx.expires_at.isoformat())
            current = view(deps, session, request)
    if not moved:
        return None
    deps.alarms.wake_at(ctx.expires_at)
    if warned_at is None:
        deps.alarms.wake_at(ctx.expires_at - deps.tuning.expiry_warning)
    deps.notifier.refresh(current)
    announce(deps, current, Notice.EMERGENCY if current.emergency else Notice.ACTIVE)
    if receipt.credentials:
        deps.notifier.send_credentials(current, receipt.credentials)
    return current


def _check_still_allowed(deps: Deps, ctx: GrantContext) -> None:
    """The last look before access is made: the requester may still ask for the resource, and an emergency is still
    allowed on it. The approval was checked when given, but a grant can start later (a takeover, a retry)."""
    resource = deps.policy.resource(ctx.resource)
    assert resource is not None, "an adapter exists only for a resource in the policy"
    try:
        allowed = deps.may_request(ctx.user.slack_id, resource)
    except MembershipUnknown:  # failing closed, and saying why: not "offboarded"; nothing was sent, nothing to undo
        raise AdapterError(
            "could not confirm with Slack that the requester may still request it; ask again", retryable=False
        ) from None
    try:
        check_still_requester(resource=ctx.resource, allowed=allowed, request_id=ctx.request_number)
    except Refused as refusal:
        raise AdapterError(str(refusal), retryable=False) from None
    if ctx.emergency and not resource.emergency:
        raise AdapterError(f"{ctx.resource} no longer allows emergency access", retryable=False)


def _grant_with_retries(deps: Deps, call: Callable[[GrantContext], Receipt], ctx: GrantContext) -> Receipt:
    attempts = max(deps.tuning.grant_attempts, 1)
    for attempt in range(1, attempts + 1):
        try:
            return call_backend(deps, call, ctx)
        except AdapterError as error:
            if not error.retryable or attempt == attempts:
                raise
            deps.tuning.pause(deps.tuning.grant_retry_pause * attempt)
    raise AssertionError("unreachable")


def _grant_failed(deps: Deps, request_id: int, error: AdapterError) -> RequestView | None:
    """The backend said no: report it. The backend may have said yes without our hearing it: undo, then report."""
    error = scrubbed(deps, error)
    if error.retryable:
        return _undo(deps, request_id, error, GRANT_FAILED)
    now = deps.now()
    with deps.db.transaction() as session:
        moved = queries.move(
            session,
            request_id,
            Status.GRANTING,
            Status.GRANT_FAILED,
            held_by=deps.tuning.instance,
            failure=str(error),
            ended_at=now,
            claimed_by=None,
            lease_until=None,
        )
        request = queries.get(session, request_id)
        assert request is not None
        if moved:
            audit.record(session, "grant_failed", at=now, request=request, error=str(error))
        current = view(deps, session, request)
    if moved:
        _tell_grant_failed(deps, current, error)
    return current


def _undo(deps: Deps, request_id: int, error: AdapterError, end_reason: str) -> RequestView | None:
    """Turn our grant claim into a revoke claim, and revoke: what may exist on the backend must not outlive us."""
    error = scrubbed(deps, error)
    now = deps.now()
    with deps.db.transaction() as session:
        moved = queries.move(
            session,
            request_id,
            Status.GRANTING,
            Status.REVOKING,
            held_by=deps.tuning.instance,
            end_reason=end_reason,
            failure=str(error) if end_reason == GRANT_FAILED else None,
            lease_until=now + deps.tuning.lease,
        )
        request = queries.get(session, request_id)
        assert request is not None
        if moved:
            action = "grant_failed" if end_reason == GRANT_FAILED else "expiring"
            audit.record(session, action, at=now, request=request, error=str(error), undo=True)
        current = view(deps, session, request)
    if not moved:
        return None
    if end_reason == GRANT_FAILED:
        _tell_grant_failed(deps, current, error)
    return finish_revoke(deps, request_id)


def _tell_grant_failed(deps: Deps, current: RequestView, error: AdapterError) -> None:
    log.warning("grant of request %s failed: %s", current.id, error)
    deps.notifier.refresh(current)
    announce(deps, current, Notice.GRANT_FAILED)
    deps.notifier.tell_channel(deps.policy.channels.audit, current, Notice.GRANT_FAILED)


# -- revoking ----------------------------------------------------------------------------------------------------


def finish_revoke(deps: Deps, request_id: int) -> RequestView | None:
    """Revoke a request this process has claimed; record the outcome only as the adapter reports it."""
    with deps.leases.holding(request_id):
        with deps.db.transaction() as session:
            request = _held(deps, session, request_id, Status.REVOKING)
            if request is None:
                return None
            ctx = grant_context(deps, request, _expiry(request))
            receipt = Receipt(data=dict(request.receipt or {}), instructions=request.instructions)
            attempts_before = request.revoke_attempts
        adapter = deps.adapters.get(ctx.resource)
        try:
            if adapter is None:
                missing = f"{ctx.resource} is no longer in the policy; cannot reach its backend"
                raise AdapterError(missing, retryable=True)
            call_backend(deps, adapter.revoke, ctx, receipt)
        except Exception as raised:
            return _revoke_failed(deps, request_id, adapter_error(raised))
        return _revoked(deps, request_id, attempts_before)


def _revoked(deps: Deps, request_id: int, attempts_before: int) -> RequestView | None:
    now = deps.now()
    with deps.db.transaction() as session:
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
        action = "grant_undone" if final is Status.GRANT_FAILED else final.value
        audit.record(session, action, at=now, actor=request.ended_by or audit.SYSTEM, request=request)
        review_asked = final is not Status.GRANT_FAILED and _ask_for_review(deps, session, request, now)
        current = view(deps, session, request)
    deps.notifier.refresh(current)
    if final is not Status.GRANT_FAILED:
        announce(deps, current, Notice.REVOKED if final is Status.REVOKED else Notice.EXPIRED)
    if attempts_before >= deps.tuning.revoke_alert_after:
        deps.notifier.tell_channel(deps.policy.channels.audit, current, Notice.REVOKE_RECOVERED)
    if review_asked:
        deps.notifier.tell_requester(current, Notice.REVIEW_DUE)
        deps.alarms.wake_at(now + deps.policy.review.remind_every)
    return current


def _final_status(end_reason: str | None) -> Status:
    if end_reason == GRANT_FAILED:
        return Status.GRANT_FAILED
    return Status.REVOKED if end_reason == "revoked" else Status.EXPIRED


def _ask_for_review(deps: Deps, session: Session, request: Request, now: datetime) -> bool:
    if request.granted_at is None:  # access was never given (a grant taken over too late): nothing to review
        return False
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


# -- calling the backend -----------------------------------------------------------------------------------------


def call_backend(deps: Deps, call: Callable[..., Any], *args: Any) -> Any:
    try:
        return call_within(deps.tuning.call_timeout, call, *args)
    except Overdue as overdue:
        raise AdapterError(f"the backend gave {overdue}", retryable=True) from None


def scrubbed(deps: Deps, error: AdapterError) -> AdapterError:
    """The error with every secret the process knows blanked out: its text is stored, audited and shown in Slack,
    and a backend's answer may quote a credential the adapter itself did not know to hide."""
    clean = deps.redactor.scrub(str(error))
    return error if clean == str(error) else AdapterError(clean, retryable=error.retryable)


def adapter_error(error: Exception) -> AdapterError:
    if isinstance(error, AdapterError):
        return error
    # An adapter bug: keep the type, not the text, which may carry connection strings or secrets.
    log.error("adapter raised %s", type(error).__name__, exc_info=error)
    return AdapterError(f"adapter failed unexpectedly ({type(error).__name__})", retryable=True)
