"""Post-incident reviews: owed when a grant that needs one ends, an audit in two steps by two people.

The holder writes the account (what happened and why); then someone else signs it off: an approver of the resource
at the request's level, or a member of ``review.reviewers``; never the holder. ``done`` means signed off, and until
then the review is chased: the holder while the account is missing, the sign-off side once it is written. Each step
is a compare-and-set (bot/store/reviews.py), so of two people at once one wins and the other is told who did.

A holder whose own account is overdue by longer than ``review.block_after`` makes no new non-emergency request, and
no request of theirs is approved meanwhile (``check_not_blocked``, ``check_approvable``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.domain.actions import AuditAction
from bot.domain.live import twins
from bot.domain.rules import (
    Refused,
    check_account,
    check_review_party,
    check_reviewable,
    check_reviews_settled,
    check_sign_off,
)
from bot.domain.states import HOLDS_ACCESS, OPEN_REVIEWS, ReviewStatus
from bot.policy import label
from bot.services import tell
from bot.services.common import existing, refuse, refuse_outsider, same_identity, view
from bot.services.deps import Deps
from bot.services.ports import Notice
from bot.services.snapshots import RequestView
from bot.store import activity, audit, queries
from bot.store import reviews as stored
from bot.store.models import Request, Review

MAX_NOTES = 3000
PACKET_ACTIVITY = 30  # actions listed in a review packet: every flagged one first, then the most recent


def may_sign_off(deps: Deps, actor: str, current: RequestView) -> bool:
    """An approver of the request's resource at its level, or a listed reviewer; never the holder. Asked only of
    someone other than the holder, so the holder's own steps never wait on a group lookup."""
    if actor == current.requester_id or same_identity(deps, actor, current):
        return False
    return deps.is_approver(actor, current.resource, current.level) or deps.is_listed(
        actor, deps.policy.review.reviewers
    )


def signers(deps: Deps, current: RequestView) -> tuple[str, ...]:
    """Who is called on to sign off: the resource's approvers at the level, then the reviewers (ids or groups)."""
    resource = deps.resource(current.resource, current.level)
    approvers = list(resource.approvers) if resource is not None else []
    named = [entry for entry in [*approvers, *deps.policy.review.reviewers] if entry != current.requester_id]
    return tuple(dict.fromkeys(named))


def _with_signers(deps: Deps, current: RequestView) -> RequestView:
    if current.review is None:
        return current
    return replace(current, review=replace(current.review, signers=signers(deps, current)))


def _party(deps: Deps, actor: str, request_id: int) -> RequestView:
    """The request, once ``actor`` is a party to its review: its holder, or someone who may sign it off (never the
    holder through another Slack account), of access that was really given. An outsider's attempt is counted."""
    current = existing(deps, request_id)
    if same_identity(deps, actor, current):  # the holder through another Slack account: still their own review
        why = (
            f"You are the same backend identity as the holder of #{request_id} (`{current.principal}`): this is "
            "your own review, which an approver of the resource or a reviewer signs off."
        )
        refuse(deps, actor, current, AuditAction.REVIEW_REFUSED, why)
        raise Refused(why)
    signer = may_sign_off(deps, actor, current)
    try:
        check_review_party(actor=actor, holder=current.requester_id, may_sign_off=signer, request_id=request_id)
        check_reviewable(status=current.status, granted=current.granted_at is not None, request_id=request_id)
    except Refused as refusal:
        refuse_outsider(deps, actor, current, signer, AuditAction.REVIEW_REFUSED, str(refusal))
        raise
    return current


def record(deps: Deps, actor: str, request_id: int, notes: str) -> RequestView:
    """`/breakglass review <id> <notes…>`: the holder's account, or (by anyone else who may) the sign-off."""
    current = _party(deps, actor, request_id)
    if len(notes) > MAX_NOTES:
        raise Refused(f"The review is too long ({len(notes)} characters; at most {MAX_NOTES}).")
    notes = deps.redactor.scrub(notes)  # a pasted credential is not kept, nor shown
    if actor == current.requester_id:
        return _write(deps, actor, current, notes)
    return _sign_off(deps, actor, current, notes)


def _write(deps: Deps, actor: str, current: RequestView, account: str) -> RequestView:
    now = deps.now()
    next_at = now + deps.policy.review.remind_every
    request_id = current.id
    try:
        with deps.db.transaction() as session:
            review = queries.review(session, request_id)
            check_account(review=ReviewStatus(review.status) if review else None, request_id=request_id)
            written = {"author_id": actor, "account": account, "written_at": now, "next_reminder_at": next_at}
            if review is None:  # early, or for a grant that owed none: welcome, and signed off like any other
                session.add(Review(request_id=request_id, status=ReviewStatus.WRITTEN, reminders_sent=0, **written))
                session.flush()
            elif not stored.write(session, request_id, author=actor, account=account, at=now, next_reminder_at=next_at):
                raise Refused(f"The review of request #{request_id} was written just now.")
            request = _request(session, request_id)
            audit.record(session, AuditAction.REVIEW_WRITTEN, at=now, actor=actor, request=request, account=account)
            current = _with_signers(deps, view(deps, session, request))
            tell.refresh(deps, session, current)
            tell.audit_channel(deps, session, current, Notice.REVIEW_WRITTEN)
    except IntegrityError:  # the same holder, twice at once: the first one's account stands
        raise Refused(f"The review of request #{request_id} was written just now.") from None
    deps.courier.deliver(request_id)
    deps.alarms.wake_at(next_at)
    return current


def _sign_off(deps: Deps, actor: str, current: RequestView, notes: str) -> RequestView:
    now = deps.now()
    request_id = current.id
    with deps.db.transaction() as session:
        review = queries.review(session, request_id)
        check_sign_off(
            review=ReviewStatus(review.status) if review else None,
            holds_access=current.status in HOLDS_ACCESS,
            reviewer=review.reviewer_id if review else None,
            request_id=request_id,
        )
        assert review is not None
        if not stored.sign_off(session, request_id, reviewer=actor, notes=notes, at=now):
            won = queries.review(session, request_id)
            by = f" by <@{won.reviewer_id}>" if won is not None and won.reviewer_id else ""
            raise Refused(f"The review of request #{request_id} was signed off just now{by}; yours was not recorded.")
        request = _request(session, request_id)
        audit.record(
            session,
            AuditAction.REVIEW_SIGNED_OFF,
            at=now,
            actor=actor,
            request=request,
            notes=notes,
            author=review.author_id,
        )
        current = view(deps, session, request)
        tell.refresh(deps, session, current)
        tell.requester(deps, session, current, Notice.REVIEW_DONE)
    deps.courier.deliver(request_id)
    return current


def remind(deps: Deps, request_id: int) -> bool:
    """Chase one open review: the holder while the account is missing (and the audit channel hears it is overdue),
    the sign-off side once it is written. The compare-and-set on the reminder time sends each reminder once.

    The sign-off side is called on in the audit channel, by mention, rather than by DM: one message the security
    team sees says who is asked and for how long it has waited, a mention still reaches each approver and every
    member of a group, and whoever signs off settles it for all; DMs to a whole group would be private nags that
    nobody else can see going unanswered."""
    now = deps.now()
    every = deps.policy.review.remind_every
    with deps.db.transaction() as session:
        review = queries.review(session, request_id)
        if review is None or review.status not in OPEN_REVIEWS or review.next_reminder_at is None:
            return False
        if review.next_reminder_at > now:
            return False
        status = ReviewStatus(review.status)
        if not queries.claim_reminder(session, request_id, status, review.next_reminder_at, now + every):
            return False
        request = _request(session, request_id)
        awaited = "account" if status is ReviewStatus.DUE else "sign_off"
        audit.record(
            session,
            AuditAction.REVIEW_REMINDED,
            at=now,
            request=request,
            reminder=review.reminders_sent + 1,
            awaited=awaited,
        )
        current = _with_signers(deps, view(deps, session, request))
        if status is ReviewStatus.DUE:
            tell.requester(deps, session, current, Notice.REVIEW_REMINDER)
            tell.audit_channel(deps, session, current, Notice.REVIEW_OVERDUE)
        else:
            tell.audit_channel(deps, session, current, Notice.REVIEW_SIGN_OFF)
    deps.courier.deliver(request_id)
    deps.alarms.wake_at(now + every)
    return True


# -- what a reviewer reads ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Moment:
    """One audit event of the request: when, what, by whom."""

    at: datetime
    action: str
    actor: str


@dataclass(frozen=True)
class Action:
    """One captured action of the grant's principal on the backend."""

    at: datetime
    principal: str
    action: str
    flagged: str | None


@dataclass(frozen=True)
class Packet:
    """What `/breakglass review <id>` shows: the request with its decisions and review, its timeline, and the
    activity captured (``shown`` of ``kept`` kept actions, flagged first; ``not_kept`` seen but over the cap)."""

    request: RequestView
    timeline: tuple[Moment, ...]
    shown: tuple[Action, ...]
    flagged: int
    kept: int
    not_kept: int


def packet(deps: Deps, actor: str, request_id: int) -> Packet:
    """`/breakglass review <id>`: for the holder and anyone who may sign off; an attempt by anyone else is refused
    and counted as other refusals are."""
    current = existing(deps, request_id)
    signer = may_sign_off(deps, actor, current)
    try:
        check_review_party(actor=actor, holder=current.requester_id, may_sign_off=signer, request_id=request_id)
        check_reviewable(status=current.status, granted=current.granted_at is not None, request_id=request_id)
    except Refused as refusal:
        refuse_outsider(deps, actor, current, signer, AuditAction.REVIEW_REFUSED, str(refusal))
        raise
    return _packet(deps, request_id)


def form(deps: Deps, actor: str, request_id: int) -> Packet:
    """What the review form (a button's) shows ``actor``, only when ``record`` would take their words now: the
    holder's account while none is written, or the sign-off of a written account of access that has ended. Refused
    (and an outsider counted) exactly as ``record`` refuses, so nobody writes words that would be turned away."""
    current = _party(deps, actor, request_id)
    with deps.db.transaction() as session:
        review = queries.review(session, request_id)
        status = ReviewStatus(review.status) if review else None
        if actor == current.requester_id:
            check_account(review=status, request_id=request_id)
        else:
            reviewer = review.reviewer_id if review else None
            holds = current.status in HOLDS_ACCESS
            check_sign_off(review=status, holds_access=holds, reviewer=reviewer, request_id=request_id)
    return _packet(deps, request_id)


def _packet(deps: Deps, request_id: int) -> Packet:
    with deps.db.transaction() as session:
        request = _request(session, request_id)
        current = _with_signers(deps, view(deps, session, request))
        timeline = tuple(Moment(e.at, e.action, e.actor) for e in stored.timeline(session, request_id))
        actions = [Action(a.at, a.principal, a.action, a.flagged) for a in activity.kept(session, request_id)]
        seen = request.activity_seen or 0
    flagged = [a for a in actions if a.flagged]
    recent = [a for a in actions if not a.flagged]
    shown_flagged = flagged[-PACKET_ACTIVITY:]
    room = PACKET_ACTIVITY - len(shown_flagged)
    shown_recent = recent[-room:] if room else []
    return Packet(
        request=current,
        timeline=timeline,
        shown=(*shown_flagged, *shown_recent),
        flagged=len(flagged),
        kept=len(actions),
        not_kept=max(seen - len(actions), 0),
    )


def awaiting_sign_off(deps: Deps, session: Session, actor: str, approves: list[str]) -> list[RequestView]:
    """Written reviews of other people's requests that ``actor`` may sign off (``approves``: the resources they
    decide on at one level at least), for `/breakglass mine`."""
    reviewer = deps.is_listed(actor, deps.policy.review.reviewers)
    if not reviewer and not approves:
        return []
    rows = stored.awaiting_sign_off(session, actor, None if reviewer else approves)
    shown = [view(deps, session, r) for r in rows]
    return [v for v in shown if reviewer or deps.is_approver(actor, v.resource, v.level)]


# -- review.block_after ---------------------------------------------------------------------------------------


def _overdue(deps: Deps, session: Session, user_id: str, resource: str, principal: str | None) -> Request | None:
    """The person's oldest review whose account is overdue by longer than ``block_after``: theirs by Slack id, or
    by the backend identity they ask as (another Slack account mapped to the same login is the same person there).
    Overdue starts with the first reminder (one ``remind_every`` after the review fell due), when the audit channel
    hears of it."""
    block_after = deps.policy.review.block_after
    if block_after is None:
        return None
    cutoff = deps.now() - deps.policy.review.remind_every - block_after
    identity = None if principal is None else (twins(deps.policy, resource), principal)
    return stored.overdue_account(session, user_id, cutoff, identity)


def check_not_blocked(deps: Deps, actor: str, resource: str, principal: str | None) -> None:
    """Before a non-emergency request is stored: refused while the person's own account is overdue too long."""
    block_after = deps.policy.review.block_after
    if block_after is None:
        return
    with deps.db.transaction() as session:
        overdue = _overdue(deps, session, actor, resource, principal)
        if overdue is None:
            return
        try:
            check_reviews_settled(
                overdue=overdue.id, resource=label(overdue.resource, overdue.level), block_after=block_after
            )
            return
        except Refused as refusal:  # a debt to pay, not an attempt on something forbidden: written, not counted
            blocked = refusal
            audit.record(
                session, AuditAction.REQUEST_REFUSED, at=deps.now(), actor=actor, resource=resource, reason=str(refusal)
            )
    raise blocked  # once the transaction has kept the record of it


def check_approvable(deps: Deps, actor: str, current: RequestView) -> None:
    """At approval: the rule holds when it takes effect, so a request made before the requester's review fell that
    far behind is not approved after."""
    block_after = deps.policy.review.block_after
    if block_after is None or current.emergency:
        return
    with deps.db.transaction() as session:
        overdue = _overdue(deps, session, current.requester_id, current.resource, current.principal)
        if overdue is None:
            return
        try:
            check_reviews_settled(
                overdue=overdue.id,
                resource=label(overdue.resource, overdue.level),
                block_after=block_after,
                approving=current.id,
            )
            return
        except Refused as refusal:  # not the approver's fault: written down, not counted against them
            request = _request(session, current.id)
            audit.record(
                session, AuditAction.APPROVAL_BLOCKED, at=deps.now(), actor=actor, request=request, why=str(refusal)
            )
            blocked = refusal
    raise Refused(f"{blocked} Your approval was not recorded.")


def _request(session: Session, request_id: int) -> Request:
    request = queries.get(session, request_id)
    assert request is not None
    return request
