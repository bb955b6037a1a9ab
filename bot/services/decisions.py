"""Approvers deciding: N distinct approvals grant, one denial ends the request."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from bot.domain.rules import Refused, check_decider
from bot.domain.states import Status
from bot.services import access
from bot.services.common import announce, existing, refuse, view
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
            is_approver=deps.is_approver(actor, current.resource),
            resource=current.resource,
        )
    except Refused as refusal:
        refuse(deps, actor, current, "decision_refused", str(refusal))
        if current.status is not Status.PENDING:
            raise Refused(f"{refusal} {outcome(current)}") from None
        raise
    if current.status is not Status.PENDING:  # a button on a message whose moment has passed: harmless
        raise Refused(f"{outcome(current)} Nothing was done.")

    now = deps.now()
    try:
        with deps.db.transaction() as session:
            request = queries.get(session, request_id)
            assert request is not None
            if request.status != Status.PENDING:
                raise Refused(f"{outcome(view(deps, session, request))} Nothing was done.")
            session.add(Decision(request_id=request_id, approver_id=actor, approve=approve, at=now))
            session.flush()
            audit.record(session, "approved" if approve else "denied", at=now, actor=actor, request=request)
            if not approve:
                queries.move(session, request_id, Status.PENDING, Status.DENIED, decided_at=now)
    except IntegrityError:  # a double click, or a retry: the first one counted
        raise Refused(f"You already decided on request #{request_id}; nothing was done.") from None

    # Counted in a transaction of its own, after ours committed: of two approvers committing at once, the later
    # one sees both approvals, so the last needed approval always completes the request.
    with deps.db.transaction() as session:
        needed = deps.approvals_required(current.resource)
        completed = approve and queries.approvals_count(session, request_id) >= needed
        if completed:
            completed = queries.move(session, request_id, Status.PENDING, Status.APPROVED, decided_at=now)
        request = queries.get(session, request_id)
        assert request is not None
        if completed:  # claimed in the same transaction: an approval is never left without an owner
            access.claim(deps, session, request, now)
            request = queries.get(session, request_id)
            assert request is not None
        current = view(deps, session, request)

    if completed:
        announce(deps, current, Notice.APPROVED)
        return access.finish_grant(deps, request_id) or current
    deps.notifier.refresh(current)
    if current.status is Status.DENIED and not approve:
        announce(deps, current, Notice.DENIED)
    return current
