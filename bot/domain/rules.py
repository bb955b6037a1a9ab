"""Who may do what, and whether a request is acceptable. Each rule returns the refusal a person sees."""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta

from bot.domain.commands import Ask
from bot.domain.durations import DurationError, format_duration, parse_duration
from bot.domain.states import Status
from bot.policy import Policy, Resource

MAX_REASON = 500


class Refused(Exception):
    """A person asked for something they may not have; the message tells them why and what is allowed."""


def check_ask(policy: Policy, ask: Ask) -> tuple[Resource, timedelta]:
    """The resource and duration an ask resolves to, or Refused. Needs no I/O, so it runs before the ack."""
    resource = policy.resource(ask.resource)
    if resource is None:
        names = ", ".join(sorted(policy.resources)) or "none"
        raise Refused(f"There is no resource '{ask.resource}'. Resources: {names}. See `/breakglass list`.")
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
    if ask.emergency and not resource.emergency:
        raise Refused(f"{resource.name} does not allow emergency access; ask without `--emergency`.")
    return resource, duration


def check_requester(resource: Resource, allowed: bool) -> None:
    if not allowed:
        raise Refused(f"You are not among the people who may request {resource.name}.")


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


def check_extender(*, actor: str, holder: str, is_approver: bool, emergency: bool, request_id: int) -> None:
    """An extension is a new approval: another approver gives it. Only glass already broken may extend itself."""
    if actor == holder and not emergency:
        raise Refused(f"You cannot extend your own access; ask an approver to `/breakglass extend {request_id} …`.")
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


def check_review(*, actor: str, holder: str, is_approver: bool, status: Status, request_id: int) -> None:
    if actor != holder and not is_approver:
        raise Refused(f"Only the requester or an approver may record the review of request #{request_id}.")
    if status in (
        Status.PENDING,
        Status.APPROVED,
        Status.GRANTING,
        Status.GRANT_FAILED,
        Status.DENIED,
        Status.CANCELLED,
        Status.TIMED_OUT,
    ):
        raise Refused(f"Request #{request_id} never granted access; there is nothing to review.")


def is_listed(user_id: str, ids: Collection[str], members: Collection[str]) -> bool:
    """Listed by user id, or a member of a listed group (``members`` is the groups' members, already looked up)."""
    return user_id in ids or user_id in members
