"""While a request waits for a decision: reminders to the people who have not decided, the backups asked after
``escalate_after``, and the end after ``pending_timeout``.

The moments are fixed on the request when it is made (``first_moments``) and moved on by compare-and-set when they
come (bot/store/queries.py: ``claim_approver_reminder``, ``claim_escalation``), so each reminder and the escalation is
sent once across replicas and restarts, and never for a request decided meanwhile. The sweep finds them due; alarms
are set for them like for any other moment (``queries.upcoming_times``), so they go out on time, not a sweep late.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.domain.actions import AuditAction
from bot.domain.approvals import to_ask
from bot.policy import Resource
from bot.services import tell
from bot.services.common import view
from bot.services.deps import Deps
from bot.services.ports import MembershipUnknown, Notice
from bot.services.snapshots import RequestView
from bot.services.triggers import on_call
from bot.store import audit, queries


def first_moments(resource: Resource, now: datetime) -> dict[str, Any]:
    """When a request made now lapses, is first reminded of, and is escalated (None: never)."""
    every, after = resource.remind_approvers_every, resource.escalate_after
    assert resource.pending_timeout is not None, "the policy applies its defaults"
    return {
        "lapses_at": now + resource.pending_timeout,
        "remind_at": now + every if every is not None else None,
        "escalate_at": now + after if after is not None and resource.escalate_to else None,
    }


def set_alarms(deps: Deps, resource: Resource, created_at: datetime) -> None:
    """Alarms for a new request's moments; each reminder sets the next one's when it is sent."""
    for moment in first_moments(resource, created_at).values():
        if moment is not None:
            deps.alarms.wake_at(moment)


def remind(deps: Deps, request_id: int) -> bool:
    """Remind whoever may decide the waiting step and has not, in the request's thread; True if this caller sent it."""
    with deps.db.transaction() as session:
        request = queries.get(session, request_id)
        if request is None or request.remind_at is None:
            return False
        due, created_at = request.remind_at, request.created_at
        resource = deps.resource(request.resource, request.level)
    if resource is None or resource.remind_approvers_every is None:
        return False
    oncall = on_call(deps, resource)  # fresh: whoever took over the pager since is the one to remind
    now = deps.now()
    every = resource.remind_approvers_every
    # On the request's own schedule, so lateness does not add up; after a long stop, one period from now, not a burst.
    following = due + every if due + every > now else now + every
    with deps.db.transaction() as session:
        if not queries.claim_approver_reminder(session, request_id, due, following):
            return False
        request = queries.get(session, request_id)
        assert request is not None
        known = oncall.schedule is not None and oncall.unknown is None  # no answer: keep whom we knew
        handed_over = known and sorted(oncall.people) != sorted(request.oncall_ids or [])
        if handed_over:  # whoever took over the pager is asked from now on, on the message too
            queries.set_fields(session, request_id, oncall_ids=sorted(oncall.people) or None)
            request = queries.get(session, request_id)
            assert request is not None
        current = view(deps, session, request)
        people = _undecided(deps, current)
        audit.record(session, AuditAction.APPROVERS_REMINDED, at=now, request=request, asked=people)
        note = {"mentions": people, "waited": int((now - created_at).total_seconds())}
        tell.thread(deps, session, current, Notice.REMINDER, note)
        if handed_over:
            tell.refresh(deps, session, current)
    deps.courier.deliver(request_id)
    deps.alarms.wake_at(following)
    return True


def escalate(deps: Deps, request_id: int) -> bool:
    """Ask the backups (``escalate_to``) too, once; from now on they may decide the step waiting."""
    with deps.db.transaction() as session:
        request = queries.get(session, request_id)
        if request is None or request.escalate_at is None:
            return False
        due = request.escalate_at
    now = deps.now()
    with deps.db.transaction() as session:
        if not queries.claim_escalation(session, request_id, due, now):
            return False
        request = queries.get(session, request_id)
        assert request is not None
        resource = deps.resource(request.resource, request.level)
        backups = list(resource.escalate_to or []) if resource is not None else []
        audit.record(session, AuditAction.ESCALATED, at=now, request=request, to=backups)
        current = view(deps, session, request)
        asked = to_ask(backups, current.requester_id, current.approvers)
        note = {"mentions": asked, "waited": int((now - request.created_at).total_seconds())}
        tell.thread(deps, session, current, Notice.ESCALATED, note)
        tell.refresh(deps, session, current)  # the message now asks the backups too
    deps.courier.deliver(request_id)
    return True


def _undecided(deps: Deps, current: RequestView) -> list[str]:
    """The people the waiting step asks who have not decided: a group is opened up into its members, so those who
    did decide are not called on again; a group Slack cannot list now is called on as a whole."""
    decided = {d.approver_id for d in current.decisions if d.round == 0}
    people: list[str] = []
    for entry in current.asking:
        if not entry.startswith("S"):
            people.append(entry)
            continue
        try:
            members = sorted(deps.directory.members([entry]))
        except MembershipUnknown:
            people.append(entry)
            continue
        people += [member for member in members if member not in decided and member != current.requester_id]
    return list(dict.fromkeys(people))
