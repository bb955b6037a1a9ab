"""What became of a request, in one sentence: the answer to a click on a button whose moment has passed."""

from __future__ import annotations

import re
from datetime import datetime

from bot.domain.states import Status
from bot.services.snapshots import RequestView

_SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,20}")
_INERT = re.compile(r"[^A-Za-z0-9._@:-]")  # what may not stand in a name shown as text (mrkdwn, mentions)


def _who(user_id: str | None) -> str:
    if not user_id:
        return "Breakglass"
    # Not every actor is a Slack user: an operator's revoke from the shell is "cli:<login>", named as plain text.
    return f"<@{user_id}>" if _SLACK_USER.fullmatch(user_id) else f"`{_INERT.sub('', user_id)[:40]}`"


def _time(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "an unknown time"


def _at(moment: datetime | None) -> str:
    return f" at {_time(moment)}" if moment else ""


def _people(ids: list[str]) -> str:
    names = [_who(i) for i in ids]
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else (names[0] if names else "nobody")


def outcome(view: RequestView) -> str:
    """E.g. "Request #4 was denied by @carol at 2026-01-01 09:12 UTC." Ends with "Nothing was done." when nothing
    this click asked for happened."""
    number = f"Request #{view.id}"
    approved = f"approved by {_people(view.approvers)}" if view.approvers else "approved"
    if view.emergency:
        approved = f"an emergency self-grant by {_who(view.requester_id)}"
    match view.status:
        case Status.PENDING:
            return f"{number} is still waiting for approvers."
        case Status.DENIED:
            return f"{number} was denied by {_who(view.denier)}{_at(_decided(view))}."
        case Status.CANCELLED if view.superseded_by:
            return f"{number} was superseded by emergency request #{view.superseded_by}{_at(_decided(view))}."
        case Status.CANCELLED:
            return f"{number} was withdrawn by {_who(view.requester_id)}{_at(_decided(view))}."
        case Status.TIMED_OUT:
            return f"{number} got no decision in time and lapsed."
        case Status.APPROVED | Status.GRANTING:
            return f"{number} was {approved}; access is being granted right now."
        case Status.ACTIVE:
            return f"{number} was {approved}; access is active until {_time(view.expires_at)}."
        case Status.GRANT_FAILED:
            return f"{number} was {approved}, but granting access failed; there is no access."
        case Status.REVOKING | Status.REVOKE_FAILED:
            return f"{number} was {approved}; access is being revoked."
        case Status.EXPIRED:
            return f"{number} was {approved}; access expired{_at(view.access_ended_at)}."
        case Status.REVOKED:
            return f"{number} was {approved}; access was revoked by {_who(view.ended_by)}{_at(view.ended_at)}."
    return f"{number} is {view.status.value.replace('_', ' ')}."


def _decided(view: RequestView) -> datetime | None:
    return max((d.at for d in view.decisions), default=None)
