"""Who may do what, and whether a request is acceptable. Each rule returns the refusal a person sees."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from bot.domain.commands import Ask
from bot.domain.durations import DurationError, format_duration, parse_duration
from bot.domain.states import ReviewStatus, Status
from bot.policy import Policy, Resource

MAX_REASON = 500


class Refused(Exception):
    """A person asked for something they may not have; the message tells them why and what is allowed."""


class Forbidden(Refused):
    """A refusal of something the policy forbids this person (not a typo or a limit): audited and counted."""


def may_request_any(resource: Resource, may_request: Callable[[Resource], bool]) -> bool:
    """Whether a person may request at least one level of ``resource`` (the only one, for a resource without)."""
    return any(may_request(resource.at(level)) for level in resource.each_level)


def find_resource(
    policy: Policy,
    name: str,
    may_request: Callable[[Resource], bool],
    level: str | None = None,
    emergency: bool = False,
) -> Resource:
    """The resource a person named, at the level they named (or its first), if they may request it.

    A name that names nothing and a resource the person may request no level of get the same answer, listing only
    what they may request: the answer reveals nothing the policy hides from them. The second is an attempt on
    something forbidden (``Forbidden``: audited and counted). An emergency that names no level gets the first; a
    level that does not allow emergency access is refused, naming those that do."""
    resource = policy.resources.get(name)
    if resource is None or not may_request_any(resource, may_request):
        names = ", ".join(sorted(r.name for r in policy.resources.values() if may_request_any(r, may_request)))
        listed = f" Resources you may request: {names}." if names else " There is none you may request."
        message = f"There is no resource '{name}' you may request.{listed} See `/breakglass list`."
        raise Forbidden(message) if resource is not None else Refused(message)
    if resource.levels is None:
        if level is not None:
            raise Refused(f"{name} has no levels; ask for `{name}` without `:{level}`.")
        chosen = resource
    else:
        yours = [lv for lv in resource.level_names if may_request(resource.at(lv))]
        if level is not None and level not in resource.levels:
            raise Refused(f"{name} has no level '{level}'. Levels you may request: {_levels(name, yours)}.")
        chosen = resource.at(level)
        if not may_request(chosen):
            raise Forbidden(f"You may not request {chosen.label}. Levels you may request: {_levels(name, yours)}.")
    if emergency and not chosen.emergency:
        allowing = [lv for lv in resource.level_names if (r := resource.at(lv)).emergency and may_request(r)]
        if allowing:
            raise Forbidden(
                f"{chosen.label} does not allow emergency access. Break the glass on "
                f"{_levels(name, allowing)} instead, e.g. `/breakglass {name}:{allowing[0]} --emergency …`."
            )
        raise Forbidden(f"{chosen.label} does not allow emergency access; ask without `--emergency`.")
    return chosen


def _levels(name: str, levels: list[str]) -> str:
    return ", ".join(f"`{name}:{level}`" for level in levels) or "none"


def check_ask(resource: Resource, ask: Ask) -> timedelta:
    """The duration an ask for ``resource`` resolves to, or Refused. Needs no I/O, so it can run before the ack;
    call it only once the person is known to be among the resource's requesters, so its answer (limits, the reason
    pattern) tells nothing to anyone else."""
    if ask.emergency and not resource.emergency:
        raise Forbidden(f"{resource.label} does not allow emergency access; ask without `--emergency`.")
    low, default, high = resource.limits
    if ask.duration is None:
        duration = default
    else:
        try:
            duration = parse_duration(ask.duration)
        except DurationError as error:
            raise Refused(f"{error}. {resource.label} allows {resource.allowed_range()}.") from None
        if not low <= duration <= high:
            raise Refused(
                f"{format_duration(duration)} is outside what {resource.label} allows: {resource.allowed_range()}."
            )
    if not ask.reason:
        hint = f" matching `{resource.reason_pattern}`" if resource.reason_pattern else ""
        raise Refused(f"A reason is missing. Say why you need {resource.label}{hint}, e.g. an incident id.")
    if len(ask.reason) > MAX_REASON:
        raise Refused(f"The reason is too long ({len(ask.reason)} characters; at most {MAX_REASON}).")
    if not resource.reason_matches(ask.reason):
        raise Refused(f"The reason must mention a reference matching `{resource.reason_pattern}` for {resource.label}.")
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
        raise Refused(
            f"You cannot give yourself more time on #{request_id}; ask for it (`/breakglass extend {request_id} …` or "
            "Ask for more time) and an approver decides."
        )
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
            f"{resource.label} allows {format_duration(longest)} in all; this grant has had "
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


NOT_GRANTED = frozenset(
    {
        Status.PENDING,
        Status.APPROVED,
        Status.GRANTING,
        Status.GRANT_FAILED,
        Status.DENIED,
        Status.CANCELLED,
        Status.TIMED_OUT,
    }
)


def check_review_party(*, actor: str, holder: str, may_sign_off: bool, request_id: int) -> None:
    """A review is between the holder, who writes the account, and those who may sign it off (the resource's
    approvers at the request's level and ``review.reviewers``); nobody else reads or writes it."""
    if actor != holder and not may_sign_off:
        raise Refused(
            f"Only the holder of request #{request_id} writes its review, and only an approver of the resource or a "
            "reviewer signs it off."
        )


def check_reviewable(*, status: Status, granted: bool, request_id: int) -> None:
    """Only access that was really given can be reviewed: a grant that failed and is being undone never was."""
    if not granted or status in NOT_GRANTED:
        raise Refused(f"Request #{request_id} never granted access; there is nothing to review.")


def check_account(*, review: ReviewStatus | None, request_id: int) -> None:
    """The holder writes the account once; early is welcome (before access ends), twice is not."""
    if review in (ReviewStatus.WRITTEN, ReviewStatus.DONE):
        raise Refused(
            f"You wrote the review of request #{request_id} already; it stands as written, and you cannot sign off "
            f"your own review: an approver of the resource or a reviewer does. `/breakglass review {request_id}` "
            "shows where it stands."
        )


def check_sign_off(*, review: ReviewStatus | None, holds_access: bool, reviewer: str | None, request_id: int) -> None:
    """Someone other than the holder (the caller's part: the holder's own word is the account) signs off an account
    that exists, of access that has ended (so the activity they read is all there is)."""
    if review is ReviewStatus.DONE:
        raise Refused(f"The review of request #{request_id} was already signed off by {_mention(reviewer)}.")
    if review is not ReviewStatus.WRITTEN:
        raise Refused(
            f"The holder's account of request #{request_id} is awaited; it can be signed off once they have written "
            f"it. `/breakglass review {request_id}` shows where it stands."
        )
    if holds_access:
        raise Refused(f"Request #{request_id} still holds access; sign its review off once the access has ended.")


def check_reviews_settled(
    *, overdue: int | None, resource: str | None, block_after: timedelta | None, approving: int | None = None
) -> None:
    """A person whose own account of a review is overdue by longer than ``review.block_after`` makes no new
    non-emergency request until it is written. Asked when a request is made and again when it is approved
    (``approving``): a request made before the review fell that far behind does not take effect after."""
    if overdue is None or block_after is None:
        return
    late = f"overdue by more than {format_duration(block_after)}"
    if approving is not None:
        raise Refused(
            f"The requester of #{approving} has not written their review of request #{overdue} ({resource}), {late}, "
            f"so #{approving} cannot be approved until they do (`/breakglass review {overdue} …`)."
        )
    raise Refused(
        f"Your review of request #{overdue} ({resource}) is {late}. Write it first with "
        f"`/breakglass review {overdue} what happened and why…`; emergencies still go through."
    )


def _mention(user_id: str | None) -> str:
    return f"<@{user_id}>" if user_id else "someone"


def plainly_requester(user_id: str, resource: Resource) -> bool | None:
    """Whether ``user_id`` may request ``resource`` when that is known without looking up a user group (before the
    ack); None when it depends on group membership."""
    if resource.requesters is None or user_id in resource.requesters:
        return True
    return None if any(entry.startswith("S") for entry in resource.requesters) else False


def is_listed(user_id: str, ids: Collection[str], members: Collection[str]) -> bool:
    """Listed by user id, or a member of a listed group (``members`` is the groups' members, already looked up)."""
    return user_id in ids or user_id in members
