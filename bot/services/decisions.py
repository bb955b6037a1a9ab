"""Approvers deciding: N distinct approvals grant, one denial ends the request.

Every rule is checked again at the moment a decision takes effect, not only when the button was drawn: the
decider is an approver now, the requester may still request the resource, and the request has not lapsed. The
deciding step is a compare-and-set that locks the pending row first (``queries.take_pending``), so a decision, a
withdrawal and a lapse never both happen: the one that loses is answered with what did happen, and the trail
records nothing it did not do.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.domain.rules import Refused, check_decider, check_still_fresh, check_still_requester
from bot.domain.states import Status
from bot.services import access, reviews, tell
from bot.services.common import existing, refuse, same_identity, view
from bot.services.deps import Deps
from bot.services.outcome import outcome
from bot.services.ports import Notice
from bot.services.views import RequestView
from bot.store import audit, queries
from bot.store.models import Decision


def decide(deps: Deps, actor: str, request_id: int, approve: bool) -> RequestView:
    current = existing(deps, request_id)
    try:
        check_decider(
            actor=actor,
            requester=current.requester_id,
            is_approver=deps.is_approver(actor, current.resource, current.level),
            resource=current.label,
        )
    except Refused as refusal:
        refuse(deps, actor, current, "decision_refused", str(refusal))
        if current.status is not Status.PENDING:
            raise Refused(f"{refusal} {outcome(current)}") from None
        raise
    if same_identity(deps, actor, current):  # the requester through another Slack account: still their own request
        why = (
            f"You are the same backend identity as the requester of #{request_id} (`{current.principal}`), so this "
            "is your own request; another approver has to decide."
        )
        refuse(deps, actor, current, "decision_refused", why)
        raise Refused(why)
    if current.status is not Status.PENDING:  # a button on a message whose moment has passed: harmless
        raise Refused(f"{outcome(current)} Nothing was done.")

    now = deps.now()
    timeout = deps.tuning.request_timeout
    try:
        check_still_fresh(created_at=current.created_at, now=now, timeout=timeout, request_id=request_id)
    except Refused as refusal:
        lapse(deps, request_id)  # the sweep would have; a click must not revive what lapsed
        raise Refused(f"{refusal} Nothing was done.") from None
    if approve:
        _check_requester(deps, actor, current)
        reviews.check_approvable(deps, actor, current)
    # Approvals by people who have since stopped being approvers no longer count. Looked up before the row is
    # locked (a lookup may call Slack); approvals that arrive meanwhile were checked by their own click.
    gone = {
        d.approver_id
        for d in current.decisions
        if d.approve and not deps.is_approver(d.approver_id, current.resource, current.level)
    }

    lost: RequestView | None = None
    completed = False
    try:
        with deps.db.transaction() as session:
            if not queries.take_pending(session, request_id, now - timeout):
                request = queries.get(session, request_id)
                assert request is not None
                lost = view(deps, session, request)
            else:
                session.add(Decision(request_id=request_id, approver_id=actor, approve=approve, at=now))
                session.flush()
                completed = _take_effect(deps, session, now, actor, request_id, approve, gone)
                request = queries.get(session, request_id)
                assert request is not None
                current = view(deps, session, request)
                if completed:
                    tell.announce(deps, session, current, Notice.APPROVED)
                else:
                    tell.refresh(deps, session, current)
                    if not approve:
                        tell.announce(deps, session, current, Notice.DENIED)
    except IntegrityError:  # a double click, or a retry: the first one counted
        raise Refused(f"You already decided on request #{request_id}; nothing was done.") from None

    if lost is not None:
        if lost.status is Status.PENDING:  # still pending, so the compare-and-set lost to the clock: it lapsed
            lapse(deps, request_id)
            lost = existing(deps, request_id)
        raise Refused(f"{outcome(lost)} Nothing was done.")
    deps.courier.deliver(request_id)
    if completed:
        return access.finish_grant(deps, request_id) or current
    return current


def _take_effect(
    deps: Deps, session: Session, now: datetime, actor: str, request_id: int, approve: bool, gone: set[str]
) -> bool:
    """Record the decision on the locked pending row; True when it completed the approval (and claimed the grant)."""
    request = queries.get(session, request_id)
    assert request is not None
    audit.record(session, "approved" if approve else "denied", at=now, actor=actor, request=request)
    if not approve:
        denied = queries.move(session, request_id, Status.PENDING, Status.DENIED, decided_at=now)
        assert denied, "the pending row is locked by this transaction"
        return False
    # Counted under the row lock: of two approvers at once, the later one sees both approvals.
    needed = deps.approvals_required(request.resource, request.level)
    if queries.approvals_count(session, request_id, excluding=gone) < needed:
        return False
    approved = queries.move(session, request_id, Status.PENDING, Status.APPROVED, decided_at=now)
    assert approved, "the pending row is locked by this transaction"
    # Claimed in the same transaction: an approval is never left without an owner.
    request = queries.get(session, request_id)  # read again: claim goes by the status it now has
    assert request is not None
    access.claim(deps, session, request, now)
    return True


def _check_requester(deps: Deps, actor: str, current: RequestView) -> None:
    """An approval gives the requester access: they must still be someone who may ask for it."""
    resource = deps.resource(current.resource, current.level)
    allowed = resource is not None and deps.may_request(current.requester_id, resource)
    try:
        check_still_requester(resource=current.label, allowed=allowed, request_id=current.id)
    except Refused as refusal:
        with deps.db.transaction() as session:  # not the approver's fault: written down, not counted against them
            request = queries.get(session, current.id)
            assert request is not None
            audit.record(session, "approval_blocked", at=deps.now(), actor=actor, request=request, why=str(refusal))
        raise Refused(f"{refusal} Your approval was not recorded.") from None


def lapse(deps: Deps, request_id: int) -> bool:
    """A pending request nobody decided in time ends as ``timed_out``; True for the one caller that moved it."""
    now = deps.now()
    with deps.db.transaction() as session:
        if not queries.move(session, request_id, Status.PENDING, Status.TIMED_OUT, decided_at=now):
            return False
        request = queries.get(session, request_id)
        assert request is not None
        audit.record(session, "timed_out", at=now, request=request)
        current = view(deps, session, request)
        tell.refresh(deps, session, current)
        tell.announce(deps, session, current, Notice.CANCELLED)
    deps.courier.deliver(request_id)
    return True
