"""Asking for access, ending it early, and seeing what is yours."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy.exc import IntegrityError

from bot.adapters.principal import Unmappable
from bot.domain.actions import AuditAction
from bot.domain.commands import Ask
from bot.domain.live import live_key, scope
from bot.domain.rules import Forbidden, Refused, check_ask, check_revoke, find_resource
from bot.domain.states import FINAL, Status
from bot.policy import Resource
from bot.services import access, claims, guard, one_live, reviews, revoking, tell, triggers, waiting
from bot.services.common import (
    approver_unless_holder,
    existing,
    principal_for,
    refuse_outsider,
    view,
)
from bot.services.deps import Deps
from bot.services.outcome import outcome
from bot.services.ports import Notice, Settled
from bot.services.snapshots import RequestView
from bot.store import audit, queries
from bot.store.models import Request


class _Capped(Exception):
    """The hourly cap, found in the transaction that would have stored the request."""


def _rate_limited(deps: Deps, actor: str, why: str, resource: str) -> Refused:
    """The refusal of a request over the hourly cap, recorded (in a transaction of its own)."""
    guard.refused(deps, actor, AuditAction.RATE_LIMITED, why, resource=resource)
    return Refused(why)


def submit(deps: Deps, actor: str, ask: Ask, origin_channel: str | None, origin_name: str | None = None) -> RequestView:
    """Store a request and put it in front of its approvers; an emergency, or a request by whoever is on call where
    the schedule may ``auto_approve``, is granted at once."""
    # Who may ask is checked before anything about the resource is said: limits and the reason pattern are not
    # for people who may not request it, and a typo lists only what this person may request.
    policy = deps.policy  # read once: a reload meanwhile must not mix two versions in one request
    try:
        may_request = lambda r: deps.may_request(actor, r)  # noqa: E731
        resource = find_resource(policy, ask.resource, may_request, level=ask.level, emergency=ask.emergency)
        duration = check_ask(resource, ask)
    except Forbidden as refusal:  # an attempt on something forbidden: written down and counted
        guard.refused(deps, actor, AuditAction.REQUEST_REFUSED, str(refusal), resource=ask.resource)
        raise
    now = deps.now()
    with deps.db.transaction() as session:  # at once: a capped flood costs no lookups in Slack or the pager
        too_many = guard.requests_cap_problem(session, deps, actor, now)
    if too_many:
        raise _rate_limited(deps, actor, too_many, resource.name)
    person = deps.directory.person(actor)
    try:
        identity = principal_for(deps, resource, person)
    except Unmappable as unmappable:
        why = str(unmappable)
        with deps.db.transaction() as session:  # a profile problem, not an attempt on something forbidden
            audit.record(session, AuditAction.REQUEST_REFUSED, at=now, actor=actor, resource=resource.name, reason=why)
        raise Refused(why) from None
    if not ask.emergency:  # an overdue review blocks ordinary requests; breaking the glass always goes through
        reviews.check_not_blocked(deps, actor, resource.name, identity)
    in_incident = policy.is_incident_channel(origin_channel, origin_name)
    trigger = triggers.check(deps, actor, resource, in_incident) if ask.emergency else None
    oncall = triggers.on_call(deps, resource)
    auto = not ask.emergency and oncall.auto_approves(actor)
    key = live_key(scope(policy, resource.name), identity)
    superseded: RequestView | None = None
    try:
        with deps.db.transaction() as session:
            too_many = guard.requests_cap_problem(session, deps, actor, now)  # and again where it takes effect
            if too_many:
                raise _Capped(too_many)  # nothing of this transaction is kept
            withdrawn = one_live.make_way(session, key, actor, ask.emergency, now)
            request = Request(
                uid=str(uuid.uuid4()),
                resource=resource.name,
                requester_id=actor,
                requester_name=person.name,
                requester_email=person.email,
                principal=identity,
                level=resource.level,
                reason=deps.redactor.scrub(ask.reason),  # a pasted credential is not kept, nor shown
                duration_seconds=int(duration.total_seconds()),
                emergency=ask.emergency,
                status=Status.PENDING.value,
                created_at=now,
                origin_channel=origin_channel,
                origin_incident=in_incident,
                revoke_attempts=0,
                live_key=key,
                policy_version=deps.version_of(policy),
                **waiting.first_moments(resource, now),
                oncall_ids=sorted(oncall.people) if oncall.people else None,
            )
            session.add(request)
            session.flush()  # a live request of the same key committed meanwhile: IntegrityError, nothing written
            audit.record(
                session,
                AuditAction.REQUESTED,
                at=now,
                actor=actor,
                request=request,
                emergency=ask.emergency,
                principal=identity,
            )
            if ask.emergency or auto:
                # Nothing here reads the events: they are inserted sealed at the commit, not inserted early by an
                # autoflush and then updated.
                with session.no_autoflush:
                    queries.move(session, request.id, Status.PENDING, Status.APPROVED, decided_at=now)
                    if ask.emergency:
                        audit.record(
                            session,
                            AuditAction.EMERGENCY,
                            at=now,
                            actor=actor,
                            request=request,
                            **triggers.said(trigger),
                        )
                    else:  # loud: in the trail, on the approval message, and in its thread
                        queries.set_fields(session, request.id, auto_approved=True)
                        audit.record(
                            session, AuditAction.AUTO_APPROVED, at=now, actor=actor, request=request, **oncall.said()
                        )
                    approved = queries.get(session, request.id)
                    assert approved is not None
                    claims.claim(deps, session, approved, now)
            if withdrawn is not None:
                withdrawn = one_live.record_superseded(session, withdrawn, request, actor, now)
                superseded = view(deps, session, withdrawn)
                tell.refresh(deps, session, superseded)  # its approval message now says the emergency replaced it
            request_id = request.id
            current = view(deps, session, request, new=True)
            # Owed from this commit on, whatever happens to Slack or to this process next.
            if ask.emergency:  # the loud part: both channels hear it, with a button to revoke at once
                tell.alert(deps, session, current)
                if deps.policy.channels.approvals != deps.policy.channels.audit:
                    tell.request_message(deps, session, current)
                if trigger is not None and trigger.unknown:
                    note = {"why": trigger.unknown, "about": "incident"}
                    tell.thread(deps, session, current, Notice.ONCALL_UNKNOWN, note, on_alert=True)
            else:
                tell.request_message(deps, session, current)
                tell.announce(deps, session, current, Notice.AUTO_APPROVED if auto else Notice.RECEIVED)
                if auto:
                    tell.thread(deps, session, current, Notice.AUTO_APPROVED, oncall.said())
                elif oncall.unknown:
                    tell.thread(deps, session, current, Notice.ONCALL_UNKNOWN, {"why": oncall.unknown})
            # A request waiting for approvers is sent as it stands here, by this thread, as soon as this commits. A
            # grant's messages wait for the grant (and show it): they are claimed after it.
            held = None if ask.emergency or auto else deps.courier.hold(session, current)
    except _Capped as capped:
        raise _rate_limited(deps, actor, str(capped), resource.name) from None
    except IntegrityError:
        if key is None:
            raise
        if ask.emergency and one_live.supersedable(deps, key):  # the winner is a normal request: replace it now
            return submit(deps, actor, ask, origin_channel, origin_name)
        raise one_live.lost_race(deps, key, actor) from None

    if superseded is not None:
        deps.metrics.request_settled(superseded.resource, superseded.level, Settled.CANCELLED, None)
        deps.courier.deliver(superseded.id)
    told = None  # the request as delivery read it where nothing was left to send: no need to look again
    if ask.emergency or auto:
        settled = Settled.EMERGENCY if ask.emergency else Settled.AUTO_APPROVED
        deps.metrics.request_settled(resource.name, resource.level, settled, None)
        granted = access.grant_and_tell(deps, request_id)  # access first; the alerts go out right after it
        told = granted.view if granted.told else None
    if ask.emergency and triggers.page(deps, resource, request_id):
        told = None  # the page owed a note in the alert's thread
    current = told or deps.courier.deliver(request_id, held) or existing(deps, request_id)
    if current.status is Status.PENDING:  # on time, not a sweep late: the moments it waits for have alarms now
        waiting.set_alarms(deps, resource, current.created_at)
    return current


def end_early(deps: Deps, actor: str, request_id: int) -> RequestView:
    """`/breakglass revoke <id>`: the holder or an approver ends access now; the requester may withdraw a pending
    request."""
    current = existing(deps, request_id)
    is_approver = approver_unless_holder(deps, actor, current)
    if current.status in FINAL and (actor == current.requester_id or is_approver):
        raise Refused(f"{outcome(current)} Nothing was done.")  # a button on a message whose moment has passed
    try:
        check_revoke(
            actor=actor,
            holder=current.requester_id,
            is_approver=is_approver,
            status=current.status,
            request_id=request_id,
        )
    except Refused as refusal:
        refuse_outsider(deps, actor, current, is_approver, AuditAction.REVOKE_REFUSED, str(refusal))
        raise
    if current.status is Status.PENDING:
        return _withdraw(deps, actor, current)
    if not claims.claim_revoke(deps, request_id, end_reason="revoked", actor=actor):
        still_active = existing(deps, request_id).status is Status.ACTIVE
        if still_active:  # an extension holds it while its backend call runs
            raise Refused(
                f"Request #{request_id} is being extended right now; revoke it again once that is done "
                "(at most a minute)."
            )
        raise Refused(f"Request #{request_id} changed just now; `/breakglass mine` shows where it is.")
    return revoking.finish_revoke(deps, request_id) or existing(deps, request_id)


def _withdraw(deps: Deps, actor: str, current: RequestView) -> RequestView:
    if actor != current.requester_id:
        raise Refused(f"Request #{current.id} is still waiting; approvers decline it with Deny.")
    now = deps.now()
    with deps.db.transaction() as session:
        if not queries.move(session, current.id, Status.PENDING, Status.CANCELLED, decided_at=now):
            raise Refused(f"Request #{current.id} was decided just now; `/breakglass mine` shows where it is.")
        request = queries.get(session, current.id)
        assert request is not None
        audit.record(session, AuditAction.CANCELLED, at=now, actor=actor, request=request)
        current = view(deps, session, request)
        tell.refresh(deps, session, current)
    deps.metrics.request_settled(current.resource, current.level, Settled.CANCELLED, None)
    deps.courier.deliver(current.id)
    return current


def withdraw(deps: Deps, actor: str, request_id: int) -> RequestView:
    """The Withdraw button: the requester takes back a request that still waits for approvers. Unlike `end_early`,
    never ends access: a request decided meanwhile is left as it is, and the answer says what became of it."""
    current = existing(deps, request_id)
    if actor != current.requester_id:
        why = f"Only the requester may withdraw request #{request_id}; nothing was done."
        approver = approver_unless_holder(deps, actor, current)
        refuse_outsider(deps, actor, current, approver, AuditAction.REVOKE_REFUSED, why)
        raise Refused(why)
    if current.status is not Status.PENDING:
        raise Refused(f"{outcome(current)} Nothing was withdrawn.")
    return _withdraw(deps, actor, current)


@dataclass(frozen=True)
class Offer:
    resource: Resource
    may_request: bool


@dataclass(frozen=True)
class LevelChoice:
    """One level a person may request: the resource as that level grants it (limits, reason pattern), and whether
    they may break the glass on it."""

    resource: Resource
    may_break_glass: bool


@dataclass(frozen=True)
class Choice:
    """A resource a person may request, with the levels of it they may request, least privileged first (one, with no
    name, for a resource without levels)."""

    resource: Resource
    levels: tuple[LevelChoice, ...]


def choices(deps: Deps, actor: str) -> list[Choice]:
    """What the request form offers this person, by name: only what they may request, so the form reveals nothing the
    policy hides from them. Raises MembershipUnknown when that depends on a user group Slack cannot list now."""
    found = []
    for resource in deps.policy.resources.values():  # read once: a reload meanwhile must not mix two versions
        levels = tuple(
            LevelChoice(viewed, deps.may_break_glass(actor, viewed))
            for viewed in (resource.at(level) for level in resource.each_level)
            if deps.may_request(actor, viewed)
        )
        if levels:
            found.append(Choice(resource, levels))
    return sorted(found, key=lambda choice: choice.resource.name)


def offers(deps: Deps, actor: str) -> list[Offer]:
    """`/breakglass list`: every resource (each level of one that has levels), and whether this person may ask for
    it."""
    return [Offer(r, deps.may_request(actor, r)) for r in deps.policy.grantables()]


@dataclass(frozen=True)
class Mine:
    """What `/breakglass mine` shows a person: only their own requests, and what waits for their decision."""

    open: list[RequestView]
    reviews_owed: list[RequestView]
    to_decide: list[RequestView]
    waiting: int  # how many wait for this person's decision; to_decide holds the oldest of them
    to_sign_off: list[RequestView] = field(default_factory=list)  # written reviews this person may sign off


def mine(deps: Deps, actor: str) -> Mine:
    approves = deps.approves(actor)  # first, so the limit applies to what this person decides, not to everything
    with deps.db.transaction() as session:
        open_requests = [view(deps, session, r) for r in queries.open_for_user(session, actor)]
        owed = [view(deps, session, r) for r in queries.reviews_due_for(session, actor)]
        rows, waiting = queries.waiting_for(session, actor, approves) if approves else ([], 0)
        # Approvers may differ by level: only what this person may decide is theirs to see.
        to_decide = [view(deps, session, r) for r in rows if deps.is_approver(actor, r.resource, r.level)]
        to_sign_off = reviews.awaiting_sign_off(deps, session, actor, approves)
    return Mine(open_requests, owed, to_decide, waiting, to_sign_off)
