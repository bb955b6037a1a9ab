"""One live grant per principal and resource (whatever its level).

Backends key what they grant by principal and resource (a role membership, a temporary login, an ACL user, a
binding), so two overlapping grants of the same access are one thing on the backend: the first revoke would take
away what the other still gives, while the bot kept showing it active. So a principal holds at most one live
request per resource. A second ask is refused and pointed at `/breakglass extend`; an emergency replaces a normal
request that is still waiting for approval. The database holds the rule where it takes effect: a live request
carries ``live_key``, which a unique index lets only one row hold, and the move to a final status gives it up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from bot.domain.rules import Refused
from bot.domain.states import OPEN, Status
from bot.policy import Policy, Resource

# Every status in which a request may still lead to, hold, or be removing access: exactly the open ones.
LIVE = OPEN
WAITING = frozenset({Status.PENDING})
HOLDING = frozenset({Status.APPROVED, Status.GRANTING, Status.ACTIVE})
ENDING = frozenset({Status.REVOKING, Status.REVOKE_FAILED})
assert WAITING | HOLDING | ENDING == LIVE


def twins(policy: Policy, resource: str) -> list[str]:
    """The resources that give the same access on the same backend as ``resource`` (the same adapter and params, so
    perhaps other durations or approvers), itself included, sorted. Levels count by their merged params: a resource
    with the params of another's level is a twin of it. Grants of any of them are one thing on the backend: one
    person may hold only one of them at a time, and reconciliation counts a grant of any as cover."""
    me = policy.resources.get(resource)
    if me is None:
        return [resource]
    mine = _grants(me)
    return sorted(r.name for r in policy.resources.values() if r.name == resource or _grants(r) & mine)


def _grants(resource: Resource) -> set[str]:
    """What each level of ``resource`` grants, comparably: its adapter and its params (merged, as JSON)."""
    views = [resource.at(level) for level in resource.each_level]
    return {json.dumps([v.adapter, v.params], sort_keys=True, default=str) for v in views}


def scope(policy: Policy, resource: str) -> str:
    """What a live request of ``resource`` is keyed by: the first of its twins, so twins share one key."""
    return twins(policy, resource)[0]


def live_key(resource: str, principal: str | None) -> str | None:
    """What a live request of ``principal`` on ``resource`` occupies. Resource names never hold a newline, so the
    key is unambiguous. Requests from before principals were stored have none, and so take no key."""
    return None if principal is None else f"{resource}\n{principal}"


@dataclass(frozen=True)
class LiveRequest:
    """The live request that stands in the way of a new one."""

    id: int
    resource: str
    requester_id: str
    status: Status
    emergency: bool
    expires_at: datetime | None


def supersedes(live: LiveRequest, emergency: bool) -> bool:
    """An emergency does not wait for approvers: it replaces a normal request still waiting for them."""
    return emergency and live.status is Status.PENDING and not live.emergency


def refusal(live: LiveRequest, actor: str, now: datetime) -> Refused:
    """Why a new request cannot be stored while ``live`` is, and what to do instead. Levels of one resource share
    the backend identity (a revoke of one would end the other's sessions or roles), so they are held one at a time:
    the refusal says how to change level."""
    refused = _refusal(live, actor, now)
    if ":" not in live.resource or live.requester_id != actor or live.status in ENDING:
        return refused
    return Refused(
        f"{refused} One level of a resource is held at a time: to change level, end #{live.id} first with "
        f"`/breakglass revoke {live.id}`, then ask again."
    )


def _refusal(live: LiveRequest, actor: str, now: datetime) -> Refused:
    number, resource = live.id, f"`{live.resource}`"
    mine = live.requester_id == actor
    if live.status in WAITING:
        if mine:
            return Refused(
                f"You already asked for {resource} (#{number}); it is waiting for approval. "
                f"To ask differently, withdraw it first with `/breakglass revoke {number}`."
            )
        return Refused(
            f"<@{live.requester_id}> already asked for {resource} for the same backend identity as yours "
            f"(#{number}); it is waiting for approval."
        )
    if live.status in HOLDING:
        until = f"until {_clock_time(live.expires_at, now)}" if live.expires_at else "as soon as it is granted"
        if mine:
            if live.emergency:
                return Refused(
                    f"You hold access to {resource} {until} (#{number}); extend it yourself with "
                    f"`/breakglass extend {number} …`."
                )
            return Refused(
                f"You hold access to {resource} {until} (#{number}); ask an approver for more time with "
                f"`/breakglass extend {number} …`."
            )
        return Refused(
            f"Your backend identity on {resource} already has access {until} through <@{live.requester_id}>'s "
            f"request #{number}. An approver can give more time with `/breakglass extend {number} …`."
        )
    if mine:
        return Refused(
            f"Your earlier access to {resource} (#{number}) is still being removed; ask again once it is "
            "(`/breakglass mine` shows where it is)."
        )
    return Refused(
        f"Your backend identity's access to {resource} through <@{live.requester_id}>'s request #{number} is still "
        "being removed; ask again once it is."
    )


def _clock_time(moment: datetime, now: datetime) -> str:
    return f"{moment:%H:%M} UTC" if moment.date() == now.date() else f"{moment:%Y-%m-%d %H:%M} UTC"
