"""Granting access through the resource's adapter; revoking is in ``services/revoking.py``.

Every backend call happens under a claim (``services/claims.py``): the request moves to ``granting`` or ``revoking``
with this process's name and a lease, in the database, before the adapter is called. Only the adapter's answer
moves it on. If the process dies mid-call, its heartbeat stops (or, for a holder without one, the lease runs out)
and whoever takes the claim over repeats the call; adapters are idempotent, so repeating is safe where forgetting
would not be.

A grant that fails in a way that leaves doubt (a timeout, a 5xx, an adapter bug) is undone with a revoke before
the request settles at ``grant_failed``, so access the backend made but never confirmed cannot linger.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from typing import NamedTuple

from sqlalchemy.orm import Session

from bot.adapters.base import AdapterError, GrantContext, Receipt
from bot.domain.actions import AuditAction
from bot.domain.rules import Refused, check_still_requester
from bot.domain.states import Status
from bot.services import activity, tell
from bot.services.backend import adapter_error, call_backend, scrubbed
from bot.services.claims import Claimed, Step, held, request_duration
from bot.services.common import grant_context, view
from bot.services.deps import Deps
from bot.services.ports import MembershipUnknown, Notice
from bot.services.revoking import GRANT_FAILED, Ended, Record, finish_revoke, revoke_then
from bot.services.snapshots import RequestView
from bot.slots import blocking
from bot.store import audit, queries
from bot.store.models import Request

log = logging.getLogger("breakglass.access")


def finish(deps: Deps, claimed: Claimed, record: Record) -> RequestView | Future[Ended | None] | None:
    """The backend work the sweep claimed; a confirmed revoke is recorded by ``record``."""
    if claimed.step is Step.GRANT:
        return finish_grant(deps, claimed.request_id)
    return revoke_then(deps, claimed.request_id, record, claimed.prepared)


def _expiry(request: Request) -> datetime:
    assert request.expires_at is not None, "a claimed request always has its expiry fixed"
    return request.expires_at


# -- granting ----------------------------------------------------------------------------------------------------


class Granted(NamedTuple):
    view: RequestView | None  # None: nothing was granted here (the claim was not ours, or it had moved on)
    told: bool  # the view was read where delivery found nothing left to send: it needs no fresh look


def finish_grant(deps: Deps, request_id: int) -> RequestView | None:
    return grant_and_tell(deps, request_id).view


def grant_and_tell(deps: Deps, request_id: int) -> Granted:
    """Make the access this process claimed, record it, and deliver what that owes."""
    me = deps.tuning.instance
    with deps.leases.holding(request_id):
        with deps.db.transaction() as session:
            request = held(deps, session, request_id, Status.GRANTING)
            if request is None:
                return Granted(None, told=False)
            ctx = grant_context(deps, request, _expiry(request))
            duration = request_duration(request)
            made_under = request
            drill = request.drill
        if deps.now() >= ctx.expires_at:
            # Taken over too late to be of use: finish by making sure nothing the dead holder did is left.
            ran_out = AdapterError("the grant was interrupted and its time ran out", retryable=True)
            return Granted(_undo(deps, request_id, ran_out, "expired"), told=False)
        adapter = deps.adapter_for(made_under)  # granted as the version it was asked under, and revoked so
        try:
            if adapter is None:
                raise AdapterError(f"{ctx.label} is no longer in the policy", retryable=False)
            if not drill:  # a drill's principal is the policy's own, and who may start a drill was checked then
                _check_still_allowed(deps, ctx)
            receipt = _grant_with_retries(deps, adapter.grant, ctx)
        except Exception as raised:
            return Granted(_grant_failed(deps, request_id, adapter_error(raised)), told=False)
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
            with session.no_autoflush:  # the event is inserted sealed at the commit, not early and then updated
                if moved:
                    audit.record(
                        session, AuditAction.GRANTED, at=now, request=request, expires_at=ctx.expires_at.isoformat()
                    )
                    activity.record_watch(deps, session, request, watched)
                current = view(deps, session, request)
            ours = None
            if moved:
                tell.refresh(deps, session, current)
                tell.announce(deps, session, current, Notice.EMERGENCY if current.emergency else Notice.ACTIVE)
                # What the request owes goes out showing the grant, from this thread, as soon as this commits.
                ours = deps.courier.hold(session, current, created=False)
    if not moved:
        return Granted(None, told=False)
    deps.alarms.wake_at(ctx.expires_at)
    if warned_at is None:
        deps.alarms.wake_at(ctx.expires_at - deps.tuning.expiry_warning)
    told = deps.courier.deliver(request_id, ours)  # as delivered: with where its messages went
    current = told or current
    if receipt.credentials and not drill:  # never stored, so never owed: straight to the requester, once
        deps.notifier.send_credentials(current, receipt.credentials)
    return Granted(current, told is not None)


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
            with blocking():  # a wait like the call's: the place goes to the next piece of work (bot/slots.py)
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
