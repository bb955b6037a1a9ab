"""Who may decide a request now, and where its approval stands: the policy's steps (bot/domain/approvals.py) with
the people behind them looked up at the moment of asking.

A person may decide a step when they are listed in it, when they are on call now for the resource's schedule and the
schedule may approve (the first step), or when the request was escalated and they are among ``escalate_to`` (the
step waiting). Each is asked again whenever it takes effect: an approval whose reason no longer holds when the last
approval arrives (removed from the group, off call) does not count. An on-call service that cannot answer makes
nobody an on-call approver: the listed approvers still can, and nothing is approved because of an error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bot.domain.approvals import Cast, Standing, Via, standing, to_ask
from bot.domain.rules import Refused
from bot.policy import Resource
from bot.services.deps import Deps
from bot.services.snapshots import DecisionView
from bot.store.models import Decision, Request


def on_call_now(deps: Deps, resource: Resource) -> frozenset[str] | None:
    """Who is on call now for the resource's schedule (Slack ids); None when there is no schedule or no answer."""
    if resource.oncall is None or deps.oncall is None:
        return None
    return deps.oncall.on_call_now(resource.oncall.schedule)


def ways(deps: Deps, actor: str, resource: Resource, escalated: bool) -> dict[int, str]:
    """The steps ``actor`` may decide now, each with how (Via). The requester check is the caller's."""
    found: dict[int, str] = {}
    for index, step in enumerate(resource.steps):
        if deps.is_listed(actor, step.approvers):
            found[index] = Via.LISTED
    oncall = resource.oncall
    if 0 not in found and oncall is not None and oncall.may_approve and actor in (on_call_now(deps, resource) or ()):
        found[0] = Via.ONCALL
    if escalated and resource.escalate_to and deps.is_listed(actor, resource.escalate_to):
        for index in range(len(resource.steps)):
            found.setdefault(index, Via.ESCALATION)
    return found


def may_decide_any(deps: Deps, actor: str, resource: Resource | None, escalated: bool) -> bool:
    return resource is not None and bool(ways(deps, actor, resource, escalated))


def casts(decisions: Sequence[Decision], round: int = 0) -> list[Cast]:
    return [Cast(d.approver_id, d.approve, d.step or 0, d.via) for d in decisions if (d.round or 0) == round]


def counting(deps: Deps, resource: Resource, escalated: bool, requester: str, cast_list: list[Cast]) -> Standing:
    """Where the round stands with only the approvals whose reason still holds now (looked up before any row lock:
    a lookup may call Slack or the on-call service)."""
    still: set[tuple[str, int]] = set()
    for cast in cast_list:
        if not cast.approve or cast.person == requester:
            continue
        if cast.step in ways(deps, cast.person, resource, escalated):
            still.add((cast.person, cast.step))
    return standing(resource.steps, cast_list, lambda c: (c.person, c.step) in still)


def recorded(decisions: Sequence[DecisionView], round: int) -> list[Cast]:
    """A snapshot's decisions of one round, as counting sees them."""
    return [Cast(d.approver_id, d.approve, d.step, d.via) for d in decisions if d.round == round]


def recount(before: list[Cast], counted: Standing) -> Callable[[Cast], bool]:
    """Which approvals count under the row lock: those ``counted`` found still valid before it (looked up then), and
    any that arrived meanwhile, which their own click checked."""
    valid = {(c.person, c.step) for c in before if c.approve and any(c.person in step for step in counted.approved)}
    seen = {(c.person, c.step) for c in before}
    return lambda c: (c.person, c.step) in valid or (c.person, c.step) not in seen


def asking(resource: Resource, request: Request, now_standing: Standing) -> tuple[str, ...]:
    """Who the waiting step calls on (user and group ids, as listed; mentions need no lookup): its approvers, whoever
    was on call when last looked at (first step), and the backups once escalated; never the requester or anyone who
    decided this round already."""
    index = now_standing.waiting
    if index is None or now_standing.denied_by is not None:
        return ()
    listed = list(resource.steps[index].approvers)
    if index == 0 and resource.oncall is not None and resource.oncall.may_approve:
        listed += list(request.oncall_ids or [])
    if request.escalated_at is not None and resource.escalate_to:
        listed += list(resource.escalate_to)
    decided = [person for step in now_standing.approved for person in step]
    return tuple(to_ask(listed, request.requester_id, decided))


def step_for(request_id: int, now: Standing, mine: dict[int, str], approve: bool) -> int:
    """The step this decision counts in: an approval goes to the step waiting, and only its deciders may give it; a
    denial may come from anyone who may decide any step (one denial at any step ends the request)."""
    waiting = now.waiting
    if not approve:
        return waiting if waiting in mine else min(mine)
    if waiting is None:  # every step has its approvals already: this completes it, counted where the actor may
        return max(mine)
    if waiting in mine:
        return waiting
    name = now.step_name(waiting)
    if min(mine) > waiting:
        raise Refused(
            f"Request #{request_id} waits for {name} first; you decide {now.step_name(min(mine))} once that is "
            "approved. Nothing was recorded."
        )
    raise Refused(
        f"Request #{request_id} now waits for {name}, which you are not an approver of; the step you may decide is "
        "approved already. Nothing was recorded."
    )
