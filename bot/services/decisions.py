"""Approvers deciding: each step's approvals in turn grant, one denial at any step ends the request.

Every rule is checked again at the moment a decision takes effect, not only when the button was drawn: the
decider may decide the step waiting now (listed, on call, escalated to), the approvals already given still count by
the same measure, the requester may still request the resource, and the request has not lapsed. The
deciding step is a compare-and-set that locks the pending row first (``queries.take_pending``), so a decision, a
withdrawal and a lapse never both happen: the one that loses is answered with what did happen, and the trail
records nothing it did not do.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.domain.actions import AuditAction
from bot.domain.approvals import Standing, standing
from bot.domain.durations import format_duration
from bot.domain.rules import Refused, check_decider, check_still_requester
from bot.domain.states import Status
from bot.policy import Resource
from bot.services import access, approvers, claims, reviews, tell
from bot.services.common import existing, refuse, same_identity, twin_decided, view
from bot.services.deps import Deps
from bot.services.outcome import outcome
from bot.services.ports import Notice, Settled
from bot.services.snapshots import RequestView
from bot.store import audit, queries
from bot.store.models import Decision, Request


def decide(deps: Deps, actor: str, request_id: int, approve: bool, comment: str | None = None) -> RequestView:
    """Record ``actor``'s approval or denial (with a denial's reason or an approval's comment, ``comment``) in the
    step they may decide, and whatever it completes."""
    current = existing(deps, request_id)
    resource = deps.resource(current.resource, current.level)
    mine = (
        approvers.ways(deps, actor, resource, current.escalated)
        if resource is not None and actor != current.requester_id
        else {}
    )
    try:
        check_decider(actor=actor, requester=current.requester_id, is_approver=bool(mine), resource=current.label)
    except Refused as refusal:
        refuse(deps, actor, current, AuditAction.DECISION_REFUSED, str(refusal))
        if current.status is not Status.PENDING:
            raise Refused(f"{refusal} {outcome(current)}") from None
        raise
    assert resource is not None
    if same_identity(deps, actor, current):  # the requester through another Slack account: still their own request
        why = (
            f"You are the same backend identity as the requester of #{request_id} (`{current.principal}`), so this "
            "is your own request; another approver has to decide."
        )
        refuse(deps, actor, current, AuditAction.DECISION_REFUSED, why)
        raise Refused(why)
    if current.status is not Status.PENDING:  # a button on a message whose moment has passed: harmless
        raise Refused(f"{outcome(current)} Nothing was done.")

    now = deps.now()
    if _lapsed(deps, current, now):
        lapse(deps, request_id)  # the sweep would have; a click must not revive what lapsed
        raise Refused(f"{lapsed_words(current)} Nothing was done.")
    earlier = next((d for d in current.decisions if d.approver_id == actor and d.round == 0), None)
    if earlier is not None:
        raise Refused(
            f"You already decided on request #{request_id} ({_decided(earlier.approve)}); a person decides once, so "
            "nothing was done."
        )
    twin = twin_decided(deps, actor, resource, [d.approver_id for d in current.decisions if d.round == 0])
    if twin is not None:
        why = (
            f"Another Slack account mapped to your backend identity (`{twin}`) already decided on request "
            f"#{request_id}; one person decides once, so nothing was done."
        )
        refuse(deps, actor, current, AuditAction.DECISION_REFUSED, why)
        raise Refused(why)
    if approve:
        _check_requester(deps, actor, current)
        reviews.check_approvable(deps, actor, current)
    # Where it stands with only the approvals whose reason still holds (a lookup may call Slack or the on-call
    # service, so before the row is locked); approvals that arrive meanwhile were checked by their own click.
    recorded = approvers.recorded(current.decisions, 0)
    before = approvers.counting(deps, resource, current.escalated, current.requester_id, recorded)
    counts = approvers.recount(recorded, before)
    step = approvers.step_for(current.id, before, mine, approve)
    name = deps.directory.person(actor).name if approve else None  # named in the thread, not called on
    text = deps.redactor.scrub(comment) if comment else None

    lost: RequestView | None = None
    completed = False
    try:
        with deps.db.transaction() as session:
            if not queries.take_pending(session, request_id, now):
                request = queries.get(session, request_id)
                assert request is not None
                lost = view(deps, session, request)
            else:
                session.add(
                    Decision(
                        request_id=request_id,
                        approver_id=actor,
                        approve=approve,
                        at=now,
                        step=step,
                        via=mine[step],
                        comment=text,
                        round=0,
                    )
                )
                session.flush()
                request = queries.get(session, request_id)
                assert request is not None
                after = standing(resource.steps, approvers.casts(queries.decisions(session, request_id)), counts)
                completed = _take_effect(deps, session, now, actor, request, approve, step, mine[step], text, after)
                request = queries.get(session, request_id)
                assert request is not None
                current = view(deps, session, request)
                if completed:
                    tell.announce(deps, session, current, Notice.APPROVED)
                else:
                    tell.refresh(deps, session, current)
                    if not approve:
                        tell.announce(deps, session, current, Notice.DENIED)
                    else:
                        note = {
                            "actor": actor,
                            "actor_name": name,
                            "step": step,
                            "words": text,
                            "mentions": list(current.asking),
                        }
                        if after.waiting != before.waiting:  # a step is done: the next one's people hear it now
                            note["next_step"] = after.waiting
                            _restart_reminders(deps, session, request, resource, now)
                        tell.thread(deps, session, current, Notice.STEP_APPROVED, note)
    except IntegrityError:  # a double click, or a retry: the first one counted
        raise Refused(f"You already decided on request #{request_id}; nothing was done.") from None

    if lost is not None:
        if lost.status is Status.PENDING:  # still pending, so the compare-and-set lost to the clock: it lapsed
            lapse(deps, request_id)
            lost = existing(deps, request_id)
        raise Refused(f"{outcome(lost)} Nothing was done.")
    if completed or not approve:  # an approval that only completed a step settles nothing yet
        settled = Settled.APPROVED if completed else Settled.DENIED
        deps.metrics.request_settled(current.resource, current.level, settled, now - current.created_at)
    deps.courier.deliver(request_id)
    if completed:
        return access.finish_grant(deps, request_id) or current
    return current


def _decided(approve: bool) -> str:
    return "approved" if approve else "denied"


def _lapsed(deps: Deps, current: RequestView, now: datetime) -> bool:
    lapses_at = current.lapses_at or current.created_at + queries.LEGACY_PENDING_TIMEOUT
    return now >= lapses_at


def lapsed_words(current: RequestView) -> str:
    waited = (current.lapses_at - current.created_at) if current.lapses_at else None
    within = f" within {format_duration(waited)}" if waited else " in time"
    return f"Request #{current.id} got no decision{within} and lapsed."


def _take_effect(
    deps: Deps,
    session: Session,
    now: datetime,
    actor: str,
    request: Request,
    approve: bool,
    step: int,
    via: str,
    words: str | None,
    after: Standing,
) -> bool:
    """Record the decision on the locked pending row; True when it completed the approval (and claimed the grant)."""
    detail: dict[str, Any] = {"step": step, "via": via}
    if after.multi:
        detail["step_name"] = after.step_name(step)
    if words:
        detail["denial_reason" if not approve else "comment"] = words
    audit.record(
        session, AuditAction.APPROVED if approve else AuditAction.DENIED, at=now, actor=actor, request=request, **detail
    )
    if not approve:
        denied = queries.move(session, request.id, Status.PENDING, Status.DENIED, decided_at=now)
        assert denied, "the pending row is locked by this transaction"
        return False
    # Counted under the row lock: of two approvers at once, the later one sees both approvals.
    if not after.complete:
        return False
    approved = queries.move(session, request.id, Status.PENDING, Status.APPROVED, decided_at=now)
    assert approved, "the pending row is locked by this transaction"
    # Claimed in the same transaction: an approval is never left without an owner.
    claimed = queries.get(session, request.id)  # read again: claim goes by the status it now has
    assert claimed is not None
    claims.claim(deps, session, claimed, now)
    return True


def _restart_reminders(deps: Deps, session: Session, request: Request, resource: Resource, now: datetime) -> None:
    """A new step's people were just called on: their first reminder is one period from now."""
    every = resource.remind_approvers_every
    if every is not None and request.remind_at is not None:
        queries.set_fields(session, request.id, remind_at=now + every)
        deps.alarms.wake_at(now + every)


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
            audit.record(
                session, AuditAction.APPROVAL_BLOCKED, at=deps.now(), actor=actor, request=request, why=str(refusal)
            )
        raise Refused(f"{refusal} Your approval was not recorded.") from None


def lapse(deps: Deps, request_id: int) -> bool:
    """A pending request nobody decided in time ends as ``timed_out``; True for the one caller that moved it."""
    now = deps.now()
    with deps.db.transaction() as session:
        if not queries.move(session, request_id, Status.PENDING, Status.TIMED_OUT, decided_at=now):
            return False
        request = queries.get(session, request_id)
        assert request is not None
        audit.record(session, AuditAction.TIMED_OUT, at=now, request=request)
        current = view(deps, session, request)
        tell.refresh(deps, session, current)
        tell.announce(deps, session, current, Notice.CANCELLED)
    deps.metrics.request_settled(current.resource, current.level, Settled.LAPSED, None)
    deps.courier.deliver(request_id)
    return True
