"""Messages owed: what the use cases record, in the transaction of the change itself, for the courier to send.

Recording instead of sending is what makes a notice as durable as the change it reports: both commit together or
not at all, and the courier (bot/services/delivery.py) sends from the outbox until Slack has it. A notice to a
person is rendered from the request as it was when the change happened; the request's own messages are rendered as
the request is when they go out, so a late post or edit never shows a state that has passed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from bot.services.activity_notes import ActivityNote
from bot.services.deps import Deps
from bot.services.ports import Notice
from bot.services.snapshots import RequestView, to_data
from bot.store import outbox
from bot.store.outbox import Kind

# The notices that also go to the channel the request was made in, when that is not the approvals channel.
CHANNEL_NOTICES = frozenset(
    {
        Notice.RECEIVED,
        Notice.ACTIVE,
        Notice.EMERGENCY,
        Notice.DENIED,
        Notice.GRANT_FAILED,
        Notice.EXPIRED,
        Notice.REVOKED,
    }
)


# Notices that are also a reply in the request's thread (the request's own message already says it was received).
# AUTO_APPROVED's own reply says more; a review reminder comes daily and is the holder's alone.
THREADED = frozenset(set(Notice) - {Notice.RECEIVED, Notice.AUTO_APPROVED, Notice.REVIEW_REMINDER})
# What an incident channel the request was typed in hears besides CHANNEL_NOTICES.
INCIDENT_NOTICES = frozenset(
    {Notice.APPROVED, Notice.CANCELLED, Notice.EXPIRING, Notice.AUTO_APPROVED, Notice.EXTENDED, Notice.REVIEW_DUE}
)


def request_message(deps: Deps, session: Session, current: RequestView) -> None:
    """The request's message with its buttons, in the approvals channel."""
    outbox.owe(session, deps.now(), Kind.REQUEST, request_id=current.id, channel=deps.policy.channels.approvals)


def alert(deps: Deps, session: Session, current: RequestView) -> None:
    """An emergency's loud alert, in the audit channel."""
    outbox.owe(session, deps.now(), Kind.ALERT, request_id=current.id, channel=deps.policy.channels.audit)


def refresh(deps: Deps, session: Session, current: RequestView) -> None:
    """Edit the request's messages to show where it is now."""
    outbox.owe(session, deps.now(), Kind.REFRESH, request_id=current.id)


def requester(deps: Deps, session: Session, current: RequestView, notice: Notice) -> None:
    """A DM to the requester; the request's thread hears the same, as everything that happens to it after its
    approval message is also a reply there."""
    if notice in THREADED:
        thread(deps, session, current, notice)
    outbox.owe(
        session,
        deps.now(),
        Kind.REQUESTER,
        request_id=current.id,
        channel=current.requester_id,
        notice=notice.value,
        payload=to_data(current),
    )


def channel(deps: Deps, session: Session, channel: str, current: RequestView, notice: Notice) -> None:
    outbox.owe(
        session,
        deps.now(),
        Kind.CHANNEL,
        request_id=current.id,
        channel=channel,
        notice=notice.value,
        payload=to_data(current),
    )


def audit_channel(deps: Deps, session: Session, current: RequestView, notice: Notice) -> None:
    channel(deps, session, deps.policy.channels.audit, current, notice)


def announce(deps: Deps, session: Session, current: RequestView, notice: Notice) -> None:
    """Tell the requester, and the channel the request came from where that is not the approvals channel: the main
    notices, or every one of them when it is an incident channel (the people handling the incident follow there)."""
    if current.drill:  # nobody to tell: a drill's principal is no person, and its one report says what happened
        return
    requester(deps, session, current, notice)
    origin = current.origin_channel
    # A request made in a DM with the bot is already answered by the requester's notice.
    wanted = notice in CHANNEL_NOTICES or (current.origin_incident and notice in INCIDENT_NOTICES)
    if wanted and origin and origin != deps.policy.channels.approvals and not origin.startswith("D"):
        channel(deps, session, origin, current, notice)


def thread(
    deps: Deps,
    session: Session,
    current: RequestView,
    notice: Notice,
    note: dict[str, Any] | None = None,
    *,
    on_alert: bool = False,
) -> None:
    """A reply in the thread of the request's approval message (``on_alert``: of its emergency alert, shown in the
    channel too). ``note`` says who acted, with what words, and whom it calls on (``mentions``). It waits behind
    the request's earlier messages, so the message it replies to exists by then."""
    payload = {"view": to_data(current), "note": note or {}, "on_alert": on_alert}
    outbox.owe(session, deps.now(), Kind.THREAD, request_id=current.id, notice=notice.value, payload=payload)


def reconciled(deps: Deps, session: Session, resource: str, principal: str, found: str, *, taken: bool = True) -> None:
    """The audit channel hears of access no live grant covers: taken back, or (``taken`` false) only found."""
    payload = {"resource": resource, "principal": principal, "found": found, "taken": taken}
    outbox.owe(session, deps.now(), Kind.RECONCILED, channel=deps.policy.channels.audit, payload=payload)


def activity(
    deps: Deps, session: Session, current: RequestView, note: ActivityNote, channel: str | None = None
) -> None:
    """Captured activity, or capture's trouble: in the thread of the request's approval message, or (``channel``) on
    its own in a channel. A thread reply waits behind the request's earlier messages, so its thread exists by then."""
    outbox.owe(
        session,
        deps.now(),
        Kind.ACTIVITY,
        request_id=current.id,
        channel=channel,
        notice=note.note.value,
        payload={"view": to_data(current), "note": note.to_data()},
    )


def refusals(deps: Deps, session: Session, actor: str, count: int, window: timedelta, latest: str) -> None:
    payload = {"actor": actor, "count": count, "window": window.total_seconds(), "latest": latest}
    outbox.owe(session, deps.now(), Kind.REFUSALS, channel=deps.policy.channels.audit, payload=payload)


def audit_sink(deps: Deps, session: Session, report: dict[str, Any]) -> None:
    """The audit channel hears that an audit sink is failing (once per outage) or has caught up again."""
    outbox.owe(session, deps.now(), Kind.SINK, channel=deps.policy.channels.audit, payload=report)
