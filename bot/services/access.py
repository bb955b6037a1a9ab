"""Granting and revoking access through the resource's adapter.

Every backend call happens under a claim (``services/claims.py``): the request moves to ``granting`` or ``revoking``
with this process's name and a lease, in the database, before the adapter is called. Only the adapter's answer
moves it on. If the process dies mid-call, its heartbeat stops (or, for a holder without one, the lease runs out)
and whoever takes the claim over repeats the call; adapters are idempotent, so repeating is safe where forgetting
would not be.

A grant that fails in a way that leaves doubt (a timeout, a 5xx, an adapter bug) is undone with a revoke before
the request settles at ``grant_failed``, so access the backend made but never confirmed cannot linger.

A revoke is believed only once the backend confirms it: where the adapter ``Verifies``, it is asked afterwards, and
access still there (or an answer that cannot tell) is a failed revoke, retried and shown (``services/backend.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from bot.adapters.base import AdapterError, GrantContext, Receipt
from bot.domain.actions import AuditAction
from bot.domain.rules import Refused, check_still_requester
from bot.domain.states import Status
from bot.services import activity, tell
from bot.services.backend import adapter_error, call_backend, revoke_confirmed, scrubbed
from bot.services.claims import Claimed, Prepared, Step, prepare, request_duration
from bot.services.common import grant_context, view
from bot.services.deps import Deps
from bot.services.ports import MembershipUnknown, Notice
from bot.services.snapshots import RequestView
from bot.store import audit, queries
from bot.store.models import Request, Review

log = logging.getLogger("breakglass.access")

GRANT_FAILED = "grant_failed"  # the end_reason of a revoke that undoes a failed grant


def finish(deps: Deps, claimed: Claimed, record: Record) -> RequestView | Future[Ended | None] | None:
    """The backend work the sweep claimed; a confirmed revoke is recorded by ``record``."""
    if claimed.step is Step.GRANT:
        return finish_grant(deps, claimed.request_id)
    return revoke_then(deps, claimed.request_id, record, claimed.prepared)


def _held(deps: Deps, session: Session, request_id: int, status: Status) -> Request | None:
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
            made_under = request
            drill = request.drill
        if deps.now() >= ctx.expires_at:
            # Taken over too late to be of use: finish by making sure nothing the dead holder did is left.
            return _undo(
                deps,
                request_id,
                AdapterError("the grant was interrupted and its time ran out", retryable=True),
                "expired",
            )
        adapter = deps.adapter_for(made_under)  # granted as the version it was asked under, and revoked so
        try:
            if adapter is None:
                raise AdapterError(f"{ctx.label} is no longer in the policy", retryable=False)
            if not drill:  # a drill's principal is the policy's own, and who may start a drill was checked then
                _check_still_allowed(deps, ctx)
            receipt = _grant_with_retries(deps, adapter.grant, ctx)
        except Exception as raised:
            return _grant_failed(deps, request_id, adapter_error(raised))
        watched = activity.watch(deps, adapter, ctx, receipt)  # never raises: a failed watch leaves the grant standing

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
                watching=watched.on,
            )
            request = queries.get(session, request_id)
            assert request is not None
            if moved:
                audit.record(
                    session, AuditAction.GRANTED, at=now, request=request, expires_at=ctx.expires_at.isoformat()
                )
                activity.record_watch(deps, session, request, watched)
            current = view(deps, session, request)
            if moved:
                tell.refresh(deps, session, current)
                tell.announce(deps, session, current, Notice.EMERGENCY if current.emergency else Notice.ACTIVE)
    if not moved:
        return None
    deps.alarms.wake_at(ctx.expires_at)
    if warned_at is None:
        deps.alarms.wake_at(ctx.expires_at - deps.tuning.expiry_warning)
    current = deps.courier.deliver(request_id) or current  # as delivered: with where its messages went
    if receipt.credentials and not drill:  # never stored, so never owed: straight to the requester, once
        deps.notifier.send_credentials(current, receipt.credentials)
    return current


def _check_still_allowed(deps: Deps, ctx: GrantContext) -> None:
    """The last look before access is made: the requester may still ask for the resource, and an emergency is still
    allowed on it. The approval was checked when given, but a grant can start later (a takeover, a retry)."""
    resource = deps.resource(ctx.resource, ctx.level)  # the rules now: a reload may have removed it since the ask
    if resource is None:
        raise AdapterError(f"{ctx.label} is no longer in the policy", retryable=False)
    try:
        allowed = deps.may_request(ctx.user.slack_id, resource)
    except MembershipUnknown:  # failing closed, and saying why: not "offboarded"; nothing was sent, nothing to undo
        raise AdapterError(
            "could not confirm with Slack that the requester may still request it; ask again", retryable=False
        ) from None
    try:
        check_still_requester(resource=ctx.label, allowed=allowed, request_id=ctx.request_number)
    except Refused as refusal:
        raise AdapterError(str(refusal), retryable=False) from None
    if ctx.emergency and not resource.emergency:
        raise AdapterError(f"{ctx.label} no longer allows emergency access", retryable=False)


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
            audit.record(session, AuditAction.GRANT_FAILED, at=now, request=request, error=str(error))
        current = view(deps, session, request)
        if moved:
            _owe_grant_failed(deps, session, current)
    if moved:
        log.warning("grant of request %s failed: %s", request_id, error)
        deps.courier.deliver(request_id)
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
            action = AuditAction.GRANT_FAILED if end_reason == GRANT_FAILED else AuditAction.EXPIRING
            audit.record(session, action, at=now, request=request, error=str(error), undo=True)
            current = view(deps, session, request)
            if end_reason == GRANT_FAILED:
                _owe_grant_failed(deps, session, current)
    if not moved:
        return None
    if end_reason == GRANT_FAILED:
        log.warning("grant of request %s failed: %s", request_id, error)
        deps.courier.deliver(request_id)
    return finish_revoke(deps, request_id)


def _owe_grant_failed(deps: Deps, session: Session, current: RequestView) -> None:
    tell.refresh(deps, session, current)
    tell.announce(deps, session, current, Notice.GRANT_FAILED)
    tell.audit_channel(deps, session, current, Notice.GRANT_FAILED)


# -- revoking ----------------------------------------------------------------------------------------------------


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
            request = _held(deps, session, request_id, Status.REVOKING)
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
