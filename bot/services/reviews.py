"""Post-incident reviews: owed when a grant that needs one ends, chased until somebody records it."""

from __future__ import annotations

from bot.domain.rules import Refused, check_review
from bot.domain.states import ReviewStatus
from bot.services import tell
from bot.services.common import approver_unless_holder, existing, refuse_outsider, view
from bot.services.deps import Deps
from bot.services.ports import Notice
from bot.services.views import RequestView
from bot.store import audit, queries
from bot.store.models import Review

MAX_NOTES = 3000


def record(deps: Deps, actor: str, request_id: int, notes: str) -> RequestView:
    """`/breakglass review <id> <notes…>`: by the requester or an approver; early reviews are welcome too."""
    current = existing(deps, request_id)
    is_approver = approver_unless_holder(deps, actor, current)
    try:
        check_review(
            actor=actor,
            holder=current.requester_id,
            is_approver=is_approver,
            status=current.status,
            granted=current.granted_at is not None,
            request_id=request_id,
        )
    except Refused as refusal:
        refuse_outsider(deps, actor, current, is_approver, "review_refused", str(refusal))
        raise
    if len(notes) > MAX_NOTES:
        raise Refused(f"The review is too long ({len(notes)} characters; at most {MAX_NOTES}).")
    notes = deps.redactor.scrub(notes)  # a pasted credential is not kept, nor shown
    now = deps.now()
    with deps.db.transaction() as session:
        review = queries.review(session, request_id)
        if review is not None and review.status == ReviewStatus.DONE:
            raise Refused(f"Request #{request_id} was already reviewed by <@{review.reviewer_id}>.")
        done = {"status": ReviewStatus.DONE.value, "reviewer_id": actor, "notes": notes, "done_at": now}
        if review is None:
            session.add(Review(request_id=request_id, reminders_sent=0, **done))
        elif not queries.complete_review(session, request_id, **done):
            raise Refused(f"Request #{request_id} was reviewed just now.")
        request = queries.get(session, request_id)
        assert request is not None
        audit.record(session, "reviewed", at=now, actor=actor, request=request, notes=notes)
        current = view(deps, session, request)
        tell.refresh(deps, session, current)
        if actor != current.requester_id:
            tell.requester(deps, session, current, Notice.REVIEW_DONE)
    deps.courier.deliver(request_id)
    return current


def remind(deps: Deps, request_id: int) -> bool:
    """Chase one overdue review. The compare-and-set on the reminder time sends each reminder once."""
    now = deps.now()
    every = deps.policy.review.remind_every
    with deps.db.transaction() as session:
        review = queries.review(session, request_id)
        if review is None or review.status != ReviewStatus.DUE or review.next_reminder_at is None:
            return False
        if review.next_reminder_at > now:
            return False
        if not queries.claim_reminder(session, request_id, review.next_reminder_at, now + every):
            return False
        request = queries.get(session, request_id)
        assert request is not None
        audit.record(session, "review_reminded", at=now, request=request, reminder=review.reminders_sent + 1)
        current = view(deps, session, request)
        tell.requester(deps, session, current, Notice.REVIEW_REMINDER)
        tell.audit_channel(deps, session, current, Notice.REVIEW_OVERDUE)
    deps.courier.deliver(request_id)
    deps.alarms.wake_at(now + every)
    return True
