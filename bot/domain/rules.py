"""Who may do what, and whether a request is acceptable. Each rule returns the refusal a person sees."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from bot.domain.commands import Ask
from bot.domain.durations import DurationError, format_duration, parse_duration
from bot.domain.states import Status
from bot.policy import Policy, Resource

MAX_REASON = 500


class Refused(Exception):
    """A person asked for something they may not have; the message tells them why and what is allowed."""


class Forbidden(Refused):
    """A refusal of something the policy forbids this person (not a typo or a limit): audited and counted."""


def find_resource(policy: Policy, name: str, may_request: Callable[[Resource], bool]) -> Resource:
    """The resource a person named, if they may request it.

    A name that names nothing and a resource the person may not request get the same answer, listing only what
    they may request: the answer reveals nothing the policy hides from them. The second is an attempt on something
    forbidden (``Forbidden``: audited and counted)."""
    resource = policy.resource(name)
    if resource is not None and may_request(resource):
        return resource
    names = ", ".join(sorted(r.name for r in policy.resources.values() if may_request(r)))
    listed = f" Resources you may request: {names}." if names else " There is none you may request."
    message = f"There is no resource '{name}' you may request.{listed} See `/breakglass list`."
    raise Forbidden(message) if resource is not None else Refused(message)


def check_ask(resource: Resource, ask: Ask) -> timedelta:
    """The duration an ask for ``resource`` resolves to, or Refused. Needs no I/O, so it can run before the ack;
    call it only once the person is known to be among the resource's requesters, so its answer (limits, the reason
    pattern) tells nothing to anyone else."""
    if ask.emergency and not resource.emergency:
        raise Forbidden(f"{resource.name} does not allow emergency access; ask without `--emergency`.")
    low, default, high = resource.limits
    if ask.duration is None:
        duration = default
    else:
        try:
            duration = parse_duration(ask.duration)
        except DurationError as error:
            raise Refused(f"{error}. {resource.name} allows {resource.allowed_range()}.") from None
        if not low <= duration <= high:
            raise Refused(
                f"{format_duration(duration)} is outside what {resource.name} allows: {resource.allowed_range()}."
            )
    if not ask.reason:
        hint = f" matching `{resource.reason_pattern}`" if resource.reason_pattern else ""
        raise Refused(f"A reason is missing. Say why you need {resource.name}{hint}, e.g. an incident id.")
    if len(ask.reason) > MAX_REASON:
        raise Refused(f"The reason is too long ({len(ask.reason)} characters; at most {MAX_REASON}).")
    if not resource.reason_matches(ask.reason):
        raise Refused(f"The reason must mention a reference matching `{resource.reason_pattern}` for {resource.name}.")
    return duration


def check_still_requester(*, resource: str, allowed: bool, request_id: int) -> None:
    """Whether someone may request a resource is asked again whenever their request takes effect (approval, grant,
    extension): a person removed from the requesters meanwhile gets nothing from a request made before."""
    if not allowed:
        raise Refused(
            f"The requester of #{request_id} is no longer among the people who may request {resource}, "
            "so it cannot take effect."
        )


def check_still_fresh(*, created_at: datetime, now: datetime, timeout: timedelta, request_id: int) -> None:
    """A request nobody decided within the timeout has lapsed, whether or not the sweep has noticed yet."""
    if now - created_at >= timeout:
        raise Refused(f"Request #{request_id} got no decision within {format_duration(timeout)} and lapsed.")


def check_decider(*, actor: str, requester: str, is_approver: bool, resource: str) -> None:
    """Whoever clicks, whatever the request's state: only another approver may decide."""
    if actor == requester:
        raise Refused("You cannot decide on your own request; another approver has to.")
    if not is_approver:
        raise Refused(f"You are not an approver for {resource}.")


def check_decision(
    *, actor: str, requester: str, status: Status, request_id: int, is_approver: bool, resource: str
) -> None:
    check_decider(actor=actor, requester=requester, is_approver=is_approver, resource=resource)
    if status is not Status.PENDING:
        raise Refused(f"Request #{request_id} is already {status.value.replace('_', ' ')}; nothing to decide.")


def check_extender(
    *, actor: str, holder: str, is_approver: bool, emergency: bool, may_break_glass: bool, request_id: int
) -> None:
    """An extension is a new approval: another approver gives it. Only glass already broken may extend itself, and
    only by someone who could break it again now (the resource still allows it, they are still a requester)."""
    if actor == holder and not emergency:
        raise Refused(f"You cannot extend your own access; ask an approver to `/breakglass extend {request_id} …`.")
    if actor == holder and not may_break_glass:
        raise Refused(
            f"You may no longer break the glass on this resource, so you cannot extend request #{request_id} "
            "yourself; ask an approver."
        )
    if actor != holder and not is_approver:
        raise Refused(f"Only an approver may extend request #{request_id}.")


def check_extension(*, granted_for: timedelta, extra: timedelta, resource: Resource) -> None:
    """The whole grant, extension included, stays within the resource's longest duration."""
    _, _, longest = resource.limits
    if granted_for + extra > longest:
        room = max(longest - granted_for, timedelta(0))
        left = f"at most {format_duration(room)} more" if room >= timedelta(minutes=1) else "no more time"
        raise Refused(
            f"{resource.name} allows {format_duration(longest)} in all; this grant has had "
            f"{format_duration(granted_for)}, so {left}."
        )


def check_revoke(*, actor: str, holder: str, is_approver: bool, status: Status, request_id: int) -> None:
    if actor != holder and not is_approver:
        raise Refused(f"Only the holder or an approver may revoke request #{request_id}.")
    if status in (Status.REVOKING, Status.REVOKE_FAILED):
        raise Refused(f"Access for request #{request_id} is already being revoked.")
    if status in (Status.APPROVED, Status.GRANTING):
        raise Refused(f"Access for request #{request_id} is being granted right now; revoke it once it is active.")
    if status not in (Status.ACTIVE, Status.PENDING):
        raise Refused(f"Request #{request_id} is {status.value.replace('_', ' ')}; there is no access to revoke.")


def check_review(*, actor: str, holder: str, is_approver: bool, status: Status, granted: bool, request_id: int) -> None:
    """Only access that was really given can be reviewed: a grant that failed and is being undone never was."""
    if actor != holder and not is_approver:
        raise Refused(f"Only the requester or an approver may record the review of request #{request_id}.")
    if not granted or status in (
        Status.PENDING,
        Status.APPROVED,
        Status.GRANTING,
        Status.GRANT_FAILED,
        Status.DENIED,
        Status.CANCELLED,
        Status.TIMED_OUT,
    ):
        raise Refused(f"Request #{request_id} never granted access; there is nothing to review.")


def plainly_requester(user_id: str, resource: Resource) -> bool | None:
    """Whether ``user_id`` may request ``resource`` when that is known without looking up a user group (before the
    ack); None when it depends on group membership."""
    if resource.requesters is None or user_id in resource.requesters:
        return True
    return None if any(entry.startswith("S") for entry in resource.requesters) else False


def is_listed(user_id: str, ids: Collection[str], members: Collection[str]) -> bool:
    """Listed by user id, or a member of a listed group (``members`` is the groups' members, already looked up)."""
    return user_id in ids or user_id in members
